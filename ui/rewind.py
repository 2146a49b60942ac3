"""Rewind and branch: continue from an earlier segment with the memory exactly as it was then.

:class:`RewindFlow` mirrors the worker's per-segment memory checkpoints
(:class:`explorer.history.BranchingHistory`) with what the window holds per segment: the frames it
added to the viewport, their poses, and its memory readout. "Rewind here…" (the viewport's button or
Timeline → Rewind to the frame shown) takes the segment of the frame on screen, asks whether the later
segments are kept as a branch or discarded, cuts the timeline and the trajectory back, and asks the
worker to restore its checkpoint; Timeline → Branches switches to a kept branch (the segments it
replaces become a branch in turn). When a recording stops, the branches kept so far are saved into its
folder (``branches/<slug>/``, :meth:`explorer.session.SessionRecorder.save_branch`); after re-opening that
session, Timeline → Branches lists them too ("saved"), and choosing one continues it (its frames from the
fork on, its memory at its tip) as a session of its own. The window applies a rewind or switch only when
the worker confirms it (``rewound``), with the same branch names, so both stay in step; a refusal (e.g. a checkpoint
dropped for its memory budget) comes as an error box and changes nothing. Refused here while a segment
runs or while recording (the recorded video cannot lose segments).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMessageBox

from explorer.flight import FlightPath
from explorer.history import BranchingHistory
from explorer.worker import SegmentReadout


@dataclass
class SegmentRecord:
    """What one segment added to the window: frames ``[H, W, 3]`` uint8 and their ``[4, 4]`` w2c
    (the segment's frames after the one it shares with the previous segment), its readout, and what the
    session records of it: the action, the depth source and the depth fit's residual."""

    frames: list[np.ndarray]
    w2c: list[np.ndarray]
    readout: SegmentReadout | None
    action: str = ""
    depth_source: str = ""
    depth_residual: float | None = None


class RewindFlow(QObject):
    """Rewind / branch actions of the main window (see the module docstring).

    Args:
        window: the :class:`ui.main_window.MainWindow`. memory_view: its :class:`ui.memory_view.MemoryView`.
    """

    def __init__(self, window, memory_view) -> None:
        super().__init__(window)
        self.window, self.memory_view = window, memory_view
        self.history: BranchingHistory[SegmentRecord] = BranchingHistory()
        self._branch_number = 0
        self._readouts: dict[int, SegmentReadout] = {}  # arrived before their segment_ready
        self._asked: tuple | None = None  # ("rewind", done, name) or ("switch", name, keep_as) until rewound
        menu = window.menuBar().addMenu("&Timeline")
        self.rewind_action = QAction("&Rewind to the frame shown…", self)
        self.rewind_action.setShortcut(QKeySequence("Ctrl+Shift+R"))
        self.rewind_action.triggered.connect(self.rewind_to_shown)
        menu.addAction(self.rewind_action)
        self.memory_action = QAction("&Memory vs model", self, checkable=True)
        self.memory_action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.memory_action.toggled.connect(window.viewport.memory_button.setChecked)
        window.viewport.memory_button.toggled.connect(self.memory_action.setChecked)
        menu.addAction(self.memory_action)
        path_action = QAction("Camera &path editor", self)
        path_action.setShortcut(QKeySequence("Ctrl+Shift+P"))
        path_action.triggered.connect(lambda: (window.path_dock.show(), window.path_dock.raise_()))
        menu.addAction(path_action)
        self.branch_menu = menu.addMenu("&Branches")
        self._fill_branch_menu()
        window.viewport.rewind_button.clicked.connect(self.rewind_to_shown)
        c = window.controller
        c.scene_ready.connect(self._scene_ready)
        c.readout_ready.connect(self._readout)
        c.segment_ready.connect(self._segment)
        c.rewound.connect(self._rewound)
        c.failed.connect(self._forget_request)
        window.recording.branches = self.branch_payload  # saved into the folder when a recording stops

    # ---- bookkeeping -------------------------------------------------------------------------

    def _scene_ready(self, scene) -> None:
        if self.window.scene is not scene:
            return  # the window ignored it (a reopen after a model reload)
        replayed = self.window.replayed
        first = replayed.first_segment if replayed is not None else scene.segments_done
        self.history = BranchingHistory(scene.segments_done)
        self._readouts = {}
        stride = self.window.pipeline_config().segment_frames - 1
        self.memory_view.reset(frame_offset=first * stride if replayed is not None else 0)
        self._fill_branch_menu()

    def _readout(self, readout: SegmentReadout) -> None:
        self._readouts[readout.index] = readout

    def _segment(self, result) -> None:
        """Record what the window just added for this segment (the window's own slot ran first)."""
        if result.index != self.history.end:
            return  # not on this line (cannot happen while rewinds wait for idle)
        added = len(result.frames) if self.window.viewport.frame_count == len(result.frames) else len(result.frames) - 1
        frames = self.window.viewport.frames[-added:]
        poses = list(np.asarray(result.w2c)[1:])  # the window's trajectory already holds the shared first pose
        self.history.append(
            SegmentRecord(
                list(frames),
                poses,
                self._readouts.pop(result.index, None),
                getattr(result, "action", "") or "",
                getattr(result, "depth_source", "") or "",
                getattr(result, "depth_residual", None),
            )
        )

    # ---- actions -------------------------------------------------------------------------------

    def segments_done_at(self, index: int) -> int:
        """Segments done after the segment that made viewport frame ``index`` (frames before the first
        recorded segment give :attr:`BranchingHistory.base`)."""
        end = self.window.viewport.frame_count - sum(len(r.frames) for r in self.history.items) - 1
        done = self.history.base
        for record in self.history.items:
            if index <= end:
                break
            end += len(record.frames)
            done += 1
        return done

    def _refusal(self) -> str | None:
        window = self.window
        if window.scene is None:
            return "Open a scene first."
        if window.pending or window.controller.busy:
            return "A segment is being generated: wait for it (or Cancel) first."
        if window.recording.folder is not None:
            return "Stop recording first: a recorded video cannot lose segments."
        return None

    def rewind_to_shown(self) -> None:
        """Ask how to rewind to the segment of the frame on screen, then do it."""
        refusal = self._refusal()
        shown = self.window.viewport.shown_index
        index = shown if shown >= 0 else self.window.viewport.frame_count - 1
        if refusal is None and (index < 0 or self.segments_done_at(index) >= self.history.end):
            refusal = (
                "Show an earlier frame on the timeline: a rewind continues after the segment of the frame shown, "
                "and no segment was generated after it in this run."
            )
        if refusal is not None:
            QMessageBox.information(self.window, "Rewind", refusal)
            return
        done = self.segments_done_at(index)
        box = QMessageBox(self.window)
        box.setWindowTitle("Rewind")
        box.setText(
            f"Continue after segment {done} with the memory as it was then?\n"
            f"The {self.history.end - done} later segment(s) can be kept as a branch (Timeline → Branches)."
        )
        keep = box.addButton("Keep as branch", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard them", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() in (keep, discard):
            self.rewind(done, keep=box.clickedButton() is keep)

    def rewind(self, segments_done: int, keep: bool) -> str | None:
        """Ask the worker to continue after ``segments_done`` (the later segments kept as a new branch when
        ``keep``); the window follows when it confirms. Returns the branch's name (None when discarded)."""
        refusal = self._refusal()
        if refusal is not None:
            raise ValueError(refusal)
        name = self._new_name() if keep else None
        self._asked = ("rewind", int(segments_done), name)
        self.window.controller.rewind(segments_done, name)
        return name

    def switch(self, name: str) -> str:
        """Ask the worker to continue at the tip of branch ``name``; the segments it replaces become a branch
        (its name returned). The window follows when the worker confirms."""
        refusal = self._refusal()
        if refusal is not None:
            raise ValueError(refusal)
        if name not in self.history.branches:
            raise ValueError(f"no branch named {name!r}")
        keep_as = self._new_name()
        self._asked = ("switch", name, keep_as)
        self.window.controller.switch_branch(name, keep_as)
        return keep_as

    def _forget_request(self, *_args) -> None:
        self._asked = None  # the worker refused: nothing changes here

    def _rewound(self, segments_done: int) -> None:
        """The worker continues after ``segments_done``: the window follows the request it made."""
        asked, self._asked = self._asked, None
        if asked is None:
            return
        if asked[0] == "rewind":
            self._cut_window(self.history.rewind(asked[1], asked[2]), asked[1])
        else:
            self._apply_switch(asked[1], asked[2])
        self._fill_branch_menu()
        if self.history.end != segments_done:  # cannot happen while both apply the same calls
            self.window.statusBar().showMessage(
                f"warning: the window is at segment {self.history.end}, the worker at {segments_done}", 8000
            )

    def _apply_switch(self, name: str, keep_as: str) -> None:
        fork = self.history.branches[name].fork
        cut = self.history.items[fork - self.history.base :]
        branch = self.history.switch(name, keep_as)
        self._cut_window(cut, fork)
        window = self.window
        for record in branch.items:
            window.viewport.append_frames(np.stack(record.frames))
            window.trajectory.extend(record.w2c)
            if record.readout is not None:
                self.memory_view.add(record.readout)
        self._moved_to(self.history.end)

    def _new_name(self) -> str:
        self._branch_number += 1
        return f"branch {self._branch_number}"

    def _cut_window(self, cut: list[SegmentRecord], segments_done: int) -> None:
        """Take the frames, poses and readouts of ``cut`` (the segments after ``segments_done``) out of the window."""
        window = self.window
        frames = sum(len(r.frames) for r in cut)
        poses = sum(len(r.w2c) for r in cut)
        window.viewport.truncate(window.viewport.frame_count - frames)
        del window.trajectory[len(window.trajectory) - poses :]
        self.memory_view.drop_after(segments_done)
        self._moved_to(segments_done)

    def _moved_to(self, segments_done: int) -> None:
        """The next segment starts at the last pose of the trajectory; the camera goes there."""
        window = self.window
        window.segments_done = segments_done
        last = torch.as_tensor(np.asarray(window.trajectory[-1]), dtype=torch.float64)
        window.flight = FlightPath(last, time.perf_counter())
        if window.camera is not None:
            window.camera.set_pose(last)
        window.viewport.scrub(window.viewport.frame_count - 1)
        window.cache_panel.set_cameras(
            np.stack(window.trajectory),
            last.numpy(),
            np.asarray(window.scene.K),
            np.asarray(window.scene.image).shape[1],
            np.asarray(window.scene.image).shape[0],
        )

    def frame_index_after(self, segments_done: int) -> int:
        """Viewport index of the last frame after ``segments_done`` segments of the current line (-1: none yet)."""
        self.history._check(segments_done)
        index = self.window.viewport.frame_count - sum(len(r.frames) for r in self.history.items) - 1
        return index + sum(len(r.frames) for r in self.history.items[: segments_done - self.history.base])

    def branch_payload(self) -> list[tuple]:
        """Every kept branch as ``(name, fork, frames, w2c, infos)``: per segment all its frames ``[T, H, W, 3]``
        uint8 and ``[T, 4, 4]`` w2c, the one shared with the previous segment first, and a dict of its
        ``action``, ``depth_source`` and ``depth_residual`` (what :meth:`explorer.session.SessionRecorder.save_branch`
        records)."""
        window, out = self.window, []
        for name, branch in self.history.branches.items():
            shared = self.frame_index_after(branch.fork)
            frame = window.viewport.frames[shared] if shared >= 0 else None
            pose = np.asarray(window.trajectory[max(shared, 0)])
            frames, poses = [], []
            for record in branch.items:
                full = list(record.frames) if len(record.frames) == len(record.w2c) + 1 else [frame, *record.frames]
                frames.append(np.stack(full))
                poses.append(np.stack([pose, *record.w2c]))
                frame, pose = full[-1], record.w2c[-1]
            infos = [
                {"action": r.action, "depth_source": r.depth_source, "depth_residual": r.depth_residual}
                for r in branch.items
            ]
            out.append((name, branch.fork, frames, poses, infos))
        return out

    def saved_branches(self) -> list:
        """The branches saved with the session the open scene continues (:func:`explorer.session.saved_branches`)."""
        replayed, scene = self.window.replayed, self.window.scene
        if replayed is None or scene is None or scene.source != f"session:{replayed.folder}":
            return []
        try:
            return replayed.branches
        except ValueError as error:
            self.window.statusBar().showMessage(f"warning: {error}", 8000)
            return []

    def open_saved(self, branch) -> None:
        """Continue a saved branch (:class:`explorer.session.SavedBranch`) as a session of its own."""
        refusal = self._refusal()
        if refusal is not None:
            QMessageBox.information(self.window, "Switch branch", refusal)
            return
        self.window.open_session(str(branch.folder))

    def _fill_branch_menu(self) -> None:
        self.branch_menu.clear()
        saved = self.saved_branches()
        for branch in saved:
            action = self.branch_menu.addAction(
                f"{branch.name} (saved): {branch.segments} segment(s) after segment {branch.fork}"
            )
            action.triggered.connect(lambda _checked=False, b=branch: self.open_saved(b))
        if not self.history.branches and not saved:
            self.branch_menu.addAction("(no branches)").setEnabled(False)
        for name, branch in self.history.branches.items():
            action = self.branch_menu.addAction(
                f"{name}: {len(branch.items)} segment(s) after segment {branch.fork}",
            )
            action.triggered.connect(lambda _checked=False, n=name: self._switch_clicked(n))

    def _switch_clicked(self, name: str) -> None:
        try:
            kept = self.switch(name)
        except ValueError as refusal:
            QMessageBox.information(self.window, "Switch branch", str(refusal))
            return
        self.window.statusBar().showMessage(f"Now on {name}; the segments it replaced are {kept}", 8000)
