"""Recent photos and sessions: kept in the window's QSettings store, offered in File → Open recent
and on the empty-state screen (the viewport before a scene is open).

Lists hold at most :data:`MAX_RECENT` paths, newest first, without duplicates; entries whose file
or folder is gone are left out when read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, Qt
from PySide6.QtWidgets import QLabel, QMenu, QPushButton, QVBoxLayout, QWidget

MAX_RECENT = 8
KINDS = ("photo", "session")


class RecentFiles:
    """The recent photos and sessions of a settings ``store``."""

    def __init__(self, store: QSettings) -> None:
        self.store = store

    def items(self, kind: str) -> list[str]:
        """Recent paths of ``kind`` (``"photo"`` or ``"session"``), newest first, existing ones only."""
        if kind not in KINDS:
            raise ValueError(f"recent kind must be one of {KINDS}, got {kind!r}")
        raw = self.store.value(f"recent/{kind}s", "[]")
        try:
            paths = [str(p) for p in json.loads(raw)] if isinstance(raw, str) else []
        except ValueError:
            paths = []  # a damaged entry: start the list again
        exists = Path.is_file if kind == "photo" else Path.is_dir
        return [p for p in paths if exists(Path(p))]

    def add(self, kind: str, path: str) -> None:
        """Put ``path`` first in the list of ``kind`` (absolute; an earlier entry of it moves up)."""
        path = str(Path(path).resolve())
        paths = [path, *(p for p in self.items(kind) if p != path)][:MAX_RECENT]
        self.store.setValue(f"recent/{kind}s", json.dumps(paths))
        self.store.sync()

    def clear(self) -> None:
        for kind in KINDS:
            self.store.setValue(f"recent/{kind}s", "[]")
        self.store.sync()


def fill_recent_menu(
    menu: QMenu, recent: RecentFiles, open_photo: Callable[[str], None], open_session: Callable[[str], None]
) -> None:
    """(Re)build ``menu``: recent photos, then recent sessions, then "Clear" (call on ``aboutToShow``)."""
    menu.clear()
    for kind, opener in (("photo", open_photo), ("session", open_session)):
        paths = recent.items(kind)
        menu.addSection(f"{kind.capitalize()}s")
        if not paths:
            menu.addAction(f"no recent {kind}s").setEnabled(False)
        for number, path in enumerate(paths, start=1):
            action = menu.addAction(f"&{number} {Path(path).name}", lambda p=path, o=opener: o(p))
            action.setToolTip(path)
            action.setStatusTip(path)
    menu.addSeparator()
    menu.addAction("Clear recent", recent.clear)


class EmptyState(QWidget):
    """What the viewport shows before a scene is open: how to start, and buttons for recent files."""

    def __init__(
        self,
        parent: QWidget,
        recent: RecentFiles,
        open_photo: Callable[[str], None],
        open_session: Callable[[str], None],
    ) -> None:
        super().__init__(parent)
        self.recent, self.open_photo, self.open_session = recent, open_photo, open_session
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setStyleSheet(
            "QWidget { background: transparent; color: rgb(200, 200, 210); }"
            "QPushButton { text-align: left; padding: 3px 8px; border: 1px solid rgb(70, 70, 80); border-radius: 4px; }"
            "QPushButton:focus, QPushButton:hover { background: rgb(45, 55, 75); }"
        )
        self.layout_ = QVBoxLayout(self)
        self.buttons: list[QPushButton] = []
        parent.installEventFilter(self)
        self.refresh()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt override)
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize:
            self._place()
        return False

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.refresh()
        super().showEvent(event)

    def _place(self) -> None:
        parent = self.parentWidget()
        self.move(max((parent.width() - self.width()) // 2, 0), parent.height() // 2 + 24)

    def refresh(self) -> None:
        """Rebuild the buttons from the recent lists and place the panel in the parent's lower half."""
        while self.layout_.count():
            item = self.layout_.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.buttons = []
        title = QLabel("Recent photos and sessions" if self._any() else "No recent photos or sessions yet")
        self.layout_.addWidget(title)
        for kind, opener in (("photo", self.open_photo), ("session", self.open_session)):
            for path in self.recent.items(kind)[:5]:
                button = QPushButton(f"{'🖼' if kind == 'photo' else '📁'}  {Path(path).name}")
                button.setToolTip(f"open the {kind} {path}")
                button.clicked.connect(lambda _=False, p=path, o=opener: o(p))
                self.layout_.addWidget(button)
                self.buttons.append(button)
        self.adjustSize()
        self._place()

    def _any(self) -> bool:
        return any(self.recent.items(kind) for kind in KINDS)
