"""The status-bar HUD: generation state, segment/step progress, depth source, frame rates, device and memory.

State, progress and depth also go to the on-canvas HUD (:class:`ui.hud_overlay.HudOverlay`) when one is given.
"""

from __future__ import annotations

from pathlib import PurePath

import psutil
import torch
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from ui.hud_overlay import HudOverlay


def memory_in_use(device: torch.device | str) -> str:
    """``"cuda:0 · 5.2 GiB allocated"`` (torch.cuda.memory_allocated) or ``"cpu · RSS 1.3 GiB"`` (this process)."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} · {torch.cuda.memory_allocated(device) / 2**30:.2f} GiB allocated"
    return f"{device.type} · RSS {psutil.Process().memory_info().rss / 2**30:.2f} GiB"


#: What the flat prior costs, said next to the depth source (see :mod:`model.memory.alignment`).
PRIOR_DEPTH_PRICE = "no depth model: generated content beyond the photo is not remembered"


def depth_text(source: str, residual: float | None = None) -> str:
    """Short HUD label of the depth of generated frames.

    Args:
        source: the segment's ``depth_source`` (``"exact"``, ``"prior"`` or a model's ``"type:/folder"``).
        residual: the segment's ``depth_residual`` (relative), None when nothing was fitted.

    Returns:
        e.g. ``"depth: depth_anything (da2-metric) · fit ±2.1 %"``, ``"depth: exact"``, or for the prior
        ``"depth: prior · no depth model: generated content beyond the photo is not remembered"``.
    """
    if source == "prior":
        return f"depth: prior · {PRIOR_DEPTH_PRICE}"
    kind, _, folder = source.partition(":")
    name = f"{kind} ({PurePath(folder).name})" if folder else source
    fit = "" if residual is None else f" · fit ±{100.0 * residual:.1f} %"
    return f"depth: {name}{fit}"


class Hud:
    """Permanent widgets on a window's status bar; transient messages use the bar itself.

    Attributes:
        state: generation state ("ready: …" with the keys to use, "loading…", "generating", "cancelling…").
        progress: segment/step progress bar ("segment 2 · step 5/20").
        depth: where the depth of generated frames comes from and how well it fits the memory
            (:func:`depth_text`).
        rates: display fps and generation seconds per frame.
        memory: device and memory in use.
        overlay: the on-canvas HUD that mirrors state and progress (None: none).
    """

    def __init__(self, bar: QStatusBar, overlay: HudOverlay | None = None) -> None:
        self.bar, self.overlay = bar, overlay
        self.state = QLabel("idle")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.clear_progress()
        self.depth = QLabel("")
        self.rates = QLabel("— fps")
        self.memory = QLabel("")
        for widget in (self.state, self.progress, self.depth, self.rates, self.memory):
            bar.addPermanentWidget(widget)

    def _mirror(self, **changes) -> None:
        if self.overlay is not None:
            self.overlay.update(**changes)

    def set_state(self, text: str) -> None:
        self.state.setText(text)
        self._mirror(state=text)

    def set_step(self, segment: int, step: int, steps: int, queued: int = 0) -> None:
        """Denoising progress of the running segment (``queued``: segments waiting after it)."""
        self.progress.setRange(0, max(steps, 1))
        self.progress.setValue(step)
        waiting = f" (+{queued} queued)" if queued else ""
        self.progress.setFormat(f"segment {segment + 1} · step {step}/{steps}{waiting}")
        self._mirror(segment=segment, step=step, steps=steps, queued=queued)

    def set_done(self, text: str) -> None:
        """A segment finished: a full bar with ``text``."""
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat(text)
        self._mirror(segment=None, state=text)

    def clear_progress(self, text: str = "no segment") -> None:
        """Nothing finished to show (a new scene, a cancelled segment): an empty bar with ``text``."""
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat(text)
        self._mirror(segment=None)

    def set_depth(self, source: str, residual: float | None = None) -> None:
        """The depth source of the scene or of the last segment (see :func:`depth_text`)."""
        self.depth.setText(depth_text(source, residual))
        self._mirror(depth=self.depth.text())

    def set_rates(self, display_fps: float, seconds_per_frame: float | None) -> None:
        generation = f" · {seconds_per_frame:.2f} s/frame" if seconds_per_frame else ""
        self.rates.setText(f"{display_fps:.0f} fps{generation}")

    def set_device(self, device: torch.device | str) -> None:
        self.memory.setText(memory_in_use(device))
