"""Plain widgets: settings persistence and dialog, key capture, the viewport's live/play/scrub logic, the HUD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QMessageBox

from explorer.fly_camera import Action, KeyBindings
from ui.controls_panel import ControlsPanel
from ui.hud import depth_text, memory_in_use
from ui.keys import KeyCaptureButton, key_name
from ui.settings import ExplorerSettings
from ui.settings_dialog import SettingsDialog
from ui.viewport import Viewport


def test_settings_round_trip_through_qsettings(settings):
    edited = ExplorerSettings(
        KeyBindings(forward="Z", back="X"),
        sensitivity_deg_per_px=0.3,
        speed_mps=2.5,
        capture_mouse=True,
        model_dir="/models/wan",
        depth_model_dir="/models/depth-anything-metric",
        sky_model_dir="/models/segformer-ade",
    )
    edited.save(settings)
    loaded = ExplorerSettings.load(settings)
    assert loaded == edited and loaded.problems == []
    assert settings.fileName().endswith("settings.ini"), "tests must never touch the user's configuration"


def test_damaged_settings_fall_back_to_defaults_and_say_why(settings):
    settings.setValue("bindings", '{"forward": "S"}')  # S is already "back"
    settings.setValue("speed_mps", "fast")
    loaded = ExplorerSettings.load(settings)
    assert loaded.bindings == KeyBindings() and loaded.speed_mps == 1.0
    assert any("key bindings" in p for p in loaded.problems) and any("speed_mps" in p for p in loaded.problems)


def test_key_names_match_the_binding_defaults():
    assert (
        key_name(Qt.Key.Key_W) == "W"
        and key_name(Qt.Key.Key_Control) == "Ctrl"
        and key_name(Qt.Key.Key_Shift) == "Shift"
    )
    assert KeyBindings().action_for(key_name(Qt.Key.Key_Control)) is Action.SLOW


def test_key_capture_button_records_a_lone_modifier(qtbot):
    button = KeyCaptureButton("Shift")
    qtbot.addWidget(button)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert button.text() == "press a key…"
    with qtbot.waitSignal(button.key_changed) as changed:
        qtbot.keyPress(button, Qt.Key.Key_Alt)
    assert changed.args == ["Alt"] and button.text() == "Alt" and not button.isChecked()


def test_settings_dialog_rebinds_keys_and_refuses_conflicts(qtbot, monkeypatch):
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: warnings.append(text))
    dialog = SettingsDialog(ExplorerSettings())
    qtbot.addWidget(dialog)
    forward = dialog.key_buttons[Action.FORWARD]
    qtbot.mouseClick(forward, Qt.MouseButton.LeftButton)
    qtbot.keyPress(forward, Qt.Key.Key_S)  # S is "back": a conflict
    dialog.accept()
    assert dialog.result_settings() is None and "'back'" in warnings[0] and "'forward'" in warnings[0]
    qtbot.mouseClick(forward, Qt.MouseButton.LeftButton)
    qtbot.keyPress(forward, Qt.Key.Key_Z)
    dialog.sensitivity.setValue(0.5)
    dialog.accept()
    result = dialog.result_settings()
    assert result.bindings.forward == "Z" and result.sensitivity_deg_per_px == 0.5


def test_settings_dialog_checks_the_model_folders_on_ok(qtbot, monkeypatch, tmp_path, save_tiny_segformer):
    """A depth or sky folder that fails its check keeps the dialog open with the reason; good ones are taken."""
    from tests.fake_hub import fake_depth_folder

    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: warnings.append(text))
    dialog = SettingsDialog(ExplorerSettings())
    qtbot.addWidget(dialog)
    relative = fake_depth_folder(tmp_path / "relative", depth_type="relative")
    dialog.depth_model_dir.setText(str(relative))
    dialog.sky_model_dir.setText(str(tmp_path / "no-such-folder"))
    dialog.accept()
    assert dialog.result_settings() is None, "the dialog stays open"
    assert "Depth model folder:" in warnings[0] and "predicts relative depth" in warnings[0]
    assert "Sky segmentation model:" in warnings[0] and "no-such-folder" in warnings[0]
    depth = fake_depth_folder(tmp_path / "metric")
    save_tiny_segformer(tmp_path / "sky", {0: "wall", 1: "sky"})
    dialog.depth_model_dir.setText(f" {depth} ")
    dialog.sky_model_dir.setText(str(tmp_path / "sky"))
    dialog.accept()
    result = dialog.result_settings()
    assert (result.depth_model_dir, result.sky_model_dir) == (str(depth), str(tmp_path / "sky"))
    assert len(warnings) == 1, "the folders are taken without surrounding spaces"


def test_controls_panel_modes_and_options(qtbot):
    panel = ControlsPanel()
    qtbot.addWidget(panel)
    assert panel.mode == "flight" and not panel.steps_box.isEnabled() and panel.generate_button.isEnabled()
    panel.set_mode("steps")
    assert panel.steps_box.isEnabled() and not panel.generate_button.isEnabled()
    with qtbot.waitSignal(panel.step_clicked) as clicked:
        qtbot.mouseClick(panel.step_buttons[Action.ORBIT_LEFT], Qt.MouseButton.LeftButton)
    assert clicked.args == [Action.ORBIT_LEFT]
    panel.steps.setValue(2)
    panel.prompt.setText("  a hallway ")
    assert panel.options().steps == 2 and panel.options().prompt == "a hallway"


def image(value, h=36, w=64):
    return np.full((h, w, 3), value, np.uint8)


def test_viewport_live_then_plays_frames_at_fps_then_scrubs(qtbot):
    viewport = Viewport(fps=100.0)
    qtbot.addWidget(viewport)
    viewport.resize(400, 300)
    viewport.show()
    viewport.set_live(image(200))
    assert viewport.shown_index == -1 and viewport.mode == "live"
    viewport.append_frames(np.stack([image(10 * i) for i in range(5)]))
    assert viewport.mode == "play" and viewport.frame_count == 5
    qtbot.waitUntil(lambda: viewport.shown_index == 4, timeout=2000)
    viewport.set_live(image(100))  # the camera moved after playback caught up: live again
    assert viewport.shown_index == -1
    viewport.scrub(2)
    assert viewport.mode == "scrub" and viewport.shown_index == 2 and viewport.slider.value() == 2
    viewport.append_frames(image(50)[None])
    assert viewport.shown_index == 2, "new frames do not yank the user off the timeline"
    viewport.follow()
    qtbot.waitUntil(lambda: viewport.shown_index == 5, timeout=2000)
    grab = viewport.view.grab().toImage()
    pixels = np.frombuffer(grab.constBits(), np.uint8)
    assert pixels.std() > 5


def test_memory_in_use_reports_rss_on_cpu():
    text = memory_in_use(torch.device("cpu"))
    assert text.startswith("cpu · RSS") and float(text.split()[-2]) > 0.01


def test_viewport_rejects_bad_images(qtbot):
    viewport = Viewport()
    qtbot.addWidget(viewport)
    with pytest.raises(ValueError, match="HxW|H,W"):
        viewport.set_live(np.zeros((10, 10), np.uint8))


def test_a_click_on_the_timeline_groove_shows_that_frame(qtbot):
    viewport = Viewport(fps=1000.0)
    qtbot.addWidget(viewport)
    viewport.resize(600, 300)
    viewport.show()
    qtbot.waitExposed(viewport)
    viewport.append_frames(np.stack([image(4 * i) for i in range(40)]))
    qtbot.waitUntil(lambda: viewport.shown_index == 39, timeout=2000)  # played through
    viewport.scrub(0)
    groove = viewport.slider
    qtbot.mouseClick(groove, Qt.MouseButton.LeftButton, pos=QPoint(groove.width() - 3, groove.height() // 2))
    assert groove.value() > 0, "the click moved the handle"
    assert viewport.mode == "scrub" and viewport.shown_index == groove.value(), "and the frame with it"


def test_viewport_overlay_and_timeline_number_frames_alike(qtbot):
    viewport = Viewport(fps=1000.0)
    qtbot.addWidget(viewport)
    viewport.append_frames(np.stack([image(i) for i in range(65)]))
    viewport.scrub(11)
    assert viewport.view.caption.endswith("frame 12 / 65") and viewport.position_label.text() == "frame 12 / 65"
    viewport.follow()  # play on: the last frame shown is the 65th in both places
    qtbot.waitUntil(lambda: viewport.shown_index == 64, timeout=2000)
    assert viewport.view.caption == "generated · frame 65 / 65" and viewport.position_label.text() == "frame 65 / 65"


def test_depth_text_names_the_source_its_fit_and_the_price_of_the_prior():
    assert depth_text("depth_anything:/models/da2-metric", 0.0214) == "depth: depth_anything (da2-metric) · fit ±2.1 %"
    assert depth_text("exact") == "depth: exact"
    assert "generated content beyond the photo is not remembered" in depth_text("prior")
