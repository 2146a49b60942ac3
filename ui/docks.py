"""The main window's two side docks (controls on the left, the latent cache on the right) and how they
keep the viewport the widest part of the window."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

NARROW_WIDTH = 1280  # below this window width the two docks share one tabbed column (the viewport keeps over half)
DOCK_MIN_WIDTH = 200  # a dock's content scrolls when the dock is narrower than it


def add_scrolling_dock(window: QMainWindow, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
    """A dock of ``window`` holding ``widget`` in a scroll area, so the dock can be narrower than the widget."""
    scroll = QScrollArea()
    scroll.setWidget(widget)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setMinimumWidth(DOCK_MIN_WIDTH)
    dock = QDockWidget(title, window)
    dock.setObjectName(title)
    dock.setWidget(scroll)
    window.addDockWidget(area, dock)
    return dock


class SideDocks:
    """The left and right docks of ``window``, which share one tabbed column when the window is narrow."""

    def __init__(self, window: QMainWindow, left: QDockWidget, right: QDockWidget) -> None:
        self.window, self.left, self.right = window, left, right
        self.narrow = False  # the docks share one tabbed column

    def fit(self) -> None:
        """Keep the viewport the widest part of the window (call on every resize).

        Below :data:`NARROW_WIDTH` the right dock becomes a tab beside the left one (one column
        instead of two) and goes back to the right when the window is wide again, each time at its
        natural width; layouts the user made (floating or moved docks) are left alone. Dock contents
        scroll, so at the window's minimum width the column is only :data:`DOCK_MIN_WIDTH`.
        """
        w, left_dock, right_dock = self.window, self.left, self.right
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        narrow = w.width() < NARROW_WIDTH
        if narrow and not self.narrow:
            in_place = w.dockWidgetArea(left_dock) == left and w.dockWidgetArea(right_dock) == right
            if in_place and not (left_dock.isFloating() or right_dock.isFloating()):
                w.tabifyDockWidget(left_dock, right_dock)
                left_dock.raise_()
                w.resizeDocks([left_dock], [left_dock.widget().sizeHint().width()], Qt.Orientation.Horizontal)
        elif not narrow and self.narrow and right_dock in w.tabifiedDockWidgets(left_dock):
            w.addDockWidget(right, right_dock)
            docks = [left_dock, right_dock]
            w.resizeDocks(docks, [dock.widget().sizeHint().width() for dock in docks], Qt.Orientation.Horizontal)
        self.narrow = narrow
