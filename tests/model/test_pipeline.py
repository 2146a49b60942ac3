"""End-to-end tests of MiragePipeline on the tiny backend (CPU) with exact procedural depth.

The exact comparisons (``torch.equal``, ``np.array_equal``) hold by construction: copied values (a
segment's frame 0 *is* the previous last frame; with ``inpaint_fraction=1`` the last step sets visible
tokens to ``(1 - 0) * readout + 0 * noise``), or two runs of the same code on bit-identical inputs and
weights with the same seed in this process (reruns, resumes from copied state, saved and loaded weights,
a zero-initialised branch that adds exactly 0).
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.baselines.kinds import make_memory
from model.eval.scenes import ProceduralScene, SceneConfig
from model.generation.backbone import BackboneConfig, load_backbone
from model.generation.lora import LoraSettings, add_lora, load_memory_weights, save_memory_weights
from model.generation.memory_branch import MemoryBranch, MemoryBranchConfig
from model.generation.pipeline import GenerationCancelled, MiragePipeline, PipelineConfig
from model.geometry.camera import intrinsics_from_fov
from model.geometry.trajectories import orbit
from model.memory.latent import CellLabel, LatentSpatialMemory, MemoryConfig
from model.memory.masks import SemanticSkySegmenter

H, W = 64, 128
SEGMENT = 33


@pytest.fixture(scope="module")
def scene():
    return ProceduralScene(SceneConfig(seed=5, num_objects=5))


@pytest.fixture(scope="module")
def K():
    return intrinsics_from_fov(55.0, W, H)


class SceneDepth:
    def __init__(self, renderer, scene):
        self.renderer, self.scene = renderer, scene

    def __call__(self, frames, w2c, K):
        return torch.from_numpy(np.stack([self.renderer.render(self.scene, p, K, W, H)[1] for p in w2c]))


def tiny(vae="patch", **kw):
    return load_backbone(BackboneConfig(backend="tiny", device="cpu", tiny_vae=vae, **kw))


def started(backbone, renderer, scene, K, config, branch=None):
    rgb, depth = renderer.render(scene, np.eye(4), K, W, H)
    pipe = MiragePipeline(backbone, config, branch)
    pipe.start(rgb, torch.from_numpy(depth), K, prompt="a room with a table")
    return pipe


def path(segments, degrees=30.0):
    return orbit(segments * (SEGMENT - 1) + 1, 2.0, degrees)


@pytest.mark.parametrize("vae", ["patch", "wan"])
def test_three_segments_end_to_end(renderer, scene, K, vae):
    pipe = started(tiny(vae), renderer, scene, K, PipelineConfig(steps=2))
    steps = []
    results = list(pipe.generate(path(3), SceneDepth(renderer, scene), on_step=lambda s, i, n: steps.append((s, i, n))))
    assert [r.index for r in results] == [0, 1, 2]
    assert steps[-1] == (2, 2, 2) and len(steps) == 6
    for r in results:
        assert r.frames.shape == (SEGMENT, H, W, 3) and r.frames.dtype == np.uint8
        assert r.latents.shape[0] == 9 and set(r.timings) >= {
            "readout",
            "denoise",
            "decode",
            "depth",
            "masks",
            "update",
            "total",
        }
    assert results[1].frame_ids[0] == 32 and results[2].frame_ids[-1] == 96
    assert np.array_equal(results[0].frames[-1], results[1].frames[0]), "segments share their boundary frame"
    assert results[-1].memory_points > results[0].memory_points > 0
    assert all(r.depth_source == "SceneDepth" and r.depth_residual is None for r in results), "exact: nothing fitted"


def test_memory_grows_then_stays_bounded_on_a_revisit(renderer, scene, K):
    pipe = started(tiny(), renderer, scene, K, PipelineConfig(steps=2, inpaint_fraction=1.0))
    out_and_back = torch.cat([path(2, 50.0), path(2, 50.0).flip(0)[1:]])
    sizes = [r.memory_points for r in pipe.generate(out_and_back, SceneDepth(renderer, scene))]
    initial = H // 4 * W // 4
    assert sizes[1] > sizes[0] > 0.5 * initial, "flying into new space adds points"
    assert sizes[3] - sizes[1] < 0.05 * sizes[1], f"coming back added {sizes[3] - sizes[1]} points to {sizes[1]}"


def test_inpaint_fraction_one_keeps_visible_tokens_equal_to_the_readout(renderer, scene, K):
    pipe = started(tiny(), renderer, scene, K, PipelineConfig(steps=3, inpaint_fraction=1.0))
    poses = path(1)
    h, w = pipe.latent_hw
    readout = pipe.memory.readout(poses[::4], K, h, w, image_hw=(H, W))
    result = pipe.run_segment(poses, SceneDepth(renderer, scene))
    visible = readout.visible[1:]
    assert visible.float().mean() > 0.5
    generated = result.latents[1:].permute(0, 2, 3, 1)[visible]
    assert torch.equal(generated, readout.latent[1:].float().permute(0, 2, 3, 1)[visible])
    # and without the memory the same tokens come out different
    free = started(tiny(), renderer, scene, K, PipelineConfig(steps=3, inpaint_fraction=0.0)).run_segment(
        poses, SceneDepth(renderer, scene)
    )
    assert not torch.equal(free.latents[1:].permute(0, 2, 3, 1)[visible], generated)


def test_seeded_and_reproducible(renderer, scene, K):
    a = started(tiny(), renderer, scene, K, PipelineConfig(steps=2, seed=3)).run_segment(
        path(1), SceneDepth(renderer, scene)
    )
    b = started(tiny(), renderer, scene, K, PipelineConfig(steps=2, seed=3)).run_segment(
        path(1), SceneDepth(renderer, scene)
    )
    c = started(tiny(), renderer, scene, K, PipelineConfig(steps=2, seed=4)).run_segment(
        path(1), SceneDepth(renderer, scene)
    )
    assert np.array_equal(a.frames, b.frames) and torch.equal(a.latents, b.latents)
    assert not torch.equal(a.latents, c.latents)


def test_cancellation_leaves_memory_and_state_unchanged(renderer, scene, K):
    pipe = started(tiny(), renderer, scene, K, PipelineConfig(steps=4))
    depth = SceneDepth(renderer, scene)
    first = pipe.run_segment(path(2)[:SEGMENT], depth)
    snapshot = pipe.memory.clone()
    calls = []

    def cancel_at_step_two():
        calls.append(1)
        return len(calls) == 3

    with pytest.raises(GenerationCancelled):
        pipe.run_segment(path(2)[32:], depth, should_cancel=cancel_at_step_two)
    for name in ("positions", "features", "colors", "segments", "frames"):
        assert torch.equal(getattr(pipe.memory, name), getattr(snapshot, name))
    assert pipe.segments_done == 1
    # the next try continues as if nothing happened, and equals an uncancelled run
    resumed = pipe.run_segment(path(2)[32:], depth)
    reference = started(tiny(), renderer, scene, K, PipelineConfig(steps=4))
    reference.run_segment(path(2)[:SEGMENT], depth)
    assert np.array_equal(resumed.frames, reference.run_segment(path(2)[32:], depth).frames)
    assert first.index == 0 and resumed.index == 1


def small_branch_backbone():
    return tiny(tiny_num_layers=4)


def test_zero_init_branch_equals_the_bare_backbone(renderer, scene, K):
    backbone = small_branch_backbone()
    bare = started(backbone, renderer, scene, K, PipelineConfig(steps=2, inpaint_fraction=0.0)).run_segment(
        path(1), SceneDepth(renderer, scene)
    )
    branch = MemoryBranch(backbone.transformer, MemoryBranchConfig(layers=(0, 2)))
    branch.attach(backbone.transformer)
    with_branch = started(backbone, renderer, scene, K, PipelineConfig(steps=2, mode="branch"), branch).run_segment(
        path(1), SceneDepth(renderer, scene)
    )
    assert torch.equal(with_branch.latents, bare.latents)
    assert np.array_equal(with_branch.frames, bare.frames)


def test_branch_and_lora_save_load_reproduce_outputs(tmp_path, renderer, scene, K):
    backbone = small_branch_backbone()
    branch = MemoryBranch(backbone.transformer, MemoryBranchConfig(layers=(0, 2)))
    branch.attach(backbone.transformer)
    settings = LoraSettings(rank=4, alpha=4, dropout=0.0)
    add_lora(backbone.transformer, settings)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stand-in for training: make both parts non-trivial
        for _, p in list(branch.named_parameters()) + [
            (n, p) for n, p in backbone.transformer.named_parameters() if "lora_" in n
        ]:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    config = PipelineConfig(steps=2, mode="branch")
    trained = started(backbone, renderer, scene, K, config, branch).run_segment(path(1), SceneDepth(renderer, scene))
    save_memory_weights(tmp_path / "weights", backbone.transformer, branch, settings)
    fresh = small_branch_backbone()
    loaded = load_memory_weights(tmp_path / "weights", fresh.transformer)
    again = started(fresh, renderer, scene, K, config, loaded).run_segment(path(1), SceneDepth(renderer, scene))
    assert torch.equal(again.latents, trained.latents)
    bare = started(
        small_branch_backbone(), renderer, scene, K, PipelineConfig(steps=2, inpaint_fraction=0.0)
    ).run_segment(path(1), SceneDepth(renderer, scene))
    assert not torch.equal(bare.latents, trained.latents), "the trained weights must change the output"


def test_branch_mode_refuses_a_memory_that_reads_out_otherwise_than_the_branch_was_trained_on():
    backbone = small_branch_backbone()
    branch = MemoryBranch(backbone.transformer, MemoryBranchConfig(layers=(0, 2)))
    config = PipelineConfig(steps=1, mode="branch")
    pipe = MiragePipeline(backbone, config, branch)  # the default memory: what training reads out
    differences = r"near 0.1 \(trained: 0.05\), depth_bin 0.01 \(trained: 0.02\)"
    with pytest.raises(ValueError, match=rf"^saved.safetensors: {differences}: the memory weights"):
        pipe.load_memory(LatentSpatialMemory(MemoryConfig(near=0.1, depth_bin=0.01)), source="saved.safetensors")
    with pytest.raises(ValueError, match=r"^memory: memory_kind 'rgb' \(trained: 'latent'\)"):
        MiragePipeline(backbone, replace(config, memory_kind="rgb"), branch, make_memory("rgb", vae=backbone.vae))
    branch.readout = None  # weights saved before the settings were recorded: not checked
    MiragePipeline(backbone, replace(config, memory=MemoryConfig(near=0.1)), branch)


def test_semantic_sky_is_never_written(tmp_path, save_tiny_segformer, renderer, scene, K):
    save_tiny_segformer(tmp_path, {0: "wall", 1: "sky"}, always=1)  # everything is sky
    backbone = tiny()
    pipe = MiragePipeline(backbone, PipelineConfig(steps=1, inpaint_fraction=1.0), sky=SemanticSkySegmenter(tmp_path))
    rgb, depth = renderer.render(scene, np.eye(4), K, W, H)
    pipe.start(rgb, torch.from_numpy(depth), K)
    before = len(pipe.memory)
    result = pipe.run_segment(path(1), SceneDepth(renderer, scene))
    assert result.memory_points == len(pipe.memory) == before
    assert set(result.labels.unique().tolist()) <= {int(CellLabel.SKY), int(CellLabel.INVALID)}
    assert (result.labels == CellLabel.SKY).any()
    plain = started(backbone, renderer, scene, K, PipelineConfig(steps=1, inpaint_fraction=1.0))
    assert plain.run_segment(path(1), SceneDepth(renderer, scene)).memory_points > before, "without it points are added"


def test_reencode_write_path(renderer, scene, K):
    pipe = started(tiny(), renderer, scene, K, PipelineConfig(steps=2, write_path="reencode", inpaint_fraction=1.0))
    result = pipe.run_segment(path(1), SceneDepth(renderer, scene))
    assert result.memory_points > H // 4 * W // 4


def test_bad_pipeline_inputs(renderer, scene, K):
    backbone = tiny()
    with pytest.raises(ValueError, match="memory-weights"):
        MiragePipeline(backbone, PipelineConfig(mode="branch"))
    with pytest.raises(ValueError, match="segment_frames"):
        PipelineConfig(segment_frames=32)
    with pytest.raises(ValueError, match="depth_tolerance"):
        PipelineConfig(depth_tolerance=0.0)
    pipe = MiragePipeline(backbone, PipelineConfig(steps=1))
    with pytest.raises(RuntimeError, match="start"):
        pipe.run_segment(path(1), SceneDepth(renderer, scene))
    rgb, depth = renderer.render(scene, np.eye(4), K, W, H)
    with pytest.raises(ValueError, match="multiple"):
        pipe.start(rgb[:, :124].copy(), torch.from_numpy(depth)[:, :124], K)
    pipe.start(rgb, torch.from_numpy(depth), K)
    with pytest.raises(ValueError, match="shorter than one segment"):
        list(pipe.generate(orbit(20), SceneDepth(renderer, scene)))
    bad = path(1).clone()
    bad[5, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        list(pipe.generate(bad, SceneDepth(renderer, scene)))


def test_resume_continues_exactly_like_an_unbroken_run(tmp_path, renderer, scene, K):
    depth = SceneDepth(renderer, scene)
    unbroken = started(tiny(), renderer, scene, K, PipelineConfig(steps=2, seed=1))
    first, second = list(unbroken.generate(path(2), depth))
    recorded = started(tiny(), renderer, scene, K, PipelineConfig(steps=2, seed=1))
    recorded.run_segment(path(2)[:SEGMENT], depth)
    recorded.memory.save(tmp_path / "memory.safetensors")
    resumed = MiragePipeline(tiny(), PipelineConfig(steps=2, seed=1))
    resumed.resume(
        first.frames[-1],
        K,
        "a room with a table",
        LatentSpatialMemory.load(tmp_path / "memory.safetensors"),
        segments_done=1,
    )
    again = resumed.run_segment(path(2)[32:], depth)
    assert again.index == 1 and np.array_equal(again.frame_ids, second.frame_ids)
    assert np.array_equal(again.frames, second.frames) and torch.equal(again.latents, second.latents)
    assert torch.equal(resumed.memory.positions, unbroken.memory.positions)
    with pytest.raises(ValueError, match="multiple"):
        resumed.resume(first.frames[-1][:, :100].copy(), K, "", resumed.memory, 1)
    with pytest.raises(ValueError, match="segments_done"):
        resumed.resume(first.frames[-1], K, "", resumed.memory, -1)


def test_update_config_between_segments(renderer, scene, K):
    pipe = started(tiny(), renderer, scene, K, PipelineConfig(steps=2, seed=1))
    pipe.update_config(steps=3, seed=7, prompt="a kitchen")
    steps = []
    pipe.run_segment(path(1), SceneDepth(renderer, scene), on_step=lambda s, i, n: steps.append(n))
    assert steps == [3, 3, 3] and pipe.config.seed == 7
    with pytest.raises(ValueError, match="mode"):
        pipe.update_config(mode="branch")
    with pytest.raises(ValueError, match="steps"):
        pipe.update_config(steps=0)
