"""Tests of model/generation/backbone.py and model/generation/patch_vae.py: tiny backends, VAEs, Wan folder loading,
offload.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from diffusers import AutoencoderKLWan, WanPipeline
from diffusers.hooks.group_offloading import _is_group_offload_enabled
from safetensors.torch import load_file

from model.generation.backbone import Backbone, BackboneConfig, WanVideoVAE, load_backbone, validate_wan_folder
from model.generation.patch_vae import PatchVAE
from model.generation.tiny import tiny_wan_vae
from model.generation.vae import VideoVAE, num_latent_frames
from model.io.folders import ModelFolderError

REPO = Path(__file__).resolve().parents[2]


def tiny_config(**overrides) -> BackboneConfig:
    return BackboneConfig(**{"backend": "tiny", "device": "cpu", **overrides})


def video(num_frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Random frames ``[T, 3, H, W]`` in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(num_frames, 3, height, width, generator=generator) * 2 - 1


def transformer_output(backbone: Backbone, timestep: torch.Tensor) -> torch.Tensor:
    """Transformer prediction ``[1, 48, 3, 8, 8]`` for fixed latents and the prompt "a red room"."""
    latents = torch.randn(1, 48, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    prompt = backbone.encode_prompt("a red room")
    with torch.no_grad():
        return backbone.transformer(latents.to(backbone.device, backbone.dtype), timestep, prompt).sample


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return load_backbone(tiny_config())


@pytest.fixture(scope="module")
def tiny_wan() -> Backbone:
    return load_backbone(tiny_config(tiny_vae="wan"))


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory, tiny_wan) -> Path:
    """The tiny backbone (with the tiny AutoencoderKLWan) saved in the Wan2.2-TI2V-5B diffusers layout."""
    folder = tmp_path_factory.mktemp("wan") / "Wan2.2-TI2V-5B-Diffusers"
    pipe = WanPipeline(
        tokenizer=tiny_wan.tokenizer,
        text_encoder=tiny_wan.text_encoder,
        vae=tiny_wan.vae.module,
        scheduler=tiny_wan.make_scheduler(),
        transformer=tiny_wan.transformer,
        expand_timesteps=True,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"backend": "sd3"}, "backend"),
        ({"offload": "disk"}, "offload"),
        ({"tiny_vae": "vqgan"}, "tiny_vae"),
        ({"dtype": "float64"}, "dtype"),
        ({"backend": "wan"}, "model_dir"),
        ({"device": "gpu0"}, "device"),
        ({"tiny_num_layers": 0}, "tiny_num_layers"),
        ({"tiny_head_dim": 7}, "tiny_head_dim"),
        ({"max_sequence_length": 0}, "max_sequence_length"),
    ],
)
def test_bad_config_raises_value_error_naming_the_field(overrides, name):
    with pytest.raises(ValueError, match=name):
        BackboneConfig(**{"device": "cpu", **overrides})


def test_loading_forces_offline_mode(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert not huggingface_hub.constants.is_offline_mode()
    load_backbone(tiny_config())
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert huggingface_hub.constants.is_offline_mode()


# --------------------------------------------------------------------------------------------
# Tiny backend
# --------------------------------------------------------------------------------------------


def test_tiny_weights_depend_only_on_the_seed():
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a = load_backbone(tiny_config(seed=3, tiny_vae="wan"))
    assert torch.equal(torch.rand(3), expected_draw), "loading must not consume the caller's RNG"
    # exact: the same seed gives the same weights (RNG fills), hence the same outputs in this process
    b = load_backbone(tiny_config(seed=3, tiny_vae="wan"))
    c = load_backbone(tiny_config(seed=4, tiny_vae="wan"))
    for name in ("transformer", "text_encoder"):
        sa, sb, sc = (getattr(x, name).state_dict() for x in (a, b, c))
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
        assert not all(torch.equal(sa[k], sc[k]) for k in sa), name
    sa, sb = a.vae.module.state_dict(), b.vae.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    t = torch.tensor([500.0])
    assert torch.equal(transformer_output(a, t), transformer_output(b, t))
    assert not torch.allclose(transformer_output(a, t), transformer_output(c, t))


def test_tiny_weights_are_the_same_in_a_fresh_process(tiny, tmp_path):
    path = tmp_path / "weights.safetensors"
    code = (
        "import sys\n"
        "from safetensors.torch import save_file\n"
        "from model.generation.backbone import BackboneConfig, load_backbone\n"
        "b = load_backbone(BackboneConfig(backend='tiny', device='cpu'))\n"
        "weights = {**b.transformer.state_dict(), **{'te.' + k: v for k, v in b.text_encoder.state_dict().items()}}\n"
        "save_file({k: v.clone() for k, v in weights.items()}, sys.argv[1])\n"
    )
    command = [sys.executable, "-c", code, str(path)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    there = load_file(path)  # exact: the same seeded RNG fills on the same machine, stored as copies
    here = {**tiny.transformer.state_dict(), **{"te." + k: v for k, v in tiny.text_encoder.state_dict().items()}}
    assert there.keys() == here.keys()
    assert all(torch.equal(there[k], here[k]) for k in here)


def test_tiny_backbone_shapes_and_description(tiny, tiny_wan):
    assert len(tiny.transformer.blocks) == 4
    assert tiny.transformer.config.in_channels == tiny.transformer.config.out_channels == 48
    assert tiny.text_dim == 32 and tiny.max_sequence_length == 32
    assert tiny.device == torch.device("cpu") and tiny.dtype == torch.float32
    assert isinstance(tiny.vae, PatchVAE) and isinstance(tiny_wan.vae, WanVideoVAE)
    assert isinstance(tiny.vae, VideoVAE) and isinstance(tiny_wan.vae, VideoVAE)
    assert tiny.expected_image_multiple == 8 and tiny_wan.expected_image_multiple == 32
    text = tiny.describe()
    assert "tiny" in text and "cpu" in text and "float32" in text and "PatchVAE" in text
    assert "AutoencoderKLWan" in tiny_wan.describe()
    assert len(load_backbone(tiny_config(tiny_num_layers=6)).transformer.blocks) == 6


def test_tiny_bfloat16_keeps_the_fp32_modules_in_fp32():
    backbone = load_backbone(tiny_config(dtype="bfloat16"))
    assert backbone.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert backbone.transformer.scale_shift_table.dtype == torch.float32
    assert backbone.encode_prompt("a room").dtype == torch.bfloat16


def test_encode_prompt_pads_with_zeros_and_is_deterministic(tiny):
    embeds = tiny.encode_prompt("A red   room")  # 3 words + </s> = 4 tokens
    assert embeds.shape == (1, 32, 32) and embeds.dtype == torch.float32
    assert torch.equal(embeds, tiny.encode_prompt("A red   room"))  # exact: the same computation twice
    assert (embeds[0, :4].abs().sum(-1) > 0).all()
    assert torch.count_nonzero(embeds[0, 4:]) == 0
    assert not torch.allclose(embeds, tiny.encode_prompt("a blue room"))
    with pytest.raises(ValueError, match="prompt"):
        tiny.encode_prompt(["a", "b"])


def test_make_scheduler_gives_fresh_ti2v_unipc(tiny):
    first, second = tiny.make_scheduler(), tiny.make_scheduler()
    assert first is not second
    assert type(first).__name__ == "UniPCMultistepScheduler"
    assert first.config.prediction_type == "flow_prediction" and first.config.use_flow_sigmas
    assert first.config.flow_shift == 5.0 and first.config.num_train_timesteps == 1000
    first.set_timesteps(4)
    assert first.timesteps.tolist() == [999, 937, 833, 625]  # integers from + - * / (IEEE), far from rounding edges


def test_transformer_accepts_per_token_timesteps(tiny):
    tokens_per_frame, num_tokens = 4 * 4, 3 * 4 * 4  # latents 3 x 8 x 8, patch 1 x 2 x 2
    scalar = transformer_output(tiny, torch.tensor([700.0]))
    uniform = transformer_output(tiny, torch.full((1, num_tokens), 700.0))
    assert scalar.shape == (1, 48, 3, 8, 8)
    torch.testing.assert_close(uniform, scalar, atol=1e-5, rtol=1e-5)
    clean_first = torch.full((1, num_tokens), 700.0)
    clean_first[:, :tokens_per_frame] = 0.0  # frame 0 clean, as in TI2V image-to-video
    per_token = transformer_output(tiny, clean_first)
    assert per_token.shape == scalar.shape
    assert not torch.allclose(per_token[:, :, 0], scalar[:, :, 0], atol=1e-3)


# --------------------------------------------------------------------------------------------
# VAEs
# --------------------------------------------------------------------------------------------


def test_frame_count_helpers():
    assert [num_latent_frames(t) for t in (1, 5, 33, 121)] == [1, 2, 9, 31]
    with pytest.raises(ValueError, match="4k\\+1"):
        num_latent_frames(8)


def test_patch_vae_is_exact_both_ways():
    vae = PatchVAE()
    latents = torch.rand(3, 48, 5, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
    frames = vae.decode(latents)
    assert frames.shape == (9, 3, 20, 28)
    assert torch.equal(
        vae.encode(frames), latents
    )  # exact: pixel (un)shuffle copies; keyframes are lerp weight 0 / copies
    x = video(9, 20, 28)
    assert torch.equal(vae.decode(vae.encode(x))[::4], x[::4])
    assert vae.encode(x[:1]).shape == (1, 48, 5, 7) and vae.decode(vae.encode(x[:1])).shape == (1, 3, 20, 28)


def test_patch_vae_layout_and_interpolation():
    vae = PatchVAE()
    x = video(5, 8, 12)
    latents = vae.encode(x)
    # channel c * 16 + dy * 4 + dx of cell (i, j) is pixel (4i + dy, 4j + dx) of colour c
    assert latents[1, 2 * 16 + 3 * 4 + 1, 1, 2] == x[4, 2, 4 + 3, 8 + 1]  # exact: a copied value
    frames = vae.decode(latents)
    for j in range(1, 4):
        torch.testing.assert_close(frames[j], x[0] + (x[4] - x[0]) * j / 4)


def test_tiny_wan_vae_shapes_and_causality(tiny_wan):
    vae = tiny_wan.vae
    assert (vae.latent_channels, vae.spatial_stride, vae.temporal_stride) == (48, 16, 4)
    x = video(9, 64, 96)
    assert vae.encode(x[:1]).shape == (1, 48, 4, 4 * 6 // 4)
    latents = vae.encode(x)
    assert latents.shape == (3, 48, 4, 6) and latents.dtype == torch.float32
    torch.testing.assert_close(vae.encode(x[:1]), latents[:1], atol=1e-5, rtol=1e-5)
    frames = vae.decode(latents)
    assert frames.shape == (9, 3, 64, 96) and frames.abs().max() <= 1.0
    assert vae.decode(vae.encode(video(1, 128, 160))).shape == (1, 3, 128, 160)


def test_wan_vae_wrapper_normalises_like_the_pipelines():
    plain = tiny_wan_vae()
    mean = torch.linspace(-0.5, 0.5, 48)
    std = torch.linspace(0.5, 1.5, 48)
    module = AutoencoderKLWan.from_config(plain.config, latents_mean=mean.tolist(), latents_std=std.tolist())
    module.load_state_dict(plain.state_dict())
    vae = WanVideoVAE(module.eval(), "cpu")
    x = video(5, 32, 32)
    with torch.no_grad():
        raw = module.encode(x.movedim(0, 1)[None]).latent_dist.mode()[0].movedim(1, 0)  # [F, C, h, w]
        expected = (raw - mean.view(1, 48, 1, 1)) / std.view(1, 48, 1, 1)
        torch.testing.assert_close(vae.encode(x), expected)
        decoded = module.decode(raw.movedim(0, 1)[None]).sample[0].movedim(1, 0)
        torch.testing.assert_close(vae.decode(expected), decoded, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["patch", "wan"])
def test_vaes_reject_bad_shapes(kind, tiny, tiny_wan):
    vae = (tiny if kind == "patch" else tiny_wan).vae
    s = vae.spatial_stride
    for bad, message in [
        (video(8, 2 * s, 2 * s), "4k\\+1"),
        (video(5, 2 * s + 2, 2 * s), f"multiples of {s}"),
        (torch.zeros(5, 2 * s, 2 * s), "\\[T, 3, H, W\\]"),
        (torch.zeros(5, 3, 2 * s, 2 * s, dtype=torch.uint8), "float"),
    ]:
        with pytest.raises(ValueError, match=message):
            vae.encode(bad)
    with pytest.raises(ValueError, match="\\[F, 48, h, w\\]"):
        vae.decode(torch.zeros(2, 16, 4, 4))


# --------------------------------------------------------------------------------------------
# Wan backend: folder validation and the real loading path
# --------------------------------------------------------------------------------------------


def test_validate_lists_every_missing_piece_of_an_empty_folder(tmp_path):
    with pytest.raises(ModelFolderError) as caught:
        validate_wan_folder(tmp_path)
    assert isinstance(caught.value, ValueError)
    text = str(caught.value)
    for piece in ("model_index.json", "scheduler_config.json", "tokenizer", "text_encoder", "transformer", "vae"):
        assert piece in text, piece
    assert len(caught.value.problems) == 6
    with pytest.raises(ModelFolderError, match="absent: Wan2.2-TI2V-5B diffusers folder not found"):
        validate_wan_folder(tmp_path / "absent")


def test_validate_names_each_broken_file(wan_folder, tmp_path):
    assert validate_wan_folder(wan_folder) == wan_folder
    folder = copy_folder(wan_folder, tmp_path / "broken")
    (folder / "transformer" / "config.json").unlink()
    for weights in (folder / "vae").glob("*.safetensors"):
        weights.unlink()
    (folder / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    (folder / "scheduler" / "scheduler_config.json").write_text("{not json")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "text_encoder" / "model.safetensors.index.json").write_text(json.dumps(index))
    shutil.copy(folder / "text_encoder" / "model.safetensors", folder / "text_encoder" / index["weight_map"]["a"])
    with pytest.raises(ModelFolderError) as caught:
        validate_wan_folder(folder)
    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert f"{folder / 'transformer' / 'config.json'} missing" in problems
    assert any(p.startswith(f"no weight files in {folder / 'vae'}") and "pickle" in p for p in problems)
    assert any("scheduler_config.json: cannot read model config JSON" in p for p in problems)
    assert any("model-00002-of-00002.safetensors missing" in p for p in problems)


def test_validate_rejects_other_wan_models(wan_folder, tmp_path):
    folder = copy_folder(wan_folder, tmp_path / "wan21")
    config_path = folder / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["in_channels"] = 16
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="in_channels is 16, expected 48"):
        validate_wan_folder(folder)


def test_wan_load_stops_at_validation(tmp_path):
    messages: list[str] = []
    with pytest.raises(ModelFolderError):
        load_backbone(BackboneConfig(backend="wan", model_dir=str(tmp_path), device="cpu"), on_status=messages.append)
    assert messages == ["Checking model folder…"]


def test_wan_loader_round_trips_the_saved_model(wan_folder, tiny_wan):
    messages: list[str] = []
    config = BackboneConfig(
        backend="wan", model_dir=str(wan_folder), device="cpu", dtype="float32", max_sequence_length=32
    )
    loaded = load_backbone(config, on_status=messages.append)
    assert messages[0] == "Checking model folder…" and messages[-1] == "Backbone ready"
    assert any("transformer" in m for m in messages) and any("VAE" in m for m in messages)
    assert type(loaded.transformer) is type(tiny_wan.transformer)
    # exact: the same classes with copies of the same weights (float32) on the same inputs in this process
    assert torch.equal(loaded.encode_prompt("a red room"), tiny_wan.encode_prompt("a red room"))
    t = torch.tensor([400.0])
    assert torch.equal(transformer_output(loaded, t), transformer_output(tiny_wan, t))
    x = video(5, 64, 64)
    assert torch.equal(loaded.vae.encode(x), tiny_wan.vae.encode(x))
    assert loaded.make_scheduler().config.flow_shift == 5.0


def test_wan_loader_default_dtypes(wan_folder):
    loaded = load_backbone(BackboneConfig(backend="wan", model_dir=str(wan_folder), device="cpu"))
    assert loaded.dtype == torch.bfloat16 and loaded.max_sequence_length == 512
    assert loaded.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert loaded.transformer.scale_shift_table.dtype == torch.float32
    assert loaded.text_encoder.dtype == torch.bfloat16
    assert loaded.vae.module.dtype == torch.float32 and loaded.vae.module.use_tiling
    embeds = loaded.encode_prompt("a red room")
    assert embeds.shape == (1, 512, 32) and embeds.dtype == torch.bfloat16
    assert transformer_output(loaded, torch.tensor([400.0])).dtype == torch.bfloat16


# --------------------------------------------------------------------------------------------
# Offload profiles (exercised on the CPU: the code path, not the memory savings)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offload", ["model", "group"])
def test_offload_profiles_give_the_same_results(offload, tiny_wan):
    backbone = load_backbone(tiny_config(tiny_vae="wan", offload=offload))
    if offload == "model":
        assert all(hasattr(m, "_hf_hook") for m in (backbone.text_encoder, backbone.transformer, backbone.vae.module))
    else:
        assert _is_group_offload_enabled(backbone.transformer) and _is_group_offload_enabled(backbone.text_encoder)
    t = torch.tensor([300.0])
    # exact: offloading to the CPU moves the same weights to the same device; the computation is unchanged
    assert torch.equal(backbone.encode_prompt("a red room"), tiny_wan.encode_prompt("a red room"))
    assert torch.equal(transformer_output(backbone, t), transformer_output(tiny_wan, t))
    latents = tiny_wan.vae.encode(video(5, 32, 32))
    assert torch.equal(backbone.vae.decode(latents), tiny_wan.vae.decode(latents))


def test_offload_can_be_deferred_and_applies_once():
    backbone = load_backbone(tiny_config(offload="group"), apply_offload=False)
    assert not _is_group_offload_enabled(backbone.transformer)
    backbone.apply_offload()
    assert _is_group_offload_enabled(backbone.transformer)
    with pytest.raises(RuntimeError, match="already"):
        backbone.apply_offload()
