"""The on-canvas HUD: what the explorer is doing, painted over the viewport's picture.

A translucent panel in the bottom-left corner of the frame view shows

* the driving mode and the fly speed (metres per second; the mouse wheel changes it, see
  :func:`wheel_speed`) and whether mouse-look is captured;
* the generation state, the running segment with its denoising step and a progress bar, and how
  many segments wait behind it;
* where the depth of generated frames comes from and how well it fits the memory (the status bar's
  :func:`ui.hud.depth_text`: the scene's source, then each segment's ``depth_source`` and residual);
* warnings that matter (the viewport's banner warnings), in amber.

While paused a large "PAUSED" sits in the middle of the view. The REC badge with the elapsed time
is the frame view's own (top-right, :meth:`ui.viewport.FrameView.set_badge`).

:class:`HudOverlay` holds that state and paints it; :class:`ui.viewport.FrameView` calls
:meth:`HudOverlay.paint` after its picture. Changing a field through the setters repaints the view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QWidget

#: Fly-speed factor per mouse-wheel notch (120 eighths of a degree), and the speed limits (m/s).
WHEEL_FACTOR = 1.25
MIN_SPEED_MPS, MAX_SPEED_MPS = 0.05, 20.0


def wheel_speed(speed_mps: float, notches: float) -> float:
    """The fly speed after turning the wheel ``notches`` notches (positive: away from the user, faster).

    Each notch multiplies the speed by :data:`WHEEL_FACTOR` (or divides it); the result is clamped
    to ``[MIN_SPEED_MPS, MAX_SPEED_MPS]``.
    """
    if not math.isfinite(notches):
        return speed_mps
    return float(min(max(speed_mps * WHEEL_FACTOR**notches, MIN_SPEED_MPS), MAX_SPEED_MPS))


@dataclass
class HudState:
    """What the HUD shows (one comment per field)."""

    mode: str = "flight"  # "flight" or "steps"
    speed_mps: float | None = None  # fly speed; None: no camera yet
    captured: bool = False  # mouse-look captured (the cursor is hidden)
    state: str = "no scene"  # "ready", "generating", "loading the model…", …
    segment: int | None = None  # 0-based segment being generated
    step: int = 0  # denoising step done of ``steps``
    steps: int = 0
    queued: int = 0  # segments waiting after the running one
    paused: bool = False
    depth: str | None = None  # "depth: <source> · fit ±x %" (ui.hud.depth_text), None before a scene
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[tuple[str, str]]:
        """``(kind, text)`` per HUD line; kind is ``"text"``, ``"progress"`` or ``"warning"``."""
        speed = f" · speed {self.speed_mps:.2f} m/s (wheel)" if self.speed_mps is not None else ""
        look = " · mouse captured" if self.captured else ""
        out = [("text", f"{self.mode} mode{speed}{look}"), ("text", self.state)]
        if self.segment is not None:
            waiting = f" · {self.queued} queued" if self.queued else ""
            out.append(("progress", f"segment {self.segment + 1} · step {self.step}/{self.steps}{waiting}"))
        elif self.queued:
            out.append(("text", f"{self.queued} queued"))
        if self.depth:
            out.append(("text", self.depth))
        out.extend(("warning", f"⚠ {text}") for text in self.warnings)
        return out


class HudOverlay:
    """The HUD's state, painted over ``view`` (a :class:`ui.viewport.FrameView`) by :meth:`paint`."""

    def __init__(self, view: QWidget) -> None:
        self.view = view
        self.state = HudState()
        self.visible = True

    def update(self, **changes) -> None:
        """Set fields of :attr:`state` (see :class:`HudState`) and repaint when anything changed."""
        changed = False
        for name, value in changes.items():
            if not hasattr(self.state, name):
                raise AttributeError(f"HudState has no field {name!r}")
            if getattr(self.state, name) != value:
                setattr(self.state, name, value)
                changed = True
        if changed:
            self.view.update()

    def set_visible(self, visible: bool) -> None:
        """Show or hide the HUD (View → HUD)."""
        self.visible = bool(visible)
        self.view.update()

    def paint(self, painter: QPainter, rect: QRectF) -> None:
        """Paint the HUD into ``rect`` (the view's area, logical pixels)."""
        if not self.visible:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = painter.fontMetrics()
        line_h = metrics.height() + 4
        lines = self.state.lines()
        width = max(metrics.horizontalAdvance(text) for _, text in lines) + 20
        width = min(max(width, 200), rect.width() - 16)
        box = QRectF(rect.left() + 8, rect.bottom() - 8 - line_h * len(lines) - 8, width, line_h * len(lines) + 8)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(box, 6, 6)
        y = box.top() + 4
        for kind, text in lines:
            row = QRectF(box.left() + 10, y, box.width() - 20, line_h)
            if kind == "progress" and self.state.steps:
                bar = QRectF(
                    row.left() - 4, row.top() + 1, (row.width() + 8) * self.state.step / self.state.steps, line_h - 2
                )
                painter.setBrush(QColor(40, 120, 210, 200))
                painter.drawRoundedRect(bar, 3, 3)
            painter.setPen(QColor(255, 200, 60) if kind == "warning" else QColor(240, 240, 240))
            painter.drawText(row, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
            painter.setPen(Qt.PenStyle.NoPen)
            y += line_h
        if self.state.paused:
            big = QFont(painter.font())
            big.setPointSizeF(big.pointSizeF() * 3)
            big.setBold(True)
            painter.setFont(big)
            text = "PAUSED"
            box = QRectF(0, 0, painter.fontMetrics().horizontalAdvance(text) + 40, painter.fontMetrics().height() + 20)
            box.moveCenter(rect.center())
            painter.setBrush(QColor(0, 0, 0, 170))
            painter.drawRoundedRect(box, 8, 8)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()
