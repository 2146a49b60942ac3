"""The main window end to end on the tiny backend (64x128, 2 steps): scenes, keys, generation
progress and cancel, errors, recording round trip, and the screenshot."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from explorer.fly_camera import Action
from explorer.session import load_session
from model.generation.pipeline import MiragePipeline
from model.io.cameras import read_camera_path_json
from model.io.video import Mp4Writer, read_mp4_frames
from tests.qt_wait import wait_for
from ui.launch import LaunchOptions
from ui.main_window import MainWindow
from ui.settings import set_help_at_start

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 120_000


def pixel_std(image) -> float:
    """Standard deviation of a QImage's RGB pixels."""
    image = image.convertToFormat(image.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return float(rows[:, : image.width() * 3].std())


@pytest.fixture(scope="module")
def window(qapp, tmp_path_factory):
    """One explorer window on the bundled scene for the whole module (loading the backbone once)."""
    from PySide6.QtCore import QSettings

    store = QSettings(str(tmp_path_factory.mktemp("settings") / "settings.ini"), QSettings.Format.IniFormat)
    set_help_at_start(store, False)  # the help overlay (tested in test_viewer.py) would cover the viewport
    win = MainWindow(store, LaunchOptions(backend="tiny", steps=2, height=64, width=128, fps=200.0))
    win.resize(1400, 800)
    win.show()
    win.start()
    deadline_ok = wait_for(qapp, lambda: win.scene is not None, TIMEOUT_MS)
    assert deadline_ok, "the bundled scene did not open"
    yield win
    win.close()


def focus_view(qtbot, win):
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=3000)
    win.viewport.view.setFocus()


def test_the_sky_model_folder_of_the_settings_goes_to_the_worker(window, monkeypatch):
    assert window.generation_settings().sky_model is None, "none configured: sky by depth only"
    monkeypatch.setattr(window, "settings", replace(window.settings, sky_model_dir="/models/segformer-ade"))
    assert window.generation_settings().sky_model == "/models/segformer-ade"


def test_keys_fly_the_camera_and_update_the_preview(qtbot, window):
    focus_view(qtbot, window)
    window.controls.set_mode("steps")  # no automatic segments while this test flies
    start = window.camera.position
    live_before = window.viewport.view._image
    qtbot.keyPress(window.viewport.view, Qt.Key.Key_W)
    qtbot.wait(200)
    qtbot.keyRelease(window.viewport.view, Qt.Key.Key_W)
    moved = window.camera.position - start
    assert moved[2] > 0.05 and abs(moved[0]) < 1e-9, "W flies forward (+z) and only forward"
    assert window.viewport.shown_index == -1 and window.viewport.view._image is not live_before, (
        "the preview follows the camera"
    )
    # keys typed while the GL cache panel has focus still fly the camera
    window.cache_panel.view.setFocus()
    x0 = window.camera.position[0]
    qtbot.keyPress(window.cache_panel.view, Qt.Key.Key_D)
    qtbot.wait(150)
    qtbot.keyRelease(window.cache_panel.view, Qt.Key.Key_D)
    assert window.camera.position[0] > x0 + 0.03
    qtbot.keyPress(window.viewport.view, Qt.Key.Key_U)
    assert np.array_equal(window.camera.w2c.numpy(), window.camera.start_w2c.numpy()), "U resets to the start pose"


def test_a_step_generates_a_segment_with_progress_in_the_hud(qtbot, window):
    focus_view(qtbot, window)
    window.controls.set_mode("steps")
    progress = []
    window.controller.step_progress.connect(lambda s, i, n: progress.append((s, i, n, window.hud.progress.format())))
    with qtbot.waitSignal(window.controller.segment_ready, timeout=TIMEOUT_MS) as ready:
        qtbot.keyPress(window.viewport.view, Qt.Key.Key_I)  # step forward
    assert ready.args[0].index == 0
    assert [p[:3] for p in progress] == [(0, 1, 2), (0, 2, 2)]
    qtbot.waitUntil(lambda: "segment 1 done" in window.hud.progress.format(), timeout=5000)
    assert window.viewport.frame_count == 33 and len(window.trajectory) == 33
    qtbot.waitUntil(lambda: window.viewport.shown_index == 32, timeout=5000)  # played through at 200 fps
    qtbot.waitUntil(lambda: len(window.cache_panel.drawn_points) > 0, timeout=5000)
    assert "photo + 1 segments" in window.cache_panel.stats_label.text()


