"""The main window's own logic on a fake controller (no model; the test plays the worker's part):
shortcuts, recording dialogs and state, camera reset, HUD and warnings, narrow layouts, remembered state."""

from __future__ import annotations

import numpy as np
import torch
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QDockWidget, QFileDialog, QInputDialog, QMessageBox

from explorer.fly_camera import Action
from ui.image_dialog import ImageFileDialog


def test_ctrl_q_from_the_file_menu_quits_while_q_is_a_fly_key(qtbot, fake_window, fake_controller):
    fake_controller.open(fake_window, fake_controller.scene())
    fake_window.viewport.view.setFocus()
    assert fake_window.router.bindings.action_for("Q") is Action.DOWN, "Q flies down: the conflict this test is about"
    qtbot.keyPress(fake_window.viewport.view, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier)
    assert Action.FORWARD in fake_window.camera.held, "Ctrl with a key no menu uses still flies (slowly)"
    qtbot.keyRelease(fake_window.viewport.view, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(fake_window.viewport.view, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not fake_window.isVisible(), timeout=3000)
    assert fake_controller.calls("shutdown"), "quitting shut the worker down"
    assert Action.DOWN not in fake_window.camera.held, "Ctrl+Q did not start flying down"


def test_reset_right_after_a_step_is_a_teleport_not_a_segment(qtbot, fake_window, fake_controller):
    fake_controller.open(fake_window, fake_controller.scene())
    fake_window.controls.set_mode("steps")
    fake_window.viewport.view.setFocus()
    qtbot.keyClick(fake_window.viewport.view, Qt.Key.Key_I)  # a step forward: one segment
    assert len(fake_controller.calls("queue_segment")) == 1
    fake_window.controls.set_mode("flight")  # free flight queues a segment for any 0.4 m flown
    qtbot.keyClick(fake_window.viewport.view, Qt.Key.Key_U)
    assert torch.equal(fake_window.camera.w2c, fake_window.camera.start_w2c)
    assert torch.equal(fake_window.flight.anchor_w2c, fake_window.camera.start_w2c), (
        "the next segment starts where the reset went"
    )
    for _ in range(3):  # camera ticks record the pose; the 0.5 m jump back must not count as flown
        with qtbot.waitSignal(fake_window.tick_timer.timeout, timeout=1000):
            pass
    assert len(fake_controller.calls("queue_segment")) == 1, "the reset queued no segment"


def test_hud_progress_follows_the_scene_and_warnings_that_matter_stay_in_the_viewport(
    qtbot, fake_window, fake_controller
):
    hud, viewport = fake_window.hud, fake_window.viewport
    fake_controller.open(fake_window, fake_controller.scene(prior_depth=True))
    fake_controller.status.emit("Scene ready: photo.jpg; memory 366 points")  # the worker's next messages
    fake_controller.status.emit("Model ready: tiny")
    assert "W/A/S/D" in hud.state.text(), "the start-up hint outlives the 'idle' that follows it"
    assert viewport.warning_label.isVisible() and "geometry is approximate" in viewport.warning_label.text()
    assert "not remembered" in hud.depth.text(), "the HUD says what the prior costs"

    fake_controller.finish_segment(0, fake_window.flight.anchor_w2c, depth_source="prior")
    assert hud.depth.text().startswith("depth: prior") and "not remembered" in hud.depth.text()
    assert hud.progress.format().startswith("segment 1 done") and hud.progress.value() == hud.progress.maximum()
    fake_controller.cancelled.emit(1)
    fake_controller.idle.emit()
    assert hud.progress.format() == "segment 2 cancelled" and hud.progress.value() == hud.progress.minimum(), (
        "a cancel fills nothing"
    )
    assert "geometry is approximate" in viewport.warning_label.text(), "still there after everything else that happened"

    fake_controller.open(fake_window, fake_controller.scene(prior_depth=False))
    assert hud.progress.format() == "no segment", "the new scene has no segment yet"
    assert not viewport.warning_label.isVisible(), "a scene with depth resolves the warning"
    assert hud.depth.text() == "depth: exact"


def redness(widget, region=None) -> float:
    """Mean red minus mean green of a widget's pixels (of ``region``, a QRect, if given)."""
    image = widget.grab(region).toImage() if region is not None else widget.grab().toImage()
    image = image.convertToFormat(image.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    pixels = rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).astype(float)
    return float(pixels[..., 0].mean() - pixels[..., 1].mean())


def test_recording_shows_a_red_button_and_a_rec_badge_with_the_elapsed_time(
    qtbot, fake_window, fake_controller, tmp_path
):
    fake_controller.open(fake_window, fake_controller.scene())
    fake_controller.finish_segment(0, fake_window.flight.anchor_w2c)  # a generated frame with the live inset
    button, view = fake_window.controls.record_button, fake_window.viewport.view
    qtbot.waitUntil(lambda: fake_window.viewport.shown_index == 32, timeout=3000)
    corner, rest = QRect(view.width() - 160, 0, 160, 60), QRect(0, 60, view.width(), view.height() - 60)
    assert view.badge == "" and redness(button) < 20 and redness(view, corner) < 20
    fake_window.start_recording(str(tmp_path / "session"))
    assert fake_controller.calls("start_recording")
    assert button.isChecked() and redness(button) > 60, "the record button turns red"
    assert view.badge.startswith("● REC 0:0"), view.badge
    qtbot.waitUntil(lambda: view.badge == "● REC 0:01", timeout=3000)  # the elapsed time runs
    assert redness(view, corner) > 20, "the badge is drawn in red in the view's top-right corner"
    assert redness(view, rest) < 4, "and nowhere else (the picture and its inset keep their colours)"
    fake_window.set_recording(False)
    assert fake_controller.calls("stop_recording") and not button.isChecked() and view.badge == ""
    assert redness(button) < 20


class Script:
    """Scripted answers for the static dialogs (QFileDialog, QMessageBox, QInputDialog) and what they were asked."""

    def __init__(self, monkeypatch) -> None:
        self.folder = ""  # what the folder picker returns ("" = cancelled)
        self.answer = QMessageBox.StandardButton.Cancel  # the answer to a question box
        self.names: list[str] = []  # the names typed into successive text prompts ("" = cancelled)
        self.asked: list[tuple[str, ...]] = []
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", self._folder)
        monkeypatch.setattr(QMessageBox, "question", self._question)
        monkeypatch.setattr(QInputDialog, "getText", self._text)

    def _folder(self, parent, caption, directory="", *args, **kwargs):
        self.asked.append(("folder", caption, directory))
        return self.folder

    def _question(self, parent, title, text, *args, **kwargs):
        self.asked.append(("question", title, text))
        return self.answer

    def _text(self, parent, title, label, *args, **kwargs):
        self.asked.append(("text", label, kwargs.get("text", args[1] if len(args) > 1 else "")))
        name = self.names.pop(0) if self.names else ""
        return name, bool(name)


def click_record(qtbot, window):
    qtbot.mouseClick(window.controls.record_button, Qt.MouseButton.LeftButton)


def test_recording_never_replaces_a_session_unasked_and_offers_a_new_named_folder(
    qtbot, fake_window, fake_controller, tmp_path, monkeypatch
):
    fake_controller.open(fake_window, fake_controller.scene())
    script = Script(monkeypatch)
    kitchen = tmp_path / "kitchen"
    kitchen.mkdir()
    (kitchen / "session.json").write_text("{}")
    script.folder = str(kitchen)

    script.answer, script.names = QMessageBox.StandardButton.No, ["kitchen-2"]  # no: a new folder beside it
    click_record(qtbot, fake_window)
    kinds = [a[0] for a in script.asked]
    assert kinds == ["folder", "question", "text"] and "already holds a recorded session" in script.asked[1][2]
    assert script.asked[2][2] == "kitchen-2", "a free name is suggested"
    assert fake_controller.calls("start_recording")[-1][0] == str(tmp_path / "kitchen-2")
    assert (kitchen / "session.json").read_text() == "{}"
    fake_window.set_recording(False)

    script.asked.clear()
    script.answer = QMessageBox.StandardButton.Cancel
    click_record(qtbot, fake_window)
    assert len(fake_controller.calls("start_recording")) == 1 and not fake_window.controls.record_button.isChecked(), (
        "cancel: no recording"
    )

    script.answer = QMessageBox.StandardButton.Yes  # yes: replace it (when the recording is saved)
    click_record(qtbot, fake_window)
    assert fake_controller.calls("start_recording")[-1][0] == str(kitchen)
    fake_window.set_recording(False)

    photos = tmp_path / "photos"  # a folder with other files: never replaced, a session folder goes inside
    photos.mkdir()
    (photos / "beach.jpg").write_bytes(b"jpeg")
    script.folder, script.names = str(photos), ["../escape", "walk"]
    script.asked.clear()
    click_record(qtbot, fake_window)
    assert [a[0] for a in script.asked] == ["folder", "text", "text"], "a bad name is asked for again"
    assert "cannot contain" in script.asked[2][1]
    assert (
        fake_controller.calls("start_recording")[-1][0] == str(photos / "walk")
        and fake_window.controls.record_button.isChecked()
    )
    fake_window.set_recording(False)

    empty = tmp_path / "empty"
    empty.mkdir()
    script.folder = str(empty)
    script.asked.clear()
    click_record(qtbot, fake_window)
    assert [a[0] for a in script.asked] == ["folder"] and fake_controller.calls("start_recording")[-1][0] == str(empty)


def test_narrow_windows_keep_the_viewport_wide_and_the_timeline_usable(qtbot, fake_window, fake_controller):
    fake_controller.open(fake_window, fake_controller.scene())
    cache_dock = fake_window.cache_panel.parentWidget()
    while not isinstance(cache_dock, QDockWidget):
        cache_dock = cache_dock.parentWidget()

    def check(width: int) -> None:
        fake_window.resize(width, 800)
        qtbot.waitUntil(lambda: fake_window.width() == max(width, fake_window.minimumWidth()), timeout=3000)
        qtbot.waitUntil(lambda: fake_window.viewport.width() >= 0.6 * fake_window.width(), timeout=3000)
        slider = fake_window.viewport.slider
        assert slider.isVisible() and slider.width() >= 80, f"the timeline is usable at {fake_window.width()} px"

    check(967)  # the minimum width before: the viewport had 333 px of it
    check(1)  # as narrow as the window goes now
    assert fake_window.width() < 967
    fake_window.resize(1500, 860)
    qtbot.waitUntil(
        lambda: (
            fake_window.dockWidgetArea(cache_dock) == Qt.DockWidgetArea.RightDockWidgetArea
            and not fake_window.tabifiedDockWidgets(cache_dock)
        ),
        timeout=3000,
    )
    assert cache_dock.isVisible() and fake_window.viewport.width() >= 0.6 * fake_window.width(), (
        "wide again: both panels side by side"
    )


def test_geometry_docks_colour_mode_and_dialog_folders_are_remembered(
    qtbot, new_fake_window, fake_controller, tmp_path, monkeypatch
):
    folders = {name: tmp_path / name for name in ("photos", "sessions", "exports", "recordings")}
    for folder in folders.values():
        folder.mkdir()
    asked = []  # (dialog, starting folder) of every file dialog

    def open_file(parent, caption, directory="", *a, **k):
        asked.append(("open image", directory))
        return str(folders["photos"] / "beach.jpg"), ""

    def existing_folder(parent, caption, directory="", *a, **k):
        kind = "record" if caption.startswith("Record") else "open session"
        asked.append((kind, directory))
        return str(folders["recordings" if kind == "record" else "sessions"] / "kitchen")

    def save_file(parent, caption, directory="", *a, **k):
        asked.append(("export", directory))
        return str(folders["exports"] / "path.json"), ""

    # Open image is Qt's own file dialog with a preview pane (ui/image_dialog.py): answer for it
    monkeypatch.setattr(ImageFileDialog, "chosen", lambda self: open_file(None, "", self.directory().absolutePath())[0])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", existing_folder)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_file)
    monkeypatch.setattr(QMessageBox, "critical", lambda *a: None)  # the session folder is not a session
    monkeypatch.setattr(QMessageBox, "information", lambda *a: None)  # nothing to export yet
    for name in ("recordings", "sessions"):
        (folders[name] / "kitchen").mkdir()

    first = new_fake_window(fake_controller)
    fake_controller.open(first, fake_controller.scene())
    # small: pytest-xvfb's screen is 800x600 and a restored window is kept on the screen
    first.resize(700, 500)  # narrow: the docks share a column, so the window can get narrower still
    qtbot.waitUntil(lambda: first.minimumWidth() < 700, timeout=3000)
    first.resize(700, 500)
    qtbot.waitUntil(lambda: (first.width(), first.height()) == (700, 500), timeout=3000)
    first.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, first.controls_dock)  # the user's own layout
    first.cache_dock.close()
    first.cache_panel.set_color_mode("provenance")
    first.choose_image()
    first.choose_session()
    first.choose_export_path()
    first.set_recording(True)
    assert first.recording.folder == str(folders["recordings"] / "kitchen")
    first.close()

    asked.clear()
    second = new_fake_window()
    qtbot.waitUntil(lambda: (second.width(), second.height()) == (700, 500), timeout=3000)
    assert (
        second.dockWidgetArea(second.controls_dock) == Qt.DockWidgetArea.RightDockWidgetArea
        and not second.cache_dock.isVisible()
    )
    assert second.cache_panel.color_mode == "provenance"
    second.controller.open(second, second.controller.scene())  # (its own fake controller)
    second.choose_image()
    second.choose_session()
    second.choose_export_path()
    assert asked[0] == ("open image", str(folders["photos"]))
    assert asked[1] == ("open session", str(folders["sessions"]))
    assert asked[2] == ("export", str(folders["exports"] / "camera_path.json"))
    second.set_recording(True)
    assert asked[3] == ("record", str(folders["recordings"]))


def test_open_image_says_where_the_photos_depth_came_from(fake_window, fake_controller):
    fake_controller.open(fake_window, fake_controller.scene(prior_depth=True, source="/photos/room.jpg"))
    message = fake_window.statusBar().currentMessage()
    assert message.startswith("room.jpg: depth from prior") and "fetch-models" in message


def test_the_depth_model_of_the_settings_reaches_the_worker(new_fake_window, fake_controller, settings):
    from ui.settings import ExplorerSettings

    ExplorerSettings(depth_model_dir="/models/depth").save(settings)
    fake_controller.open(new_fake_window(fake_controller), fake_controller.scene())
    ((_, _, generation),) = fake_controller.calls("load_backbone")
    assert generation.depth_model == "/models/depth"
