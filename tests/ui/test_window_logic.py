"""The main window's own logic on a fake controller (no model; the test plays the worker's part):
shortcuts, recording dialogs and state, camera reset, HUD and warnings, narrow layouts, remembered state."""

from __future__ import annotations

import torch
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


def test_reset_right_after_a_step_is_a_teleport_not_a_segment(qtbot, fake_window, fake_controller):
    fake_controller.open(fake_window, fake_controller.scene())
    fake_window.controls.set_mode("steps")
    fake_window.viewport.view.setFocus()
    qtbot.keyClick(fake_window.viewport.view, Qt.Key.Key_I)  # a step forward: one segment
    assert len(fake_controller.calls("queue_segment")) == 1
    fake_window.controls.set_mode("flight")  # free flight queues a segment for any 0.4 m flown
    qtbot.keyClick(fake_window.viewport.view, Qt.Key.Key_U)
    assert torch.equal(fake_window.camera.w2c, fake_window.camera.start_w2c)
    assert torch.equal(fake_window.flight.anchor_w2c, fake_window.camera.start_w2c), "the next segment starts where the reset went"
    for _ in range(3):  # camera ticks record the pose; the 0.5 m jump back must not count as flown
        with qtbot.waitSignal(fake_window.tick_timer.timeout, timeout=1000):
            pass
    assert len(fake_controller.calls("queue_segment")) == 1, "the reset queued no segment"
