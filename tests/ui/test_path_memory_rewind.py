"""Issue 14 items 3, 6, 9 in the real window (tiny backend, 64x128, 2 steps): keyframes -> path -> queued
segments, the path's frustums and the memory-vs-model view (screenshots in tests/artifacts/), rewind and
branches; and the same pieces on the fake controller and as pure functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from explorer.flight import step_segment
from explorer.session import load_session, saved_branches
from explorer.worker import SegmentReadout
from tests.qt_wait import wait_for as wait_qt
from ui.launch import LaunchOptions
from ui.main_window import MainWindow
from ui.memory_view import GAP_PX, MemoryView, compose, tint
from ui.settings import set_help_at_start

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 120_000


def image_array(image) -> np.ndarray:
    """A QImage's pixels as ``[H, W, 3]`` uint8."""
    image = image.convertToFormat(image.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def panel_field(window, name: str):
    """A field of the memory snapshot the cache panel shows; None while it shows none (a scene opening)."""
    data = window.cache_panel._data
    return None if data is None else getattr(data, name)


def wait_for(qapp, condition, timeout_ms=TIMEOUT_MS) -> bool:
    """:func:`tests.qt_wait.wait_for` with this module's timeout."""
    return wait_qt(qapp, condition, timeout_ms)


@pytest.fixture(scope="module")
def window(qapp, tmp_path_factory):
    """One explorer window on the bundled scene (tiny backend) for the module."""
    store = QSettings(str(tmp_path_factory.mktemp("settings") / "settings.ini"), QSettings.Format.IniFormat)
    set_help_at_start(store, False)  # the start-up help overlay (test_viewer.py) would cover the viewport
    win = MainWindow(store, LaunchOptions(backend="tiny", steps=2, height=64, width=128, fps=200.0))
    win.resize(1400, 800)
    win.show()
    win.start()
    assert wait_for(qapp, lambda: win.scene is not None), "the bundled scene did not open"
    win.controls.set_mode("steps")  # no automatic segments from flying
    yield win
    win.close()


def test_keyframes_make_a_path_whose_segments_are_generated_in_turn(qtbot, qapp, window):
    editor = window.paths.editor
    start = window.camera.w2c.clone()
    window.paths.add_keyframe()
    ahead = step_segment("step_forward", step_segment("step_forward", start)[-1])[-1]
    window.camera.set_pose(step_segment("orbit_left", ahead)[-1])
    window.paths.add_keyframe()
    editor.list.setCurrentRow(1)
    editor.time_box.setValue(0.3)  # 60 frames at the test's 200 fps: two segments
    editor.time_box.editingFinished.emit()
    assert [k.time_s for k in editor.path.keyframes] == [0.0, 0.3]
    assert window.cache_panel._planned.shape == (61, 4, 4), "the path's frustums go to the cache panel"
    planned = editor.path.segments(start_w2c=start)
    assert len(planned) == 2
    results = []
    window.controller.segment_ready.connect(results.append)
    frames_before, done_before = window.viewport.frame_count, window.segments_done
    window.paths.generate()
    assert wait_for(qapp, lambda: len(results) == 2 and not window.controller.busy), "both path segments came"
    window.controller.segment_ready.disconnect(results.append)
    for result, poses in zip(results, planned, strict=True):
        assert torch.allclose(torch.as_tensor(result.w2c), poses, atol=1e-9), "each segment is the path's"
    assert [r.index for r in results] == [done_before, done_before + 1]
    assert window.viewport.frame_count == (frames_before or 1) + 64 and window.segments_done == done_before + 2
    assert np.allclose(window.camera.w2c.numpy(), editor.path.keyframes[-1].w2c), "the camera ends on the path"


def test_preview_flies_the_path_through_the_memory(qtbot, window, monkeypatch):
    rendered = []
    monkeypatch.setattr(window.preview, "render", lambda w2c, scene: rendered.append(np.array(w2c)))
    window.paths.preview()
    qtbot.waitUntil(lambda: not window.paths.previewing, timeout=10_000)
    sampled = window.paths.editor.path.sample().numpy()
    assert len(rendered) == len(sampled) + 1, "every path pose, then the camera's view again"
    assert np.allclose(np.stack(rendered[:-1]), sampled) and np.allclose(rendered[-1], window.camera.w2c.numpy())


def test_screenshot_of_the_path_editor_shows_the_path_frustums(qtbot, window, needs_gl):
    window.path_dock.show()
    window.path_dock.raise_()
    window.cache_panel.frame_cloud()
    planned = window.paths.editor.path.sample().numpy()
    window.cache_panel.set_planned_path(None)
    qtbot.wait(200)
    without = image_array(window.cache_panel.view.grabFramebuffer())
    window.cache_panel.set_planned_path(planned)
    qtbot.wait(200)
    with_path = image_array(window.cache_panel.view.grabFramebuffer())
    orange = (with_path[..., 0] > 200) & (with_path[..., 1] > 80) & (with_path[..., 1] < 160) & (with_path[..., 2] < 60)
    assert orange.sum() > 20 and (np.abs(with_path.astype(int) - without).sum(-1) > 30).sum() > 20, (
        "the path's orange frustums are drawn"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.grab().save(str(ARTIFACTS / "path_editor.png"))
    window.path_dock.hide()


def test_screenshot_of_memory_vs_model_shows_readout_and_tint(qtbot, window):
    frame = window.viewport.frame_count - 20  # inside the last segment
    window.viewport.scrub(frame)
    qtbot.wait(50)
    plain = image_array(window.viewport.view.grab().toImage())
    window.rewinds.memory_action.setChecked(True)  # the menu action drives the viewport's toggle
    assert window.viewport.memory_button.isChecked()
    qtbot.wait(50)
    shown = window.viewport.view._image
    scale = shown.height() // 64  # small frames are enlarged by whole pixels for readable labels
    assert scale > 1 and shown.width() == scale * (3 * 128 + 2 * GAP_PX) and shown.height() == scale * 64
    panels = image_array(shown)[::scale, ::scale]
    readout, k = window.memory_view.readout_for(frame)
    above_label = slice(0, 40)
    assert np.array_equal(panels[above_label, 128 + GAP_PX : 256 + GAP_PX], readout.frames[k][above_label]), "readout"
    assert 0.0 < readout.visible[k].mean() < 1.0, "part memory, part invented"
    on = image_array(window.viewport.view.grab().toImage())
    assert (np.abs(on.astype(int) - plain).sum(-1) > 30).mean() > 0.05, "the view changed visibly"
    ARTIFACTS.mkdir(exist_ok=True)
    assert window.viewport.view.grab().save(str(ARTIFACTS / "memory_vs_model.png"))
    window.rewinds.memory_action.setChecked(False)


def test_rewind_keeps_a_branch_and_switching_back_restores_it(qtbot, qapp, window):
    qtbot.waitUntil(lambda: not window.controller.busy and not window.pending, timeout=TIMEOUT_MS)
    end = window.segments_done
    frames, trajectory = window.viewport.frame_count, len(window.trajectory)
    tip_points = window.cache_panel._data.points
    window.viewport.scrub(frames - 40)  # a frame of the second-last segment
    assert window.rewinds.segments_done_at(frames - 40) == end - 1
    with qtbot.waitSignal(window.controller.rewound, timeout=TIMEOUT_MS) as blocker:
        name = window.rewinds.rewind(end - 1, keep=True)
    assert blocker.args == [end - 1] and window.segments_done == end - 1
    assert window.viewport.frame_count == frames - 32 and len(window.trajectory) == trajectory - 32
    qtbot.waitUntil(lambda: panel_field(window, "segments_done") == end - 1, timeout=TIMEOUT_MS)
    assert window.cache_panel._data.points < tip_points, "the panel shows the earlier memory"
    with qtbot.waitSignal(window.controller.segment_ready, timeout=TIMEOUT_MS) as blocker:
        window.step("turn_right")
    assert blocker.args[0].index == end - 1, "the new segment replaces the rewound one"
    qtbot.waitUntil(lambda: not window.controller.busy and not window.pending, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.controller.rewound, timeout=TIMEOUT_MS):
        window.rewinds.switch(name)
    assert window.segments_done == end and window.viewport.frame_count == frames
    qtbot.waitUntil(lambda: panel_field(window, "points") == tip_points, timeout=TIMEOUT_MS)
    assert list(window.rewinds.history.branches) == ["branch 2"], "the segment it replaced is a branch now"


def test_kept_branches_are_saved_with_a_recording_and_reopen(qtbot, qapp, window, tmp_path):
    qtbot.waitUntil(lambda: not window.controller.busy and not window.pending, timeout=TIMEOUT_MS)
    [(name, branch)] = window.rewinds.history.branches.items()  # kept by the test above
    shared = window.rewinds.frame_index_after(branch.fork)
    folder = tmp_path / "recorded"
    window.start_recording(str(folder))
    with qtbot.waitSignal(window.controller.segment_ready, timeout=TIMEOUT_MS):
        window.step("turn_left")
    with qtbot.waitSignal(window.controller.recording_saved, timeout=TIMEOUT_MS):
        window.set_recording(False)
    qtbot.waitUntil(lambda: not window.controller.busy and bool(saved_branches(folder)), timeout=TIMEOUT_MS)
    [saved] = saved_branches(folder)
    assert (saved.name, saved.fork, saved.segments) == (name, branch.fork, len(branch.items))
    session = load_session(saved.folder)
    assert session.first_segment == branch.fork and len(session.frames) == 1 + 32 * len(branch.items)
    window_frames = np.stack([window.viewport.frames[shared], *[f for r in branch.items for f in r.frames]])
    # the tiny model paints noise that H.264 cannot keep at 64x128: compare each frame's mean colour
    means = session.frames.reshape(len(session.frames), -1, 3).mean(1)
    assert np.abs(means - window_frames.reshape(len(window_frames), -1, 3).mean(1)).max() < 8, "the branch's frames"
    assert np.array_equal(session.last_frame, branch.items[-1].frames[-1]), "its last frame exactly"
    tip_points = session.data["memory"]["points"]
    recorded = [(s["action"], s["depth_source"]) for s in session.data["segments"]]
    assert recorded == [(r.action, r.depth_source) for r in branch.items] and recorded[0][1].startswith("exact")

    window.open_session(str(folder))
    qtbot.waitUntil(lambda: window.scene is not None and window.scene.source == f"session:{folder}", timeout=TIMEOUT_MS)
    entries = [a for a in window.rewinds.branch_menu.actions() if "(saved)" in a.text()]
    assert [a.text().split(" (saved)")[0] for a in entries] == [name], "Timeline -> Branches lists the saved branch"
    entries[0].trigger()
    qtbot.waitUntil(
        lambda: window.scene.source == f"session:{saved.folder}" and panel_field(window, "points") == tip_points,
        timeout=TIMEOUT_MS,
    )
    assert window.segments_done == saved.end and window.viewport.frame_count == len(session.frames)


# ---- the same pieces without a model -------------------------------------------------------------


def test_a_refused_rewind_changes_nothing_in_the_window(qtbot, fake_window, fake_controller, monkeypatch):
    fake_controller.open(fake_window, fake_controller.scene())
    pose = np.eye(4)
    for i in range(2):
        pose = fake_controller.finish_segment(i, pose).w2c[-1]
    monkeypatch.setattr(QMessageBox, "critical", lambda *a: None)
    fake_window.rewinds.rewind(1, keep=True)
    fake_controller.failed.emit("Invalid input", "the memory after segment 1 is no longer kept")
    fake_controller.rewound.emit(2)  # (a stray confirmation: no request is waiting any more)
    assert fake_window.viewport.frame_count == 65 and fake_window.rewinds.history.end == 2
    assert fake_window.rewinds.history.branches == {}


def test_rewind_is_refused_while_recording_and_asks_keep_or_discard(qtbot, fake_window, fake_controller, monkeypatch):
    fake_controller.open(fake_window, fake_controller.scene())
    pose = np.eye(4)
    for i in range(3):
        pose = fake_controller.finish_segment(i, pose).w2c[-1]
    assert fake_window.viewport.frame_count == 97
    fake_window.viewport.scrub(10)
    answers = []

    def exec_box(box):
        answers.append(box.text())
        box.clickedButton = lambda: [b for b in box.buttons() if b.text() == "Discard them"][0]
        return 0

    monkeypatch.setattr(QMessageBox, "exec", exec_box)
    fake_window.rewinds.rewind_to_shown()
    assert "after segment 1" in answers[0] and fake_controller.calls("rewind") == [(1, None)]
    assert fake_window.viewport.frame_count == 97, "nothing changes before the worker confirms"
    fake_controller.rewound.emit(1)
    assert fake_window.viewport.frame_count == 33 and fake_window.rewinds.history.branches == {}
    assert len(fake_window.trajectory) == 33 and fake_window.segments_done == 1
    infos = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a: infos.append(a[2]))
    fake_window.recording.folder = "/somewhere"
    fake_window.viewport.scrub(3)
    fake_window.rewinds.rewind_to_shown()
    assert "Stop recording first" in infos[-1] and len(fake_controller.calls("rewind")) == 1


def test_path_files_round_trip_through_the_editor(qtbot, fake_window, fake_controller, tmp_path, monkeypatch):
    fake_controller.open(fake_window, fake_controller.scene())
    flow = fake_window.paths
    flow.add_keyframe()
    fake_window.camera.set_pose(step_segment("orbit_left", torch.eye(4, dtype=torch.float64))[-1])
    flow.add_keyframe()
    flow.editor.path.retime(1, 0.1)  # 21 frames at 200 fps
    for name in ("path.json", "cameras.txt"):
        assert flow.export_file(tmp_path / name)
        sampled = flow.editor.path.sample()
        assert flow.import_file(tmp_path / name)
        assert len(flow.editor.path) == 21 and flow.editor.list.count() == 21
        assert torch.allclose(flow.editor.path.sample(), sampled, atol=1e-6)
        flow.editor.set_path(flow.editor.path)  # (unchanged for the next round)
    assert fake_controller.calls("set_camera_path")[-1][0]["keyframes"], "the worker gets the path for recordings"
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a: warnings.append(a[2]))
    (tmp_path / "bad.json").write_text("{}")
    assert not flow.import_file(tmp_path / "bad.json") and "bad.json" in warnings[0]


