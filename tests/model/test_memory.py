"""Tests of the latent spatial memory on synthetic tensors (scene-based checks: test_memory_scenes.py)."""

import json
import math
import struct

import pytest
import torch

from model.geometry.camera import intrinsics_from_fov, look_at, project_points, scale_intrinsics, unproject_depth
from model.geometry.trajectories import closed_loop, forward_dolly, orbit, yaw_pan
from model.memory.footprint import IDENTITY_MAPPING
from model.memory.latent import (
    CellLabel,
    LatentSpatialMemory,
    MemoryConfig,
    depth_bin_shift,
    downsample_depth,
    voxel_keys,
    zbuffer_project,
)

H, W, h, w, C = 64, 96, 16, 24, 48


def smooth_depth(seed: int = 0, n: int = 1) -> torch.Tensor:
    """``[n, H, W]`` smooth positive depth between ~2 and ~4 metres."""
    g = torch.Generator().manual_seed(seed)
    coarse = 2.0 + 2.0 * torch.rand(n, 1, 4, 6, generator=g, dtype=torch.float64)
    return torch.nn.functional.interpolate(coarse, size=(H, W), mode="bicubic", align_corners=True)[:, 0].clamp(min=1.5)


def fp16_latents(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, h, w, generator=g).half().float()


@pytest.fixture
def K() -> torch.Tensor:
    return intrinsics_from_fov(60.0, W, H)


def test_identity_readout_returns_source_latents_exactly(K):
    latent = fp16_latents(1)[0]
    depth = smooth_depth()[0]
    mem = LatentSpatialMemory()
    mem.initialize(latent, depth, K, torch.eye(4))
    out = mem.readout(torch.eye(4), K, h, w, image_hw=(H, W))
    assert out.visible.all(), "every cell with valid depth must see its own point"
    # exact: each cell's point lands at its cell centre (half a cell from any edge) and its latent is a
    # gathered copy of the fp16-representable source value
    assert torch.equal(out.latent[0].float(), latent)
    expected_depth = downsample_depth(depth[None], h, w)[0].float()
    assert torch.allclose(out.depth[0], expected_depth, rtol=1e-5)


def test_invalid_depth_and_keep_mask_drop_cells(K):
    depth = smooth_depth()[0]
    depth[:16, :] = torch.inf  # sky band: the top 4 latent rows
    depth[40:44, 40:44] = 0.0  # a hole
    keep = torch.ones(h, w, dtype=torch.bool)
    keep[:, :3] = False
    mem = LatentSpatialMemory()
    mem.initialize(fp16_latents(1)[0], depth, K, torch.eye(4), keep=keep)
    visible = mem.readout(torch.eye(4), K, h, w, image_hw=(H, W)).visible[0]
    assert not visible[:4].any()
    assert not visible[:, :3].any()
    # bilinear sampling at cell centres reads pixels 41-42 for cell 10: the hole's cell only
    assert not visible[10, 10] and visible[9, 9] and visible[11, 11]
    assert visible[8:, 3:].sum() >= (h - 8) * (w - 3) - 4
    labels = mem.rejected_labels
    assert (labels == CellLabel.INVALID).sum() >= 4 * w
    assert (labels == CellLabel.DYNAMIC).sum() > 0
    assert len(mem) + len(labels) == h * w


def brute_force_zbuffer(points, w2c, K, h, w, near, depth_bin):
    """Reference z-buffer with explicit per-cell minimisation of (depth bin, index): float64 projection,
    bins from the float32 bit pattern of the depth (what the log-spaced bins are defined as)."""
    uv, z = project_points(points.double(), w2c.double(), K.double())
    index = torch.full((len(w2c), h, w), -1, dtype=torch.int64)
    best = {}
    for f in range(len(w2c)):
        for i in range(len(points)):
            zi = float(z[f, i])
            if zi <= near:
                continue
            u, v = math.floor(float(uv[f, i, 0])), math.floor(float(uv[f, i, 1]))
            key = (struct.unpack("<i", struct.pack("<f", zi))[0] >> depth_bin_shift(depth_bin), i)
            if 0 <= u < w and 0 <= v < h and key < best.get((f, v, u), (math.inf, 0)):
                best[(f, v, u)], index[f, v, u] = key, i
    return index


