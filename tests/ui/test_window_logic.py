"""The main window's own logic on a fake controller (no model; the test plays the worker's part):
shortcuts, recording dialogs and state, camera reset, HUD and warnings, narrow layouts, remembered state."""

from __future__ import annotations

from PySide6.QtCore import Qt

from explorer.fly_camera import Action


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
