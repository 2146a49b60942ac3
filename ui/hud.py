"""The status-bar HUD: generation state, segment/step progress, frame rates, device and memory in use.

State and progress also go to the on-canvas HUD (:class:`ui.hud_overlay.HudOverlay`) when one is given.
"""

from __future__ import annotations

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


class Hud:
    """Permanent widgets on a window's status bar; transient messages use the bar itself.

    Attributes:
        state: generation state ("ready: …" with the keys to use, "loading…", "generating", "cancelling…").
        progress: segment/step progress bar ("segment 2 · step 5/20").
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
        self.rates = QLabel("— fps")
        self.memory = QLabel("")
        for widget in (self.state, self.progress, self.rates, self.memory):
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

    def set_rates(self, display_fps: float, seconds_per_frame: float | None) -> None:
        generation = f" · {seconds_per_frame:.2f} s/frame" if seconds_per_frame else ""
        self.rates.setText(f"{display_fps:.0f} fps{generation}")

    def set_device(self, device: torch.device | str) -> None:
        self.memory.setText(memory_in_use(device))
