"""Rewind and branch: a per-segment history whose later part can be cut off and kept as a branch (Qt-free).

:class:`BranchingHistory` keeps one item per generated segment (the worker: a
:class:`MemoryCheckpoint` of the state after it; the window: the segment's frames and poses) and the
state before the first segment. :meth:`~BranchingHistory.rewind` cuts the history back to "after
segment ``k``" and either drops the later items or keeps them as a named branch;
:meth:`~BranchingHistory.switch` goes to a kept branch, keeping the current later items as a branch in
turn. The worker and the window drive two histories with the same calls and branch names, so their
states stay in step.

Memory checkpoints are full copies (a write may replace points, so a later memory cannot give back an
earlier one); :func:`trim_checkpoints` drops the oldest on the current line beyond a byte budget
(:data:`CHECKPOINT_BUDGET_BYTES`), after which rewinds reach back only as far as the oldest kept.

Segment numbers are global (a continued session starts at ``base = segments_done``); "after segment
``k``" means ``k`` segments done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from model.memory.base import SpatialMemory

T = TypeVar("T")

CHECKPOINT_BUDGET_BYTES = 1 << 30  # host memory the worker's checkpoints may use (1 GiB)


@dataclass
class Branch(Generic[T]):
    """Items cut off by a rewind: they followed segment ``fork`` (``fork`` segments done)."""

    fork: int
    items: list[T]

    @property
    def end(self) -> int:
        """Segments done at the branch's tip."""
        return self.fork + len(self.items)


class BranchingHistory(Generic[T]):
    """One item per segment after ``base`` segments, plus the branches cut off by rewinds.

    Args:
        base: segments done before the first item (0 for a new scene; a continued session's count).
        start: the state before the first item (what a rewind to ``base`` returns).
    """

    def __init__(self, base: int = 0, start: T | None = None) -> None:
        if base < 0:
            raise ValueError(f"base must be >= 0, got {base}")
        self.base, self.start = int(base), start
        self.items: list[T] = []
        self.branches: dict[str, Branch[T]] = {}

    @property
    def end(self) -> int:
        """Segments done (the last item's segment + 1)."""
        return self.base + len(self.items)

    def append(self, item: T) -> None:
        """The item of the segment just done."""
        self.items.append(item)

    def at(self, segments_done: int) -> T | None:
        """The item of "after ``segments_done`` segments" (``start`` at :attr:`base`)."""
        self._check(segments_done)
        return self.start if segments_done == self.base else self.items[segments_done - self.base - 1]

    def _check(self, segments_done: int) -> None:
        if not self.base <= segments_done <= self.end:
            raise ValueError(
                f"cannot go to {segments_done} segments done: this history holds {self.base} to {self.end}"
            )

    def rewind(self, segments_done: int, keep_as: str | None = None) -> list[T]:
        """Cut the history back to ``segments_done``; returns the cut items, kept as branch ``keep_as`` if named.

        Raises:
            ValueError: ``segments_done`` outside ``[base, end]``, or ``keep_as`` already used.
        """
        self._check(segments_done)
        if keep_as is not None and keep_as in self.branches:
            raise ValueError(f"a branch named {keep_as!r} exists already")
        cut = self.items[segments_done - self.base :]
        del self.items[segments_done - self.base :]
        if keep_as is not None and cut:
            self.branches[keep_as] = Branch(segments_done, list(cut))
        return cut

    def switch(self, name: str, keep_as: str | None = None) -> Branch[T]:
        """Go to branch ``name``: rewind to its fork (the current later items kept as ``keep_as``), then
        follow its items; the branch is removed from :attr:`branches` and returned.

        Raises:
            KeyError: no branch ``name``. ValueError: its fork is not in the current history.
        """
        if name not in self.branches:
            raise KeyError(f"no branch named {name!r} (branches: {', '.join(self.branches) or 'none'})")
        branch = self.branches[name]
        self._check(branch.fork)
        del self.branches[name]
        self.rewind(branch.fork, keep_as)
        self.items.extend(branch.items)
        return branch


@dataclass
class MemoryCheckpoint:
    """What the generation worker needs to continue after a segment: a copy of the memory (on the CPU),
    the last frame ``[H, W, 3]`` uint8, its pose ``[4, 4]`` float64 w2c, the segments done, and the
    poses of the frames that provenance refers to (global frame id -> ``[4, 4]`` w2c)."""

    memory: SpatialMemory
    last_frame: np.ndarray
    last_pose: torch.Tensor
    segments_done: int
    poses_by_frame: dict[int, np.ndarray]

    @classmethod
    def take(
        cls,
        memory: SpatialMemory,
        last_frame: np.ndarray,
        last_pose: torch.Tensor,
        segments_done: int,
        poses_by_frame: dict[int, np.ndarray],
    ) -> MemoryCheckpoint:
        """Copies of everything given (``memory.clone()`` moved to the CPU: later writes cannot touch it)."""
        return cls(
            memory.clone().to("cpu"),
            np.array(last_frame, dtype=np.uint8, copy=True),
            last_pose.detach().to("cpu", torch.float64).clone(),
            int(segments_done),
            dict(poses_by_frame),
        )

    @property
    def nbytes(self) -> int:
        """Host bytes held: the memory's points (:meth:`~model.memory.base.SpatialMemory.stats`) and the frame."""
        return int(self.memory.stats().bytes) + int(self.last_frame.nbytes)

    def restore(self, device: str | torch.device) -> SpatialMemory:
        """A fresh copy of the memory on ``device`` (the checkpoint stays as it is)."""
        return self.memory.clone().to(device)


def trim_checkpoints(
    history: BranchingHistory[MemoryCheckpoint | None], budget_bytes: int = CHECKPOINT_BUDGET_BYTES
) -> int:
    """Replace the oldest checkpoints of the current line (``start`` first) by None until every checkpoint
    held (branches included) fits in ``budget_bytes``; the newest one always stays. Returns how many were dropped.
    """

    def size(item) -> int:
        return 0 if item is None else item.nbytes

    total = size(history.start) + sum(size(c) for c in history.items)
    total += sum(size(c) for branch in history.branches.values() for c in branch.items)
    dropped = 0
    line = [history.base + k for k in range(len(history.items) + 1)]  # segments done of start, items...
    for done in line[:-1]:
        if total <= budget_bytes:
            break
        item = history.at(done)
        if item is None:
            continue
        total -= size(item)
        if done == history.base:
            history.start = None
        else:
            history.items[done - history.base - 1] = None
        dropped += 1
    return dropped
