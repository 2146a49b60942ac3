"""File → Save video / Save frame / Export point cloud / Save memory.

Each export asks for a file (the dialog opens in the folder the last export chose, see
:func:`ui.settings.last_folder`) and writes it atomically; a failure is a message box naming the
file, and the app keeps running.

* **Save video**: the timeline's selection (Shift+click / Shift+drag on the timeline,
  :mod:`ui.timeline`) when there is one; otherwise every generated frame so far or a range asked for
  (1-based, inclusive; the range dialog proposes everything, or frame 1 to the frame on screen while
  scrubbing); as H.264 MP4 at the viewport's playback fps (:class:`model.io.video.Mp4Writer`).
* **Save frame**: the picture on screen (the scrubbed or playing generated frame, else the live
  preview) as PNG.
* **Export point cloud**: the memory shown in the cache panel as binary PLY, one vertex per stored
  point (:mod:`explorer.cloud_export`).
* **Save memory**: the generation worker writes its memory (``.safetensors``, readable by
  ``--load-memory`` and ``main.py export-cloud``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSpinBox,
    QWidget,
)

from explorer.cloud_export import cloud_records
from model.io.images import save_png
from model.io.ply import write_ply_points
from model.io.video import Mp4Writer
from ui.settings import last_folder, remember_folder


def write_video(
    path: str | os.PathLike, frames: list[np.ndarray], fps: float, first: int = 0, last: int | None = None
) -> int:
    """Write ``frames[first:last + 1]`` (``[H, W, 3]`` uint8 each, even sizes) as MP4; returns the frame count.

    Raises:
        ValueError: an empty or out-of-range selection. OutputError: naming ``path`` when ffmpeg fails.
    """
    last = len(frames) - 1 if last is None else last
    if not 0 <= first <= last < len(frames):
        raise ValueError(f"{path}: frames {first + 1}..{last + 1} are not within the {len(frames)} generated")
    height, width = np.asarray(frames[first]).shape[:2]
    with Mp4Writer(path, width, height, fps) as video:
        for frame in frames[first : last + 1]:
            video.append(frame)
    return last - first + 1


class VideoRangeDialog(QDialog):
    """Which generated frames go into the video: first and last, 1-based, inclusive."""

    def __init__(self, count: int, first: int, last: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Save video: frames")
        self.first = QSpinBox(minimum=1, maximum=count, value=first)
        self.last = QSpinBox(minimum=1, maximum=count, value=last)
        self.first.setToolTip("first frame of the video (1 = the first generated frame)")
        self.last.setToolTip(f"last frame of the video ({count} = everything generated so far)")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(QLabel(f"{count} frames generated so far"))
        form.addRow("From frame", self.first)
        form.addRow("To frame", self.last)
        form.addRow(buttons)

    def selection(self) -> tuple[int, int]:
        """0-based ``(first, last)``, in order."""
        a, b = self.first.value() - 1, self.last.value() - 1
        return min(a, b), max(a, b)


class Exports:
    """The window's export actions (see the module docstring). ``window`` is the main window: its
    viewport, cache panel, controller and status bar are used."""

    def __init__(self, window: QMainWindow, store: QSettings) -> None:
        self.window, self.store = window, store

    def _ask(self, title: str, name: str, file_filter: str) -> str | None:
        suggested = Path(last_folder(self.store, "export")) / name
        path, _ = QFileDialog.getSaveFileName(self.window, title, str(suggested), file_filter)
        if not path:
            return None
        remember_folder(self.store, "export", path)
        return path

    def _done(self, message: str) -> None:
        self.window.statusBar().showMessage(message, 8000)

    def _failed(self, title: str, path: str, error: Exception) -> None:
        text = str(error) if str(path) in str(error) else f"{path}: {error}"
        QMessageBox.critical(self.window, title, text)

    # ---- video ---------------------------------------------------------------------------

    def save_video(self) -> None:
        """Write the timeline's selection, or ask for the frame range; then ask for the file and write the video."""
        viewport = self.window.viewport
        count = viewport.frame_count
        if count == 0:
            QMessageBox.information(self.window, "Save video", "Nothing generated yet: fly and generate first.")
            return
        if viewport.selection is not None:
            path = self._ask("Save video", "explorer.mp4", "MP4 video (*.mp4)")
            if path:
                self.save_video_to(path, *viewport.selection)
            return
        last = viewport.shown_index + 1 if viewport.mode == "scrub" else count
        dialog = VideoRangeDialog(count, 1, last, self.window)
        if not dialog.exec():
            return
        path = self._ask("Save video", "explorer.mp4", "MP4 video (*.mp4)")
        if path:
            self.save_video_to(path, *dialog.selection())

    def save_video_to(self, path: str, first: int = 0, last: int | None = None) -> int | None:
        """Write generated frames ``first..last`` (0-based, inclusive; default all) to ``path``; the frame count."""
        viewport = self.window.viewport
        if viewport.frame_count == 0:
            QMessageBox.information(self.window, "Save video", "Nothing generated yet: fly and generate first.")
            return None
        try:
            written = write_video(path, viewport.frames, viewport.fps, first, last)
        except (ValueError, OSError) as error:
            self._failed("Save video", path, error)
            return None
        self._done(f"Video written to {path} ({written} frames)")
        return written

    # ---- frame ---------------------------------------------------------------------------

    def current_frame(self) -> np.ndarray | None:
        """``[H, W, 3]`` uint8: the generated frame on screen, else the live preview; None before a scene."""
        viewport = self.window.viewport
        if viewport.shown_index >= 0:
            return viewport.frames[viewport.shown_index]
        return viewport.live_image

    def save_frame(self) -> None:
        path = self._ask("Save frame", "frame.png", "PNG image (*.png)")
        if path:
            self.save_frame_to(path)

    def save_frame_to(self, path: str) -> bool:
        """Write the picture on screen as PNG to ``path``; False (with a message) when there is none or it fails."""
        image = self.current_frame()
        if image is None:
            QMessageBox.information(self.window, "Save frame", "No picture yet: open a scene first.")
            return False
        try:
            save_png(path, image)
        except (ValueError, OSError) as error:
            self._failed("Save frame", path, error)
            return False
        self._done(f"Frame written to {path}")
        return True

    # ---- memory --------------------------------------------------------------------------

    def export_cloud(self) -> None:
        path = self._ask("Export point cloud", "memory.ply", "PLY point cloud (*.ply)")
        if path:
            self.export_cloud_to(path)

    def export_cloud_to(self, path: str) -> int | None:
        """Write the memory the cache panel shows as PLY to ``path``; the point count (None: nothing written)."""
        snapshot = self.window.cache_panel.snapshot
        if snapshot is None:
            QMessageBox.information(self.window, "Export point cloud", "No memory yet: open a scene first.")
            return None
        try:
            records = cloud_records(snapshot)
            write_ply_points(path, records)
        except (ValueError, OSError) as error:
            self._failed("Export point cloud", path, error)
            return None
        self._done(f"Point cloud written to {path} ({len(records):,} points)")
        return len(records)

    def save_memory(self) -> None:
        path = self._ask("Save memory", "memory.safetensors", "Memory (*.safetensors)")
        if path:
            self.save_memory_to(path)

    def save_memory_to(self, path: str) -> bool:
        """Ask the worker to write its memory to ``path`` (it says so in the status bar, or fails in a dialog)."""
        if self.window.scene is None:
            QMessageBox.information(self.window, "Save memory", "No memory yet: open a scene first.")
            return False
        self.window.controller.save_memory(path)
        return True
