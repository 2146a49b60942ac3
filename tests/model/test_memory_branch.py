"""Tests of the VACE-style memory side branch on tiny diffusers Wan transformers (CPU).

``torch.equal`` below compares two forward passes of the same weights on the same inputs in this
process (same kernels, same thread count: identical bits), where the branch either is absent or adds
exactly zero (zero-initialised ``after_proj``, ``scale`` 0, a mask channel whose weights are 0, a
disabled or detached branch) or reproduces a computation already made (a second call, gradient
checkpointing's forward, weights saved and loaded). Results of *different* computations (a batch of
two against two single calls, recomputed gradients) are compared with tolerances.
"""

import json
from dataclasses import asdict

import pytest
import safetensors.torch
import torch
from diffusers import WanTransformer3DModel

from model.generation.backbone import BackboneConfig
from model.generation.memory_branch import MemoryBranch, MemoryBranchConfig
from model.generation.tiny import tiny_transformer as build_tiny_transformer

C, F, H, W = 48, 3, 4, 6  # latent channels and grid; 3 x 2 x 3 = 18 tokens per sample
TOKENS_PER_FRAME = (H // 2) * (W // 2)
LAYERS = (0, 2)


def tiny_transformer(num_layers: int = 4, seed: int = 0) -> WanTransformer3DModel:
    """The tiny backend's transformer (text width 32), ``num_layers`` blocks, weights from ``seed``."""
    torch.manual_seed(seed)
    config = BackboneConfig(tiny_num_layers=num_layers, tiny_num_heads=2, tiny_head_dim=12, tiny_ffn_dim=32)
    return build_tiny_transformer(config, text_dim=32).eval()


def inputs(batch: int = 1, seed: int = 1) -> dict:
    """Transformer kwargs with TI2V-style per-token timesteps: frame 0 clean (t=0), others noisy."""
    g = torch.Generator().manual_seed(seed)
    per_frame = torch.tensor([0.0, 700.0, 350.0])
    return {
        "hidden_states": torch.randn(batch, C, F, H, W, generator=g),
        "timestep": per_frame.repeat_interleave(TOKENS_PER_FRAME).expand(batch, -1).clone(),
        "encoder_hidden_states": torch.randn(batch, 5, 32, generator=g),
    }


def condition(batch: int = 1, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, C, F, H, W, generator=g), torch.rand(batch, F, H, W, generator=g) > 0.3


def forward(transformer, kwargs, branch=None, cond=None) -> torch.Tensor:
    with torch.no_grad():
        if branch is None:
            return transformer(**kwargs).sample
        with branch.condition(*cond):
            return transformer(**kwargs).sample


def perturb(branch: MemoryBranch, seed: int = 3) -> None:
    """Random before/after projections: the branch now changes the output."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in [*branch.before_proj.parameters(), *branch.after_proj.parameters()]:
            p.normal_(std=0.2)


@pytest.fixture
def transformer() -> WanTransformer3DModel:
    return tiny_transformer()


@pytest.fixture
def branch(transformer) -> MemoryBranch:
    b = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS))
    b.attach(transformer)
    return b


def test_per_token_timesteps_are_really_per_token(transformer):
    kwargs = inputs()
    other = dict(kwargs, timestep=torch.full_like(kwargs["timestep"], 700.0))
    assert not torch.equal(forward(transformer, kwargs), forward(transformer, other))


@pytest.mark.parametrize("scalar_t", [False, True])
def test_zero_init_branch_is_bit_identical_to_backbone(transformer, scalar_t):
    kwargs = inputs(batch=2)
    if scalar_t:
        kwargs["timestep"] = torch.tensor([500, 20])
    reference = forward(transformer, kwargs)
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS))
    branch.attach(transformer)
    out = forward(transformer, kwargs, branch, condition(batch=2))
    assert torch.equal(out, reference)


def test_perturbed_branch_changes_output_and_depends_on_readout(transformer, branch):
    kwargs = inputs()
    reference = forward(tiny_transformer(), kwargs)  # same seed: the bare backbone
    perturb(branch)
    readout, visible = condition()
    out = forward(transformer, kwargs, branch, (readout, visible))
    assert not torch.allclose(out, reference, atol=1e-3)
    assert not torch.allclose(out, forward(transformer, kwargs, branch, (readout + 1.0, visible)), atol=1e-3)
    # The mask channel's embedding weights start at zero, so the mask only matters once trained.
    assert torch.equal(out, forward(transformer, kwargs, branch, (readout, ~visible)))
    with torch.no_grad():
        branch.patch_embedding.weight[:, C:].normal_()
    out = forward(transformer, kwargs, branch, (readout, visible))
    assert not torch.allclose(out, forward(transformer, kwargs, branch, (readout, ~visible)), atol=1e-3)


def test_scale_and_enabled_switch(transformer, branch):
    kwargs = inputs()
    reference = forward(tiny_transformer(), kwargs)  # same seed: the bare backbone
    perturb(branch)
    cond = condition()
    full = forward(transformer, kwargs, branch, cond)
    branch.config.scale = 0.0
    assert torch.equal(forward(transformer, kwargs, branch, cond), reference)
    branch.config.scale = 1.0
    branch.enabled = False
    assert torch.equal(forward(transformer, kwargs), reference)  # no condition needed when disabled
    branch.enabled = True
    assert torch.equal(forward(transformer, kwargs, branch, cond), full)


def test_detach_restores_backbone_and_attach_is_idempotent(transformer, branch):
    kwargs = inputs()
    reference = forward(tiny_transformer(), kwargs)  # same seed: the bare backbone
    perturb(branch)
    cond = condition()
    branch.attach(transformer)  # second attach: no second set of hooks
    once = forward(transformer, kwargs, branch, cond)
    branch.detach()
    branch.detach()
    assert not branch.attached
    assert torch.equal(forward(transformer, kwargs), reference)
    branch.attach(transformer)
    assert torch.equal(forward(transformer, kwargs, branch, cond), once)


def test_state_dict_keys_of_transformer_unchanged(transformer):
    keys = list(transformer.state_dict())
    MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS)).attach(transformer)
    assert list(transformer.state_dict()) == keys


def test_missing_condition_raises_and_second_branch_refused(transformer, branch):
    with pytest.raises(RuntimeError, match="no condition is set"):
        forward(transformer, inputs())
    with pytest.raises(ValueError, match="carries hooks"):
        MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS))
    other = MemoryBranch(tiny_transformer(), MemoryBranchConfig(layers=LAYERS))
    with pytest.raises(ValueError, match="already attached"):
        other.attach(transformer)


def test_condition_shape_errors(transformer, branch):
    readout, visible = condition()
    with pytest.raises(ValueError, match="readout must be"):
        with branch.condition(readout[:, :47], visible):
            pass
    with pytest.raises(ValueError, match="visible must be"):
        with branch.condition(readout, visible[:, :2]):
            pass
    transposed = (torch.randn(1, C, F, W, H), torch.ones(1, F, W, H))  # same token count, other grid
    with pytest.raises(ValueError, match="does not fit the transformer input"):
        forward(transformer, inputs(), branch, transposed)
    with pytest.raises(ValueError, match="does not fit"):
        forward(transformer, inputs(batch=3), branch, condition(batch=2))


def test_layers_validated_against_backbone(transformer):
    with pytest.raises(ValueError, match="out of range"):
        MemoryBranch(transformer, MemoryBranchConfig(layers=(0, 4)))
    with pytest.raises(ValueError, match="start with 0"):
        MemoryBranchConfig(layers=(2, 3))
    with pytest.raises(ValueError, match="another backbone"):
        MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS)).attach(tiny_transformer(num_layers=5))


def test_cfg_double_call_and_batch_broadcast(transformer, branch):
    """Two calls per step (cond / uncond text) each get their own hints; batch-1 condition broadcasts."""
    perturb(branch)
    kwargs = inputs()
    uncond = dict(kwargs, encoder_hidden_states=torch.zeros_like(kwargs["encoder_hidden_states"]))
    cond = condition()
    with torch.no_grad(), branch.condition(*cond):
        a, b = transformer(**kwargs).sample, transformer(**uncond).sample
    assert torch.equal(a, forward(transformer, kwargs, branch, cond))
    assert torch.equal(b, forward(transformer, uncond, branch, cond))
    batched = {k: torch.cat([kwargs[k], uncond[k]]) for k in kwargs}
    out = forward(transformer, batched, branch, cond)
    torch.testing.assert_close(out, torch.cat([a, b]), rtol=1e-5, atol=1e-5)


def test_gradients_reach_only_branch_and_only_after_proj_at_init(transformer):
    transformer.requires_grad_(False)
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS))  # copies of frozen blocks
    assert all(p.requires_grad for p in branch.parameters())
    branch.attach(transformer)
    with branch.condition(*condition()):
        out = transformer(**inputs()).sample
    out.square().mean().backward()
    assert all(p.grad is None for p in transformer.parameters())
    nonzero = {n for n, p in branch.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert nonzero == {f"after_proj.{j}.{k}" for j in range(len(LAYERS)) for k in ("weight", "bias")}


def test_hint_is_added_after_its_block(transformer, branch):
    """With only hint 1 (layer 2) non-zero, blocks 0-1 compute as bare and block 2 differs."""
    kwargs, cond = inputs(), condition()

    def block_outputs() -> list[torch.Tensor]:
        captured = []
        handles = [b.register_forward_hook(lambda m, a, out: captured.append(out)) for b in transformer.blocks]
        forward(transformer, kwargs, branch, cond)
        for h in handles:
            h.remove()
        return captured

    bare = block_outputs()
    with torch.no_grad():
        branch.after_proj[1].bias.fill_(0.5)
    hinted = block_outputs()
    assert torch.equal(hinted[0], bare[0]) and torch.equal(hinted[1], bare[1])
    torch.testing.assert_close(hinted[2], bare[2] + 0.5)


def run_training_step(transformer, branch, cond, kwargs) -> tuple[torch.Tensor, dict]:
    """Forward inside the condition block, backward after leaving it (as a training loop does)."""
    branch.zero_grad(set_to_none=True)
    with branch.condition(*cond):
        out = transformer(**kwargs).sample
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in branch.named_parameters()}


def test_gradient_checkpointing_same_output_and_gradients(transformer, branch):
    transformer.requires_grad_(False)
    transformer.train()
    perturb(branch)
    cond, kwargs = condition(), inputs(batch=2)
    out, grads = run_training_step(transformer, branch, cond, kwargs)
    transformer.enable_gradient_checkpointing()
    out_ckpt, grads_ckpt = run_training_step(transformer, branch, cond, kwargs)
    assert torch.equal(out_ckpt, out)
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    assert len(branch._calls) == 0  # per-call state freed once backward has run


def test_save_load_round_trip_exact(transformer, branch, tmp_path):
    perturb(branch)
    kwargs, cond = inputs(), condition()
    expected = forward(transformer, kwargs, branch, cond)
    path = tmp_path / "branch.safetensors"
    branch.save(path)
    branch.detach()
    fresh = tiny_transformer()
    loaded = MemoryBranch.load(path, fresh)
    assert loaded.config == branch.config
    loaded.attach(fresh)
    assert torch.equal(forward(fresh, kwargs, loaded, cond), expected)


def test_branch_file_of_the_old_layout_loads(transformer, branch, tmp_path):
    """Files written before the formats were merged carry their version as ``format_version``."""
    perturb(branch)
    state = {k: v.detach().contiguous() for k, v in branch.state_dict().items()}
    metadata = {
        "format": "mirage-memory-branch",
        "format_version": "1",
        "config": json.dumps(asdict(branch.config)),
        "backbone": json.dumps(branch.backbone),
    }
    path = tmp_path / "old.safetensors"
    safetensors.torch.save_file(state, path, metadata)
    loaded = MemoryBranch.load(path, tiny_transformer())
    assert loaded.config == branch.config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_load_errors_name_the_file(transformer, branch, tmp_path):
    path = tmp_path / "branch.safetensors"
    with pytest.raises(FileNotFoundError, match="branch.safetensors"):
        MemoryBranch.load(path, transformer)
    branch.save(path)
    branch.detach()
    with pytest.raises(ValueError, match="branch.safetensors.*another backbone"):
        MemoryBranch.load(path, tiny_transformer(num_layers=5))
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    broken = tmp_path / "broken.safetensors"
    safetensors.torch.save_file({k: v for k, v in tensors.items() if k != "before_proj.bias"}, broken, metadata)
    with pytest.raises(ValueError, match="broken.safetensors.*missing tensors.*before_proj.bias"):
        MemoryBranch.load(broken, transformer)
    safetensors.torch.save_file(tensors, broken, dict(metadata, format_version="9"))
    with pytest.raises(ValueError, match="broken.safetensors.*format version"):
        MemoryBranch.load(broken, transformer)
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="broken.safetensors.*not a readable"):
        MemoryBranch.load(broken, transformer)


def test_readout_x0_output_is_a_correction_of_the_readout(transformer):
    """prediction "readout_x0": the raw output o plus the visible readout is the clean estimate, and the
    velocity the schedulers receive gives it back through their x0 = x_t - sigma * v."""
    raw_kwargs = inputs()
    raw = forward(transformer, raw_kwargs)  # the bare backbone's output: the raw o of the same weights
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS, prediction="readout_x0"))
    branch.attach(transformer)
    readout, visible = condition()
    velocity = forward(transformer, raw_kwargs, branch, (readout, visible))  # zero-init hints: o unchanged
    sigma = (raw_kwargs["timestep"] / 1000).view(1, 1, F, H // 2, W // 2)
    sigma = sigma.repeat_interleave(2, 3).repeat_interleave(2, 4)
    x0 = raw_kwargs["hidden_states"] - sigma * velocity
    expected = raw + visible[:, None] * readout
    noisy = sigma[0, 0, :, 0, 0] > 0
    torch.testing.assert_close(x0[:, :, noisy], expected[:, :, noisy], rtol=1e-4, atol=1e-4)
    assert torch.equal(velocity[:, :, ~noisy], torch.zeros_like(velocity[:, :, ~noisy]))  # clean frame stays
    branch.enabled = False  # no memory: the raw output alone is the clean estimate
    off = forward(transformer, raw_kwargs)
    torch.testing.assert_close((raw_kwargs["hidden_states"] - sigma * off)[:, :, noisy], raw[:, :, noisy])
    branch.detach()
    assert torch.equal(forward(transformer, raw_kwargs), raw)  # detached: the backbone's raw output again


def test_readout_x0_scalar_timestep_and_output_container(transformer):
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS, prediction="readout_x0"))
    branch.attach(transformer)
    kwargs = inputs()
    kwargs["timestep"] = torch.tensor([500.0])
    readout, visible = condition()
    with torch.no_grad(), branch.condition(readout, visible):
        as_tuple = transformer(**kwargs, return_dict=False)[0]
        as_output = transformer(**kwargs).sample
    assert torch.equal(as_tuple, as_output)
    branch.detach()
    raw = forward(transformer, kwargs)
    torch.testing.assert_close(kwargs["hidden_states"] - 0.5 * as_tuple, raw + visible[:, None] * readout)


def test_prediction_validated_and_saved(transformer, tmp_path):
    with pytest.raises(ValueError, match="prediction"):
        MemoryBranchConfig(prediction="epsilon")
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS, prediction="readout_x0"))
    branch.save(tmp_path / "b.safetensors")
    assert MemoryBranch.load(tmp_path / "b.safetensors", transformer).config.prediction == "readout_x0"


def refined_branch(transformer, seed: int = 4) -> MemoryBranch:
    """A readout_x0 branch with a refiner whose head is random (it changes the prior)."""
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=LAYERS, prediction="readout_x0", refiner_width=8))
    torch.manual_seed(seed)
    for p in [*branch.refiner.head.parameters(), *branch.refiner.linear.parameters()]:
        torch.nn.init.normal_(p, std=0.05)
    return branch


def mapping(batch: int = 1, seed: int = 5) -> torch.Tensor:
    return torch.randn(batch, 6, F, H, W, generator=torch.Generator().manual_seed(seed))


def test_an_untrained_refiner_changes_nothing(transformer):
    kwargs, (readout, visible) = inputs(), condition()
    readout = readout * visible[:, None]  # a memory readout: zeros where nothing is visible
    outputs = []
    for width in (0, 8):
        branch = MemoryBranch(
            transformer, MemoryBranchConfig(layers=LAYERS, prediction="readout_x0", refiner_width=width)
        )
        perturb(branch)
        branch.attach(transformer)
        outputs.append(forward(transformer, kwargs, branch, (readout, visible, mapping())))
        branch.detach()
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_a_readout_x0_output_corrects_the_refiners_prior(transformer):
    """x0 = prior + o, with the prior the refiner's resampled readout (o: the backbone's output when the
    hints are scaled to zero), and the mapping reaches the prior."""
    raw_kwargs = inputs()
    raw = forward(transformer, raw_kwargs)
    branch = refined_branch(transformer)
    branch.config.scale = 0.0
    branch.attach(transformer)
    readout, visible = condition()
    velocity = forward(transformer, raw_kwargs, branch, (readout, visible, mapping()))
    sigma = (
        (raw_kwargs["timestep"] / 1000).view(1, 1, F, H // 2, W // 2).repeat_interleave(2, 3).repeat_interleave(2, 4)
    )
    x0 = raw_kwargs["hidden_states"] - sigma * velocity
    with torch.no_grad():
        prior = branch.refiner(readout, visible, mapping())
        other = branch.refiner(readout, visible, mapping(seed=6))
    noisy = sigma[0, 0, :, 0, 0] > 0
    torch.testing.assert_close(x0[:, :, noisy], (raw + prior)[:, :, noisy], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(prior, other, atol=1e-3)
    with pytest.raises(ValueError, match=r"mapping must be \[B, 6, F, h, w\]"):
        with branch.condition(readout, visible, mapping()[:, :, :2]):
            pass
    branch.detach()


def test_a_branch_with_a_refiner_saves_and_loads_exactly(transformer, tmp_path):
    branch = refined_branch(transformer)
    perturb(branch)
    branch.attach(transformer)
    kwargs, cond = inputs(), (*condition(), mapping())
    expected = forward(transformer, kwargs, branch, cond)
    branch.save(tmp_path / "refined.safetensors")
    branch.detach()
    fresh = tiny_transformer()
    loaded = MemoryBranch.load(tmp_path / "refined.safetensors", fresh)
    assert loaded.config.refiner_width == 8
    loaded.attach(fresh)
    assert torch.equal(forward(fresh, kwargs, loaded, cond), expected)
    with pytest.raises(ValueError, match="refiner_width must be >= 0"):
        MemoryBranchConfig(refiner_width=-1)
