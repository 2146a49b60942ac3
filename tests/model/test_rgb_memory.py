"""RGBPointCloudMemory: the pixel-space baseline (rasterise + VAE-encode), checked against exact scenes."""

import inspect

import numpy as np
import pytest
import torch

from model.baselines.kinds import make_memory
from model.baselines.rgb_memory import RGBPointCloudMemory
from model.eval.scenes import ProceduralScene, SceneConfig
from model.generation.backbone import BackboneConfig, load_backbone
from model.generation.patch_vae import PatchVAE
from model.generation.pipeline import MiragePipeline, PipelineConfig
from model.geometry.camera import intrinsics_from_fov
from model.geometry.trajectories import orbit
from model.io.frames import frames_to_tensor
from model.memory.latent import LatentSpatialMemory, MemoryConfig
from tests.cli_args import TINY_FAST

H, W = 64, 128
STRIDE = 4  # PatchVAE
h, w = H // STRIDE, W // STRIDE


@pytest.fixture(scope="module")
def scene():
    return ProceduralScene(SceneConfig(seed=5, num_objects=5))


@pytest.fixture(scope="module")
def K():
    return intrinsics_from_fov(55.0, W, H)


@pytest.fixture(scope="module")
def vae():
    return PatchVAE()


def source_memory(renderer, scene, K, vae, config=None):
    rgb, depth = renderer.render(scene, np.eye(4), K, W, H)
    memory = RGBPointCloudMemory(config, vae=vae)
    latent = vae.encode(frames_to_tensor(rgb))[0]
    memory.initialize(
        latent, torch.from_numpy(depth), K, torch.eye(4, dtype=torch.float64), image=torch.from_numpy(rgb)
    )
    return memory, rgb, depth


def test_readout_at_the_source_view_reproduces_the_source_image(renderer, scene, K, vae):
    memory, rgb, depth = source_memory(renderer, scene, K, vae)
    assert len(memory) == int(np.isfinite(depth).sum()) and memory.stats().bytes == 25 * len(memory)
    views = memory.render(torch.eye(4)[None], K, H, W)
    covered = views.depth[0] > 0
    assert covered.float().mean() > 0.999
    # exact: uint8 colours are copied, each point lands at its own pixel centre (half a pixel from any edge)
    assert torch.equal(views.rgb[0][covered], torch.from_numpy(rgb)[covered]), (
        "each pixel's own point covers exactly that pixel"
    )
    assert torch.allclose(views.depth[0][covered], torch.from_numpy(depth)[covered], rtol=1e-5)
    readout = memory.readout(torch.eye(4)[None], K, h, w, image_hw=(H, W))
    assert readout.visible.all()
    # exact: the rendered view is the source image (above), encoded by the same code
    assert torch.equal(readout.latent[0], vae.encode(frames_to_tensor(rgb))[0]), (
        "the readout is the VAE encoding of the rendered source view"
    )


def test_z_buffer_shows_the_nearest_surface_from_a_new_view(renderer, scene, K, vae):
    """From an orbit 12 degrees away the rendered cloud matches the true view: furniture occludes the walls behind
    it.
    """
    memory, _, _ = source_memory(renderer, scene, K, vae)
    target = orbit(2, 2.0, 12.0)[1]
    true_rgb, true_depth = renderer.render(scene, target, K, W, H)
    views = memory.render(target[None], K, H, W)
    covered = (views.depth[0] > 0) & torch.from_numpy(np.isfinite(true_depth))
    assert covered.float().mean() > 0.8
    rel = (views.depth[0] - torch.from_numpy(true_depth)).abs() / torch.from_numpy(true_depth)
    assert (rel[covered] < 0.05).float().mean() > 0.95, "far points drawn over near ones would break depth agreement"
    error = (views.rgb[0].float() - torch.from_numpy(true_rgb).float()).abs().mean(-1)
    assert error[covered].median() < 8.0