def test_zbuffer_matches_brute_force_on_random_clouds():
    g = torch.Generator().manual_seed(3)
    points = torch.randn(3000, 3, generator=g) * torch.tensor([2.0, 1.5, 3.0]) + torch.tensor([0.0, 0.0, 2.0])
    K_grid = scale_intrinsics(intrinsics_from_fov(70.0, W, H), (H, W), (h, w))
    w2c = orbit(3, 1.0, 40.0).float()
    for depth_bin in (0.02, 1e-5):  # the default, and bins so thin that it is a plain nearest-point z-buffer
        index, depth = zbuffer_project(points, w2c, K_grid, h, w, near=0.05, depth_bin=depth_bin)
        reference = brute_force_zbuffer(points, w2c, K_grid, h, w, 0.05, depth_bin)
        assert (index >= 0).sum() > 0.5 * index.numel()
        # float32 vs float64 may flip rare points on a cell border or a bin boundary
        assert (index == reference).float().mean() > 0.99
        assert ((index >= 0) == (reference >= 0)).float().mean() > 0.995
    # with thin bins the winner is the nearest point
    _, z = project_points(points.double(), w2c.double(), K_grid.double())
    same = (index == reference) & (index >= 0)
    winner_z = z.gather(1, index.clamp(min=0).view(len(w2c), -1)).view_as(depth)
    assert torch.allclose(depth[same].double(), winner_z[same], rtol=1e-5)


def test_depth_bins_let_the_older_of_two_nearly_equal_points_win():
    K_grid = torch.tensor([[2.0, 0, 2.0], [0, 2.0, 2.0], [0, 0, 1]])
    older = torch.tensor([[0.05, 0.05, 3.02]])
    newer_nearer = torch.tensor(
        [[0.05, 0.05, 3.005]]
    )  # 0.5 % nearer, same 1/64-octave bin: the same surface seen again
    occluder = torch.tensor([[0.05, 0.05, 2.50]])  # 17 % nearer: a real occluder
    index, _ = zbuffer_project(torch.cat([older, newer_nearer]), torch.eye(4)[None], K_grid, 4, 4)
    assert index[0, 2, 2] == 0
    index, _ = zbuffer_project(torch.cat([older, occluder]), torch.eye(4)[None], K_grid, 4, 4)
    assert index[0, 2, 2] == 1


def test_zbuffer_nearest_point_wins_and_ties_go_to_lower_index():
    K_grid = torch.tensor([[2.0, 0, 2.0], [0, 2.0, 2.0], [0, 0, 1]])
    # three points on the optical ray of cell (2, 2): far, near, and a copy of the near one
    points = torch.tensor([[0.1, 0.1, 5.0], [0.05, 0.05, 2.0], [0.05, 0.05, 2.0]])
    index, depth = zbuffer_project(points, torch.eye(4)[None], K_grid, 4, 4)
    assert index[0, 2, 2] == 1
    assert depth[0, 2, 2] == pytest.approx(2.0)
    assert (index[0] >= 0).sum() == 1
    # reversed insertion order: the near pair is now indices 0 and 1, lower index still wins
    index2, _ = zbuffer_project(points.flip(0), torch.eye(4)[None], K_grid, 4, 4)
    assert index2[0, 2, 2] == 0


def test_front_surface_occludes_back_surface(K):
    mem = LatentSpatialMemory()
    back = fp16_latents(1, seed=1)
    front = fp16_latents(1, seed=2)
    mem.update(back, torch.full((1, H, W), 6.0), torch.eye(4)[None], K)
    # a front wall seen from 1 m to the side covers the middle of the view
    mem.update(front, torch.full((1, H, W), 2.0), yaw_pan(2, 0.0)[1:], K)
    out = mem.readout(torch.eye(4), K, h, w, image_hw=(H, W))
    assert torch.equal(out.latent[0].float(), front[0])  # exact: gathered copies; 2 m vs 6 m is no close call
    assert torch.allclose(out.depth[0], torch.full((h, w), 2.0), atol=1e-5)


def test_readout_is_deterministic_and_batch_independent(K):
    mem = LatentSpatialMemory()
    poses = orbit(4, 2.0, 30.0)
    mem.update(fp16_latents(4), smooth_depth(n=4), poses, K)
    targets = yaw_pan(5, 25.0)
    a = mem.readout(targets, K, h, w, image_hw=(H, W))
    b = mem.readout(targets, K, h, w, image_hw=(H, W))
    # exact: the same code on the same inputs in one process; and zbuffer_project handles one frame at a
    # time (one matrix product per frame; torch multiplies batches of 3x3 @ 3x4 matrices frame by frame), so a
    # frame's result does not depend on the batch around it
    assert torch.equal(a.latent, b.latent) and torch.equal(a.index, b.index) and torch.equal(a.depth, b.depth)
    for f in range(len(targets)):
        single = mem.readout(targets[f], K, h, w, image_hw=(H, W))
        assert torch.equal(single.latent[0], a.latent[f]) and torch.equal(single.index[0], a.index[f])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_readout_agrees_on_cpu_and_cuda(K):
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(4), smooth_depth(n=4), orbit(4, 2.0, 30.0), K)
    targets = orbit(6, 2.0, 40.0)
    cpu = mem.readout(targets, K, h, w, image_hw=(H, W))
    gpu = mem.clone().to("cuda").readout(targets, K, h, w, image_hw=(H, W))
    # Not bit-exact by construction: CUDA and the CPU round the float32 projection differently, which can
    # move a point lying within rounding of a cell edge or a depth-bin edge to the neighbouring cell (rare;
    # 0.1 % of the 2304 cells allowed). Where the winner is the same, the latent is a gathered copy of the
    # same stored feature on both devices, so it is compared exactly.
    same = cpu.index == gpu.index.cpu()
    assert same.float().mean() > 0.999
    assert torch.equal(cpu.latent.permute(0, 2, 3, 1)[same], gpu.latent.cpu().permute(0, 2, 3, 1)[same])


