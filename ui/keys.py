"""Key names for the fly camera's bindings and a button that records one key.

Bindings store key names as ``QKeySequence(key).toString()`` text (see
:mod:`explorer.fly_camera`), except that the Control key is called ``"Ctrl"`` like on keyboards
and in the default bindings (Qt itself prints ``"Control"`` for a lone Control key).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import QPushButton, QWidget

_RENAMES = {"Control": "Ctrl"}


def key_name(key: int | Qt.Key) -> str:
    """Binding name of a Qt key code (``Qt.Key_W`` -> ``"W"``, ``Qt.Key_Control`` -> ``"Ctrl"``)."""
    text = QKeySequence(int(key)).toString()
    return _RENAMES.get(text, text)


class KeyCaptureButton(QPushButton):
    """Shows a key name; click it, then press any key (modifiers alone included) to rebind.

    Signals:
        key_changed(str): the new key name.
    """

    key_changed = Signal(str)

    def __init__(self, key: str, parent: QWidget | None = None) -> None:
        super().__init__(key, parent)
        self._key = key
        self.setCheckable(True)
        self.toggled.connect(lambda on: self.setText("press a key…" if on else self._key))

    @property
    def key(self) -> str:
        return self._key

    def set_key(self, key: str) -> None:
        """Show ``key`` and stop listening."""
        self._key = key
        self.setChecked(False)
        self.setText(key)
        self.key_changed.emit(key)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt override)
        if not self.isChecked():
            super().keyPressEvent(event)
            return
        self.set_key(key_name(event.key()))
        event.accept()