def test_near_points_occlude_far_points_whatever_the_write_order(K, vae):
    far = torch.full((H, W), 4.0)
    near = torch.full((H, W), torch.inf)
    near[16:48, 32:96] = 2.0
    blue = torch.zeros(H, W, 3, dtype=torch.uint8)
    blue[..., 2] = 255
    red = torch.zeros(H, W, 3, dtype=torch.uint8)
    red[..., 0] = 255
    for order in ((far, blue, near, red), (near, red, far, blue)):
        memory = RGBPointCloudMemory(MemoryConfig(dedup="voxel", voxel_size=1e-3), vae=vae)
        memory.initialize(torch.zeros(48, h, w), order[0], K, torch.eye(4), image=order[1])
        memory.update(torch.zeros(1, 48, h, w), order[2][None], torch.eye(4)[None], K, frames=order[3][None])
        views = memory.render(torch.eye(4)[None], K, H, W)
        assert (views.rgb[0, 20:44, 36:92] == torch.tensor([255, 0, 0], dtype=torch.uint8)).all()
        assert (views.rgb[0, :12] == torch.tensor([0, 0, 255], dtype=torch.uint8)).all()
        readout = memory.readout(torch.eye(4)[None], K, h, w, image_hw=(H, W))
        assert torch.allclose(readout.depth[0, 5:11, 9:23], torch.tensor(2.0)) and torch.allclose(
            readout.depth[0, 0], torch.tensor(4.0)
        )


def test_revisiting_a_view_adds_nothing_and_new_space_adds_points(renderer, scene, K, vae):
    memory, rgb, depth = source_memory(renderer, scene, K, vae)
    before = len(memory)
    memory.update(
        torch.zeros(1, 48, h, w),
        torch.from_numpy(depth)[None],
        torch.eye(4)[None],
        K,
        frames=torch.from_numpy(rgb)[None],
    )
    assert len(memory) - before < 0.01 * before
    poses = orbit(3, 2.0, 40.0)[1:]
    rgbs, depths = zip(*[renderer.render(scene, p, K, W, H) for p in poses], strict=True)
    stats = memory.update(
        torch.zeros(2, 48, h, w), torch.from_numpy(np.stack(depths)), poses, K, frames=torch.from_numpy(np.stack(rgbs))
    )
    assert stats.points > 1.1 * before and memory.next_segment == 3