def test_closed_loop_mirrored_readouts_are_identical(K):
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(3), smooth_depth(n=3), orbit(3, 2.0, 20.0), K)
    path = closed_loop(orbit(7, 2.0, 50.0))
    out = mem.readout(path, K, h, w, image_hw=(H, W))
    n = len(path)
    for i in range(n // 2):  # exact: frames i and n-1-i are copies of one pose, each frame projected on its own
        assert torch.equal(out.latent[i], out.latent[n - 1 - i])
        assert torch.equal(out.visible[i], out.visible[n - 1 - i])
    assert not torch.equal(out.visible[0], out.visible[n // 2 - 1]), "the loop must actually move"


def plane_depth(w2c: torch.Tensor, K: torch.Tensor, distance: float = 4.0) -> torch.Tensor:
    """Exact z-depth ``[F, H, W]`` of the world plane ``z = distance`` seen by cameras ``w2c``."""
    from model.geometry.camera import invert_pose, pixel_centers

    c2w = invert_pose(w2c.double())
    uv = pixel_centers(H, W, dtype=torch.float64)
    rays = torch.stack(
        [(uv[..., 0] - K[0, 2]) / K[0, 0], (uv[..., 1] - K[1, 2]) / K[1, 1], torch.ones(H, W, dtype=torch.float64)], -1
    )
    dirs_z = torch.einsum("hwc,fc->fhw", rays, c2w[:, 2, :3])  # world z of each ray direction
    return ((distance - c2w[:, 2, 3, None, None]) / dirs_z).float()


@pytest.mark.parametrize("dedup", ["view", "voxel"])
def test_revisiting_the_same_views_does_not_grow_the_cache(K, dedup):
    mem = LatentSpatialMemory(MemoryConfig(dedup=dedup))
    poses = orbit(5, 2.0, 30.0)
    depth = plane_depth(poses, K)
    mem.update(fp16_latents(5), depth, poses, K)
    first = len(mem)
    mem.update(fp16_latents(5, seed=9), depth, poses, K)
    assert first > h * w and len(mem) == first


def test_view_dedup_writes_only_unseen_cells(K):
    mem = LatentSpatialMemory(MemoryConfig(dedup="view"))
    pose = torch.eye(4)[None]
    mem.update(fp16_latents(1), plane_depth(pose, K), pose, K)
    assert len(mem) == h * w, "a single view keeps every cell (no holes at the writer's view)"
    # two identical frames in one write: the second is entirely known
    mem2 = LatentSpatialMemory(MemoryConfig(dedup="view"))
    mem2.update(fp16_latents(2), plane_depth(pose.expand(2, 4, 4), K), pose.expand(2, 4, 4), K)
    assert len(mem2) == h * w
    # a pan adds roughly the newly seen part of the wall, not a whole frame
    pan = yaw_pan(2, 20.0)[1:]
    mem.update(fp16_latents(1, seed=4), plane_depth(pan, K), pan, K)
    added = len(mem) - h * w
    assert 0.1 * h * w < added < 0.6 * h * w
    # something new in front of a known wall is written even where the wall was seen
    mem.update(fp16_latents(1, seed=5), torch.full((1, H, W), 2.0), pose, K)
    assert len(mem) >= h * w + added + h * w - 2


@pytest.mark.parametrize("dedup", ["view", "voxel"])
def test_voxel_policies(K, dedup):
    depth = torch.full((1, H, W), 3.0)
    old, new = fp16_latents(1, seed=1), fp16_latents(1, seed=2)
    keep_first = LatentSpatialMemory(MemoryConfig(dedup=dedup, keep_observation="first"))
    newest = LatentSpatialMemory(MemoryConfig(dedup=dedup, keep_observation="newest"))
    for mem in (keep_first, newest):
        mem.update(old, depth, torch.eye(4)[None], K)
        mem.update(new, depth, torch.eye(4)[None], K)
    assert len(keep_first) == len(newest)
    read = lambda m: m.readout(torch.eye(4), K, h, w, image_hw=(H, W)).latent[0].float()  # noqa: E731
    assert torch.equal(read(keep_first), old[0])  # exact: gathered copies of fp16-representable latents
    assert torch.equal(read(newest), new[0])
    assert (newest.segments == 1).all() and (keep_first.segments == 0).all()


def test_dedup_within_one_write_keeps_one_point_per_voxel(K):
    mem = LatentSpatialMemory(MemoryConfig(dedup="voxel", voxel_size=0.5))
    mem.update(fp16_latents(1), torch.full((1, H, W), 3.0), torch.eye(4)[None], K)
    keys, _ = voxel_keys(mem.positions, 0.5)
    assert len(torch.unique(keys)) == len(mem)
    assert len(mem) < h * w


def test_update_records_labels_colours_and_provenance(K):
    mem = LatentSpatialMemory(MemoryConfig(dedup="voxel", voxel_size=1e-3))  # no de-duplication between the two views
    depth = smooth_depth(n=2)
    depth[1, :, :8] = torch.inf  # latent columns 0-1
    depth[0, 60:, 60:] = torch.inf  # bottom-right latent cell (15, 15..23) without a label: INVALID
    keep = torch.ones(2, h, w, dtype=torch.bool)
    keep[0, 5:8, 5:8] = False
    labels = torch.zeros(2, h, w, dtype=torch.uint8)
    labels[0, 5:8, 5:8] = CellLabel.DYNAMIC
    labels[1, :, 2:] = CellLabel.STATIC
    labels[1, :, :2] = CellLabel.SKY
    keep[1, :, :2] = False
    frames = torch.zeros(2, H, W, 3, dtype=torch.uint8)
    frames[..., 0] = 200
    frames[:, :2, :2, 1] = 255  # a quarter of cell (0, 0)'s 4x4 patch is bright green
    mem.update(
        fp16_latents(2), depth, orbit(2, 2.0, 10.0), K, keep=keep, labels=labels, frames=frames, frame_ids=[40, 44]
    )
    counts = torch.bincount(mem.rejected_labels.long(), minlength=4)
    assert counts[CellLabel.DYNAMIC] == 9 and counts[CellLabel.SKY] == 2 * h and counts[CellLabel.INVALID] == 9
    assert mem.stats().points == len(mem) == int(keep.sum()) - 9
    assert torch.isnan(mem.rejected_positions[mem.rejected_labels == CellLabel.SKY]).all()
    assert torch.isfinite(mem.rejected_positions[mem.rejected_labels == CellLabel.DYNAMIC]).all()
    assert set(mem.frames.tolist()) == {40, 44}
    assert (mem.colors[:, 0] == 200).all()
    assert mem.colors[0].tolist() == [
        200,
        64,
        0,
    ]  # mean of 4 bright pixels in a 16-pixel patch, rounded (63.75: exact in float)


def test_bad_input_raises_and_leaves_memory_unchanged(K):
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(2), smooth_depth(n=2), orbit(2, 2.0, 10.0), K)
    before = mem.clone()
    bad_pose = torch.eye(4)[None].clone()
    bad_pose[0, 0, 3] = torch.nan
    cases = [
        (dict(latents=fp16_latents(1)[0], depth=smooth_depth(n=1), w2c=torch.eye(4)[None], K=K), "latents"),
        (dict(latents=fp16_latents(1), depth=smooth_depth(n=1), w2c=bad_pose, K=K), "NaN"),
        (dict(latents=fp16_latents(1), depth=smooth_depth(n=2), w2c=torch.eye(4)[None], K=K), "depth"),
        (dict(latents=fp16_latents(1), depth=smooth_depth(n=1), w2c=torch.eye(4)[None] * 2, K=K), "w2c"),
        (dict(latents=fp16_latents(1), depth=smooth_depth(n=1), w2c=torch.eye(4)[None], K=-K), "K"),
        (dict(latents=fp16_latents(1)[:, :7], depth=smooth_depth(n=1), w2c=torch.eye(4)[None], K=K), "channel"),
        (dict(latents=fp16_latents(1) * torch.nan, depth=smooth_depth(n=1), w2c=torch.eye(4)[None], K=K), "NaN"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            mem.update(**kwargs)
    for name in ("positions", "features", "colors", "segments", "frames"):  # exact: nothing was written
        assert torch.equal(getattr(mem, name), getattr(before, name))
    assert mem.next_segment == before.next_segment
    with pytest.raises(ValueError, match="w2c"):
        mem.readout(torch.eye(3), K, h, w)


def test_a_write_that_fails_after_its_checks_changes_nothing(K, monkeypatch):
    """The write check is pure: even the channel count of an empty memory changes only when a write commits."""
    mem = LatentSpatialMemory()
    mem.initialize(
        fp16_latents(1)[0], torch.full((H, W), torch.inf), K, torch.eye(4)
    )  # no valid depth: empty, C channels

    def fail(*args, **kwargs):
        raise RuntimeError("lifting failed")

    monkeypatch.setattr("model.memory.latent.downsample_depth", fail)
    with pytest.raises(RuntimeError, match="lifting failed"):
        mem.update(fp16_latents(1)[:, :16], smooth_depth(n=1), torch.eye(4)[None], K)
    assert mem.channels == C and mem.features.shape == (0, C) and mem.next_segment == 1


def test_save_load_round_trip_is_bit_exact(tmp_path, K):
    for dtype in ("float16", "bfloat16"):
        mem = LatentSpatialMemory(MemoryConfig(feature_dtype=dtype, voxel_size=0.03))
        depth = smooth_depth(n=3)
        depth[2, :8] = torch.inf
        mem.update(fp16_latents(3), depth, orbit(3, 2.0, 20.0), K)
        path = tmp_path / f"mem-{dtype}.safetensors"
        mem.save(path)
        loaded = LatentSpatialMemory.load(path)
        assert loaded.config == mem.config and loaded.next_segment == mem.next_segment and loaded.channels == C
        for name in ("positions", "features", "colors", "segments", "frames", "rejected_labels"):  # exact: file copies
            assert torch.equal(getattr(loaded, name), getattr(mem, name)), name
        assert torch.equal(torch.isnan(loaded.rejected_positions), torch.isnan(mem.rejected_positions))
        targets = orbit(3, 2.0, 25.0)
        assert torch.equal(
            loaded.readout(targets, K, h, w, (H, W)).latent, mem.readout(targets, K, h, w, (H, W)).latent
        )
        assert not list(tmp_path.glob(".*")), "no temporary files left behind"


def _rewrite(src, dst, tensors_fn=None, metadata_fn=None):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(src))
    with safe_open(str(src), framework="pt") as f:
        metadata = dict(f.metadata())
    if tensors_fn:
        tensors_fn(tensors)
    if metadata_fn:
        metadata_fn(metadata)
    save_file(tensors, str(dst), metadata=metadata)


def test_load_rejects_malformed_files(tmp_path, K):
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(1), smooth_depth(n=1), torch.eye(4)[None], K)
    good = tmp_path / "good.safetensors"
    mem.save(good)
    cases = {
        "version": dict(metadata_fn=lambda m: m.update(version="99")),
        "format": dict(metadata_fn=lambda m: m.update(format="something-else")),
        "features": dict(tensors_fn=lambda t: t.update(features=t["features"].float())),
        "positions": dict(tensors_fn=lambda t: t.update(positions=t["positions"][:-1])),
        "missing": dict(tensors_fn=lambda t: t.pop("colors")),
        "NaN": dict(tensors_fn=lambda t: t["positions"].__setitem__((0, 0), torch.nan)),
    }
    for match, kw in cases.items():
        bad = tmp_path / f"bad-{match}.safetensors"
        _rewrite(good, bad, **kw)
        with pytest.raises(ValueError, match=str(bad.name)):
            LatentSpatialMemory.load(bad)
        with pytest.raises(ValueError, match=match):
            LatentSpatialMemory.load(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match="garbage.safetensors"):
        LatentSpatialMemory.load(garbage)
    with pytest.raises(ValueError, match="missing.safetensors"):
        LatentSpatialMemory.load(tmp_path / "missing.safetensors")


def test_load_reads_files_written_before_keep_observation_was_renamed(tmp_path, K):
    mem = LatentSpatialMemory(MemoryConfig(keep_observation="newest"))
    mem.update(fp16_latents(1), smooth_depth(n=1), torch.eye(4)[None], K)
    mem.save(tmp_path / "new.safetensors")

    def old_config(metadata):
        config = json.loads(metadata["config"])
        config["voxel_policy"] = config.pop("keep_observation")
        metadata["config"] = json.dumps(config)

    _rewrite(tmp_path / "new.safetensors", tmp_path / "old.safetensors", metadata_fn=old_config)
    loaded = LatentSpatialMemory.load(tmp_path / "old.safetensors")
    assert loaded.config == mem.config and torch.equal(loaded.features, mem.features)


def test_config_validation():
    with pytest.raises(ValueError, match="keep_observation"):
        MemoryConfig(keep_observation="mean")
    with pytest.raises(ValueError, match="feature_dtype"):
        MemoryConfig(feature_dtype="float32")
    with pytest.raises(ValueError, match="voxel_size"):
        MemoryConfig(voxel_size=0.0)
    with pytest.raises(ValueError, match="dedup"):
        MemoryConfig(dedup="hash")


def test_empty_memory_reads_out_nothing(K):
    mem = LatentSpatialMemory()
    mem.initialize(fp16_latents(1)[0], torch.full((H, W), torch.inf), K, torch.eye(4))
    out = mem.readout(orbit(2, 2.0, 10.0), K, h, w, image_hw=(H, W))
    assert len(mem) == 0 and not out.visible.any() and out.latent.shape == (2, C, h, w) and (out.latent == 0).all()


# ---- footprint splats (crack-free readout) -------------------------------------------------


def step_depth(near: float = 2.0, far: float = 6.0, columns: int = W // 2) -> torch.Tensor:
    """``[1, H, W]``: a foreground at ``near`` metres over the left ``columns`` pixels, a wall at ``far`` behind."""
    depth = torch.full((1, H, W), far)
    depth[:, :, :columns] = near
    return depth


def test_footprints_close_the_cracks_of_forward_motion(K):
    """A wall 4 m ahead read out 1.5 m closer: one cell per point leaves a lattice of holes, footprints none."""
    pose = torch.eye(4)[None]
    closer = forward_dolly(2, 1.5)[1:]
    coverage = {}
    for splat in ("point", "footprint"):
        mem = LatentSpatialMemory(MemoryConfig(splat=splat))
        mem.update(fp16_latents(1), plane_depth(pose, K), pose, K)
        coverage[splat] = float(mem.readout(closer, K, h, w, image_hw=(H, W)).visible.float().mean())
    # the wall fills the whole closer view; 4 m -> 2.5 m magnifies it 1.6x, so single cells fill ~1/1.6^2
    assert coverage["point"] < 0.5
    assert coverage["footprint"] == 1.0


def test_footprint_readout_at_the_writing_camera_is_exact_on_a_slanted_surface(K):
    """Identity with strongly varying footprints: a floor-like plane seen at a grazing angle."""
    pose = look_at([0.0, 0.0, 0.0], [0.0, 1.2, 4.0])  # looking down onto the plane y = 1.5
    from model.geometry.camera import invert_pose, pixel_centers

    c2w = invert_pose(pose.double())
    uv = pixel_centers(H, W, dtype=torch.float64)
    rays = torch.stack([(uv[..., 0] - K[0, 2]) / K[0, 0], (uv[..., 1] - K[1, 2]) / K[1, 1], torch.ones(H, W)], -1)
    dir_y = rays @ c2w[1, :3].double()
    depth = torch.where(dir_y > 1e-3, 1.5 / dir_y, torch.inf).float()
    latent = fp16_latents(1)[0]
    mem = LatentSpatialMemory()
    mem.initialize(latent, depth, K, pose)
    out = mem.readout(pose, K, h, w, image_hw=(H, W))
    seen = torch.isfinite(downsample_depth(depth[None], h, w))[0]
    assert seen.float().mean() > 0.5 and (mem.axes.norm(dim=-1) > 0).all(-1).float().mean() > 0.5
    assert torch.equal(out.visible[0], seen)
    assert torch.equal(out.latent[0].float()[:, seen], latent[:, seen])  # exact: each cell's own point, copied


def test_nearest_footprint_wins_and_far_footprints_never_cover_a_near_surface(K):
    """A near wall's footprints hide the far wall wherever they reach; the far wall's never cover the near one."""
    pose = torch.eye(4)[None]
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(1, seed=1), torch.full((1, H, W), 6.0), pose, K)  # far wall, indices 0..h*w-1
    mem.update(fp16_latents(1, seed=2), torch.full((1, H, W), 2.0), yaw_pan(2, 20.0)[1:], K)  # near wall
    near_rows = torch.arange(len(mem)) >= h * w
    for target in (forward_dolly(2, 1.0)[1:], orbit(2, 3.0, 15.0)[1:]):
        out = mem.readout(target, K, h, w, image_hw=(H, W))
        shows_near = near_rows[out.index.clamp(min=0)] & out.visible
        # every cell where a near point projects must show a near point
        rows = near_rows.nonzero().squeeze(1)
        uv, z = project_points(mem.positions[rows].double(), target.double(), scale_intrinsics(K, (H, W), (h, w)))
        inside = (uv[0, :, 0] >= 0) & (uv[0, :, 0] < w) & (uv[0, :, 1] >= 0) & (uv[0, :, 1] < h) & (z[0] > 0)
        cells = uv[0, inside].floor().long()
        assert shows_near[0, cells[:, 1], cells[:, 0]].all()
        assert (out.depth[0][shows_near[0]] < 3.5).all() and (out.depth[0][~shows_near[0] & out.visible[0]] > 4.0).all()


def test_footprints_stop_at_depth_discontinuities(K):
    """A foreground edge in front of a far wall: the edge's footprint does not bridge the gap an orbit opens."""
    from model.eval.coverage import coverage_stats, surface_cells
    from model.memory.footprint import cell_axes

    # the cap, cell by cell: a foreground at 2 m, one depth sample mixing it with the wall (3 m), the wall at 6 m
    edge = w // 2
    cells = torch.full((1, h, w), 6.0)
    cells[..., :edge] = 2.0
    cells[..., edge] = 3.0  # 1/3 m^-1: on the line between both in inverse depth, yet no surface
    K_grid = scale_intrinsics(K, (H, W), (h, w))
    lifted = unproject_depth(cells.double(), K_grid.double(), torch.eye(4, dtype=torch.float64)[None]).float()
    axes = cell_axes(lifted, cells, torch.eye(4)[None], K_grid)[0, :, :, 0]  # the x half-axes [h, w, 3]
    assert (axes[:, :edge, 2] == 0).all() and (axes[:, edge + 1 :, 2] == 0).all()  # along each plane, edges too
    assert (axes[:, :edge, 0] > 0).all() and (axes[:, edge + 1 :, 0] > 0).all()
    assert (axes[:, edge] == 0).all()  # the mixed sample: no x-extent, one cell wide
    # end to end at full resolution: an orbit opens a gap behind the foreground's edge
    depth = step_depth()
    pose = torch.eye(4)[None]
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(1), depth, pose, K)
    written = torch.isfinite(downsample_depth(depth, h, w))
    for target in (orbit(2, 2.0, 20.0)[1:], orbit(2, 2.0, -20.0)[1:]):
        visible = mem.readout(target, K, h, w, image_hw=(H, W)).visible
        surfaces = surface_cells(depth, K, pose, target, K_grid, h, w, cells=written)
        stats = coverage_stats(visible, surfaces)
        assert stats["ratio"] > 0.97
        assert stats["over"] < 0.5 / w, f"filled {stats['over'] * h * w:.0f} cells where no surface lies"


def test_dedup_follows_the_footprint_readout(K):
    """A view written again adds nothing; a wall revisited 1.5 m closer adds (almost) nothing: the cells the
    footprint readout shows are known. One cell per point would re-admit the holes between its cells."""
    pose = torch.eye(4)[None]
    closer = forward_dolly(2, 1.5)[1:]
    added = {}
    for splat in ("point", "footprint"):
        mem = LatentSpatialMemory(MemoryConfig(splat=splat))
        mem.update(fp16_latents(1), plane_depth(pose, K), pose, K)
        first = len(mem)
        mem.update(fp16_latents(1, seed=3), plane_depth(pose, K), pose, K)
        assert len(mem) == first
        mem.update(fp16_latents(1, seed=4), plane_depth(closer, K), closer, K)
        added[splat] = len(mem) - first
    assert added["footprint"] <= 0.01 * h * w
    assert added["point"] > 0.1 * h * w  # measured 17 %: holes wider than the 1-cell gaps it fills


def test_version_1_files_load_with_one_cell_footprints(tmp_path, K):
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(2), smooth_depth(n=2), orbit(2, 2.0, 20.0), K)
    mem.save(tmp_path / "v2.safetensors")

    def drop_axes(tensors):
        tensors.pop("axes")

    def version_1(metadata):
        config = json.loads(metadata["config"])
        del config["splat"]
        metadata.update(version="1", config=json.dumps(config))

    _rewrite(
        tmp_path / "v2.safetensors",
        tmp_path / "v1.safetensors",
        tensors_fn=drop_axes,
        metadata_fn=version_1,
    )
    old = LatentSpatialMemory.load(tmp_path / "v1.safetensors")
    assert old.config == MemoryConfig() and torch.equal(old.axes, torch.zeros(len(mem), 2, 3))
    point = LatentSpatialMemory.load(tmp_path / "v2.safetensors")
    point.config = MemoryConfig(splat="point")
    targets = forward_dolly(3, 1.0)
    assert torch.equal(old.readout(targets, K, h, w, (H, W)).index, point.readout(targets, K, h, w, (H, W)).index)
    # a version-2 file without its axes is malformed, not old
    _rewrite(tmp_path / "v2.safetensors", tmp_path / "bad.safetensors", tensors_fn=drop_axes)
    with pytest.raises(ValueError, match="bad.safetensors.*missing tensors \\['axes'\\]"):
        LatentSpatialMemory.load(tmp_path / "bad.safetensors")


