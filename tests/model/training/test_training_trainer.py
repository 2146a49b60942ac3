"""The training loop on the tiny backend with procedural clips: freezing, overfitting, exact resume."""

import shutil

import pytest
import torch

from model.generation.backbone import load_backbone
from model.generation.lora import BRANCH_FILE, LORA_FILE, MANIFEST_FILE, load_memory_weights, save_memory_weights
from model.generation.memory_branch import DEFAULT_READOUT, MemoryBranch, MemoryBranchConfig
from model.training import checkpoint as ckpt
from model.training.losslog import read_loss_csv
from model.training.trainer import TrainConfig, Trainer, batch_indices, train, trainable_parameters

# A tiny backbone 192 channels wide (4 heads x 48): the default tiny width (32) cannot represent the
# 192 velocity values of a 2x2 patch of 48-channel latents (proj_out has rank 32), so no
# conditioning could halve the loss. 32x32 frames, 9-frame chunks (3 latent frames) keep steps fast.
WIDE = dict(tiny_num_heads=4, tiny_head_dim=48, height=32, width=32, chunk_frames=9, window_stride=8, device="cpu")
QUIET = dict(on_status=lambda message: None)


def overfit(trainer: Trainer, batch, steps: int) -> list[float]:
    """Train on one fixed batch with fixed noise and sigmas (the generator is reseeded every step)."""
    losses = []
    for _ in range(steps):
        trainer.generator.manual_seed(123)
        losses.append(trainer.train_step(batch))
    return losses


def snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module) -> set[str]:
    """Names of the tensors that differ in any bit from ``before`` (a frozen tensor is never written)."""
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def test_each_stage_halves_the_loss_on_a_fixed_batch_and_trains_only_its_parameters(tmp_path):
    # stage 1: only the branch trains (lr 3e-3 for a quick overfit; the default is 1e-5)
    stage1 = Trainer(
        TrainConfig(
            stage="branch", out=str(tmp_path / "s1"), lr=3e-3, procedural_scenes=1, branch_layers=(0, 2), **WIDE
        ),
        **QUIET,
    )
    batch = stage1.batch(0)
    assert set(trainable_parameters(stage1.model)) == {f"branch.{k}" for k, _ in stage1.model.branch.named_parameters()}
    transformer_before = snapshot(stage1.model.transformer)
    branch_before = snapshot(stage1.model.branch)
    early = overfit(stage1, batch, 2)
    stage1.export_weights()  # a barely trained branch: stage 2 then has something to add
    shutil.copytree(tmp_path / "s1", tmp_path / "branch", ignore=shutil.ignore_patterns("cache", "checkpoints"))
    losses = early + overfit(stage1, batch, 10)
    assert losses[-1] <= 0.5 * losses[0], f"stage 1 loss {losses[0]:.4f} -> {losses[-1]:.4f}"
    assert not changed(transformer_before, stage1.model.transformer), "the backbone stays frozen in stage 1"
    assert {"after_proj.0.weight", "before_proj.weight", "patch_embedding.weight"} <= changed(
        branch_before, stage1.model.branch
    )
    stage1.close()

    # stage 2: the stage-1 branch frozen, only the LoRA trains (lr 1e-2; the default is 1e-4)
    stage2 = Trainer(
        TrainConfig(
            stage="lora",
            out=str(tmp_path / "s2"),
            lr=1e-2,
            procedural_scenes=1,
            branch_dir=str(tmp_path / "branch"),
            lora_dropout=0.0,
            **WIDE,
        ),
        **QUIET,
    )
    names = set(trainable_parameters(stage2.model))
    assert names and all(".attn1." in n and ".lora_" in n for n in names)
    transformer_before = snapshot(stage2.model.transformer)
    branch_before = snapshot(stage2.model.branch)
    losses = overfit(stage2, batch, 40)
    assert losses[-1] <= 0.5 * losses[0], f"stage 2 loss {losses[0]:.4f} -> {losses[-1]:.4f}"
    assert not changed(branch_before, stage2.model.branch), "the branch stays frozen in stage 2"
    moved = changed(transformer_before, stage2.model.transformer)
    assert moved and all("lora_" in k for k in moved), "only LoRA weights move in stage 2"
    stage2.close()


def test_batches_are_a_pure_function_of_seed_and_step():
    order = [batch_indices(0, step, 2, 5) for step in range(5)]
    flat = [i for batch in order for i in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5)), "each epoch is a permutation"
    assert (
        batch_indices(0, 3, 2, 5) == order[3]
        and batch_indices(1, 3, 2, 5) != order[3]
        or batch_indices(1, 0, 2, 5) != order[0]
    )
    # two processes share out the same global order
    assert batch_indices(0, 0, 2, 5, rank=1, world=2) == flat[2:4]


