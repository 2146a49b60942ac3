"""The latest-value mailbox between the GUI thread (which queues segments) and the generation thread.

At most one job waits beyond the running one. A newer job replaces the waiting one; when it
continues it (its first pose is the waiting one's last, as :class:`explorer.flight.FlightPath`
makes them) both paths are merged and resampled into one segment
(:func:`explorer.flight.resample_path`), so the chain of segments never jumps.
"""

from __future__ import annotations

import threading

import torch

from explorer.flight import resample_path
from explorer.worker.messages import SegmentJob


class SegmentMailbox:
    """Thread-safe latest-value mailbox: the running job and at most one waiting job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: SegmentJob | None = None
        self._running: SegmentJob | None = None

    def put(self, job: SegmentJob) -> str:
        """Queue ``job``; returns ``"queued"``, ``"merged"`` (continues the waiting job) or ``"replaced"``."""
        with self._lock:
            pending = self._pending
            if pending is None:
                self._pending = job
                return "queued"
            if len(pending.poses) == len(job.poses) and torch.allclose(
                pending.poses[-1], job.poses[0], atol=1e-9, rtol=0
            ):
                merged = resample_path(torch.cat([pending.poses, job.poses[1:]]), len(job.poses))
                actions = "+".join(a for a in (pending.action, job.action) if a)
                self._pending = SegmentJob(merged, actions)
                return "merged"
            self._pending = job
            return "replaced"

    def take(self) -> SegmentJob | None:
        """The waiting job, now running (None when nothing waits)."""
        with self._lock:
            job, self._pending = self._pending, None
            if job is not None:
                self._running = job
            return job

    def done(self) -> None:
        """The running job has ended (finished, cancelled or failed)."""
        with self._lock:
            self._running = None

    def cancel_all(self) -> bool:
        """Cancel the running job and drop the waiting one; True if anything was running or waiting."""
        with self._lock:
            found = self._running is not None or self._pending is not None
            if self._running is not None:
                self._running.cancel.set()
            self._pending = None
            return found

    @property
    def busy(self) -> bool:
        """Whether a job is running or waiting."""
        with self._lock:
            return self._running is not None or self._pending is not None