def test_free_flight_queues_a_segment_along_the_flown_path(qtbot, window):
    focus_view(qtbot, window)
    window.controls.set_mode("flight")
    start = window.camera.w2c.numpy()
    with qtbot.waitSignal(window.controller.segment_ready, timeout=TIMEOUT_MS) as ready:
        qtbot.keyPress(window.viewport.view, Qt.Key.Key_W)
        qtbot.waitUntil(lambda: window.pending > 0, timeout=5000)  # FlightPath.ready(): 0.4 m flown
        qtbot.keyRelease(window.viewport.view, Qt.Key.Key_W)
    window.controls.set_mode("steps")
    poses = ready.args[0].w2c.numpy()
    assert np.allclose(poses[0], start), "the segment starts at the last generated pose"
    assert np.linalg.inv(poses[-1])[2, 3] >= 0.4, "and ends where the camera had flown (forward)"
    assert window.viewport.frame_count == 65


def test_cancel_through_the_ui_keeps_memory_and_frames(qtbot, window):
    window.controls.set_mode("steps")
    gate = threading.Event()

    # hold the worker after step 1 until the Cancel button was clicked (no race with a 2-step segment)
    def hold(s, i, n):
        gate.wait(10)

    def click_cancel(s, i, n):
        if i == 1:
            qtbot.mouseClick(window.controls.cancel_button, Qt.MouseButton.LeftButton)
            gate.set()

    window.controller.worker.step_progress.connect(hold, Qt.ConnectionType.DirectConnection)
    window.controller.step_progress.connect(click_cancel)
    points_before = window.cache_panel.stats_label.text()
    frames_before = window.viewport.frame_count
    with qtbot.waitSignal(window.controller.cancelled, timeout=TIMEOUT_MS) as cancelled:
        window.controls.step_buttons[Action.STEP_FORWARD].click()
    window.controller.worker.step_progress.disconnect(hold)  # only ours: the window's own links stay
    window.controller.step_progress.disconnect(click_cancel)
    assert cancelled.args == [2], "the third segment (two were generated before) was cancelled"
    qtbot.waitUntil(lambda: not window.controls.cancel_button.isEnabled(), timeout=5000)
    assert "cancelled" in window.hud.progress.format()
    assert window.viewport.frame_count == frames_before and window.cache_panel.stats_label.text() == points_before


def test_a_bad_photo_gets_a_message_box_naming_it_and_the_open_scene_stays(qtbot, window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: shown.append((title, text)))
    scene, frames, memory, done = (
        window.scene,
        window.viewport.frame_count,
        window.cache_panel.stats_label.text(),
        window.segments_done,
    )
    assert scene is not None and frames > 0 and done > 0
    garbage = tmp_path / "holiday.jpg"
    garbage.write_bytes(b"not a jpeg" * 20)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(garbage))])
    drop = QDropEvent(
        QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(drop)  # drag-and-drop of a photo onto the window
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT_MS)
    assert "holiday.jpg" in shown[0][1] and "Fix" in shown[0][1]
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=TIMEOUT_MS)
    assert window.scene is not None and window.camera is not None, "the scene that was open is still open"
    assert window.scene is scene
    assert window.viewport.frame_count == frames and window.viewport.view.caption, "its frames and picture stay up"
    assert window.cache_panel.stats_label.text() == memory and window.hud.state.text() != "no scene"
    focus_view(qtbot, window)
    window.controls.set_mode("steps")
    with qtbot.waitSignal(window.controller.segment_ready, timeout=TIMEOUT_MS) as ready:
        qtbot.keyPress(window.viewport.view, Qt.Key.Key_K)  # and generating goes on in it
    assert ready.args[0].index == done and window.segments_done == done + 1
    with qtbot.waitSignal(window.controller.scene_ready, timeout=TIMEOUT_MS):
        window.open_bundled()
    assert window.scene is not None and window.scene.source == "bundled"


def test_a_scene_that_fails_while_its_memory_is_built_leaves_the_open_one_working(qtbot, window, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: shown.append((title, text)))

    def fail(*args, **kwargs):
        raise RuntimeError("simulated failure while building the memory")

    start = MiragePipeline.start
    monkeypatch.setattr(MiragePipeline, "start", fail)  # the worker thread builds scenes with it
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=TIMEOUT_MS)
    scene, done = window.scene, window.segments_done
    window.open_bundled()
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT_MS)
    assert "simulated failure" in shown[0][1] and window.scene is scene
    monkeypatch.setattr(MiragePipeline, "start", start)
    window.controls.set_mode("steps")
    results = []
    window.controller.segment_ready.connect(results.append)
    window.step(Action.TURN_RIGHT)  # a segment, or (with no scene in the worker) a failure
    qtbot.waitUntil(lambda: bool(results) or len(shown) > 1, timeout=TIMEOUT_MS)
    window.controller.segment_ready.disconnect(results.append)
    assert len(shown) == 1, f"generating failed: {shown[1:]}"
    assert results[0].index == done, "the worker still has the scene the window shows"
    with qtbot.waitSignal(window.controller.scene_ready, timeout=TIMEOUT_MS):
        window.open_bundled()  # a fresh scene for the tests after this one


