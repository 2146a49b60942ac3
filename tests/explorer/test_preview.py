"""MemoryPreviewRenderer: points land at their projected pixels, holes stay holes, z-buffer, splat size."""

import numpy as np
import pytest
import torch

from explorer.preview import SPLAT_OVERLAP, MemoryPreviewRenderer, cell_footprints, hole_pattern
from model.eval.scenes import ProceduralScene, SceneConfig
from model.geometry.camera import look_at, project_points

W, H = 96, 64


@pytest.fixture(scope="module")
def preview():
    with MemoryPreviewRenderer(cell_angle_rad=1e-4) as renderer:  # 1 px splats for points without a footprint
        yield renderer


@pytest.fixture
def K():
    return torch.tensor([[80.0, 0, 48.0], [0, 80.0, 32.0], [0, 0, 1]], dtype=torch.float64)


def test_points_land_at_projected_pixels(preview, K):
    rng = np.random.default_rng(0)
    w2c = look_at([0.2, -0.1, -0.5], [0.0, 0.0, 3.0])
    # pixels to hit, well apart, at non-centred sub-pixel positions
    uv = np.array([[10.3, 7.8], [50.5, 30.5], [90.9, 60.1], [33.0 + 0.2, 5.7], [70.6, 45.4]])
    z = rng.uniform(1.0, 4.0, len(uv))
    cam = np.stack([(uv[:, 0] - 48.0) / 80.0 * z, (uv[:, 1] - 32.0) / 80.0 * z, z], axis=1)
    c2w = torch.linalg.inv(w2c).numpy()
    world = (cam @ c2w[:3, :3].T + c2w[:3, 3]).astype(np.float32)
    colors = rng.integers(60, 255, (len(uv), 3)).astype(np.uint8)
    proj, _ = project_points(torch.from_numpy(world).double(), w2c[None], K)
    assert np.allclose(proj[0].numpy(), uv, atol=1e-4)
    preview.set_points(world, colors)
    image = preview.render(w2c, K, W, H)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    for (u, v), colour in zip(
        uv, colors, strict=True
    ):  # exact: uint8 colours pass through; every uv is >= 0.1 px from a pixel edge
        assert np.array_equal(image[int(v), int(u)], colour), (u, v)
    assert preview.last_coverage.sum() == len(uv), "1 px splats cover exactly one pixel each"
    holes = ~preview.last_coverage
    assert np.array_equal(image[holes], hole_pattern(H, W)[holes])


def test_empty_memory_renders_all_hole(preview, K):
    preview.set_points(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    image = preview.render(torch.eye(4), K, W, H)
    assert np.array_equal(image, hole_pattern(H, W))
    assert not preview.last_coverage.any() and preview.point_count == 0
    assert len(np.unique(hole_pattern(H, W).reshape(-1, 3), axis=0)) == 2, "a visible checker, not flat black"


def test_nearer_point_occludes_farther_in_either_order(preview, K):
    near = np.array([[0.0, 0.0, 1.0]], np.float32)
    far = np.array([[0.0, 0.0, 3.0]], np.float32)
    red, blue = np.array([[255, 0, 0]], np.uint8), np.array([[0, 0, 255]], np.uint8)
    for positions, colors in (
        (np.concatenate([near, far]), np.concatenate([red, blue])),
        (np.concatenate([far, near]), np.concatenate([blue, red])),
    ):
        preview.set_points(
            positions,
            colors,
            footprint_m=np.array([0.02, 0.5], np.float32)
            if positions[0, 2] == 1.0
            else np.array([0.5, 0.02], np.float32),
        )
        image = preview.render(torch.eye(4), K, W, H)
        assert np.array_equal(image[32, 48], [255, 0, 0]), "the near point wins the centre pixel"
        assert (image == [0, 0, 255]).all(axis=2).any(), "the far point's big splat shows around it"


def test_splat_size_follows_the_cell_footprint(preview, K):
    preview.set_points(np.array([[0.0, 0.0, 2.0]], np.float32), np.array([[200, 200, 200]], np.uint8), footprint_m=0.1)
    preview.render(torch.eye(4), K, W, H)
    side = 80.0 * 0.1 / 2.0 * SPLAT_OVERLAP  # 5 px cell footprint, drawn 1.25x
    assert abs(np.sqrt(preview.last_coverage.sum()) - side) <= 1.0
    rows, cols = np.nonzero(preview.last_coverage)
    assert abs(rows.mean() + 0.5 - 32.0) <= 0.5 and abs(cols.mean() + 0.5 - 48.0) <= 0.5, "centred on the projection"


def test_points_behind_the_camera_and_outside_are_culled(preview, K):
    preview.set_points(
        np.array([[0.0, 0.0, -2.0], [50.0, 0.0, 1.0], [0.0, 0.0, 2.0]], np.float32), np.full((3, 3), 255, np.uint8)
    )
    preview.render(torch.eye(4), K, W, H)
    assert preview.last_drawn == 1 and preview.last_coverage.sum() == 1


def test_level_of_detail_caps_the_points_drawn(K):
    grid = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 20), np.linspace(-0.3, 0.3, 10)), -1).reshape(-1, 2)
    positions = np.concatenate([grid, np.full((len(grid), 1), 2.0)], axis=1).astype(np.float32)
    with MemoryPreviewRenderer(cell_angle_rad=1e-4, max_draw_points=50) as capped:
        capped.set_points(positions, np.full((len(positions), 3), 255, np.uint8), footprint_m=0.02)
        capped.render(torch.eye(4), K, W, H)
        assert capped.last_drawn == 50


