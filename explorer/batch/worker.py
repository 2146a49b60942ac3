"""A batch worker: keeps one generation stack loaded and runs ``generate`` jobs one after another.

Plain Python (no Ray): :mod:`explorer.batch.ray_runner` makes it a Ray actor (one per GPU, or per
``--cpus-per-job`` CPUs), and it can be driven directly (benchmarks, a GPU machine without Ray).
The backbone is loaded once per worker and reused for every job that needs the same stack
(:meth:`BatchWorker.load_stack`); :attr:`BatchWorker.model_loads` counts the loads. A job's failure
(a bad input file, a NaN pose, an out-of-memory error) becomes an ``error`` record; the worker
carries on with the next job.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import time
from dataclasses import asdict
from pathlib import Path

import torch

from explorer.batch.jobs import BatchJob
from explorer.generate import run_generate
from model.generation.backbone import BackboneConfig
from model.generation.pipeline import check_branch_weights
from model.generation.stack import GenerationStack, load_generation_stack
from model.io.errors import error_line

#: A progress-bar line (``generating:  50%|#####     | 1/2 ...``), left out of the record's log.
PROGRESS = re.compile(r"^[^:]*: *\d+%\|")
#: Lines of a job's stderr (warnings, notes, status) kept in its record.
LOG_LINES = 20


class BatchWorker:
    """Runs jobs with a cached generation stack (the last one loaded; a different one replaces it).

    Args:
        threads: torch intra-op threads of this worker (the CPUs it was given); None: torch's default.

    Attributes:
        model_loads: how many stacks this worker has loaded (1 for a batch of one backend, however many jobs).
        worker_id: ``host:pid``.
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = f"{self.host}:{self.pid}"
        self.model_loads = 0
        self._key: tuple | None = None
        self._stack: GenerationStack | None = None
        self._load_seconds = 0.0

    def load_stack(
        self,
        config: BackboneConfig,
        memory_weights: str | None = None,
        frame_hw: tuple[int, int] | None = None,
        *,
        mode: str = "inpaint",
        on_status=None,
    ) -> GenerationStack:
        """The stack of ``config`` + ``memory_weights``: the cached one when it matches, else a new load.

        Same contract as :func:`model.generation.stack.load_generation_stack` (the mode and frame size
        are checked on every call).
        """
        check_branch_weights(mode, bool(memory_weights))
        key = (tuple(sorted(asdict(config).items())), memory_weights or None)
        if key != self._key:
            self._stack = self._key = None  # drop the old stack before the new one takes the memory
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            started = time.perf_counter()
            self._stack = load_generation_stack(config, memory_weights, None, mode=mode, on_status=on_status)
            self._key = key
            self.model_loads += 1
            self._load_seconds += time.perf_counter() - started
        if frame_hw is not None:
            self._stack.backbone.check_image_size(*frame_hw)
        return self._stack

    def describe(self) -> dict:
        """``worker``, ``host``, ``pid``, ``model_loads``: the worker fields of a record."""
        return {"worker": self.worker_id, "host": self.host, "pid": self.pid, "model_loads": self.model_loads}

    def run(self, job: BatchJob, out_dir: str) -> dict:
        """Run ``job`` writing into ``out_dir``; returns its record (see :mod:`explorer.batch.results`).

        Never raises for a job's own failure: the record's ``status`` is ``"error"`` and ``error``
        says why (``"<file>: <reason>"`` for a bad input).
        """
        started, self._load_seconds = time.perf_counter(), 0.0
        log = io.StringIO()
        record: dict = {"id": job.id, "status": "ok", "error": None}
        try:
            with contextlib.redirect_stderr(log):
                report = run_generate(job.generate_args(out_dir), load_stack=self.load_stack)
                generated = time.perf_counter()
                record.update(_report_fields(report))
                if job.eval:
                    from explorer.evaluate import json_safe, run_eval
                    from explorer.truth import truth_metrics

                    video = job.outputs(out_dir)[0]
                    metrics, _ = run_eval(video)
                    record["metrics"] = json_safe({**metrics, "truth": truth_metrics(video)})
                    record["eval_s"] = time.perf_counter() - generated
        except Exception as exc:  # noqa: BLE001 -- any failure of one job becomes its record; the batch goes on
            record.update(status="error", error=error_line(exc))
        record.update(self.describe())
        record["load_s"] = self._load_seconds
        record["total_s"] = time.perf_counter() - started
        lines = [line for line in log.getvalue().splitlines() if line.strip() and not PROGRESS.match(line)]
        record["log"] = lines[-LOG_LINES:]
        return record


def _report_fields(report: dict) -> dict:
    """The record fields from a ``generate`` report: frames, timings, s/frame, cache size."""
    segments = report["segments"]
    generate_s = sum(s["timings_s"]["total"] for s in segments)
    new_frames = report["trajectory"]["frames"] - 1  # each segment adds 32 new frames
    return {
        "frames": report["trajectory"]["frames"],
        "segments": len(segments),
        "generate_s": generate_s,
        "seconds_per_frame": generate_s / max(new_frames, 1),
        "seconds_per_frame_last_segment": segments[-1]["seconds_per_frame"],
        "cache_mib": report["memory"]["bytes"] / 2**20,
        "memory_points": report["memory"]["points"],
        "output": str(Path(report["settings"]["out"])),
    }
