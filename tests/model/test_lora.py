"""Tests of the backbone LoRA and the branch + LoRA memory-weights folder (tiny transformers, CPU)."""

import json
from dataclasses import asdict

import pytest
import safetensors.torch
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

# A sibling test module: importable by its name in pytest's default (prepend) import mode.
from test_memory_branch import LAYERS, condition, forward, inputs, perturb, tiny_transformer

from model.generation.lora import (
    BRANCH_FILE,
    LORA_FILE,
    MANIFEST_FILE,
    LoraSettings,
    add_lora,
    load_memory_weights,
    lora_targets,
    save_memory_weights,
)
from model.generation.memory_branch import DEFAULT_READOUT, MemoryBranch, MemoryBranchConfig, ReadoutSettings
from model.memory.base import MemoryConfig
from model.memory.latent import LatentSpatialMemory

SETTINGS = LoraSettings(rank=4, alpha=8, dropout=0.0)


def adapted_modules(transformer) -> list[str]:
    return sorted(name for name, m in transformer.named_modules() if isinstance(m, BaseTunerLayer))


def randomize_lora(transformer, seed: int = 5) -> None:
    """Give the LoRA B matrices (zero at init) random values so the adapter changes the output."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)


def trained_pair(num_layers: int = 4):
    """A transformer with a random-valued branch attached and a random-valued LoRA."""
    transformer = tiny_transformer(num_layers)
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS))
    perturb(branch)
    add_lora(transformer, SETTINGS)
    randomize_lora(transformer)
    branch.attach(transformer)
    return transformer, branch


def test_default_targets_hit_only_self_attention():
    transformer = tiny_transformer()
    names = add_lora(transformer)
    assert names == adapted_modules(transformer)
    assert len(names) == 4 * transformer.config.num_layers
    assert all(".attn1." in n for n in names)
    assert {n.split(".attn1.")[1] for n in names} == {"to_q", "to_k", "to_v", "to_out.0"}
    config = transformer.peft_config["memory"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (64, 64, 0.05)


def test_fresh_lora_is_identity_and_trained_lora_is_not():
    kwargs = inputs()
    reference = forward(tiny_transformer(), kwargs)
    transformer = tiny_transformer()
    add_lora(transformer, SETTINGS)
    # exact: the same seeded weights and inputs in one process; a fresh LoRA's B is zero, so it adds exactly 0
    assert torch.equal(forward(transformer, kwargs), reference)
    randomize_lora(transformer)
    assert not torch.allclose(forward(transformer, kwargs), reference, atol=1e-3)


def test_lora_targets_errors():
    transformer = tiny_transformer()
    with pytest.raises(ValueError, match="match no layer"):
        lora_targets(transformer, LoraSettings(target_modules=("attn3.to_q",)))
    with pytest.raises(ValueError, match="only nn.Linear"):
        lora_targets(transformer, LoraSettings(target_modules=("patch_embedding",)))


def test_memory_weights_round_trip_into_fresh_transformer(tmp_path):
    transformer, branch = trained_pair()
    kwargs, cond = inputs(), condition()
    expected = forward(transformer, kwargs, branch, cond)
    folder = tmp_path / "weights"
    save_memory_weights(folder, transformer, branch, SETTINGS)
    assert sorted(p.name for p in folder.iterdir()) == sorted([BRANCH_FILE, LORA_FILE, MANIFEST_FILE])
    assert not [p for p in tmp_path.iterdir() if p.name != "weights"]  # no temporary leftovers
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["backbone"]["num_layers"] == 4 and manifest["lora"]["rank"] == 4
    assert all(k.startswith("transformer.blocks.") for k in safetensors.torch.load_file(folder / LORA_FILE))

    fresh = tiny_transformer()
    loaded = load_memory_weights(folder, fresh)
    assert loaded.attached
    assert adapted_modules(fresh) == adapted_modules(transformer)
    assert torch.equal(forward(fresh, kwargs, loaded, cond), expected)  # exact: copied weights, same computation


def test_save_replaces_previous_weights(tmp_path):
    transformer, branch = trained_pair()
    folder = tmp_path / "weights"
    save_memory_weights(folder, transformer, branch, SETTINGS)
    perturb(branch, seed=11)
    kwargs, cond = inputs(), condition()
    expected = forward(transformer, kwargs, branch, cond)
    save_memory_weights(folder, transformer, branch, SETTINGS)
    fresh = tiny_transformer()
    assert torch.equal(forward(fresh, kwargs, load_memory_weights(folder, fresh), cond), expected)  # exact: as above
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]


def test_save_refuses_foreign_folder_and_wrong_settings(tmp_path):
    transformer, branch = trained_pair()
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="notes.txt"):
        save_memory_weights(tmp_path, transformer, branch, SETTINGS)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="differ from adapter"):
        save_memory_weights(tmp_path / "w", transformer, branch, LoraSettings())
    with pytest.raises(ValueError, match="no LoRA adapter 'other'"):
        save_memory_weights(tmp_path / "w", transformer, branch, SETTINGS, adapter_name="other")
    assert not (tmp_path / "w").exists()


def test_load_into_other_size_fails_clearly(tmp_path):
    transformer, branch = trained_pair()
    save_memory_weights(tmp_path / "w", transformer, branch, SETTINGS)
    other = tiny_transformer(num_layers=6)
    with pytest.raises(ValueError, match=r"memory_weights.json.*another backbone.*num_layers 4 != 6"):
        load_memory_weights(tmp_path / "w", other)
    assert adapted_modules(other) == []


@pytest.fixture
def saved(tmp_path):
    transformer, branch = trained_pair()
    folder = tmp_path / "w"
    save_memory_weights(folder, transformer, branch, SETTINGS)
    return folder


@pytest.mark.parametrize("name", [BRANCH_FILE, LORA_FILE, MANIFEST_FILE])
def test_missing_file_is_named(saved, name):
    (saved / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        load_memory_weights(saved, tiny_transformer())


@pytest.mark.parametrize("name", [BRANCH_FILE, LORA_FILE, MANIFEST_FILE])
def test_corrupted_file_is_named_and_nothing_is_added(saved, name):
    path = saved / name
    path.write_bytes(path.read_bytes()[:64])
    fresh = tiny_transformer()
    with pytest.raises(ValueError, match=name):
        load_memory_weights(saved, fresh)
    assert adapted_modules(fresh) == [] and not fresh.blocks[0]._forward_pre_hooks


def test_lora_file_with_missing_tensor_is_refused(saved):
    path = saved / LORA_FILE
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    del tensors["transformer.blocks.3.attn1.to_v.lora_B.weight"]
    safetensors.torch.save_file(tensors, path, metadata)
    with pytest.raises(ValueError, match=f"{LORA_FILE}.*missing LoRA tensors.*blocks.3.attn1.to_v"):
        load_memory_weights(saved, tiny_transformer())


def test_manifest_version_and_adapter_clash(saved):
    fresh = tiny_transformer()
    add_lora(fresh, SETTINGS)
    with pytest.raises(ValueError, match="already has a LoRA adapter named 'memory'"):
        load_memory_weights(saved, fresh)
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    (saved / MANIFEST_FILE).write_text(json.dumps(dict(manifest, format_version=3)))
    with pytest.raises(ValueError, match=f"{MANIFEST_FILE}.*format version 3, this code reads 1 and 2"):
        load_memory_weights(saved, tiny_transformer())


def test_the_readout_settings_of_training_are_recorded_and_read_back(tmp_path, saved):
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    assert manifest["format_version"] == 2 and manifest["readout"] == asdict(DEFAULT_READOUT)
    assert load_memory_weights(saved, tiny_transformer()).readout == DEFAULT_READOUT
    transformer = tiny_transformer()
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS))
    # as the trainer sets it, from the memory of its training samples
    branch.readout = ReadoutSettings.of("latent", MemoryConfig(near=0.2, feature_dtype="bfloat16"))
    save_memory_weights(tmp_path / "other", transformer, branch, None)
    assert load_memory_weights(tmp_path / "other", tiny_transformer()).readout == branch.readout
    branch.readout = None
    with pytest.raises(ValueError, match="readout settings are unknown"):
        save_memory_weights(tmp_path / "unknown", transformer, branch, None)


def test_weights_recorded_before_footprint_splats_are_refused_with_the_default_memory(saved):
    """A manifest without ``readout.splat`` was trained on one-cell readouts: a default memory
    (footprint splats) is refused, a memory read out one cell per point is accepted."""
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    del manifest["readout"]["splat"]
    (saved / MANIFEST_FILE).write_text(json.dumps(manifest))
    branch = load_memory_weights(saved, tiny_transformer())
    assert branch.readout.splat == "point"
    with pytest.raises(ValueError, match="splat 'footprint' \\(trained: 'point'\\)"):
        branch.check_readout(LatentSpatialMemory())
    branch.check_readout(LatentSpatialMemory(MemoryConfig(splat="point")))


def test_version_1_weights_load_unchecked_with_a_warning_and_a_bad_readout_entry_is_named(saved):
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    (saved / MANIFEST_FILE).write_text(json.dumps(dict(manifest, readout={"near": 0.05})))
    with pytest.raises(ValueError, match=f"{MANIFEST_FILE}: bad entry"):
        load_memory_weights(saved, tiny_transformer())
    del manifest["readout"]
    (saved / MANIFEST_FILE).write_text(json.dumps(dict(manifest, format_version=1)))
    with pytest.warns(UserWarning, match=f"{MANIFEST_FILE}: format version 1 does not record the readout settings"):
        assert load_memory_weights(saved, tiny_transformer()).readout is None


def test_stage_two_training_reaches_only_lora_under_checkpointing():
    """Frozen backbone and branch, LoRA trainable, gradient checkpointing on (training stage 2)."""
    transformer, branch = trained_pair()
    transformer.requires_grad_(False)
    branch.requires_grad_(False)
    lora = {n: p for n, p in transformer.named_parameters() if "lora_" in n}
    for p in lora.values():
        p.requires_grad_(True)
    transformer.enable_gradient_checkpointing()
    transformer.train()
    with branch.condition(*condition()):
        out = transformer(**inputs()).sample
    out.square().mean().backward()
    assert {n for n, p in transformer.named_parameters() if p.grad is not None} == set(lora)
    assert all(p.grad.abs().sum() > 0 for p in lora.values())
    assert all(p.grad is None for p in branch.parameters())


def save_wide_tiny_weights(folder):
    """Write a memory-weights folder (branch on blocks 0, 2 + LoRA) trained on a tiny backbone of 4
    heads x 24, 3 blocks: wider and shallower than the default tiny one."""
    from model.generation.backbone import BackboneConfig, load_backbone

    wide = load_backbone(
        BackboneConfig(backend="tiny", device="cpu", tiny_num_heads=4, tiny_head_dim=24, tiny_num_layers=3)
    )
    branch = MemoryBranch(wide.transformer, MemoryBranchConfig(layers=(0, 2)))
    settings = LoraSettings(rank=2, alpha=2, dropout=0.0)
    add_lora(wide.transformer, settings)
    save_memory_weights(folder, wide.transformer, branch, settings)
    return folder


def test_tiny_backbone_is_rebuilt_to_match_saved_weights(tmp_path):
    from model.generation.backbone import BackboneConfig, load_backbone
    from model.generation.lora import backbone_config_for_weights

    save_wide_tiny_weights(tmp_path / "w")
    default = BackboneConfig(backend="tiny", device="cpu")
    matched = backbone_config_for_weights(default, tmp_path / "w")
    assert (matched.tiny_num_heads, matched.tiny_head_dim, matched.tiny_num_layers) == (4, 24, 3)
    load_memory_weights(tmp_path / "w", load_backbone(matched).transformer)  # loads without a size mismatch
    with pytest.raises(ValueError, match="memory_weights.json"):
        load_memory_weights(tmp_path / "w", load_backbone(default).transformer)
    assert backbone_config_for_weights(default, None) is default
