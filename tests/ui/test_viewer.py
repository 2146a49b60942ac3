"""The viewer's features on a fake controller (no model): on-canvas HUD, help overlay, exports, recent
files and drag-and-drop, tooltips and shortcuts, the window title. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QFileDialog,
    QLineEdit,
    QMessageBox,
    QSlider,
)

from explorer.worker.messages import snapshot_memory
from model.io.ply import read_ply_points
from model.io.video import read_mp4_frames
from ui.hud_overlay import MAX_SPEED_MPS, wheel_speed
from ui.image_dialog import ImageFileDialog
from ui.settings import help_at_start

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def pixels(image: QImage) -> np.ndarray:
    """``[H, W, 3]`` uint8 of a QImage."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def grab(widget) -> np.ndarray:
    return pixels(widget.grab().toImage())


def save_artifact(widget, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(ARTIFACTS / name))


def wheel(qtbot, widget, notches: int) -> None:
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(
        centre,
        widget.mapToGlobal(centre),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


# ---- HUD ----------------------------------------------------------------------------------


def test_wheel_speed_scales_per_notch_and_is_clamped():
    assert wheel_speed(1.0, 1) == pytest.approx(1.25) and wheel_speed(1.0, -2) == pytest.approx(0.64)
    assert wheel_speed(19.0, 5) == MAX_SPEED_MPS and wheel_speed(1.0, float("nan")) == 1.0


def test_hud_shows_mode_speed_progress_depth_warnings_and_paused_on_the_canvas(qtbot, fake_window, fake_controller):
    w = fake_window
    fake_controller.open(w, fake_controller.scene(prior_depth=True))
    view, overlay = w.viewport.view, w.hud_overlay
    w.viewport.view.setFocus()
    speed = w.camera.speed_mps
    wheel(qtbot, view, 2)
    assert w.camera.speed_mps == pytest.approx(speed * 1.25**2), "the wheel over the view changes the fly speed"
    fake_controller.step_progress.emit(0, 1, 4)
    w.pending = 3
    w._refresh_hud()
    text = "\n".join(t for _, t in overlay.state.lines())
    assert f"speed {w.camera.speed_mps:.2f} m/s" in text and "flight mode" in text
    assert "segment 1 · step 1/4 · 2 queued" in text and "depth: prior" in text
    assert "geometry is approximate" in text, "the viewport's warning is on the canvas too"
    with_hud = grab(view)
    save_artifact(view, "hud.png")
    overlay.set_visible(False)
    without = grab(view)
    overlay.set_visible(True)
    h = view.height()
    lower_left = (slice(h // 2, h), slice(0, view.width() // 2))
    assert np.abs(with_hud[lower_left].astype(int) - without[lower_left]).mean() > 5, "the HUD is painted"

    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert w.router.paused and overlay.state.paused
    paused = grab(view)
    centre = (slice(h // 2 - 20, h // 2 + 20), slice(view.width() // 2 - 60, view.width() // 2 + 60))
    assert np.abs(paused[centre].astype(int) - with_hud[centre]).mean() > 10, "PAUSED sits in the middle"
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert not overlay.state.paused

    result = fake_controller.finish_segment(0, w.flight.anchor_w2c)
    result.depth_source, result.depth_residual = "depth_anything:/models/da2-metric", 0.021
    w._on_segment(result)
    assert "depth: depth_anything (da2-metric) · fit ±2.1 %" in "\n".join(t for _, t in overlay.state.lines()), (
        "each segment's depth source and fit, as in the status bar"
    )


def test_c_toggles_captured_mouse_look_and_remembers_it(qtbot, fake_window, fake_controller, settings):
    fake_controller.open(fake_window, fake_controller.scene())
    fake_window.viewport.view.setFocus()
    assert not fake_window.router.capture_mouse
    qtbot.keyClick(fake_window.viewport.view, Qt.Key.Key_C)
    assert fake_window.router.capture_mouse and fake_window.hud_overlay.state.captured
    assert str(settings.value("capture_mouse")).lower() == "true"
    qtbot.keyClick(fake_window.viewport.view, Qt.Key.Key_C)
    assert not fake_window.router.capture_mouse


# ---- help ---------------------------------------------------------------------------------


def test_help_overlay_opens_at_first_start_toggles_with_f1_and_lists_the_live_keys(
    qtbot, new_fake_window, fake_controller, settings
):
    from dataclasses import replace

    w = new_fake_window(fake_controller)
    w.resize(1400, 800)
    w.start()
    assert w.help.isVisible(), "first start: the help is up"
    fake_controller.backbone_ready.emit("fake")
    fake_controller.scene_ready.emit(fake_controller.scene())
    w.show_controls_help()  # close
    assert not w.help.isVisible()
    view = w.viewport.view
    view.setFocus()
    without = grab(view)
    w.settings = replace(w.settings, bindings=replace(w.settings.bindings, forward="Z"))
    qtbot.keyClick(view, Qt.Key.Key_F1)
    assert w.help.isVisible()
    text = w.help.text.text()
    assert "<b>Z</b>" in text and "fly forward" in text, "keys come from the live bindings"
    assert "Ctrl+S" in text and "Save video" in text, "and from the window's shortcuts"
    with_help = grab(view)
    save_artifact(view, "help_overlay.png")
    assert np.abs(with_help.astype(int) - without).mean() > 10, "the overlay covers the view"
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert not w.help.isVisible() and not w.router.paused, "Esc closes the help (and does not pause)"

    w.help.hide_at_start.setChecked(True)
    assert not help_at_start(settings)
    second = new_fake_window(fake_controller)
    second.start()
    assert not second.help.isVisible() and second.help.hide_at_start.isChecked()


# ---- exports ------------------------------------------------------------------------------


def test_exports_write_video_frame_cloud_and_ask_the_worker_for_the_memory(
    qtbot, fake_window, fake_controller, sample_memory, tmp_path, monkeypatch
):
    w = fake_window
    fake_controller.open(w, fake_controller.scene())
    fake_controller.finish_segment(0, w.flight.anchor_w2c)
    fake_controller.finish_segment(1, w.trajectory[-1])
    assert w.viewport.frame_count == 65
    assert w.exports.save_video_to(str(tmp_path / "all.mp4")) == 65
    assert len(read_mp4_frames(tmp_path / "all.mp4")) == 65
    # the timeline selection: the range dialog proposes frame 1 to the scrubbed frame
    w.viewport.scrub(9)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "part.mp4"), ""))
    monkeypatch.setattr("ui.exports.VideoRangeDialog.exec", lambda self: (self.first.setValue(3), True)[1])
    w.exports.save_video()
    assert len(read_mp4_frames(tmp_path / "part.mp4")) == 8, "frames 3..10"

    assert w.exports.save_frame_to(str(tmp_path / "frame.png"))
    from PIL import Image

    saved = np.asarray(Image.open(tmp_path / "frame.png"))
    np.testing.assert_array_equal(saved, w.viewport.frames[9])

    snapshot = snapshot_memory(sample_memory, "requested", 0, {}, None, 4)
    fake_controller.memory_changed.emit(snapshot)
    assert w.exports.export_cloud_to(str(tmp_path / "cloud.ply")) == len(sample_memory)
    cloud = read_ply_points(tmp_path / "cloud.ply")
    assert len(cloud) == len(sample_memory)
    np.testing.assert_array_equal(np.stack([cloud["red"], cloud["green"], cloud["blue"]], 1), snapshot.colors)
    w.cache_panel.set_color_mode("rgb")  # the PLY colours are the colours the cache panel shows
    shown = (w.cache_panel.drawn_colors[: len(cloud), :3] * 255).round()
    np.testing.assert_array_equal(shown, np.stack([cloud["red"], cloud["green"], cloud["blue"]], 1).astype(float))

    assert w.exports.save_memory_to(str(tmp_path / "memory.safetensors"))
    assert fake_controller.calls("save_memory") == [(str(tmp_path / "memory.safetensors"),)]


def test_a_timeline_selection_is_drawn_and_is_what_save_video_writes(
    qtbot, fake_window, fake_controller, tmp_path, monkeypatch
):
    w = fake_window
    fake_controller.open(w, fake_controller.scene())
    fake_controller.finish_segment(0, w.flight.anchor_w2c)
    fake_controller.finish_segment(1, w.trajectory[-1])
    slider, y = w.viewport.slider, w.viewport.slider.height() // 2
    w.viewport.scrub(10)
    plain = grab(slider)
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, QPoint(slider.x_of(40), y))
    assert w.viewport.selection == (10, 40), "Shift+click: from the frame on screen to the clicked one"
    assert w.viewport.shown_index == 10, "selecting does not scrub"
    banded = grab(slider)
    changed = np.abs(banded.astype(int) - plain.astype(int)).sum(2) > 30
    columns = np.flatnonzero(changed.any(0))
    assert columns.size and columns.min() < slider.x_of(20) and columns.max() > slider.x_of(35), "a band is drawn"
    assert not changed[:, slider.x_of(55) :].any(), "only over the selection"
    save_artifact(slider, "timeline_selection.png")

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "selected.mp4"), ""))

    def no_dialog(self):
        raise AssertionError("the range dialog is not asked with a selection")

    monkeypatch.setattr("ui.exports.VideoRangeDialog.exec", no_dialog)
    w.exports.save_video()
    assert len(read_mp4_frames(tmp_path / "selected.mp4")) == 31, "frames 11..41"

    qtbot.mousePress(slider, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, QPoint(slider.x_of(60), y))
    qtbot.mouseMove(slider, QPoint(slider.x_of(50), y))
    qtbot.mouseRelease(slider, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, QPoint(slider.x_of(50), y))
    assert w.viewport.selection == (50, 60), "Shift+drag: from where it started to where it ends"
    w.viewport.truncate(55)  # a rewind removes frames: the selection is clipped to what is left
    assert w.viewport.selection == (50, 54)
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, pos=QPoint(slider.x_of(5), y))
    assert w.viewport.selection is None, "a plain click clears it"


