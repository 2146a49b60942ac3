"""Two training processes (accelerate + torchrun, gloo on CPU) against one process with the same global batch.

``ddp_worker.py``, launched with the shipped ``configs/accelerate/cpu-2proc.yaml``, runs 3 steps in
2 processes and records, after each step, how far any trainable parameter differs between the
processes; then ``main.py train --resume`` continues the run to 6 steps in the same 2 processes. Its loss
curve must match one process with batch 2 (DDP averages the two processes' gradients; data and noise
are functions of the global sample position): equal up to float rounding, relative tolerance 1e-5
(measured: ≈ 1e-7; the 2-process mean is a sum in a different order). The weights the 2-process run
exports (gathered through ``Accelerator.get_state_dict``, the path FSDP needs) must equal the 1-process
run's within 1e-5 absolute (measured: 1.3e-7; a step moves a weight by up to lr = 1e-3, so a wrong or
partial gather would show).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import CONFIG  # this folder is on sys.path (pytest's rootdir-less test import)

from model.generation.lora import BRANCH_FILE
from model.io.formats import read_safetensors
from model.training.flow import add_flow_noise
from model.training.losslog import read_loss_csv
from model.training.trainer import TrainConfig, noise_generators, train

ROOT = Path(__file__).resolve().parents[3]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu-2proc.yaml"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args: str) -> subprocess.CompletedProcess:
    """``accelerate launch`` with the shipped 2-process CPU config; fails the test on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    port = ["--main_process_port", str(free_port())]  # other test runs on this machine may hold the default
    done = subprocess.run([*LAUNCH, *port, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.timeout(400)
def test_two_processes_keep_parameters_identical_and_match_one_process_with_the_global_batch(tmp_path):
    out = tmp_path / "two"
    done = launch("tests/model/training/ddp_worker.py", str(out), "3", "6")
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["processes"] == 2
    # exact by construction: both processes apply the same all-reduced gradients with the same optimizer
    assert [row["max_rank_difference"] for row in ranks["steps"]] == [0.0, 0.0, 0.0]
    assert "trained branch steps 3..6" in done.stdout
    state = json.loads((out / "train.json").read_text())
    assert state["processes"] == 2 and state["steps"] == {**state["steps"], "resumed_from": 3, "final": 6}
    assert {p.name for p in (out / "checkpoints" / "step-000006").glob("rng-*")} == {
        "rng-0.safetensors",
        "rng-1.safetensors",
    }

    one = train(TrainConfig(out=str(tmp_path / "one"), steps=6, batch_size=2, **CONFIG), on_status=lambda m: None)
    two = read_loss_csv(out / "loss.csv")
    assert len(two) == len(one.losses) == 6
    assert two == pytest.approx(one.losses, rel=1e-5)
    assert ranks["steps"][2]["loss"] == pytest.approx(one.losses[2], rel=1e-5)

    # the exported weights (gathered through Accelerator.get_state_dict) are the 1-process run's
    exported, _ = read_safetensors(out / BRANCH_FILE)
    reference, _ = read_safetensors(tmp_path / "one" / BRANCH_FILE)
    assert exported.keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(exported[name], tensor, rtol=0, atol=1e-5, msg=name)


@pytest.mark.timeout(200)
def test_checkpoint_files_round_trip_under_fsdp2_sharding(tmp_path):
    """``fsdp_worker.py``: the checkpoint helpers on a ``fully_shard`` model in 2 gloo processes (accelerate
    runs FSDP only on GPUs; the trainer's own FSDP run is untested, README)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
    ]
    worker = "tests/model/training/fsdp_worker.py"
    done = subprocess.run(
        [*command, worker, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "fsdp.json").read_text())
    assert result["local_shape"] == [3, 8] and result["saved_shape"] == [6, 8], "shards saved as full tensors"
    assert result["saved"] == ["1.bias", "1.weight", "2.bias", "2.weight"], "the trainable parameters only"
    assert result["differs_before_loading"]
    # exact: the same values copied into each shard, then the same step on the same data
    assert result["equal_after_loading"] and result["equal_after_a_step"]


def test_a_samples_noise_depends_on_its_global_position_not_on_the_split_into_processes():
    one = noise_generators(seed=7, step=3, batch_size=2)  # one process, global batch 2
    two = [noise_generators(seed=7, step=3, batch_size=1, rank=r, world=2)[0] for r in (0, 1)]
    x0 = torch.randn(2, 48, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    together = add_flow_noise(x0, 1, (1, 1, 1), one)
    apart = [add_flow_noise(x0[r : r + 1], 1, (1, 1, 1), [two[r]]) for r in (0, 1)]
    # exact: the same generator states draw the same numbers, element for element
    assert torch.equal(together.model_input, torch.cat([a.model_input for a in apart]))
    assert torch.equal(together.sigmas, torch.cat([a.sigmas for a in apart]))
    assert not torch.equal(together.sigmas[0], together.sigmas[1]), "each sample has its own draws"
    with pytest.raises(ValueError, match="1 generators for a batch of 2"):
        add_flow_noise(x0, 1, (1, 1, 1), one[:1])