def test_chunk_culling_gives_the_same_readout_and_skips_what_is_out_of_view(K):
    from model.memory.blocks import PointBlocks

    views = yaw_pan(13, 360.0)[:12]  # a full turn: most of the memory is behind any one camera
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(12), smooth_depth(n=12), views, K)
    K_grid = scale_intrinsics(K, (H, W), (h, w))
    targets = torch.cat([forward_dolly(3, 1.0), orbit(3, 2.0, 40.0)])
    blocks = PointBlocks.build(mem.positions, mem.axes, size=32)  # small blocks for a small memory
    culled = zbuffer_project(mem.positions, targets, K_grid, h, w, blocks=blocks)
    full = zbuffer_project(mem.positions, targets, K_grid, h, w, axes=mem.axes)
    assert torch.equal(culled[0], full[0]) and torch.equal(culled[1], full[1])  # exact: culling only skips work
    assert (culled[0] >= 0).float().mean() > 0.9
    P = K_grid.float() @ targets[0, :3].float()
    kept = blocks.visible(P, h, w, 0.05)
    assert kept is not None and len(kept) * blocks.size < 0.5 * len(mem)
    # the memory's own readout uses the blocks
    assert torch.equal(mem.readout(targets, K_grid, h, w).index, full[0])


def test_skipping_footprints_that_cannot_win_changes_nothing(K, monkeypatch):
    # the readout splats only the footprints may_cover keeps; splatting every footprint of every
    # point in view must give the same z-buffer (a memory written twice from nearby views: many
    # points per cell, as after revisits)
    import model.memory.latent as latent

    views = torch.cat([orbit(3, 2.0, 20.0), forward_dolly(3, 0.5)])
    mem = LatentSpatialMemory(MemoryConfig(dedup="voxel", voxel_size=1e-4))  # keep (nearly) every cell
    mem.update(fp16_latents(6), smooth_depth(n=6), views, K)
    K_grid = scale_intrinsics(K, (H, W), (h, w))
    targets = torch.cat([forward_dolly(3, 1.5), orbit(3, 2.0, -30.0)])
    pruned = zbuffer_project(mem.positions, targets, K_grid, h, w, axes=mem.axes)
    monkeypatch.setattr(latent, "may_cover", lambda best, offset, h, w, cells, keys, ru, rv: torch.arange(len(keys)))
    everything = zbuffer_project(mem.positions, targets, K_grid, h, w, axes=mem.axes)
    assert torch.equal(pruned[0], everything[0]) and torch.equal(pruned[1], everything[1])
    assert (pruned[0] >= 0).float().mean() > 0.5


