"""The record button's flow: where to record (never replacing a session unasked), start and stop, and
what shows while recording (a red record button and the viewport's "● REC m:ss" badge).

The worker thread owns the recorder (it owns the memory too); this helper only asks
:class:`explorer.worker.GenerationController` to start or stop and keeps the window's side of it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMainWindow, QMessageBox

from explorer.session import SESSION_JSON
from explorer.worker import GenerationController
from ui.controls_panel import ControlsPanel
from ui.settings import last_folder, remember_folder
from ui.viewport import Viewport


def free_name(parent: Path, name: str) -> str:
    """``name`` if ``parent`` has nothing by that name, else the first free ``name-2``, ``name-3``, …
    (counting on from a name that already ends in one: ``kitchen-2`` -> ``kitchen-3``)."""
    if not (parent / name).exists():
        return name
    counted = re.fullmatch(r"(.+)-(\d{1,3})", name)
    stem = counted.group(1) if counted else name
    number = 2
    while (parent / f"{stem}-{number}").exists():
        number += 1
    return f"{stem}-{number}"


class RecordingFlow:
    """Recording for the main window, which owns one of these.

    Args:
        window: the parent of the dialogs; its status bar tells what happened.
        store: where the record dialog's last folder persists.
        controller: the generation facade whose worker records.
        controls: the controls panel (its record button turns red while recording).
        viewport: the viewport (its view shows the REC badge).
        scene_open: ``scene_open(title)`` says whether a scene is open (and, if not, tells the user).
    """

    def __init__(
        self,
        window: QMainWindow,
        store: QSettings,
        controller: GenerationController,
        controls: ControlsPanel,
        viewport: Viewport,
        scene_open: Callable[[str], bool],
    ) -> None:
        self.window, self.store, self.controller = window, store, controller
        self.controls, self.viewport, self.scene_open = controls, viewport, scene_open
        self.folder: str | None = None  # the worker records while this is set
        self._since: float | None = None  # time.monotonic() when the recording started
        self.branches: Callable[[], list[tuple]] = list  # the kept branches saved with a stopped recording

    def set_recording(self, on: bool) -> None:
        """Record into a folder the user picks, or stop.

        A stop request queues behind the running segment in the worker, so that segment still goes
        into the recording, and ``recording_saved`` follows once the files are written.
        """
        if on and self.folder is None and self.scene_open("Record"):
            folder = self.choose_folder()
            if folder:
                self.start(folder)
        elif not on and self.folder is not None:
            self.controller.stop_recording(self.branches())
            self.window.statusBar().showMessage("Recording stops after the running segment…", 5000)
            self.folder = None
        self._show(self.folder is not None)

    def choose_folder(self) -> str | None:
        """Ask where to record; None when the user gives up.

        An empty folder is used as it is. A folder holding a recorded session is replaced only after
        a yes to "Replace it?"; a no asks for the name of a new folder beside it. In any other folder
        that is not empty a new session folder is created, named by the user: its files are never
        touched (a recording replaces its folder as a whole).
        """
        caption = "Record the session into… (an empty folder, or one to create it in)"
        chosen = QFileDialog.getExistingDirectory(self.window, caption, last_folder(self.store, "record"))
        if not chosen:
            return None
        remember_folder(self.store, "record", chosen)
        folder = Path(chosen)
        if not any(folder.iterdir()):
            return str(folder)
        if not (folder / SESSION_JSON).is_file():
            return self._ask_new_folder(folder, time.strftime("session-%Y%m%d-%H%M%S"))
        buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No | QMessageBox.StandardButton.Cancel
        answer = QMessageBox.question(
            self.window,
            "Replace the recorded session?",
            f"{folder} already holds a recorded session.\n\nYes: replace it with this recording (when it is saved).\n"
            "No: record into a new folder beside it.",
            buttons,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Yes:
            return str(folder)
        if answer == QMessageBox.StandardButton.No:
            return self._ask_new_folder(folder.parent, folder.name)
        return None

    def _ask_new_folder(self, parent: Path, suggestion: str) -> str | None:
        """Ask for the name of a new (or empty) session folder in ``parent``, suggesting a free name like
        ``suggestion``."""
        prompt = f"Name of the new session folder in {parent}:"
        while True:
            suggested = free_name(parent, suggestion)
            typed, ok = QInputDialog.getText(self.window, "New session folder", prompt, text=suggested)
            name = typed.strip()
            if not ok or not name:
                return None
            target = parent / name
            if Path(name).name != name or name in (".", ".."):
                problem = f"'{name}': a folder name cannot contain a path separator, nor be . or .."
            elif target.exists() and not (target.is_dir() and not any(target.iterdir())):
                problem = f"'{name}' already exists in {parent} and is not an empty folder"
            else:
                return str(target)
            prompt = f"{problem}. Name of the new session folder in {parent}:"
            suggestion = Path(name).name or suggestion

    def start(self, folder: str) -> None:
        """Record every segment generated from now on into ``folder`` (replaced when the recording finishes)."""
        if not self.scene_open("Record"):
            return
        self.controller.start_recording(folder, fps=self.viewport.fps)
        self.folder = folder
        self._show(True)
        self.window.statusBar().showMessage(f"Recording into {folder}", 5000)

    def _show(self, on: bool) -> None:
        """Red record button and the viewport's REC badge with the elapsed time while recording."""
        self.controls.set_recording(on)
        if not on:
            self._since = None
        elif self._since is None:
            self._since = time.monotonic()
        self.update_badge()

    def update_badge(self) -> None:
        """The REC badge's elapsed time (called with the HUD refresh); no badge when not recording."""
        if self._since is None:
            self.viewport.view.set_badge("")
            return
        seconds = int(time.monotonic() - self._since)
        self.viewport.view.set_badge(f"● REC {seconds // 60}:{seconds % 60:02d}")

    def saved(self, folder: str) -> None:
        """The worker wrote the recording: the status bar says where."""
        self.window.statusBar().showMessage(f"Recording saved to {folder}", 8000)