def test_stopping_a_recording_before_any_segment_is_news_not_an_error(qtbot, window, tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: errors.append((title, text)))
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=TIMEOUT_MS)
    folder = tmp_path / "session"
    window.start_recording(str(folder))
    seen = []

    def note_status(message):
        seen.append(message)

    def note_idle():
        seen.append("<idle>")

    window.controller.status.connect(note_status)
    window.controller.idle.connect(note_idle)
    window.set_recording(False)
    qtbot.waitUntil(
        lambda: any("nothing" in m for m in seen) and seen[-1] == "<idle>", timeout=TIMEOUT_MS
    )  # the stop handled
    window.controller.status.disconnect(note_status)
    window.controller.idle.disconnect(note_idle)
    assert errors == [], "no error box"
    assert "nothing was recorded" in window.statusBar().currentMessage(), "a plain status says what happened"
    assert not folder.exists() and not window.controls.record_button.isChecked()


def test_recording_round_trip_and_continue(qtbot, window, tmp_path):
    window.controls.set_mode("steps")
    folder = tmp_path / "session"
    window.start_recording(str(folder))
    assert window.controls.record_button.isChecked()
    with qtbot.waitSignal(window.controller.segment_ready, timeout=TIMEOUT_MS):
        window.step(Action.TURN_LEFT)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=TIMEOUT_MS)
    qtbot.waitUntil(
        lambda: window.cache_panel._data is not None and window.cache_panel._data.segments.max() == 1,
        timeout=TIMEOUT_MS,
    )
    generated = np.stack(window.viewport.frames)
    memory = window.cache_panel._data.positions.copy()
    with qtbot.waitSignal(window.controller.recording_saved, timeout=TIMEOUT_MS) as saved:
        window.set_recording(False)
    assert saved.args == [str(folder)]
    assert not window.controls.record_button.isChecked() and (folder / "session.json").is_file()

    with qtbot.waitSignal(window.controller.scene_ready, timeout=TIMEOUT_MS):
        window.open_session(str(folder))
    qtbot.waitUntil(lambda: window.cache_panel._data is not None, timeout=TIMEOUT_MS)
    replayed = np.stack(window.viewport.frames)
    assert replayed.shape == generated.shape == (33, 64, 128, 3)
    # the tiny backend's frames are noise-like, which H.264 cannot keep: compare with the same frames
    # through the same encoder (what "within H.264 tolerance" means for them), and the smooth photo frame directly
    reference_path = tmp_path / "reference.mp4"
    with Mp4Writer(reference_path, 128, 64, window.viewport.fps) as video:
        for frame in generated:
            video.append(frame)
    reference = read_mp4_frames(reference_path)
    assert np.abs(replayed.astype(int) - reference.astype(int)).mean() < 1.0, (
        "the recording holds the generated frames, in order"
    )
    assert np.abs(replayed[0].astype(int) - generated[0].astype(int)).mean() < 4.0
    assert np.array_equal(window.cache_panel._data.positions, memory), "same memory"
    assert window.segments_done == 1 and len(window.trajectory) == 33
    with qtbot.waitSignal(window.controller.segment_ready, timeout=TIMEOUT_MS) as ready:
        window.step(Action.STEP_FORWARD)
    assert ready.args[0].index == 1 and window.viewport.frame_count == 65
    assert load_session(folder).segments_done == 1
    window.export_camera_path(str(tmp_path / "path.json"))
    exported = read_camera_path_json(tmp_path / "path.json")
    assert len(exported) == 65 and np.allclose(exported.w2c.numpy(), np.stack(window.trajectory), atol=1e-9)


def test_screenshot_of_the_main_window(qtbot, window, needs_gl, tmp_path):
    window.cache_panel.frame_cloud()
    window.viewport.scrub(window.viewport.frame_count - 1)
    window.start_recording(str(tmp_path / "shot"))  # the shot shows the recording state too
    qtbot.waitUntil(lambda: window.viewport.view.badge.startswith("● REC"), timeout=5000)
    qtbot.wait(300)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = window.grab()
    window.set_recording(False)
    assert shot.save(str(ARTIFACTS / "main_window.png"))
    assert pixel_std(window.viewport.view.grab().toImage()) > 10, "the viewport shows a frame"
    assert pixel_std(window.cache_panel.view.grabFramebuffer()) > 10, "the cache panel shows the point cloud"


def test_changing_steps_applies_to_the_next_segment_without_a_reload(qtbot, window):
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=TIMEOUT_MS)
    window.controls.set_mode("steps")
    reloads = []
    window.controller.backbone_ready.connect(reloads.append)
    window.controls.steps.setValue(3)
    progress = []
    window.controller.step_progress.connect(lambda s, i, n: progress.append(n))
    with qtbot.waitSignal(window.controller.segment_ready, timeout=TIMEOUT_MS):
        window.step(Action.TURN_RIGHT)
    assert progress == [3, 3, 3] and reloads == []
    window.controls.steps.setValue(2)
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=TIMEOUT_MS)