def test_exports_before_anything_exists_say_so_and_write_nothing(qtbot, fake_window, tmp_path, monkeypatch):
    told = []
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text, *a: told.append(title))
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: pytest.fail(f"{title}: {text}"))
    assert fake_window.exports.save_video_to(str(tmp_path / "v.mp4")) is None
    assert not fake_window.exports.save_frame_to(str(tmp_path / "f.png"))
    assert fake_window.exports.export_cloud_to(str(tmp_path / "c.ply")) is None
    assert told == ["Save video", "Save frame", "Export point cloud"]
    assert list(tmp_path.iterdir()) == []


# ---- files --------------------------------------------------------------------------------


def test_recent_photos_and_sessions_fill_the_menu_and_the_empty_state(qtbot, fake_window, fake_controller, tmp_path):
    w = fake_window
    photo = tmp_path / "room.png"
    QImage(64, 32, QImage.Format.Format_RGB888).save(str(photo))
    session = tmp_path / "kitchen"
    session.mkdir()
    (session / "session.json").write_text("{}")
    assert w.empty_state.buttons == [] and w.empty_state.isVisible()
    fake_controller.open(w, fake_controller.scene(source=str(photo)))
    fake_controller.scene_ready.emit(fake_controller.scene(source=f"session:{session}"))
    assert not w.empty_state.isVisible(), "a scene is open"
    assert w.recent.items("photo") == [str(photo.resolve())] and w.recent.items("session") == [str(session.resolve())]
    from ui.recent_files import fill_recent_menu

    file_menu = w.menuBar().actions()[0].menu()
    menu = next(a.menu() for a in file_menu.actions() if a.menu() is not None and "recent" in a.text())
    fill_recent_menu(menu, w.recent, w.open_image, w.open_session)
    texts = [a.text() for a in menu.actions()]
    assert "&1 room.png" in texts and "&1 kitchen" in texts
    w._reset_scene()
    w.empty_state.show()
    assert [b.text().split()[-1] for b in w.empty_state.buttons] == ["room.png", "kitchen"]
    w.empty_state.buttons[0].click()
    assert fake_controller.calls("open_image")[-1] == (str(photo.resolve()),)