@pytest.fixture(scope="module")
def zero_branch(tmp_path_factory):
    """A stage-1 output with a fresh branch (what stage 2 loads), for the default-width tiny backbone."""
    folder = tmp_path_factory.mktemp("zero_branch")
    transformer = load_backbone(TrainConfig(device="cpu").backbone_config("cpu")).transformer
    save_memory_weights(folder, transformer, MemoryBranch(transformer, MemoryBranchConfig(layers=(0, 2))), None)
    return folder


@pytest.mark.parametrize("stage", ["branch", "lora"])
def test_resume_after_a_crash_continues_bit_exactly(tmp_path, monkeypatch, stage, zero_branch):
    extra = dict(branch_dir=str(zero_branch)) if stage == "lora" else dict(branch_layers=(0, 2))
    common = dict(
        stage=stage,
        steps=4,
        checkpoint_every=2,
        lr=1e-3,
        procedural_scenes=2,
        height=32,
        width=32,
        chunk_frames=9,
        window_stride=8,
        device="cpu",
        **extra,
    )  # lora: dropout 0.05 draws from torch's RNG
    straight = train(TrainConfig(out=str(tmp_path / "straight"), **common), **QUIET)

    calls = {"n": 0}
    original = Trainer.train_step

    def crash_on_step_three(self, batch, *noise):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return original(self, batch, *noise)

    monkeypatch.setattr(Trainer, "train_step", crash_on_step_three)
    with pytest.raises(RuntimeError, match="killed"):
        train(TrainConfig(out=str(tmp_path / "crashed"), **common), **QUIET)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "crashed")] == ["step-000002"]
    with pytest.raises(ValueError, match="already holds a training run"):
        train(TrainConfig(out=str(tmp_path / "crashed"), **common), **QUIET)
    resumed = train(TrainConfig(out=str(tmp_path / "crashed"), **common), resume=str(tmp_path / "crashed"), **QUIET)
    assert resumed.start_step == 2 and resumed.steps == 4

    assert (
        read_loss_csv(tmp_path / "crashed" / "loss.csv")
        == read_loss_csv(tmp_path / "straight" / "loss.csv")
        == straight.losses
    )
    a, _ = ckpt.read_tensors(tmp_path / "straight" / "checkpoints" / "step-000004" / ckpt.TRAINABLE_FILE)
    b, _ = ckpt.read_tensors(tmp_path / "crashed" / "checkpoints" / "step-000004" / ckpt.TRAINABLE_FILE)
    # exact: the resumed run restores weights, optimiser and RNG states bit for bit and repeats the same
    # steps with the same code, on one torch thread (conftest.py)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "crashed" / "loss.png").stat().st_size > 0
    with pytest.raises(ValueError, match="other settings.*lr"):
        train(
            TrainConfig(out=str(tmp_path / "crashed"), **{**common, "lr": 5e-4, "steps": 6}),
            resume=str(tmp_path / "crashed"),
            **QUIET,
        )

    # the output folder is a memory-weights folder: branch only after stage 1, branch + LoRA after stage 2
    files = {BRANCH_FILE, MANIFEST_FILE} | ({LORA_FILE} if stage == "lora" else set())
    assert files <= {p.name for p in (tmp_path / "crashed").iterdir()}
    assert (stage == "lora") == (tmp_path / "crashed" / LORA_FILE).exists()
    transformer = load_backbone(TrainConfig(device="cpu").backbone_config("cpu")).transformer
    branch = load_memory_weights(tmp_path / "crashed", transformer)
    assert branch.readout == DEFAULT_READOUT, "the readout settings of the training samples are recorded"
    assert ("memory" in (getattr(transformer, "peft_config", None) or {})) == (stage == "lora")
    trained = {k[len("branch.") :]: v for k, v in a.items() if k.startswith("branch.")}
    assert all(torch.equal(branch.state_dict()[k], v) for k, v in trained.items())  # exact: file copies


def test_branch_only_folder_with_a_stray_lora_file_is_refused(zero_branch, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(zero_branch, folder)
    (folder / LORA_FILE).write_bytes(b"")
    transformer = load_backbone(TrainConfig(device="cpu").backbone_config("cpu")).transformer
    with pytest.raises(ValueError, match="branch-only"):
        load_memory_weights(folder, transformer)
