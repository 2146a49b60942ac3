"""``DIR/results.jsonl`` of ``main.py render-batch`` and its summary table.

One JSON object per job of the latest run, appended (and flushed to disk) as each job ends, so an
interrupted batch keeps the records of the jobs it finished. A record holds:

* ``id``, ``status`` (``ok``, ``error``, or ``skipped``: its outputs were complete before this run;
  the fields of the run that made them are kept from the earlier record), ``error`` (one line);
* the worker: ``worker`` (``host:pid``), ``host``, ``pid``, ``model_loads`` (stacks that worker has
  loaded so far: 1 while the backbone stays loaded), ``restarted`` (the worker is a replacement of
  one that died);
* timings in seconds: ``load_s`` (this job's model load; 0 when the worker had it loaded),
  ``generate_s``, ``total_s``, ``eval_s``; ``seconds_per_frame`` (generation seconds per new frame),
  ``seconds_per_frame_last_segment``;
* ``frames``, ``segments``, ``cache_mib`` and ``memory_points`` (the memory at the end), ``metrics``
  (``eval: true`` jobs), ``output`` (the video), ``log`` (the job's last stderr lines).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from model.io.atomic import write_text_atomic

RESULTS_FILE = "results.jsonl"


def read_records(path: str | Path) -> dict[str, dict]:
    """The records of an earlier ``results.jsonl`` by job id (a missing file or a torn line is skipped)."""
    records = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            records[record["id"]] = record
    return records


class ResultsLog:
    """``DIR/results.jsonl`` of one run: starts with ``first`` records (written atomically), then
    :meth:`append` adds one line per finished job and flushes it to disk."""

    def __init__(self, out_dir: str | Path, first: list[dict]) -> None:
        self.path = Path(out_dir) / RESULTS_FILE
        self.records = list(first)
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in first))

    def append(self, record: dict) -> None:
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _cell(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(records: list[dict]) -> str:
    """A fixed-width table: one row per job (id, status, worker, loads, s/frame, cache MiB, total s,
    error), then the totals (jobs per status, mean s/frame of the jobs run now)."""
    header = ("id", "status", "worker", "loads", "s/frame", "cache MiB", "total s", "error")
    rows = [
        (
            r["id"],
            r["status"],
            r.get("worker") or "-",
            str(r.get("model_loads", "-")),
            _cell(r.get("seconds_per_frame"), 3),
            _cell(r.get("cache_mib"), 2),
            _cell(r.get("total_s"), 1),
            (r.get("error") or "")[:60],
        )
        for r in records
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "error", "skipped")}
    ran = [r["seconds_per_frame"] for r in records if r["status"] == "ok" and r.get("seconds_per_frame") is not None]
    mean = f"; mean {sum(ran) / len(ran):.3f} s/frame" if ran else ""
    lines.append(f"{len(records)} jobs: {counts['ok']} ok, {counts['error']} error, {counts['skipped']} skipped{mean}")
    return "\n".join(lines)
