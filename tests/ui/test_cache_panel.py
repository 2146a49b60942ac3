"""The latent-cache panel: display maths, colour modes, label toggles, stats, GL drawing and picking."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from explorer.worker import snapshot_memory
from model.memory.latent import CellLabel
from ui import cloud_math
from ui.cache_panel import PICK_RING, CachePanel

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


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


def test_per_label_counts_and_legend_match_the_memory(qtbot, cache):
    labels = np.array([1] * 30 + [2] * 25 + [3] * 40, np.uint8)
    positions = np.full((len(labels), 3), np.nan, np.float32)
    positions[:50] = cache.positions[:50] + 0.01
    segments = cache.segments.copy()
    segments[: len(segments) // 2] = 3  # as if half the points came from segment 3
    data = dataclasses.replace(cache, rejected_positions=positions, rejected_labels=labels, segments=segments)
    panel = CachePanel(use_gl=False)
    qtbot.addWidget(panel)
    panel.set_data(data)
    counts = panel.label_counts()
    assert counts[CellLabel.STATIC] == (len(cache.positions), 0)
    assert (
        counts[CellLabel.DYNAMIC] == (30, 0)
        and counts[CellLabel.SKY] == (25, 5)
        and counts[CellLabel.INVALID] == (40, 40)
    )
    text = panel.counts_label.text()
    assert f"static {len(cache.positions):,}" in text and "invalid 40 (40 without position)" in text

    panel.set_color_mode("labels")
    legend = panel.legend_label.text()
    for label in CellLabel:
        r, g, b, _ = (int(round(c * 255)) for c in cloud_math.LABEL_COLORS[label])
        assert f'rgb({r}, {g}, {b})">■</span> {label.name.lower()}' in legend
    panel.set_color_mode("provenance")
    entries = cloud_math.legend_entries("provenance", segments)
    assert [text for text, _ in entries] == ["segment 0 (the photo)", "segment 1", "segment 3"]
    drawn = panel.drawn_colors[: len(segments)]
    for text, rgba in entries:  # each swatch is the colour the points of that segment are drawn in
        number = int(text.split()[1])
        if (segments == number).any():
            np.testing.assert_allclose(drawn[np.flatnonzero(segments == number)[0]], rgba, atol=1e-6)
    assert "segment 3" in panel.legend_label.text()
    panel.set_color_mode("pca")
    assert "principal component" in panel.legend_label.text()


def test_orbit_through_puts_the_eye_at_the_camera_looking_along_its_axis(sample_view):
    params = cloud_math.orbit_through(sample_view.w2c, sample_view.K, sample_view.width, distance=2.0)
    c2w = np.linalg.inv(sample_view.w2c)
    elevation, azimuth = np.radians(params["elevation"]), np.radians(params["azimuth"])
    offset = 2.0 * np.array(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
    )
    eye = params["center"] + offset  # pyqtgraph's cameraPosition in Euler mode
    np.testing.assert_allclose(eye, cloud_math.to_display(c2w[:3, 3])[0], atol=1e-5)
    forward = -offset / 2.0
    np.testing.assert_allclose(forward, cloud_math.to_display(c2w[:3, 2])[0], atol=1e-5)
    expected_fov = np.degrees(2 * np.arctan(sample_view.width / (2 * sample_view.K[0, 0])))
    assert params["fov"] == pytest.approx(expected_fov)


def test_gl_view_buttons_highlight_point_size_and_the_view_kept_per_scene(qtbot, cache, sample_view, needs_gl):
    panel = CachePanel()
    qtbot.addWidget(panel)
    panel.resize(420, 460)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_scene("scene A")
    panel.set_data(cache)
    panel.set_cameras(sample_view.w2c[None], sample_view.w2c, sample_view.K, sample_view.width, sample_view.height)
    panel.show_scene_view()
    default = panel.view_params()
    assert default["elevation"] == 25.0 and default["azimuth"] == -90.0

    assert panel.look_through_camera()
    eye = np.array(list(panel.view.cameraPosition()))
    np.testing.assert_allclose(eye, cloud_math.to_display(np.linalg.inv(sample_view.w2c)[:3, 3])[0], atol=1e-4)
    panel.view.setCameraPosition(elevation=70.0, azimuth=10.0)  # the user orbits
    panel.fit_button.click()
    assert panel.view_params()["elevation"] == 70.0, "Fit keeps the direction"
    tilted = panel.view_params()
    panel.set_scene("scene B")
    panel.show_scene_view()
    assert panel.view_params()["elevation"] == 25.0, "a new scene starts at the default view"
    panel.set_scene("scene A")
    panel.show_scene_view()
    assert panel.view_params() == tilted, "scene A's view comes back"
    panel.reset_button.click()
    assert panel.view_params()["elevation"] == 25.0 and panel.view_params()["azimuth"] == -90.0

    panel.size_slider.setValue(9)
    assert panel.point_size == 9.0 and panel._points_item.size == 9.0
    panel.size_slider.setValue(0)
    n = len(panel.drawn_points)
    assert panel.point_size == (2.0 if n > 100_000 else 3.0 if n > 10_000 else 5.0), "0: sized by point count"

    def grab():
        image = panel.view.grabFramebuffer().convertToFormat(panel.view.grabFramebuffer().Format.Format_RGB888)
        rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
        return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).astype(int)

    before = grab()
    viewport = panel.view.getViewport()
    mvp = np.array((panel.view.projectionMatrix(viewport, viewport) * panel.view.viewMatrix()).data()).reshape(4, 4).T
    xy, _, inside = cloud_math.project_to_screen(panel.drawn_points, mvp, viewport[2], viewport[3])
    target = int(np.flatnonzero(inside)[len(np.flatnonzero(inside)) // 2])
    ratio = panel.view.devicePixelRatioF()
    info = panel.pick(xy[target, 0] / ratio, xy[target, 1] / ratio)
    assert info is not None and panel.picked_index is not None and panel._picked_item.visible()
    after = grab()
    x, y = (int(round(v)) for v in xy[panel.picked_index])
    patch = (slice(max(y - 6, 0), y + 7), slice(max(x - 6, 0), x + 7))
    assert np.abs(after[patch] - before[patch]).mean() > 20, "the picked point is marked"
    ring = PICK_RING[1][1]
    ring_rgb = np.array(ring[:3]) * 255

    def ring_pixels(image):  # within 20 of the ring's magenta, in a 41 x 41 patch around the point
        box = image[max(y - 20, 0) : y + 21, max(x - 20, 0) : x + 21]
        return (np.abs(box - ring_rgb).max(axis=-1) <= 20).sum()

    assert ring_pixels(before) <= 3, "the cloud itself is not drawn in the ring's colour here"
    assert ring_pixels(after) >= 40 * ratio**2, "a magenta ring around the picked point"
    centre = after[y - 1 : y + 2, x - 1 : x + 2]
    assert (centre > 240).all(axis=-1).sum() >= 4, "with the point as a white dot in its middle"
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    between = [after[int(round(y + 4.5 * ratio * np.sin(a))), int(round(x + 4.5 * ratio * np.cos(a)))] for a in angles]
    assert sum(int(p.max()) < 60 for p in between) >= 6, "a black edge between the dot and the ring"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    panel.view.grabFramebuffer().save(str(ARTIFACTS / "cache_panel_picked.png"))


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