def test_several_gl_contexts_in_one_process(renderer, K):
    scene = ProceduralScene(SceneConfig(seed=1, num_objects=2))
    with MemoryPreviewRenderer() as a, MemoryPreviewRenderer() as b:
        a.set_points(np.array([[0.0, 0.0, 2.0]], np.float32), np.array([[255, 0, 0]], np.uint8), 0.05)
        b.set_points(np.array([[0.0, 0.0, 2.0]], np.float32), np.array([[0, 255, 0]], np.uint8), 0.05)
        rgb1, _ = renderer.render(scene, np.eye(4), K, W, H)
        ia = a.render(torch.eye(4), K, W, H)
        ib = b.render(torch.eye(4), K, W, H)
        rgb2, _ = renderer.render(scene, np.eye(4), K, W, H)
    assert np.array_equal(ia[32, 48], [255, 0, 0]) and np.array_equal(ib[32, 48], [0, 255, 0])
    assert np.array_equal(rgb1, rgb2)  # exact: the same render in the same process


def test_cell_footprints_from_the_writing_camera():
    positions = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 4.0], [1.0, 0.0, 1.0]])
    frames = np.array([0, 0, 7])
    out = cell_footprints(positions, frames, {0: np.eye(4)}, focal_px=100.0, stride_px=16)
    assert np.allclose(out, [0.32, 0.64, 0.0])


def test_bad_inputs(preview, K):
    with pytest.raises(ValueError, match="colors"):
        preview.set_points(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        preview.set_points(np.full((1, 3), np.nan, np.float32), np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="w2c"):
        preview.render(torch.zeros(4, 4), K, W, H)
    closed = MemoryPreviewRenderer()
    closed.close()
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        closed.render(torch.eye(4), K, W, H)


def test_the_preview_shows_what_the_readout_fills(K):
    """A latent memory seen from a camera that moved toward a wall and turned: the preview's drawn
    pixels lie in the cells its readout fills, every filled cell is drawn, and the readout grid is the
    memory's own readout."""
    from model.geometry.trajectories import forward_dolly, yaw_pan
    from model.memory.latent import LatentSpatialMemory

    stride = 8  # 12x8 cells on the 96x64 preview
    memory = LatentSpatialMemory()
    depth = torch.full((H, W), 4.0)
    depth[:, : W // 3] = torch.inf  # a hole in the memory: nothing known on the left
    memory.initialize(torch.randn(4, H // stride, W // stride), depth, K, torch.eye(4))
    target = forward_dolly(2, 1.0, yaw_pan(2, -15.0)[1])[1]  # closer, turned towards the unknown left
    cells = memory.readout(target, K, H // stride, W // stride, image_hw=(H, W)).visible[0].numpy()
    assert 0.2 < cells.mean() < 0.9
    with MemoryPreviewRenderer(cell_angle_rad=stride / float(K[0, 0])) as preview:
        colors = np.random.default_rng(0).integers(60, 255, (len(memory), 3)).astype(np.uint8)
        preview.set_points(memory.positions, colors, 0.0, memory.axes)
        image = preview.render(target, K, W, H)
        assert np.array_equal(preview.last_readout, cells)
        per_cell = preview.last_coverage.reshape(H // stride, stride, W // stride, stride).mean((1, 3))
        assert (per_cell[~cells] == 0).all(), "nothing drawn where the model is given no memory"
        assert (per_cell[cells] == 1).all(), "every cell the model is given is shown, whole"
        assert np.array_equal(image[~preview.last_coverage], hole_pattern(H, W)[~preview.last_coverage])
        # without axes (the RGB memory) the preview draws every splat, as before
        preview.set_points(memory.positions, colors, 0.0)
        preview.render(target, K, W, H)
        assert preview.last_readout is None
