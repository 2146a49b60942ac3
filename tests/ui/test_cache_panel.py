"""The latent-cache panel: display maths, colour modes, label toggles, stats, GL drawing and picking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from explorer.worker import snapshot_memory
from model.memory.latent import CellLabel
from ui import cloud_math
from ui.cache_panel import CachePanel


def test_display_transform_is_a_rotation_to_z_up():
    points = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.0]], np.float32)  # (0,-1,0) is "up" in OpenCV axes
    shown = cloud_math.to_display(points)
    assert shown.tolist() == [[1.0, 3.0, -2.0], [0.0, 0.0, 1.0]]
    basis = cloud_math.to_display(np.eye(3))
    assert np.isclose(np.linalg.det(basis), 1.0), "a proper rotation, not a mirror"


def test_decimation_is_deterministic_and_bounded():
    index = cloud_math.decimate_index(1_000_001, 300_000)
    assert len(index) <= 300_000 and index[0] == 0
    assert np.array_equal(index, cloud_math.decimate_index(1_000_001, 300_000))
    assert np.array_equal(cloud_math.decimate_index(5, 300_000), np.arange(5))


def test_pca_colours_are_normalised_stable_and_separate_different_features():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (500, 48)) + 3.0 * np.eye(48)[0]
    b = rng.normal(0, 0.1, (500, 48)) - 3.0 * np.eye(48)[0]
    features = np.concatenate([a, b]).astype(np.float16)
    colors = cloud_math.pca_colors(features)
    assert colors.shape == (1000, 4) and colors.min() >= 0 and colors.max() <= 1
    assert np.array_equal(colors, cloud_math.pca_colors(features))
    gap = np.abs(colors[:500, :3].mean(0) - colors[500:, :3].mean(0)).max()
    assert gap > 0.8, "the two feature clusters must get clearly different colours"


def test_frustum_lines_start_at_the_camera_centre():
    w2c = np.eye(4)
    w2c[:3, 3] = [0.0, 0.0, -2.0]  # camera centre at z = +2 in the world
    K = np.array([[100.0, 0, 64], [0, 100.0, 32], [0, 0, 1]])
    lines = cloud_math.frustum_lines(w2c[None], K, 128, 64, 0.5)
    assert lines.shape == (16, 3)
    assert np.allclose(lines[0], cloud_math.to_display(np.array([[0.0, 0.0, 2.0]]))[0])
    assert np.allclose(lines[1, 1], 2.5), "image plane 0.5 m in front (display y = OpenCV z)"


def test_pick_nearest_prefers_the_closest_in_screen_then_the_front_one():
    xy = np.array([[10.0, 10.0], [50.0, 50.0], [50.0, 50.0]])
    depth = np.array([0.1, 0.9, 0.5])
    inside = np.array([True, True, True])
    assert cloud_math.pick_nearest(xy, depth, inside, (49.0, 51.0), 8.0) == 2
    assert cloud_math.pick_nearest(xy, depth, inside, (200.0, 200.0), 8.0) is None
    assert cloud_math.pick_nearest(xy, depth, np.array([True, False, False]), (49.0, 51.0), 100.0) == 0


@pytest.fixture
def cache(sample_memory):
    return snapshot_memory(sample_memory, "requested", 0, {}, None, 4)


def test_panel_modes_toggles_stats_and_decimation_without_gl(qtbot, cache):
    panel = CachePanel(use_gl=False, max_points=10_000)
    qtbot.addWidget(panel)
    panel.set_data(cache)
    n = len(cache.positions)
    assert len(panel.drawn_points) == len(cloud_math.decimate_index(n, 10_000)) + 50
    assert f"{n:,} points" in panel.stats_label.text() and "MiB" in panel.stats_label.text()
    rgb = panel.drawn_colors.copy()
    for mode in ("pca", "labels", "provenance"):
        panel.set_color_mode(mode)
        assert panel.drawn_colors.shape == rgb.shape and not np.array_equal(panel.drawn_colors, rgb), mode
    panel.set_color_mode("labels")
    static = np.array(cloud_math.LABEL_COLORS[CellLabel.STATIC], np.float32)
    assert np.all(panel.drawn_colors[:-50] == static)
    panel.set_label_visible(CellLabel.STATIC, False)
    assert len(panel.drawn_points) == 50
    panel.set_label_visible(CellLabel.DYNAMIC, False)
    assert len(panel.drawn_points) == 20, "only the sky cells are left"
    with pytest.raises(ValueError, match="colour mode"):
        panel.set_color_mode("depth")


def test_gl_panel_draws_the_cloud_and_picks_the_clicked_point(qtbot, cache, sample_view, needs_gl):
    panel = CachePanel()
    qtbot.addWidget(panel)
    panel.resize(420, 460)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_data(cache)
    panel.set_cameras(sample_view.w2c[None], sample_view.w2c, sample_view.K, sample_view.width, sample_view.height)
    panel.frame_cloud()
    qtbot.wait(150)  # the coalesced frustum redraw
    image = panel.view.grabFramebuffer()
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[
        :, : image.width() * 4
    ]
    assert pixels.std() > 10, "the GL view must show the point cloud, not a flat background"

    # click the projected position of a known memory point: the panel must report that point
    viewport = panel.view.getViewport()
    mvp = np.array((panel.view.projectionMatrix(viewport, viewport) * panel.view.viewMatrix()).data()).reshape(4, 4).T
    xy, depth, inside = cloud_math.project_to_screen(panel.drawn_points, mvp, viewport[2], viewport[3])
    target = int(np.flatnonzero(inside)[len(np.flatnonzero(inside)) // 2])
    ratio = panel.view.devicePixelRatioF()
    with qtbot.waitSignal(panel.point_picked) as picked:
        pos = QPoint(round(xy[target, 0] / ratio), round(xy[target, 1] / ratio))
        qtbot.mouseClick(panel.view, Qt.MouseButton.LeftButton, pos=pos)
    info = picked.args[0]
    assert info["kind"] == "memory"
    picked_xy, _, _ = cloud_math.project_to_screen(
        cloud_math.to_display(cache.positions[info["index"]]), mvp, viewport[2], viewport[3]
    )
    assert np.hypot(*(picked_xy[0] - xy[target])) <= panel.pick_radius_px * ratio + 1, (
        "the reported point lies under the click"
    )
    assert info["segment"] == 0 and info["depth_m"] > 0
    assert "segment 0" in panel.pick_label.text()


def test_labels_mode_counts_rejected_cells_per_label_and_draws_those_with_a_position(qtbot, cache):
    # 30 dynamic and 20 sky cells with a position; 5 more sky cells and 40 invalid ones without (no depth)
    labels = np.array([1] * 30 + [2] * 25 + [3] * 40, np.uint8)
    positions = np.full((len(labels), 3), np.nan, np.float32)
    positions[:50] = cache.positions[:50] + 0.01
    data = dataclasses.replace(cache, rejected_positions=positions, rejected_labels=labels)
    panel = CachePanel(use_gl=False)
    qtbot.addWidget(panel)
    panel.set_data(data)
    panel.set_color_mode("labels")
    text = panel.rejected_label.text()
    assert (
        "95 cells rejected by the last write" in text
        and "dynamic 30" in text
        and "sky 25" in text
        and "invalid 40" in text
    )
    assert "45 have no position" in text
    assert "drawing" not in panel.stats_label.text(), (
        "nothing is decimated: cells without a position are not 'left out'"
    )
    panel.set_label_visible(CellLabel.STATIC, False)
    assert len(panel.drawn_points) == 50, "every rejected cell that has a position is drawn"
    expected = cloud_math.label_colors(labels[:50])
    assert np.array_equal(panel.drawn_colors, expected), "in its label's colour"
    panel.set_label_visible(CellLabel.DYNAMIC, False)
    panel.set_label_visible(CellLabel.SKY, False)
    assert len(panel.drawn_points) == 0 and "invalid 40" in panel.rejected_label.text()


def test_cells_the_depth_alignment_rejected_are_counted_and_drawn_in_their_own_colours(qtbot, cache):
    labels = np.array([CellLabel.DISAGREE] * 7 + [CellLabel.UNANCHORED] * 12, np.uint8)
    data = dataclasses.replace(cache, rejected_positions=cache.positions[: len(labels)] + 0.01, rejected_labels=labels)
    panel = CachePanel(use_gl=False)
    qtbot.addWidget(panel)
    panel.set_data(data)
    panel.set_color_mode("labels")
    assert "disagree 7" in panel.rejected_label.text() and "unanchored 12" in panel.rejected_label.text()
    panel.set_label_visible(CellLabel.STATIC, False)
    assert np.array_equal(panel.drawn_colors, cloud_math.label_colors(labels)), "in their labels' colours"
    assert len({tuple(cloud_math.LABEL_COLORS[label]) for label in CellLabel}) == len(CellLabel), "colours differ"