def test_dropping_a_session_folder_continues_it_and_a_photo_opens_it(qtbot, fake_window, fake_controller, tmp_path):
    from explorer.session import SESSION_JSON

    w = fake_window
    opened = []
    w.open_session = lambda folder: opened.append(("session", folder))
    w.open_image = lambda path: opened.append(("image", path))
    for path in (tmp_path, tmp_path / SESSION_JSON, tmp_path / "photo.jpg"):
        data = QMimeData()
        data.setUrls([QUrl.fromLocalFile(str(path))])
        event = QDropEvent(
            QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        )
        w.dropEvent(event)
    assert opened == [("session", str(tmp_path)), ("session", str(tmp_path)), ("image", str(tmp_path / "photo.jpg"))]


def test_open_image_dialog_previews_the_highlighted_photo(qtbot, tmp_path):
    photo = tmp_path / "wide.png"
    image = QImage(400, 200, QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.red)
    image.save(str(photo))
    dialog = ImageFileDialog(None, str(tmp_path))
    qtbot.addWidget(dialog)
    dialog.show_preview(str(photo))
    preview = dialog.preview.pixmap()
    assert not preview.isNull() and preview.width() == 240 and preview.height() == 120
    assert "400 × 200" in dialog.preview.toolTip()
    dialog.show_preview(str(tmp_path))
    assert dialog.preview.pixmap().isNull() and dialog.preview.text() == "no preview"


