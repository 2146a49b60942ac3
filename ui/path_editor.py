"""The camera-path editor dock: keyframes from the current camera, a smooth path through them, previewed
through the memory and generated segment by segment (the logic is :class:`explorer.camera_path.CameraPath`).

:class:`PathEditor` is the widget (keyframe list, time, buttons); :class:`PathFlow` connects it to the
main window: "Add keyframe" takes the fly camera's pose, every change redraws the path's frustums in
the cache panel and tells the worker (recordings save the path with the session), "Preview" flies the
path through the memory preview at the video frame rate, "Generate along path" queues the path's
segments one after another (each when the one before has finished, so the generation mailbox never
merges them), and Import / Export read and write nerfstudio camera-path JSON or RealEstate10K text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from explorer.camera_path import CameraPath
from ui.settings import last_folder, remember_folder

PATH_FILTER = "nerfstudio camera path (*.json);;RealEstate10K cameras (*.txt)"


class PathEditor(QWidget):
    """Keyframe list with add / up / down / delete, the selected keyframe's time, and the path's actions.

    Signals:
        add_clicked, preview_clicked, generate_clicked, import_clicked, export_clicked: the buttons.
        changed: the keyframes changed (added, moved, deleted, retimed, imported).
    """

    add_clicked = Signal()
    preview_clicked = Signal()
    generate_clicked = Signal()
    import_clicked = Signal()
    export_clicked = Signal()
    changed = Signal()

    def __init__(self, fps: float = 16.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = CameraPath(fps)
        self.list = QListWidget()
        self.list.setToolTip("Keyframes of the planned path: time, camera position (m)")
        self.list.currentRowChanged.connect(self._selected)
        self.time_box = QDoubleSpinBox()
        self.time_box.setRange(-1e4, 1e4)
        self.time_box.setDecimals(2)
        self.time_box.setSuffix(" s")
        self.time_box.setToolTip("Time of the selected keyframe (between its neighbours')")
        self.time_box.editingFinished.connect(self._retime)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        buttons = {}
        for key, text, tip in (
            ("add", "Add keyframe", "Add the current camera as the next keyframe"),
            ("up", "Up", "Move the selected keyframe earlier (its time slot stays)"),
            ("down", "Down", "Move the selected keyframe later"),
            ("delete", "Delete", "Delete the selected keyframe"),
            ("preview", "Preview", "Fly the path through the memory preview"),
            ("generate", "Generate along path", "Generate the path's segments one after another"),
            ("import", "Import…", "Read nerfstudio camera-path JSON or RealEstate10K cameras"),
            ("export", "Export…", "Write the path as nerfstudio camera-path JSON or RealEstate10K cameras"),
        ):
            buttons[key] = QPushButton(text)
            buttons[key].setToolTip(tip)
        self.buttons = buttons
        buttons["add"].clicked.connect(self.add_clicked)
        buttons["up"].clicked.connect(lambda: self.move_selected(-1))
        buttons["down"].clicked.connect(lambda: self.move_selected(1))
        buttons["delete"].clicked.connect(self.delete_selected)
        buttons["preview"].clicked.connect(self.preview_clicked)
        buttons["generate"].clicked.connect(self.generate_clicked)
        buttons["import"].clicked.connect(self.import_clicked)
        buttons["export"].clicked.connect(self.export_clicked)
        grid = QGridLayout()
        for i, key in enumerate(("add", "up", "down", "delete", "preview", "generate", "import", "export")):
            grid.addWidget(buttons[key], i // 2, i % 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list, stretch=1)
        layout.addWidget(self.time_box)
        layout.addLayout(grid)
        layout.addWidget(self.summary)
        self.refresh()

    def set_path(self, path: CameraPath) -> None:
        """Show (and edit) ``path``."""
        self.path = path
        self.refresh()
        self.changed.emit()

    def add(self, w2c) -> None:
        """Append a keyframe at ``w2c`` ``[4, 4]`` and select it."""
        self.path.add(w2c)
        self.refresh(len(self.path) - 1)
        self.changed.emit()

    def selected(self) -> int:
        """The selected keyframe (-1: none)."""
        return self.list.currentRow()

    def move_selected(self, step: int) -> None:
        index = self.selected()
        if 0 <= index + step < len(self.path) and index >= 0:
            self.path.move(index, index + step)
            self.refresh(index + step)
            self.changed.emit()

    def delete_selected(self) -> None:
        index = self.selected()
        if index >= 0:
            self.path.delete(index)
            self.refresh(min(index, len(self.path) - 1))
            self.changed.emit()

    def _retime(self) -> None:
        index = self.selected()
        if index < 0 or self.time_box.value() == self.path.keyframes[index].time_s:
            return
        try:
            self.path.retime(index, self.time_box.value())
        except ValueError as error:
            self.summary.setText(f"⚠ {error}")
            self.time_box.setValue(self.path.keyframes[index].time_s)
            return
        self.refresh(index)
        self.changed.emit()

    def _selected(self, index: int) -> None:
        self.time_box.setEnabled(index >= 0)
        if index >= 0:
            self.time_box.blockSignals(True)
            self.time_box.setValue(self.path.keyframes[index].time_s)
            self.time_box.blockSignals(False)

    def refresh(self, select: int | None = None) -> None:
        """Redraw the list (selecting row ``select``) and the summary."""
        self.list.blockSignals(True)
        self.list.clear()
        for i, key in enumerate(self.path.keyframes):
            x, y, z = np.linalg.inv(key.w2c)[:3, 3]
            self.list.addItem(f"{i + 1}. {key.time_s:6.2f} s   ({x:+.2f}, {y:+.2f}, {z:+.2f}) m")
        self.list.blockSignals(False)
        row = select if select is not None and 0 <= select < len(self.path) else -1
        self.list.setCurrentRow(row)
        self._selected(row)
        for key in ("up", "down", "delete", "preview", "generate", "export"):
            self.buttons[key].setEnabled(len(self.path) > 0)
        n = len(self.path)
        self.summary.setText(
            f"{n} keyframe{'s' * (n != 1)}, {self.path.duration_s:.1f} s at {self.path.fps:g} fps"
            if n
            else "No keyframes: fly somewhere and press Add keyframe."
        )


class PathFlow(QObject):
    """Wires a :class:`PathEditor` to the main window (see the module docstring).

    Args:
        window: the :class:`ui.main_window.MainWindow` (its camera, preview, cache panel, controller).
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.editor = PathEditor(window.viewport.fps)
        self.remaining: list = []  # path segments still to queue, in order
        self._preview_poses: np.ndarray | None = None
        self._preview_timer = QTimer(self)
        self._preview_timer.setInterval(max(1, round(1000 / window.viewport.fps)))
        self._preview_timer.timeout.connect(self._preview_step)
        self.editor.add_clicked.connect(self.add_keyframe)
        self.editor.preview_clicked.connect(self.preview)
        self.editor.generate_clicked.connect(self.generate)
        self.editor.import_clicked.connect(self.choose_import)
        self.editor.export_clicked.connect(self.choose_export)
        self.editor.changed.connect(self._changed)
        c = window.controller
        c.segment_ready.connect(self._queue_next)
        c.cancelled.connect(self.stop)
        c.failed.connect(self.stop)
        c.scene_ready.connect(self._scene_ready)

    # ---- editing -----------------------------------------------------------------------------

    def add_keyframe(self) -> None:
        """A keyframe at the fly camera's pose."""
        if self.window.camera is None:
            QMessageBox.information(self.window, "Camera path", "Open a scene first.")
            return
        self.editor.add(self.window.camera.w2c.numpy())

    def _changed(self) -> None:
        path = self.editor.path
        self.window.cache_panel.set_planned_path(path.sample().numpy() if len(path) else None)
        self.window.controller.set_camera_path(path.to_dict() if len(path) else None)

    def _scene_ready(self, scene) -> None:
        """A session brings its saved path; any other scene keeps the path being edited."""
        if self.window.scene is not scene:
            return
        replayed = self.window.replayed
        saved = replayed.camera_path if replayed is not None else None
        if saved is not None:
            self.editor.set_path(saved)
        else:
            self._changed()

    # ---- preview and generation --------------------------------------------------------------

    def preview(self) -> None:
        """Fly the sampled path through the memory preview (at the video frame rate), then show the camera's view."""
        if self.window.scene is None or not len(self.editor.path):
            return
        self._preview_poses = self.editor.path.sample().numpy()
        self._preview_index = 0
        self.window.viewport.follow()  # leave the timeline: the preview shows in the big picture
        self._preview_timer.start()

    @property
    def previewing(self) -> bool:
        return self._preview_timer.isActive()

    def _preview_step(self) -> None:
        if self._preview_poses is None or self._preview_index >= len(self._preview_poses):
            self._preview_timer.stop()
            if self.window.camera is not None:  # back to what the camera sees
                self.window.preview.render(self.window.camera.w2c.numpy(), self.window.scene)
            return
        w2c = self._preview_poses[self._preview_index]
        self.window.preview.render(w2c, self.window.scene)
        self.window.cache_panel.set_cameras(
            np.stack(self.window.trajectory), w2c, np.asarray(self.window.scene.K), *self._size()
        )
        self._preview_index += 1

    def _size(self) -> tuple[int, int]:
        height, width = np.asarray(self.window.scene.image).shape[:2]
        return width, height

    def generate(self) -> None:
        """Queue the path's segments, the first from where generation stands (no jump), one at a time."""
        window = self.window
        if window.scene is None or window.flight is None:
            QMessageBox.information(window, "Generate along path", "Open a scene first.")
            return
        if window.pending:
            QMessageBox.information(window, "Generate along path", "Wait for the running segment (or Cancel) first.")
            return
        try:
            self.remaining = self.editor.path.segments(start_w2c=window.flight.anchor_w2c)
        except ValueError as error:
            QMessageBox.information(window, "Generate along path", str(error))
            return
        window.statusBar().showMessage(f"Generating {len(self.remaining)} segments along the path", 5000)
        self._queue_next()

    def _queue_next(self, _result=None) -> None:
        if self.remaining:
            self.window.queue_poses(self.remaining.pop(0))

    def stop(self, *_args) -> None:
        """Drop the path segments not yet queued (a cancel or an error)."""
        self.remaining = []
        self._preview_timer.stop()

    # ---- files -------------------------------------------------------------------------------

    def choose_import(self) -> None:
        store = self.window.store
        folder = last_folder(store, "path")
        path, _ = QFileDialog.getOpenFileName(self.window, "Import camera path", folder, PATH_FILTER)
        if path:
            remember_folder(store, "path", path)
            self.import_file(path)

    def import_file(self, path: str | Path) -> bool:
        """Replace the keyframes by a file's poses; a bad file gets a message naming it. Whether it loaded."""
        try:
            loaded = CameraPath.from_file(path)
        except (ValueError, OSError) as error:
            QMessageBox.warning(self.window, "Import camera path", f"{error}")
            return False
        self.editor.set_path(loaded)
        self.window.statusBar().showMessage(f"Imported {len(loaded)} keyframes from {path}", 8000)
        return True

    def choose_export(self) -> None:
        store = self.window.store
        suggested = str(Path(last_folder(store, "path")) / "camera_path.json")
        path, _ = QFileDialog.getSaveFileName(self.window, "Export camera path", suggested, PATH_FILTER)
        if path:
            remember_folder(store, "path", path)
            self.export_file(path)

    def export_file(self, path: str | Path) -> bool:
        """Write the sampled path (``.json``: nerfstudio camera path; else RealEstate10K). Whether it was written."""
        scene = self.window.scene
        if scene is None or not len(self.editor.path):
            QMessageBox.information(self.window, "Export camera path", "Add keyframes to an open scene first.")
            return False
        width, height = self._size()
        try:
            self.editor.path.export(path, scene.K, width, height)
        except (ValueError, OSError) as error:
            QMessageBox.warning(self.window, "Export camera path", f"{path}: {error}")
            return False
        self.window.statusBar().showMessage(f"Camera path written to {path}", 8000)
        return True
