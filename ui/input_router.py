"""Window-level keyboard and mouse routing to the fly camera.

Installed as an application event filter by the main window, so WASD drives the camera whichever
child widget has focus — the point-cloud panel's ``GLViewWidget`` never swallows them — except
while the user types in a text field, spin box or key-capture button, or a dialog is active.

* Key press / release of a bound key: motion and modifier keys go to ``FlyCamera.press/release``;
  trigger keys (Esc, U, Space, step keys) call :attr:`InputRouter.on_trigger`. Auto-repeated
  events are swallowed and ignored (a held key is one press).
* Bound keys win over menu shortcuts, except a key pressed with Ctrl, Alt or Meta that is the
  shortcut of one of the window's actions: Ctrl+Q quits although Q flies down (Ctrl alone, or
  Ctrl with a key no action uses, still flies slowly).
* Mouse: dragging with the left button on the frame view turns the camera by the pixel delta;
  in captured mode (``capture_mouse``) any motion turns it and the cursor is re-centred.
* Focus loss / window deactivation clears every held key (no stuck keys) and releases the mouse.
* While :attr:`InputRouter.paused`, movement keys and mouse-look are ignored; a click on the view
  sends the pause trigger again (resume).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtGui import QAction, QCursor, QKeySequence
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

from explorer.fly_camera import MODIFIER_ACTIONS, MOTION_ACTIONS, Action, FlyCamera, KeyBindings
from ui.keys import KeyCaptureButton, key_name

_TEXT_INPUTS = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit, QComboBox)
_SHORTCUT_MODIFIERS = (
    Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier
)


class InputRouter(QObject):
    """Routes keys of ``window`` and mouse motion on ``look_surface`` to a camera.

    Args:
        window: the main window (events for other windows, e.g. dialogs, are left alone).
        look_surface: the widget whose mouse drags turn the camera.
        on_trigger: called with trigger actions (pause, reset, generate_now, step actions).
    """

    def __init__(self, window: QWidget, look_surface: QWidget, on_trigger: Callable[[Action], None]) -> None:
        super().__init__(window)
        self.window, self.look_surface, self.on_trigger = window, look_surface, on_trigger
        self.camera: FlyCamera | None = None
        self.bindings = KeyBindings()
        self.capture_mouse = False
        self.paused = False
        self._drag_from: QPoint | None = None
        self._captured = False
        QApplication.instance().installEventFilter(self)

    # ---- state ---------------------------------------------------------------------------

    def release_all(self) -> None:
        """Clear held keys and release the mouse (focus loss, pause, dialogs)."""
        if self.camera is not None:
            self.camera.clear_held()
        self._drag_from = None
        if self._captured:
            self._captured = False
            self.look_surface.unsetCursor()
            self.look_surface.setMouseTracking(False)

    def _capture(self) -> None:
        self._captured = True
        self.look_surface.setCursor(Qt.CursorShape.BlankCursor)
        self.look_surface.setMouseTracking(True)
        QCursor.setPos(self._centre())

    def _centre(self) -> QPoint:
        return self.look_surface.mapToGlobal(self.look_surface.rect().center())

    def detach(self) -> None:
        """Stop filtering (the window is closing)."""
        QApplication.instance().removeEventFilter(self)

    # ---- filtering -----------------------------------------------------------------------

    def _routes_keys(self, target: QObject) -> bool:
        if not isinstance(target, QWidget) or target.window() is not self.window or not self.window.isActiveWindow():
            return False
        if isinstance(target, _TEXT_INPUTS) or (isinstance(target, KeyCaptureButton) and target.isChecked()):
            return False
        return QApplication.activeModalWidget() is None

    def eventFilter(self, target: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and self._routes_keys(target):
            return self._key(event, kind == QEvent.Type.KeyPress)
        if (
            kind == QEvent.Type.ShortcutOverride
            and self._routes_keys(target)
            and self.bindings.action_for(key_name(event.key()))
        ):
            if not self._is_window_shortcut(event):
                event.accept()  # our bindings win over menu shortcuts while flying
            return False
        if target is self.window and kind == QEvent.Type.WindowDeactivate:
            self.release_all()
        if target is self.look_surface and self.camera is not None:
            return self._mouse(event, kind)
        return False

    def _is_window_shortcut(self, event) -> bool:
        """Whether a key event with Ctrl/Alt/Meta held is the shortcut of an enabled action of the window."""
        if not event.modifiers() & _SHORTCUT_MODIFIERS:
            return False
        pressed = QKeySequence(event.keyCombination())
        return any(
            shortcut.matches(pressed) == QKeySequence.SequenceMatch.ExactMatch
            for action in self.window.findChildren(QAction)
            if action.isEnabled()
            for shortcut in action.shortcuts()
        )

    def _key(self, event, pressed: bool) -> bool:
        action = self.bindings.action_for(key_name(event.key()))
        if action is None or self.camera is None:
            return False
        if event.isAutoRepeat():
            return True
        if action in MOTION_ACTIONS or action in MODIFIER_ACTIONS:
            if pressed and not self.paused:
                self.camera.press(action)
            elif not pressed:
                self.camera.release(action)
        elif pressed:
            self.on_trigger(action)
        return True

    def _mouse(self, event, kind) -> bool:
        if kind == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            if self.paused:
                self.on_trigger(Action.PAUSE)  # a click on the view resumes
                return True
            if self.capture_mouse and not self._captured:
                self._capture()
                return True
            self._drag_from = event.globalPosition().toPoint()
            return True
        if kind == QEvent.Type.MouseButtonRelease and event.button() == Qt.MouseButton.LeftButton:
            self._drag_from = None
            return True
        if kind == QEvent.Type.MouseMove and not self.paused:
            here = event.globalPosition().toPoint()
            if self._captured:
                centre = self._centre()
                self.camera.look(here.x() - centre.x(), here.y() - centre.y())
                if here != centre:
                    QCursor.setPos(centre)
                return True
            if self._drag_from is not None:
                delta = here - self._drag_from
                self._drag_from = here
                self.camera.look(delta.x(), delta.y())
                return True
        return False
