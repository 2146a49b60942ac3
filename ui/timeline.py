"""The viewport's timeline slider with a frame-range selection (File → Save video writes the selection).

Shift+click selects from the frame on screen to the clicked frame; shift+drag selects from where the
drag started to where it is; a click without Shift (or :meth:`TimelineSlider.clear_selection`) clears
the selection. The selection is drawn as a translucent band over the groove. Frame numbers are 0-based
indices into the viewport's generated frames.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QSlider, QStyle, QStyleOptionSlider

SELECTION_COLOR = QColor(255, 170, 0, 150)  # amber band: visible on light and dark groove styles


class TimelineSlider(QSlider):
    """A horizontal :class:`QSlider` whose Shift+mouse gestures select a frame range (module docstring).

    Signals:
        selection_changed(object): the new selection, ``(first, last)`` 0-based inclusive, or None.
    """

    selection_changed = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self._selection: tuple[int, int] | None = None
        self._drag_from: int | None = None  # the frame a Shift+drag started at

    @property
    def selection(self) -> tuple[int, int] | None:
        """``(first, last)`` selected frames (0-based, inclusive, first <= last), or None."""
        return self._selection

    def set_selection(self, first: int | None, last: int | None = None) -> None:
        """Select frames ``first..last`` (either order; clipped to the range); ``first=None`` clears."""
        if first is None or self.maximum() < self.minimum():
            selection = None
        else:
            last = first if last is None else last
            a, b = sorted((int(first), int(last)))
            a, b = max(a, self.minimum()), min(b, self.maximum())
            selection = (a, b) if a <= b else None
        if selection != self._selection:
            self._selection = selection
            self.update()
            self.selection_changed.emit(selection)

    def clear_selection(self) -> None:
        self.set_selection(None)

    def clip_selection(self) -> None:
        """Keep the selection within the slider's range (after frames were removed); cleared when none is left."""
        if self._selection is not None:
            self.set_selection(*self._selection)

    # ---- geometry ------------------------------------------------------------------------

    def _option(self) -> QStyleOptionSlider:
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        return option

    def _groove(self) -> QRect:
        return self.style().subControlRect(
            QStyle.ComplexControl.CC_Slider, self._option(), QStyle.SubControl.SC_SliderGroove, self
        )

    def _handle_width(self) -> int:
        handle = self.style().subControlRect(
            QStyle.ComplexControl.CC_Slider, self._option(), QStyle.SubControl.SC_SliderHandle, self
        )
        return handle.width()

    def value_at(self, x: float) -> int:
        """The frame under widget x coordinate ``x`` (pixels)."""
        groove, half = self._groove(), self._handle_width() // 2
        span = max(groove.width() - 2 * half, 1)
        return QStyle.sliderValueFromPosition(
            self.minimum(), self.maximum(), int(round(x - groove.x() - half)), span, self.invertedAppearance()
        )

    def x_of(self, value: int) -> int:
        """Widget x coordinate (pixels) of the centre of frame ``value``'s handle position."""
        groove, half = self._groove(), self._handle_width() // 2
        span = max(groove.width() - 2 * half, 1)
        offset = QStyle.sliderPositionFromValue(self.minimum(), self.maximum(), value, span, self.invertedAppearance())
        return groove.x() + half + offset

    # ---- mouse and painting -----------------------------------------------------------------

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.button() == Qt.MouseButton.LeftButton and event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            clicked = self.value_at(event.position().x())
            self._drag_from = clicked
            self.set_selection(self.value(), clicked)
            event.accept()
            return
        if event.button() == Qt.MouseButton.LeftButton:
            self.clear_selection()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._drag_from is not None:
            here = self.value_at(event.position().x())
            if here != self._drag_from:
                self.set_selection(self._drag_from, here)
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._drag_from is not None:
            self._drag_from = None
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().paintEvent(event)
        if self._selection is None:
            return
        first, last = self._selection
        half = max(self._handle_width() // 2, 2)
        left, right = self.x_of(first) - half, self.x_of(last) + half
        painter = QPainter(self)
        painter.fillRect(QRect(left, 1, max(right - left, 2), self.height() - 2), SELECTION_COLOR)
        painter.end()
