"""Batch rendering on Ray on this machine: jobs/hour with 1 and 2 workers, and the load cost amortised.

Runs the same batch of tiny-backend ``generate`` jobs (bundled scene, ``--jobs`` jobs of ``--segments``
segments x ``--steps`` steps at ``--height x --width``) through :func:`explorer.batch.ray_runner.run_batch`
on an embedded Ray cluster of ``os.cpu_count()`` CPUs, once per worker layout (``workers x threads``:
1x1, 1x2, 2x1 by default; threads per worker = ``--cpus-per-job``, so the layouts never ask for more
threads than cores). For each it reports:

* wall time of the whole command (Ray start, worker start, jobs, shutdown) and jobs/hour over it;
* steady jobs/hour: jobs finished after the first one, over the time from the first to the last record
  (what a long batch converges to, once workers are up);
* worker start (first record's arrival minus that job's own time: process start, imports) and the
  model loads: each worker loads its stack once (``model_loads``), and ``load_s`` of its first job is
  what every job would pay again if the model were loaded per job.

Writes ``benchmarks/results/render-batch-cpu.md`` and ``.json`` (machine named in both).

    .venv/bin/python benchmarks/render_batch.py                 # ~3 min on 2 cores
    .venv/bin/python benchmarks/render_batch.py --jobs 4 --layouts 1x1 2x1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from explorer.batch.jobs import read_jobs  # noqa: E402
from explorer.batch.ray_runner import run_batch  # noqa: E402
from explorer.machine import machine_description  # noqa: E402
from model.io.atomic import write_json_atomic, write_text_atomic  # noqa: E402


def run_layout(jobs_file: Path, out: Path, workers: int, threads: int) -> dict:
    """One batch with ``workers`` workers of ``threads`` CPUs each; the timings of the module docstring."""
    arrivals: list[float] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    records = run_batch(
        read_jobs(jobs_file),
        out,
        workers=workers,
        cpus_per_job=threads,
        progress=False,
        # Ray runs workers at niceness 15 by default; on a CPU shared with other work that measures
        # starvation, so the workers here compete at the same priority as everything else
        init_options={
            "num_cpus": os.cpu_count(),
            "object_store_memory": 80 * 2**20,
            "_system_config": {"worker_niceness": 0},
        },
        on_record=lambda record: arrivals.append(time.perf_counter() - started),
    )
    wall = time.perf_counter() - started
    ok = [r for r in records if r["status"] == "ok"]
    if len(ok) != len(records):
        raise RuntimeError(f"jobs failed: {[r.get('error') for r in records if r['status'] != 'ok']}")
    first_loads = [r["load_s"] for r in ok if r["load_s"] > 0]
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) * 3600 if len(arrivals) > 1 else None
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "jobs": len(records),
        "wall_s": wall,
        "jobs_per_hour_wall": len(records) / wall * 3600,
        "jobs_per_hour_steady": steady,
        "first_record_s": arrivals[0],
        "worker_start_s": arrivals[0] - records[0]["total_s"],
        "job_s_median": statistics.median(r["total_s"] for r in ok),
        "seconds_per_frame_median": statistics.median(r["seconds_per_frame"] for r in ok),
        "model_loads": {r["worker"]: r["model_loads"] for r in ok},
        "load_s_first_job": statistics.mean(first_loads) if first_loads else 0.0,
        "jobs_without_load": sum(r["load_s"] == 0.0 for r in ok),
        "load_average_1min": [load_before, os.getloadavg()[0]],
    }


def report(rows: list[dict], args, machine: str) -> str:
    base = next((r for r in rows if r["workers"] == 1 and r["threads_per_worker"] == 1), rows[0])
    lines = [
        "# render-batch on CPU: jobs/hour by worker layout",
        "",
        f"Machine: {machine}. **The CPU was shared with other work while this ran** (other engineers' test",
        "suites on the same 2 cores), so absolute numbers are noisy; compare rows of this run only.",
        "",
        f"Batch: {args.jobs} jobs, tiny backend, bundled scene, {args.height}x{args.width}, {args.segments} segment(s)"
        f" x {args.steps} steps, embedded Ray cluster, workers at niceness 0 (`benchmarks/render_batch.py`).",
        "",
        "| workers x threads | wall s | jobs/h (wall) | jobs/h (steady) | vs 1x1 (steady) | worker start s "
        "| job s (median) | s/frame (median) | loads per worker | first-job load s | load avg before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = (
            f"{r['jobs_per_hour_steady'] / base['jobs_per_hour_steady']:.2f}x"
            if r["jobs_per_hour_steady"] and base["jobs_per_hour_steady"]
            else "-"
        )
        loads = sorted(set(r["model_loads"].values()))
        lines.append(
            f"| {r['workers']} x {r['threads_per_worker']} | {r['wall_s']:.1f} | {r['jobs_per_hour_wall']:.0f} | "
            f"{r['jobs_per_hour_steady'] or 0:.0f} | {ratio} | {r['worker_start_s']:.1f} | {r['job_s_median']:.2f} | "
            f"{r['seconds_per_frame_median']:.3f} | {', '.join(map(str, loads))} | {r['load_s_first_job']:.2f} | "
            f"{r['load_average_1min'][0]:.1f} / {r['load_average_1min'][1]:.1f} |"
        )
    lines += [
        "",
        "- *load avg*: the machine's 1-minute load average before and after the layout ran (2 cores: above 2,",
        "  other processes were competing for them).",
        "- *steady*: jobs after the first over the time from the first to the last result (workers already up).",
        "- *worker start*: arrival of the first result minus that job's own time (Ray worker process start and",
        "  imports; paid once per worker, like the model load).",
        "- *loads per worker*: every worker loaded its generation stack once for the whole batch; the tiny",
        "  backbone loads in the first-job load time shown; loading per job would add that to every job. For",
        "  Wan2.2-TI2V-5B the load is tens of seconds (23 GiB of weights, research/wan-diffusers.md) against",
        "  ~8 s of generation per 33-frame segment at the paper's 0.25 s/frame, so the load-once worker is what",
        "  makes a batch of short jobs viable there (estimate, not measured here: no GPU).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--segments", type=int, default=1)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--height", type=int, default=176)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--layouts", nargs="+", default=["1x1", "1x2", "2x1"], help="WORKERSxTHREADS")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/render-batch-cpu"))
    args = p.parse_args(argv)
    machine = machine_description()
    rows = []
    with tempfile.TemporaryDirectory(prefix="render-batch-bench-") as work:
        jobs_file = Path(work) / "jobs.jsonl"
        job = {"backend": "tiny", "height": args.height, "width": args.width}
        job |= {"segments": args.segments, "steps": args.steps, "trajectory": "orbit"}
        jobs_file.write_text("".join(json.dumps({"id": f"job{i}", "seed": i, **job}) + "\n" for i in range(args.jobs)))
        for layout in args.layouts:
            workers, threads = (int(x) for x in layout.split("x"))
            out = Path(work) / f"out-{layout}"
            row = run_layout(jobs_file, out, workers, threads)
            print(json.dumps(row), flush=True)
            rows.append(row)
            shutil.rmtree(out)
    write_json_atomic(args.out + ".json", {"machine": machine, "settings": vars(args), "rows": rows})
    write_text_atomic(args.out + ".md", report(rows, args, machine))
    print(f"wrote {args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
