"""Keys and mouse drive the fly camera through the window-level router (pose deltas after ticks)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QLineEdit, QVBoxLayout, QWidget

from explorer.fly_camera import Action, FlyCamera, KeyBindings
from ui.input_router import InputRouter
from ui.viewport import FrameView


@pytest.fixture
def rig(qtbot):
    """A window with a frame view and a text field, a router and a camera at the origin."""
    window = QWidget()
    view, text = FrameView(), QLineEdit()
    layout = QVBoxLayout(window)
    layout.addWidget(view)
    layout.addWidget(text)
    triggers = []
    router = InputRouter(window, view, triggers.append)
    router.camera = FlyCamera(np.eye(4), speed_mps=1.0, sensitivity_deg_per_px=0.1)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    view.setFocus()
    yield router, view, text, triggers
    router.detach()


def test_wasd_moves_the_camera_and_release_stops_it(qtbot, rig):
    router, view, _, _ = rig
    camera = router.camera
    qtbot.keyPress(view, Qt.Key.Key_W)
    camera.tick(0.5)
    assert np.allclose(camera.position, [0, 0, 0.5]), "W: forward is +z (OpenCV) at 1 m/s"
    qtbot.keyPress(view, Qt.Key.Key_Shift)
    camera.tick(0.25)
    assert np.allclose(camera.position, [0, 0, 1.5]), "Shift: x4"
    qtbot.keyRelease(view, Qt.Key.Key_Shift)
    qtbot.keyRelease(view, Qt.Key.Key_W)
    qtbot.keyPress(view, Qt.Key.Key_D)
    qtbot.keyPress(view, Qt.Key.Key_E)
    camera.tick(1.0)
    qtbot.keyRelease(view, Qt.Key.Key_D)
    qtbot.keyRelease(view, Qt.Key.Key_E)
    assert np.allclose(camera.position, [np.sqrt(0.5), -np.sqrt(0.5), 1.5]), "D + E: right and up (-y), normalised"
    assert camera.tick(1.0) is False and camera.held == frozenset()


def test_auto_repeat_is_ignored_and_triggers_are_dispatched(qtbot, rig):
    router, view, _, triggers = rig
    repeat = QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_W, Qt.KeyboardModifier.NoModifier, "w", True)
    QApplication.sendEvent(view, repeat)
    assert router.camera.held == frozenset(), "an auto-repeated press is not a new press"
    qtbot.keyPress(view, Qt.Key.Key_Space)
    qtbot.keyPress(view, Qt.Key.Key_Escape)
    qtbot.keyPress(view, Qt.Key.Key_I)
    assert triggers == [Action.GENERATE_NOW, Action.PAUSE, Action.STEP_FORWARD]


def test_typing_in_a_text_field_does_not_fly(qtbot, rig):
    router, _, text, _ = rig
    text.setFocus()
    qtbot.keyClicks(text, "wasd")
    assert text.text() == "wasd" and router.camera.held == frozenset()
    router.camera.tick(1.0)
    assert np.allclose(router.camera.position, 0.0)


def test_focus_loss_clears_held_keys(qtbot, rig):
    router, view, _, _ = rig
    qtbot.keyPress(view, Qt.Key.Key_W)
    assert Action.FORWARD in router.camera.held
    QApplication.sendEvent(router.window, QEvent(QEvent.Type.WindowDeactivate))
    assert router.camera.held == frozenset(), "no stuck keys after the window loses focus"


def test_rebound_keys_and_mouse_drag_look(qtbot, rig):
    router, view, _, _ = rig
    router.bindings = KeyBindings(forward="Z", back="X")
    qtbot.keyPress(view, Qt.Key.Key_W)
    assert router.camera.held == frozenset(), "W is no longer bound"
    qtbot.keyPress(view, Qt.Key.Key_Z)
    assert router.camera.held == {Action.FORWARD}
    qtbot.keyRelease(view, Qt.Key.Key_Z)
    start = view.rect().center()
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view, start + QPoint(50, 0))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=start + QPoint(50, 0))
    assert router.camera.yaw_deg == pytest.approx(5.0, abs=0.11), "50 px right at 0.1 deg/px turns right 5 degrees"
