"""Two training processes (accelerate + torchrun, gloo on CPU) against one process with the same global batch.

``ddp_worker.py``, launched with the shipped ``configs/accelerate/cpu-2proc.yaml``, runs 3 steps in
2 processes and records, after each step, how far any trainable parameter differs between the
processes; then ``main.py train --resume`` continues the run to 6 steps in the same 2 processes. Its loss
curve must match one process with batch 2 (DDP averages the two processes' gradients; data and noise
are functions of the global sample position): equal up to float rounding, relative tolerance 1e-5
(measured: ≈ 1e-7; the 2-process mean is a sum in a different order).
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
