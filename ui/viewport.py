"""The viewport: the live memory preview at the current camera, generated frames played at the
target frame rate, and a timeline slider that scrubs back through everything generated.

What the big picture shows:

* **live** — the latest preview render (the memory seen from the current camera, with holes);
  it is replaced within one repaint of :meth:`Viewport.set_live`;
* **play** — generated frames not yet shown, one every ``1 / fps`` seconds; the live preview then
  sits in a corner inset so camera input stays visible;
* **scrub** — the frame chosen on the timeline (drag, or a click on the groove; playback paused);
  "Live" returns to following. Shift+click / Shift+drag on the timeline selects a frame range
  (:mod:`ui.timeline`, :attr:`Viewport.selection`), drawn as a band; File → Save video writes it.

The "Memory vs model" toggle shows, instead of a generated frame, the picture an overlay callable
(:meth:`Viewport.set_overlay`, :class:`ui.memory_view.MemoryView`) makes for it; "Rewind here…" asks
to continue from the segment of the frame shown (:class:`ui.rewind.RewindFlow`).

Frames are numbered from 1 on screen ("frame 12 / 65", the same in the caption and the timeline);
:attr:`Viewport.shown_index` is 0-based.

After playback the last generated frame stays up until the camera moves again. Warnings that
matter while they last (no depth model, no preview) sit in a banner above the picture until the
window resolves them (:meth:`Viewport.set_warning`); passing news goes to the status bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from ui.timeline import TimelineSlider


def to_qimage(image: np.ndarray) -> QImage:
    """``[H, W, 3]`` uint8 RGB -> a QImage that owns a copy of the pixels."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H,W,3] uint8 image, got {list(image.shape)}")
    height, width = image.shape[:2]
    return QImage(image.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class FrameView(QWidget):
    """Paints one image scaled to fit (letterboxed), a caption, an optional inset image, and a red
    badge in the top-right corner (:attr:`badge`, e.g. "● REC 0:42"; empty: none).

    Counts its paints so the HUD can show the display frame rate (:meth:`paint_rate`). Objects in
    :attr:`overlays` (each with ``paint(painter, rect)``, e.g. :class:`ui.hud_overlay.HudOverlay`)
    paint over everything else.

    Signals:
        wheel_turned(float): mouse-wheel notches over the view (positive: away from the user).
    """

    wheel_turned = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._image: QImage | None = None
        self._inset: QImage | None = None
        self.caption = ""
        self.inset_caption = ""
        self.hint = "File → Open image… or drop a photo here"
        self.badge = ""
        self.overlays: list = []
        self._paint_times: list[float] = []

    def show_image(
        self, image: QImage | None, caption: str, inset: QImage | None = None, inset_caption: str = ""
    ) -> None:
        """Display ``image`` (None: the hint text) with a caption and an optional corner inset."""
        self._image, self.caption, self._inset, self.inset_caption = image, caption, inset, inset_caption
        self.update()

    def set_badge(self, text: str) -> None:
        """Show ``text`` in the red corner badge ("" hides it)."""
        if text != self.badge:
            self.badge = text
            self.update()

    def paint_rate(self) -> float:
        """Paints per second over the last second."""
        now = time.perf_counter()
        self._paint_times = [t for t in self._paint_times if now - t <= 1.0]
        return float(len(self._paint_times))

    def _fit(self, image: QImage, box: QRectF) -> QRectF:
        scale = min(box.width() / image.width(), box.height() / image.height())
        w, h = image.width() * scale, image.height() * scale
        return QRectF(box.x() + (box.width() - w) / 2, box.y() + (box.height() - h) / 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self._paint_times.append(time.perf_counter())
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(12, 12, 14))
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF(), 9.0))
        painter.setFont(font)
        if self._image is None:
            painter.setPen(QColor(170, 170, 180))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.hint)
            self._draw_badge(painter)
            self._draw_overlays(painter)
            return
        target = self._fit(self._image, QRectF(self.rect()))
        painter.drawImage(target, self._image)
        self._draw_caption(painter, target.topLeft().x() + 8, target.topLeft().y() + 8, self.caption)
        if self._inset is not None:
            box = QRectF(0, 0, target.width() * 0.3, target.height() * 0.3)
            box.moveBottomRight(target.bottomRight() - QRectF(0, 0, 10, 10).bottomRight())
            inset = self._fit(self._inset, box)
            painter.drawImage(inset, self._inset)
            painter.setPen(QPen(QColor(255, 215, 40), 2))
            painter.drawRect(inset)
            self._draw_caption(painter, inset.x() + 4, inset.y() + 4, self.inset_caption)
        self._draw_badge(painter)  # over the picture
        self._draw_overlays(painter)

    def _draw_overlays(self, painter: QPainter) -> None:
        for overlay in self.overlays:
            overlay.paint(painter, QRectF(self.rect()))

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt override)
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.wheel_turned.emit(notches)
        event.accept()

    def _draw_badge(self, painter: QPainter) -> None:
        if not self.badge:
            return
        metrics = painter.fontMetrics()
        box = QRectF(0, 8, metrics.horizontalAdvance(self.badge) + 16, metrics.height() + 8)
        box.moveRight(self.width() - 8)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(210, 25, 25))
        painter.drawRoundedRect(box, 5, 5)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self.badge)
        painter.restore()

    @staticmethod
    def _draw_caption(painter: QPainter, x: float, y: float, text: str) -> None:
        if not text:
            return
        metrics = painter.fontMetrics()
        box = QRectF(x, y, metrics.horizontalAdvance(text) + 12, metrics.height() + 6)
        painter.fillRect(box, QColor(0, 0, 0, 150))
        painter.setPen(QColor(235, 235, 235))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