# ---- cell mapping (where each readout cell lies in its point's patch) ------------------------


def test_cell_mapping_is_the_identity_at_the_writing_camera_and_zero_in_holes(K):
    pose = look_at([0.0, 0.0, 0.0], [0.0, 1.2, 4.0])  # a floor-like plane at a grazing angle: varied footprints
    depth = plane_depth(pose[None], K)[0]
    depth[:, : W // 3] = torch.inf  # no surface in the left third: holes
    mem = LatentSpatialMemory()
    mem.initialize(fp16_latents(1)[0], depth, K, pose)
    assert mem.readout(pose, K, h, w, image_hw=(H, W)).mapping is None  # only computed when asked for
    out = mem.readout(pose, K, h, w, image_hw=(H, W), mapping=True)
    assert 0.3 < out.visible.float().mean() < 0.9
    mapping, seen = out.mapping[0], out.visible[0]
    identity = torch.tensor(IDENTITY_MAPPING)[:, None]
    torch.testing.assert_close(mapping[:, seen], identity.expand(6, int(seen.sum())), atol=1e-4, rtol=0)
    assert torch.equal(mapping[:, ~seen], torch.zeros(6, int((~seen).sum())))


def _translated(x: float) -> torch.Tensor:
    pose = torch.eye(4)
    pose[0, 3] = -x  # the camera moved x metres to the right
    return pose[None]


@pytest.mark.parametrize(
    "target",
    [_translated(0.13), forward_dolly(2, 1.1)[1:], yaw_pan(2, 7.0)[1:], orbit(2, 4.0, 12.0)[1:]],
    ids=["sideways", "closer", "yaw", "orbit"],
)
def test_cell_mapping_finds_where_each_cell_lies_in_its_points_patch(K, target):
    """On a wall 4 m ahead: the winning point's source-grid position + (s, t) is where the target cell's
    centre truly lies in the source grid, and the Jacobian is that map's derivative."""
    source = torch.eye(4)[None]
    mem = LatentSpatialMemory()
    mem.update(fp16_latents(1), plane_depth(source, K), source, K)
    out = mem.readout(target, K, h, w, image_hw=(H, W), mapping=True)
    K_grid = scale_intrinsics(K, (H, W), (h, w)).double()

    def source_grid(col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """Where the wall point seen at target grid position (col, row) lies in the source grid ``[..., 2]``."""
        rays = torch.stack(
            [(col - K_grid[0, 2]) / K_grid[0, 0], (row - K_grid[1, 2]) / K_grid[1, 1], torch.ones_like(col)], -1
        )
        c2w = torch.linalg.inv(target[0].double())
        dirs = rays @ c2w[:3, :3].T
        points = c2w[:3, 3] + dirs * ((4.0 - c2w[2, 3]) / dirs[..., 2])[..., None]
        uv, _ = project_points(points.reshape(-1, 3), source.double(), K_grid)
        return uv[0].reshape(*col.shape, 2)

    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5, indexing="ij"
    )
    seen = out.visible[0]
    assert seen.float().mean() > 0.6
    mapping = out.mapping[0].double()
    winners, _ = project_points(mem.positions[out.index[0][seen]].double(), source.double(), K_grid)
    predicted = winners[0] + mapping[:2, seen].T
    truth = source_grid(cols, rows)[seen]
    assert (predicted - truth).abs().max() < 0.02  # source cells
    step = 1e-3
    d_col = (source_grid(cols + step, rows) - source_grid(cols - step, rows))[seen] / (2 * step)
    d_row = (source_grid(cols, rows + step) - source_grid(cols, rows - step))[seen] / (2 * step)
    jacobian = torch.stack([d_col[:, 0], d_row[:, 0], d_col[:, 1], d_row[:, 1]])  # ds/dcol, ds/drow, dt/dcol, dt/drow
    # first order: the Jacobian is the one at the point, up to a cell from the centre (a few % under perspective)
    assert (mapping[2:, seen] - jacobian).abs().max() < 0.05
