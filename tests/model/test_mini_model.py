"""The shipped mirage-mini model: it loads as the ``mini`` backend, generates at its shipped size and
steps, beats the random tiny backbone against exact renders of a held-out world, and is the default
of ``main.py generate`` (which says what it is when given a photo)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import main
from model.eval.metrics import psnr
from model.eval.scenes import ProceduralScene, SceneRenderer
from model.eval.scenes.world import HELD_OUT_SEED, world_config
from model.generation.backbone import BackboneConfig, load_backbone
from model.generation.memory_branch import MemoryBranch, MemoryBranchConfig
from model.generation.mini import MINI_DIR, read_mini
from model.generation.pipeline import MiragePipeline, PipelineConfig
from model.generation.profiles import profile
from model.generation.stack import load_generation_stack
from model.geometry.camera import intrinsics_from_fov
from model.geometry.trajectories import yaw_pan
from model.training.clips import PROCEDURAL_FOV_Y_DEG, PROCEDURAL_FPS

MINI = profile("mini")


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_shipped_folder_is_small_and_records_what_it_is():
    files = {p.name: p.stat().st_size for p in MINI_DIR.iterdir()}
    assert {"model.safetensors", "config.json", "MODEL_CARD.md"} <= files.keys()
    assert sum(files.values()) <= 25 * 2**20
    _, config = read_mini(MINI_DIR)
    assert config["size"] == list(MINI.generate_size)
    assert config["training"]["train_seeds"][1] < HELD_OUT_SEED
    assert json.loads((MINI_DIR / "config.json").read_text()) == config
    card = (MINI_DIR / "MODEL_CARD.md").read_text()
    assert "main.py train --stage mini" in card and "5000" in card


def segment_psnr(backend: str, seed: int) -> float:
    """Mean PSNR (dB) against the exact renders of one 33-frame segment (a 40-degree pan, which
    leaves much of the view outside the start frame's memory) in held-out world ``seed``, at the
    mini profile's size and steps."""
    height, width = MINI.generate_size
    mode = profile(backend).mode
    stack = load_generation_stack(BackboneConfig(backend=backend, device="cpu"), frame_hw=(height, width), mode=mode)
    config = PipelineConfig.for_backend(backend, steps=MINI.steps)
    pipe = MiragePipeline(stack.backbone, config, stack.branch)
    scene = ProceduralScene(world_config(seed))
    K = intrinsics_from_fov(PROCEDURAL_FOV_Y_DEG, width, height).to(torch.float64)
    w2c = yaw_pan(33, 40.0)
    with SceneRenderer() as renderer:
        image, depth = renderer.render(scene, np.eye(4), K, width, height)
        pipe.start(image, torch.from_numpy(depth), K, prompt="a room")

        def exact_depth(frames, poses, K):
            return torch.from_numpy(np.stack([renderer.render(scene, p, K, width, height)[1] for p in poses]))

        segment = pipe.run_segment(w2c, exact_depth)
        assert segment.frames.shape == (33, height, width, 3) and torch.isfinite(segment.latents).all()
        truth = [renderer.render(scene, w2c[i], K, width, height, t=i / PROCEDURAL_FPS)[0] for i in range(1, 33)]
    return float(np.mean([psnr(frame, exact) for frame, exact in zip(segment.frames[1:], truth, strict=True)]))


def test_the_shipped_model_beats_the_random_tiny_backbone_on_a_held_out_world():
    mini, tiny = segment_psnr("mini", HELD_OUT_SEED + 7), segment_psnr("tiny", HELD_OUT_SEED + 7)
    assert mini > tiny + 1.0, f"mini {mini:.2f} dB vs tiny {tiny:.2f} dB"


def test_generate_defaults_to_the_shipped_model_and_says_what_it_is_for_a_photo(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.tile(np.arange(128, dtype=np.uint8)[None, :, None], (64, 1, 3))).save(photo)
    out = tmp_path / "run.mp4"
    assert main.main(["generate", "--image", str(photo), "--out", str(out), "--segments", "1"]) == 0
    err = capsys.readouterr().err
    assert "miniature" in err and "synthetic" in err
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["settings"]["backend"] == "mini" and report["settings"]["mode"] == "branch"
    assert report["settings"]["steps"] == MINI.steps and report["model"]["branch"] is True


def test_branch_mode_with_following_pins_visible_tokens_to_the_readout():
    """``branch_follow``: in mode branch the visible tokens follow the readout like inpaint mode; at
    fraction 1.0 they end exactly equal to it, while the branch alone (the default) leaves them free."""
    backbone = load_backbone(BackboneConfig(tiny_num_layers=4, device="cpu"))
    branch = MemoryBranch(backbone.transformer, MemoryBranchConfig(layers=(0, 2)))
    branch.attach(backbone.transformer)
    K = intrinsics_from_fov(55.0, 64, 32)
    image = (np.random.default_rng(0).random((32, 64, 3)) * 255).astype(np.uint8)
    results = {}
    for follow in (True, False):
        config = PipelineConfig(steps=2, mode="branch", inpaint_fraction=1.0, branch_follow=follow, segment_frames=9)
        pipe = MiragePipeline(backbone, config, branch)
        pipe.start(image, torch.full((32, 64), 2.0), K)
        readout = pipe.memory.readout(yaw_pan(9, 10.0)[::4], K, 8, 16, image_hw=(32, 64))
        segment = pipe.run_segment(yaw_pan(9, 10.0), lambda frames, poses, K: torch.full((len(frames), 32, 64), 2.0))
        visible = readout.visible[1:]
        assert visible.any()
        results[follow] = (
            segment.latents[1:].permute(0, 2, 3, 1)[visible],
            readout.latent[1:].float().permute(0, 2, 3, 1)[visible],
        )
    # exact: the last step sets the visible tokens to the readout itself
    assert torch.equal(*results[True])
    assert not torch.allclose(*results[False], atol=1e-2)
    assert PipelineConfig.for_backend("mini").branch_follow and not PipelineConfig.for_backend("tiny").branch_follow