def test_keep_mask_per_latent_cell_drops_the_cells_pixels(renderer, scene, K, vae):
    rgb, depth = renderer.render(scene, np.eye(4), K, W, H)
    keep = torch.ones(h, w, dtype=torch.bool)
    keep[:, : w // 2] = False
    memory = RGBPointCloudMemory(vae=vae)
    memory.initialize(
        torch.zeros(48, h, w), torch.from_numpy(depth), K, torch.eye(4), keep=keep, image=torch.from_numpy(rgb)
    )
    u = memory.positions[:, 0] / memory.positions[:, 2] * K[0, 0] + K[0, 2]
    assert len(memory) == int(np.isfinite(depth[:, W // 2 :]).sum()) and (u > W // 2 - 1e-3).all()
    assert memory.stats().rejected == H * W - len(memory)


def test_bad_writes_raise_and_leave_the_memory_unchanged(renderer, scene, K, vae):
    memory, rgb, depth = source_memory(renderer, scene, K, vae)
    before = memory.clone()
    with pytest.raises(ValueError, match="frames"):
        memory.update(torch.zeros(1, 48, h, w), torch.from_numpy(depth)[None], torch.eye(4)[None], K)
    with pytest.raises(ValueError, match="depth"):
        memory.update(
            torch.zeros(1, 48, h, w), torch.ones(1, H, W + 4), torch.eye(4)[None], K, frames=torch.from_numpy(rgb)[None]
        )
    assert (
        torch.equal(memory.positions, before.positions) and memory.next_segment == before.next_segment
    )  # exact: nothing written
    with pytest.raises(ValueError, match="VAE"):
        RGBPointCloudMemory().readout(torch.eye(4)[None], K, h, w, image_hw=(H, W))


def test_save_load_round_trip_and_format_checks(renderer, scene, K, vae, tmp_path):
    memory, _, _ = source_memory(renderer, scene, K, vae, MemoryConfig(view_tolerance=0.03))
    path = tmp_path / "rgb.safetensors"
    memory.save(path)
    loaded = RGBPointCloudMemory.load(path, vae=vae)
    for name in (
        "positions",
        "colors",
        "sizes",
        "segments",
        "frames",
    ):  # exact: file copies, then the same readout code
        assert torch.equal(getattr(loaded, name), getattr(memory, name)), name
    assert loaded.config == memory.config and loaded.next_segment == 1 and loaded.stats() == memory.stats()
    target = orbit(2, 2.0, 10.0)[1:]
    assert torch.equal(
        loaded.readout(target, K, h, w, image_hw=(H, W)).latent, memory.readout(target, K, h, w, image_hw=(H, W)).latent
    )
    latent_file = tmp_path / "latent.safetensors"
    LatentSpatialMemory().save(latent_file)
    with pytest.raises(ValueError, match="not a mirage-rgb-memory file"):
        RGBPointCloudMemory.load(latent_file)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        RGBPointCloudMemory.load(tmp_path / "junk.safetensors")


def test_interface_matches_the_latent_memory():
    for name in ("initialize", "readout", "update", "stats", "save", "load", "clone", "to"):
        latent = list(inspect.signature(getattr(LatentSpatialMemory, name)).parameters.values())
        rgb = list(inspect.signature(getattr(RGBPointCloudMemory, name)).parameters.values())
        assert [(p.name, p.default) for p in latent] == [(p.name, p.default) for p in rgb[: len(latent)]], name
        assert all(p.default is not inspect.Parameter.empty for p in rgb[len(latent) :]), (
            f"{name}: extra parameters must be optional"
        )


def test_pipeline_runs_one_segment_with_the_rgb_memory(renderer, scene, K):
    backbone = load_backbone(BackboneConfig(backend="tiny", device="cpu"))
    rgb, depth = renderer.render(scene, np.eye(4), K, W, H)
    config = PipelineConfig(steps=2, memory_kind="rgb")
    with pytest.raises(ValueError, match="make_memory"):
        MiragePipeline(backbone, config)  # the pipeline builds only its default, latent memory
    pipe = MiragePipeline(backbone, config, memory=make_memory("rgb", config.memory, backbone.device, backbone.vae))
    pipe.start(rgb, torch.from_numpy(depth), K, prompt="a room")
    assert isinstance(pipe.memory, RGBPointCloudMemory) and pipe.memory.vae is backbone.vae
    initial = len(pipe.memory)

    def exact_depth(frames, w2c, K_):
        return torch.from_numpy(np.stack([renderer.render(scene, p, K_, W, H)[1] for p in w2c]))

    (result,) = pipe.generate(orbit(33, 2.0, 30.0), exact_depth)
    assert result.frames.shape == (33, H, W, 3) and result.latents.shape == (9, 48, h, w)
    assert result.visible[0].all() and result.visible[1:].float().mean() > 0.5
    assert result.memory_points == len(pipe.memory) > initial and result.memory_bytes == 25 * result.memory_points
    assert pipe.memory.last_readout.encode > 0 and pipe.memory.last_readout.rasterise > 0
    with pytest.raises(ValueError, match="memory_kind"):
        PipelineConfig(memory_kind="voxels")


def test_full_size_vae_of_the_benchmark_has_wan22s_architecture():
    """``tiny_vae="wan-full"`` (benchmarks/generation.py): Wan2.2's 705M-parameter VAE, built on the meta device
    here.
    """
    from model.generation.tiny import wan22_vae

    with torch.device("meta"):
        vae = wan22_vae()
    assert round(sum(p.numel() for p in vae.parameters()) / 1e6, 1) == 704.7
    assert (vae.config.z_dim, vae.config.scale_factor_spatial, vae.config.scale_factor_temporal) == (48, 16, 4)
    assert BackboneConfig(tiny_vae="wan-full").tiny_vae == "wan-full"


def test_generate_cli_runs_with_the_rgb_memory_and_reloads_it(tmp_path):
    import main

    fast = [*TINY_FAST, "--memory", "rgb"]
    saved = tmp_path / "rgb.safetensors"
    assert main.main(["generate", "--out", str(tmp_path / "a.mp4"), "--save-memory", str(saved), *fast]) == 0
    first = RGBPointCloudMemory.load(saved)
    assert first.next_segment == 2 and len(first) > 0
    assert (
        main.main(
            [
                "generate",
                "--out",
                str(tmp_path / "b.mp4"),
                "--load-memory",
                str(saved),
                "--save-memory",
                str(saved),
                *fast,
            ]
        )
        == 0
    )
    assert RGBPointCloudMemory.load(saved).next_segment == 3, "the second run continued from the saved RGB memory"
    assert main.main(["generate", "--out", str(tmp_path / "c.mp4"), "--load-memory", str(saved), *fast[:-2]]) == 2, (
        "a latent run rejects an RGB file"
    )