class Viewport(QWidget):
    """Live preview + generated-frame playback + timeline."""

    def __init__(self, fps: float = 16.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = FrameView()
        self._frames: list[np.ndarray] = []
        self._live: QImage | None = None
        self._shown = -1  # generated frame on screen, -1 = live
        self._next = 0  # next generated frame to play
        self.mode = "live"
        self._play_timer = QTimer(self)
        self._play_timer.timeout.connect(self._advance)
        self.set_fps(fps)

        self.play_button = QPushButton("Pause")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._toggle_pause)
        self.play_button.setToolTip("pause or play the generated frames (P)")
        self.live_button = QPushButton("Live")
        self.live_button.setToolTip("follow the camera and new frames again (Home)")
        self.live_button.clicked.connect(self.follow)
        self.slider = TimelineSlider()
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        # every user action on the slider (drag, click on the groove, wheel) but never setValue: no loop with playback
        self.slider.actionTriggered.connect(lambda _action: self.scrub(self.slider.sliderPosition()))
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setMinimumWidth(100)  # the timeline never collapses in a narrow window
        self.slider.setToolTip(
            "timeline: drag or click to scrub the generated frames (, and . step one frame); Shift+click or "
            "Shift+drag selects a range (File → Save video writes it), a plain click clears it"
        )
        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("QLabel { background: rgb(120, 85, 0); color: white; padding: 4px; }")
        self.warning_label.hide()
        self._warnings: dict[str, str] = {}
        self.position_label = QLabel("no frames yet")
        self.position_label.setMinimumWidth(140)
        self._overlay: Callable[[int, np.ndarray], QImage | None] | None = None
        self.memory_button = QPushButton("Memory vs model")
        self.memory_button.setCheckable(True)
        self.memory_button.setToolTip(
            "Show the generated frame beside the memory readout, and where the model had memory (green) "
            "or invented (red)"
        )
        self.memory_button.toggled.connect(self._toggle_memory_view)
        self.rewind_button = QPushButton("Rewind here…")
        self.rewind_button.setToolTip("Continue generating from the segment of the frame shown (its memory restored)")
        self.rewind_button.setEnabled(False)
        for button in (self.play_button, self.live_button, self.memory_button, self.rewind_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        row = QHBoxLayout()
        row.addWidget(self.play_button)
        row.addWidget(self.slider, stretch=1)
        row.addWidget(self.position_label)
        row.addWidget(self.live_button)
        tools = QHBoxLayout()  # a row of their own: the timeline row keeps the window's minimum width
        tools.addStretch(1)
        tools.addWidget(self.memory_button)
        tools.addWidget(self.rewind_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.warning_label)
        layout.addWidget(self.view, stretch=1)
        layout.addLayout(row)
        layout.addLayout(tools)

    # ---- state ---------------------------------------------------------------------------

    @property
    def frame_count(self) -> int:
        return len(self._frames)

    @property
    def shown_index(self) -> int:
        """Generated frame on screen, or -1 for the live preview."""
        return self._shown

    @property
    def selection(self) -> tuple[int, int] | None:
        """The timeline's selected frames ``(first, last)``, 0-based inclusive, or None (:mod:`ui.timeline`)."""
        return self.slider.selection

    @property
    def frames(self) -> list[np.ndarray]:
        """Every generated frame so far (``[H, W, 3]`` uint8 each)."""
        return self._frames

    @property
    def live_image(self) -> np.ndarray | None:
        """``[H, W, 3]`` uint8: the latest live preview (None before a scene)."""
        return getattr(self, "_live_array", None)

    @property
    def warnings(self) -> list[str]:
        """The warnings shown above the picture, in the order they came."""
        return list(self._warnings.values())

    def set_fps(self, fps: float) -> None:
        """Playback frame rate of generated frames."""
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        self._play_timer.setInterval(max(1, round(1000 / self.fps)))

    def set_overlay(self, overlay: Callable[[int, np.ndarray], QImage | None] | None) -> None:
        """What "Memory vs model" shows for generated frame ``index`` (``overlay(index, frame)``; None: the frame)."""
        self._overlay = overlay
        self._render()

    def _toggle_memory_view(self, on: bool) -> None:
        if on and self._shown < 0 and self._frames:
            self.scrub(len(self._frames) - 1)  # the view is about a generated frame: show the last one
        else:
            self._render()

    def truncate(self, count: int) -> list[np.ndarray]:
        """Keep the first ``count`` generated frames (a rewind); returns the frames removed."""
        count = max(0, int(count))
        cut, self._frames = self._frames[count:], self._frames[:count]
        self._next = min(self._next, count)
        if self._shown >= count:
            self._shown = count - 1
        if self._shown < 0:
            self.mode = "live"
        self._sync_timeline()
        self._render()
        return cut

    def clear(self) -> None:
        """Forget all frames and the live image (a new scene)."""
        self._frames, self._live, self._shown, self._next, self.mode = [], None, -1, 0, "live"
        self._live_array = None
        self._play_timer.stop()
        self._sync_timeline()
        self.view.show_image(None, "")

    def set_warning(self, key: str, text: str | None) -> None:
        """Show (or, with None, resolve) the warning ``key`` above the picture until it is resolved."""
        if text:
            self._warnings[key] = text
        else:
            self._warnings.pop(key, None)
        self.warning_label.setText("\n".join(f"⚠ {line}" for line in self._warnings.values()))
        self.warning_label.setVisible(bool(self._warnings))

    # ---- input ---------------------------------------------------------------------------

    def set_live(self, image: np.ndarray, caption: str = "preview · memory at the camera") -> None:
        """New preview at the current camera: shown at once (or as the inset while frames play)."""
        self._live = to_qimage(image)
        self._live_array = np.asarray(image, dtype=np.uint8)
        self._live_caption = caption
        if self.mode == "live" or (
            self.mode == "play" and not self._play_timer.isActive() and not self.play_button.isChecked()
        ):
            self.mode, self._shown = "live", -1
        self._render()

    def append_frames(self, frames: np.ndarray) -> None:
        """Add generated frames ``[T, H, W, 3]`` uint8; they play at :attr:`fps` unless scrubbing/paused."""
        self._frames.extend(np.asarray(frames, dtype=np.uint8))
        self._sync_timeline()
        if self.mode != "scrub":
            self.mode = "play"
            if not self.play_button.isChecked():
                self._play_timer.start()

    def scrub(self, index: int) -> None:
        """Show generated frame ``index`` and pause playback (the timeline)."""
        if not self._frames:
            return
        index = int(np.clip(index, 0, len(self._frames) - 1))
        self.mode, self._shown = "scrub", index
        self._play_timer.stop()
        self._render()

    def follow(self) -> None:
        """Leave scrubbing: play frames not yet played, else show the live preview."""
        self.play_button.setChecked(False)
        self.mode = "play" if self._next < len(self._frames) else "live"
        if self.mode == "play":
            self._play_timer.start()
        else:
            self._shown = -1
        self._render()

    def _toggle_pause(self, paused: bool) -> None:
        self.play_button.setText("Play" if paused else "Pause")
        if paused:
            self._play_timer.stop()
        elif self.mode == "play":
            self._play_timer.start()

    def _advance(self) -> None:
        if self._next < len(self._frames):
            self._shown = self._next
            self._next += 1
            self._render()
        if self._next >= len(self._frames):
            self._play_timer.stop()  # caught up: hold the last frame until the camera moves

    # ---- drawing -------------------------------------------------------------------------

    def _sync_timeline(self) -> None:
        self.slider.setEnabled(bool(self._frames))
        self.rewind_button.setEnabled(bool(self._frames))
        self.slider.setRange(0, max(0, len(self._frames) - 1))
        if self._frames:
            self.slider.clip_selection()
        else:
            self.slider.clear_selection()

    def _render(self) -> None:
        if self._shown < 0:
            self.view.show_image(self._live, getattr(self, "_live_caption", ""))
            self.position_label.setText(f"live · {len(self._frames)} frames" if self._frames else "live preview")
        else:
            image = to_qimage(self._frames[self._shown])
            composite = None
            if self.memory_button.isChecked() and self._overlay is not None:
                composite = self._overlay(self._shown, self._frames[self._shown])
            number = f"frame {self._shown + 1} / {len(self._frames)}"  # 1-based, like the timeline's label
            caption = f"{'generated' if self.mode != 'scrub' else 'timeline'} · {number}"
            if composite is not None:  # the three panels fill the view: no inset over them
                self.view.show_image(composite, caption)
            else:
                self.view.show_image(image, caption, self._live, "live preview")
            self.slider.blockSignals(True)
            self.slider.setValue(self._shown)
            self.slider.blockSignals(False)
            self.position_label.setText(number)
