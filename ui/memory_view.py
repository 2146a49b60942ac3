"""Memory vs model: for the frame on screen, what the model generated, what the memory showed it, and
where it had memory at all.

The worker sends one :class:`~explorer.worker.SegmentReadout` per segment (the readout decoded by the
VAE at each latent frame, and its visibility on the latent grid). :class:`MemoryView` keeps them and,
while the viewport's "Memory vs model" toggle is on, gives the viewport (:meth:`Viewport.set_overlay`)
a three-panel picture for the generated frame shown (:func:`compose`):

1. the generated frame;
2. the memory readout of the nearest latent frame, decoded (where the memory had nothing it is a zero
   latent: mid-grey with the tiny patch VAE);
3. the generated frame tinted **green** where the memory had a point (visible cells) and **red**
   where the model invented the content (holes), with the share of each in the label.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter

from explorer.worker import SegmentReadout
from ui.viewport import to_qimage

SEEN_RGB = np.array([40, 220, 90], np.float32)  # tint of cells the memory covered
INVENTED_RGB = np.array([235, 50, 60], np.float32)  # tint of holes the model filled in
TINT = 0.45  # share of the tint colour in the third panel
GAP_PX = 4  # dark gap between the panels
LABEL_MIN_HEIGHT = 360  # smaller frames are enlarged (whole pixels) so the panel labels are drawn sharp


def tint(frame: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``frame`` ``[H, W, 3]`` uint8 blended with green where ``visible`` ``[h, w]`` bool (upsampled to
    the frame by whole cells) and red elsewhere; ``[H, W, 3]`` uint8."""
    height, width = frame.shape[:2]
    h, w = visible.shape
    if height % h or width % w:
        raise ValueError(f"frame {width}x{height} is not a whole number of {w}x{h} latent cells")
    cells = np.repeat(np.repeat(visible, height // h, axis=0), width // w, axis=1)[..., None]
    colour = np.where(cells, SEEN_RGB, INVENTED_RGB)
    return np.clip((1.0 - TINT) * frame.astype(np.float32) + TINT * colour, 0, 255).round().astype(np.uint8)


def compose(frame: np.ndarray, readout: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The three panels side by side: ``[H, 3W + 2 GAP_PX, 3]`` uint8 (see the module docstring)."""
    if frame.shape != readout.shape:
        raise ValueError(f"frame {list(frame.shape)} and readout {list(readout.shape)} differ in size")
    gap = np.full((frame.shape[0], GAP_PX, 3), 12, np.uint8)
    return np.concatenate([frame, gap, readout, gap, tint(frame, visible)], axis=1)


def _label(image: QImage, texts: list[str], scale: int) -> QImage:
    """Each panel's name in its bottom-left corner (panels of equal width split by ``scale * GAP_PX``)."""
    painter = QPainter(image)
    font = painter.font()
    font.setPixelSize(max(10, image.width() // 70))  # about the same size on screen whatever the frame size
    painter.setFont(font)
    gap = scale * GAP_PX
    panel = (image.width() - 2 * gap) / 3
    metrics = painter.fontMetrics()
    for i, text in enumerate(texts):
        height = metrics.height() + 4
        box = QRectF(i * (panel + gap) + 3, image.height() - height - 3, metrics.horizontalAdvance(text) + 8, height)
        painter.fillRect(box, QColor(0, 0, 0, 170))
        painter.setPen(QColor(240, 240, 240))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
    painter.end()
    return image


class MemoryView:
    """The readouts of the segments generated so far and the composite for a viewport frame.

    Args:
        frame_offset: global frame id of the viewport's frame 0 (> 0 for a session continued from a
            later segment; see :meth:`reset`).
    """

    def __init__(self) -> None:
        self._readouts: dict[int, SegmentReadout] = {}
        self.frame_offset = 0
        self.segment_frames = 33

    def reset(self, frame_offset: int = 0) -> None:
        """A new scene: forget every readout."""
        self._readouts, self.frame_offset = {}, int(frame_offset)

    def add(self, readout: SegmentReadout) -> None:
        """The readout of one segment (a regenerated segment number replaces the old one)."""
        self._readouts[int(readout.index)] = readout
        self.segment_frames = int(readout.frame_ids[-1] - readout.frame_ids[0]) + 1

    def drop_after(self, segments_done: int) -> dict[int, SegmentReadout]:
        """Forget (and return) the readouts of segments ``>= segments_done`` (a rewind)."""
        cut = {i: r for i, r in self._readouts.items() if i >= segments_done}
        for i in cut:
            del self._readouts[i]
        return cut

    def restore(self, readouts: dict[int, SegmentReadout]) -> None:
        """Put back readouts returned by :meth:`drop_after` (switching to a kept branch)."""
        self._readouts.update(readouts)

    def readout_for(self, index: int) -> tuple[SegmentReadout, int] | None:
        """``(readout, latent frame)`` nearest to viewport frame ``index`` (None when its segment has none)."""
        frame_id = self.frame_offset + int(index)
        stride = self.segment_frames - 1
        segment = max(0, (frame_id - 1) // stride)  # a shared frame belongs to the segment it ends
        readout = self._readouts.get(segment)
        return None if readout is None else (readout, readout.latent_frame_of(frame_id))

    def overlay(self, index: int, frame: np.ndarray) -> QImage | None:
        """The composite for viewport frame ``index`` showing ``frame`` (None without a readout), enlarged by
        whole pixels to at least :data:`LABEL_MIN_HEIGHT` rows so the labels are readable."""
        found = self.readout_for(index)
        if found is None:
            return None
        readout, k = found
        visible = readout.visible[k]
        panels = compose(frame, readout.frames[k], visible)
        scale = max(1, -(-LABEL_MIN_HEIGHT // panels.shape[0]))
        image = to_qimage(np.repeat(np.repeat(panels, scale, axis=0), scale, axis=1) if scale > 1 else panels)
        seen = float(visible.mean())
        return _label(
            image,
            [
                "generated",
                f"memory readout (frame {int(readout.frame_ids[k]) - self.frame_offset + 1})",
                f"green: memory {seen:.0%} · red: invented {1 - seen:.0%}",
            ],
            scale,
        )
