"""``main.py render-batch`` on Ray: one long-lived :class:`~explorer.batch.worker.BatchWorker` actor per
GPU (or per ``cpus_per_job`` CPUs), each keeping its backbone loaded and taking job after job.

The only module of the project that imports ``ray``; only the command imports it.

* Cluster: ``address=None`` starts an embedded local cluster (``ray.init()`` in this process, nothing
  to set up); ``"auto"`` or ``"HOST:PORT"`` joins a running one. The outputs folder must be on a file
  system every node sees (records come back through Ray's object store; videos are written by the workers).
* Placement by resources: with GPUs in the cluster each actor asks for ``num_gpus=1``; otherwise for
  ``num_cpus=cpus_per_job`` and runs torch on that many threads (``OMP_NUM_THREADS`` too), so workers
  do not oversubscribe the cores.
* Failures: a job's own failure is an ``error`` record (the worker carries on). A worker that dies
  mid-job is restarted by Ray (``max_restarts``) and the job retried on it (``max_task_retries``), both
  bounded by ``retries``; when those run out the job gets an ``error`` record, its temporaries are
  removed (:func:`model.io.atomic.sweep_orphans`) and a fresh worker replaces the dead one. Outputs are
  written as one :class:`~model.io.atomic.OutputSet` per job, so nothing half-written is ever in place.
* Resume: jobs whose outputs are complete are skipped (``status: skipped``).
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

import ray
from ray.exceptions import RayActorError, RayTaskError
from tqdm import tqdm

from explorer.batch.jobs import BatchJob
from explorer.batch.results import RESULTS_FILE, ResultsLog, read_records
from explorer.batch.worker import BatchWorker
from model.io.atomic import sweep_orphans
from model.io.errors import error_line

#: The project root, put on the workers' ``PYTHONPATH`` (a local cluster runs this checkout's code).
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class RayBatchWorker(BatchWorker):
    """The worker as a Ray actor: its records also say whether Ray restarted it after a death."""

    def describe(self) -> dict:
        return {**super().describe(), "restarted": ray.get_runtime_context().was_current_actor_reconstructed}


def plan_workers(resources: dict, workers: int | None, cpus_per_job: int) -> tuple[int, dict]:
    """``(number of workers, actor resource options)`` for a cluster's ``ray.cluster_resources()``.

    One worker per GPU when the cluster has GPUs (``num_gpus=1`` each), else one per ``cpus_per_job``
    CPUs; ``workers`` caps the number (it cannot exceed what the resources hold, or actors would wait).
    """
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if cpus_per_job < 1:
        raise ValueError(f"--cpus-per-job must be >= 1, got {cpus_per_job}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if not gpus and cpus_per_job > cpus:
        raise ValueError(f"--cpus-per-job {cpus_per_job}: the Ray cluster has {cpus} CPUs and no GPU")
    fit = gpus if gpus else cpus // cpus_per_job
    options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": cpus_per_job}
    return (fit if workers is None else min(workers, fit)), options


def run_batch(
    jobs: list[BatchJob],
    out_dir: str | Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_job: int = 1,
    retries: int = 2,
    init_options: dict | None = None,
    progress: bool = True,
    on_record: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run ``jobs`` (:func:`explorer.batch.jobs.read_jobs`) into ``out_dir``; returns the records (as in
    ``results.jsonl``).

    Args:
        address: Ray cluster to join (``"auto"``, ``"HOST:PORT"``); None: an embedded local cluster
            (or the one this process is already connected to, which is left running).
        workers: at most this many workers (default: as many as the cluster's GPUs / CPUs allow).
        cpus_per_job: CPUs (and torch threads) of a CPU worker.
        retries: restarts of a dead worker and retries of its job (each bounded by this).
        init_options: extra ``ray.init`` keywords for an embedded cluster (``num_cpus``, ``object_store_memory``).
        on_record: called with each record as its job ends (after it is in ``results.jsonl``).

    Raises:
        ValueError: bad worker settings or output folder, before anything runs.
    """
    if retries < 0:
        raise ValueError(f"--retries must be >= 0, got {retries}")
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    earlier = read_records(out / RESULTS_FILE)
    done = [job for job in jobs if job.is_complete(out)]
    skipped = [{**earlier.get(job.id, {}), "id": job.id, "status": "skipped"} for job in done]
    todo = sorted((job for job in jobs if not job.is_complete(out)), key=BatchJob.stack_key)
    log = ResultsLog(out, skipped)
    if not todo:
        return log.records
    started_here = not ray.is_initialized()
    if started_here:
        local = {"include_dashboard": False, **(init_options or {})} if address is None else {}
        ray.init(address=address, log_to_driver=False, **local)
    try:
        _run(todo, out, log, workers, cpus_per_job, retries, progress, on_record, len(jobs), len(done))
    finally:
        if started_here:
            ray.shutdown()
        recorded = {r["id"] for r in log.records}
        for job in todo:  # left unfinished (an interruption): remove what their killed workers were writing
            if job.id not in recorded:
                for path in job.outputs(out):
                    sweep_orphans(path)
    return log.records


def _run(jobs, out, log, workers, cpus_per_job, retries, progress, on_record, total, skipped) -> None:
    """Run ``jobs`` on a pool of worker actors, appending each record to ``log`` as it comes."""
    todo = deque(jobs)
    count, options = plan_workers(ray.cluster_resources(), workers, cpus_per_job)
    threads = options["num_cpus"]
    env = {
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [PROJECT_ROOT, os.environ.get("PYTHONPATH")])),
    }
    actor = ray.remote(RayBatchWorker).options(
        **options, max_restarts=retries, max_task_retries=retries, runtime_env={"env_vars": env}
    )
    pool = [actor.remote(threads) for _ in range(min(count, len(todo)))]
    idle, running = list(range(len(pool))), {}
    bar = tqdm(total=total, initial=skipped, unit="job", desc="render-batch", file=sys.stderr, disable=not progress)
    try:
        while todo or running:
            while idle and todo:
                index, job = idle.pop(), todo.popleft()
                running[pool[index].run.remote(job, str(out))] = (index, job)
            ready = _wait_one(list(running))
            if not ready:
                continue
            ref = ready[0]
            index, job = running.pop(ref)
            try:
                record = ray.get(ref)
            except RayActorError as exc:  # the worker died more often than it may be restarted
                record = {"id": job.id, "status": "error", "error": f"worker died: {error_line(exc)[:300]}"}
                for path in job.outputs(out):
                    sweep_orphans(path)
                ray.kill(pool[index], no_restart=True)
                pool[index] = actor.remote(threads)
            except RayTaskError as exc:  # the worker's own code failed outside a job
                record = {"id": job.id, "status": "error", "error": error_line(exc.cause or exc)[:300]}
            log.append(record)
            if on_record is not None:
                on_record(record)
            bar.update(1)
            bar.set_postfix(errors=sum(r["status"] == "error" for r in log.records))
            idle.append(index)
    finally:
        bar.close()
        for index, _job in running.values():  # interrupted: stop the workers running a job
            ray.kill(pool[index], no_restart=True)


def _wait_one(refs: list) -> list:
    """``ray.wait`` for one of ``refs``, waking every second so that signals reach this process.

    A signal handler that raises (Ctrl-C's ``KeyboardInterrupt``, ``main.py``'s ``Interrupted``) while
    Ray's wait runs surfaces as a ``SystemError`` caused by it; that cause is raised as it is.
    """
    try:
        return ray.wait(refs, num_returns=1, timeout=1.0)[0]
    except SystemError as exc:
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not isinstance(cause, Exception):
            raise cause from None
        raise