def test_compose_tints_memory_green_and_holes_red():
    frame = np.full((8, 8, 3), 128, np.uint8)
    readout = np.zeros_like(frame)
    visible = np.array([[True, False], [False, True]])
    tinted = tint(frame, visible)
    assert tinted[0, 0, 1] > tinted[0, 0, 0] and tinted[0, 7, 0] > tinted[0, 7, 1], "green on memory, red on holes"
    out = compose(frame, readout, visible)
    assert out.shape == (8, 24 + 2 * GAP_PX, 3) and np.array_equal(out[:, :8], frame)
    with pytest.raises(ValueError, match="latent cells"):
        tint(np.zeros((9, 8, 3), np.uint8), visible)


def test_memory_view_maps_frames_to_their_segment_and_latent_frame():
    view = MemoryView()
    for index in range(2):
        ids = index * 32 + np.arange(0, 33, 4)
        view.add(SegmentReadout(index, ids, np.zeros((9, 8, 8, 3), np.uint8), np.ones((9, 2, 2), bool)))
    assert view.readout_for(0)[0].index == 0 and view.readout_for(32) == (view.readout_for(31)[0], 8)
    assert view.readout_for(33)[0].index == 1 and view.readout_for(46)[1] == 3  # frame 46: 14 into segment 1
    assert view.readout_for(200) is None
    assert set(view.drop_after(1)) == {1} and view.readout_for(40) is None