def test_the_last_export_folder_is_remembered(qtbot, fake_window, fake_controller, tmp_path, monkeypatch):
    fake_controller.open(fake_window, fake_controller.scene())
    asked = []

    def answer(parent, title, suggested, *a, **k):
        asked.append(suggested)
        return str(tmp_path / "out" / "f.png"), ""

    (tmp_path / "out").mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer)
    fake_window.exports.save_frame()
    fake_window.exports.save_frame()
    assert Path(asked[1]).parent == tmp_path / "out" and (tmp_path / "out" / "f.png").is_file()


# ---- tooltips, shortcuts, title ------------------------------------------------------------


def test_every_control_has_a_tooltip_and_every_action_a_shortcut(fake_window):
    controls = [
        widget
        for kind in (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QSlider)
        for widget in fake_window.findChildren(kind)
        if widget.isVisibleTo(fake_window) and widget.window() is fake_window and not widget.inherits("QTabBar")
    ]
    assert len(controls) > 15
    missing = [
        f"{type(c).__name__} {c.objectName() or getattr(c, 'text', lambda: '')()!r}"
        for c in controls
        if not c.toolTip() and c.objectName() != "qt_spinbox_lineedit"  # a spin box's own text field
    ]
    assert missing == [], missing
    actions = [
        a
        for menu in (m.menu() for m in fake_window.menuBar().actions())
        for a in menu.actions()
        if not a.isSeparator() and a.menu() is None and a.text()
    ]
    assert [a.text() for a in actions if a.shortcut().isEmpty()] == []


def test_window_title_names_the_open_scene_and_the_recording(qtbot, fake_window, fake_controller, tmp_path):
    fake_controller.open(fake_window, fake_controller.scene(source=str(tmp_path / "beach.jpg")))
    assert fake_window.windowTitle() == "Mirage Explorer — beach.jpg"
    fake_window.start_recording(str(tmp_path / "rec"))
    fake_window._refresh_hud()
    assert fake_window.windowTitle() == "Mirage Explorer — beach.jpg · ● REC"
    fake_window.set_recording(False)
    fake_window._refresh_hud()
    fake_controller.scene_ready.emit(fake_controller.scene(source=f"session:{tmp_path / 'kitchen'}"))
    assert fake_window.windowTitle() == "Mirage Explorer — session kitchen"


def test_the_cache_view_is_kept_per_scene_across_scene_loads(
    qtbot, fake_window, fake_controller, sample_memory, needs_gl
):
    w, panel = fake_window, fake_window.cache_panel
    snapshot = snapshot_memory(sample_memory, "scene", 0, {}, None, 4)
    fake_controller.open(w, fake_controller.scene(source="/photos/a.jpg"))
    fake_controller.memory_changed.emit(snapshot)
    panel.view.setCameraPosition(elevation=80.0, azimuth=30.0)  # the user tilts the view
    tilted = panel.view_params()
    fake_controller.open(w, fake_controller.scene(source="/photos/b.jpg"))
    fake_controller.memory_changed.emit(snapshot)
    assert panel.view_params()["elevation"] == 25.0, "another scene: the default view, not the tilt"
    fake_controller.open(w, fake_controller.scene(source="/photos/a.jpg"))
    fake_controller.memory_changed.emit(snapshot)
    assert panel.view_params() == tilted, "back to the first scene: its view again"
