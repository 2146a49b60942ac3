"""``main.py render-batch`` on a local Ray cluster (2 workers of 1 CPU) and its job file.

The cluster test runs 4 tiny-backend jobs at 64x64, one with a broken photo, and kills the worker
running the slowest job as soon as that job starts writing its video (its temporary carries the
worker's pid): the job must be retried on a restarted worker and complete, the bad job must get an
error record, and nothing half-written may remain. A re-run must skip the 3 complete jobs.
"""

import ast
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from explorer.batch.jobs import read_jobs
from explorer.batch.results import RESULTS_FILE, read_records, summary_table

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"backend": "tiny", "height": 64, "width": 64, "steps": 2, "segments": 1}


def write_jobs(path: Path, jobs: list) -> Path:
    path.write_text("".join((j if isinstance(j, str) else json.dumps(j)) + "\n" for j in jobs), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"line 2: not JSON"),
        ("[1, 2]", r"line 2: expected a JSON object, got list"),
        ('{"id": "x", "colour": 3}', r"line 2: unknown key\(s\) colour"),
        ('{"id": "x", "segments": "2"}', r'line 2: segments: expected int, got "2"'),
        ('{"id": "x", "steps": true}', r"line 2: steps: expected int or null, got true"),
        ('{"id": "x", "image": 5}', r"line 2: image: expected str or null, got 5"),
        ('{"id": "../up"}', r"line 2: id: expected a string"),
        ('{"id": "a"}', r"line 2: id 'a' repeats line 1"),
        ('{"id": "x", "eval": "yes"}', r"line 2: eval: expected true or false"),
    ],
)
def test_a_bad_line_is_refused_with_its_line_number(tmp_path, line, message):
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"id": "a", **SMALL}, line])
    with pytest.raises(ValueError, match=re.escape(str(jobs)) + ": " + message):
        read_jobs(jobs)


def test_paths_are_relative_to_the_job_file_and_builders_stay_names(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            "",
            {"id": "p", "image": "photos/a.jpg", "trajectory": "cams.txt"},
            {"id": "q", "trajectory": "pan", "model": "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "depth_model": "depth"},
        ],
    )
    (tmp_path / "depth").mkdir()
    p, q = read_jobs(jobs)
    assert q.settings["model"] == "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "a Hub repo id stays as it is"
    assert q.settings["depth_model"] == str(tmp_path / "depth"), "a folder beside the job file"
    assert (p.line, q.line) == (2, 3)
    assert p.settings == {"image": str(tmp_path / "photos/a.jpg"), "trajectory": str(tmp_path / "cams.txt")}
    assert q.generate_args(tmp_path / "out").out == str(tmp_path / "out" / "q" / "q.mp4")
    assert q.generate_args(tmp_path / "out").trajectory == "pan"


def test_a_bad_job_file_exits_2_and_writes_nothing(tmp_path, capsys):
    import main

    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"id": "a", "segmnts": 1}])
    assert main.main(["render-batch", str(jobs), "--out", str(tmp_path / "out")]) == 2
    assert f"error: {jobs}: line 1: unknown key(s) segmnts" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_only_the_command_imports_ray():
    """``ray`` is imported by ``explorer/batch/ray_runner.py`` alone, and that module only inside
    functions (main.py's command, the benchmark, tests), so the GUI and the other commands never load Ray."""
    top_level, anywhere = [], []
    for path in sorted([*ROOT.glob("*.py"), *(ROOT / "explorer").rglob("*.py"), *(ROOT / "model").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.split(".")[0] == "ray":
                    anywhere.append(path.relative_to(ROOT).as_posix())
                if name == "explorer.batch.ray_runner" and node in tree.body:
                    top_level.append(path.relative_to(ROOT).as_posix())
    assert set(anywhere) == {"explorer/batch/ray_runner.py"}
    assert top_level == []


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=80 * 2**20,
        _system_config={"worker_niceness": 0},  # not starved by the other tests sharing the CPU
    )
    yield ray
    ray.shutdown()


def kill_when_writing(folder: Path, name: str, killed: list, stop: threading.Event) -> None:
    """Kill (SIGKILL) the process whose temporary of ``name`` appears in ``folder``, once."""
    pattern = re.compile(r"\." + re.escape(name) + r"\.tmp-(\d+)-")
    while not stop.is_set():
        for entry in os.listdir(folder) if folder.is_dir() else []:
            match = pattern.match(entry)
            if match:
                killed.append(int(match.group(1)))
                os.kill(killed[0], signal.SIGKILL)
                return
        time.sleep(0.005)


@pytest.mark.timeout(280)
def test_a_batch_on_two_workers_survives_a_bad_job_and_a_killed_worker_and_resumes(ray_cluster, tmp_path):
    from explorer.batch.ray_runner import run_batch

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"id": "a", **SMALL, "seed": 1},
            {"id": "b", **SMALL, "seed": 2, "trajectory": "pan"},
            {"id": "bad", **SMALL, "image": "broken.png"},
            {"id": "slow", **SMALL, "segments": 4, "steps": 3},
        ],
    )
    out, killed, stop = tmp_path / "out", [], threading.Event()
    watcher = threading.Thread(target=kill_when_writing, args=(out / "slow", "slow.mp4", killed, stop), daemon=True)
    watcher.start()
    try:
        records = run_batch(read_jobs(jobs), out, workers=2, retries=2, progress=False)
    finally:
        stop.set()
        watcher.join()
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == ["a", "b", "bad", "slow"]
    assert {k: r["status"] for k, r in by_id.items()} == {"a": "ok", "b": "ok", "bad": "error", "slow": "ok"}
    assert by_id["bad"]["error"].startswith(str(tmp_path / "broken.png"))
    assert len(killed) == 1, "the slow job's worker was killed while writing"
    assert by_id["slow"]["restarted"] and by_id["slow"]["pid"] != killed[0]
    assert all(r["model_loads"] == 1 for r in records if r["status"] == "ok")  # one load per worker process
    assert len({r["pid"] for r in records}) >= 2, "two workers took jobs"
    for job in read_jobs(jobs):
        assert job.is_complete(out) == (job.id != "bad")
        report = json.loads(job.outputs(out)[1].read_text()) if job.id != "bad" else None
        if report is not None:
            assert report["trajectory"]["frames"] == job.settings["segments"] * 32 + 1
    leftovers = [p.name for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == [], "nothing half-written is left"
    assert read_records(out / RESULTS_FILE) == by_id
    assert "4 jobs: 3 ok, 1 error, 0 skipped" in summary_table(records)

    again = {r["id"]: r for r in run_batch(read_jobs(jobs), out, workers=2, progress=False)}
    assert {k: r["status"] for k, r in again.items()} == {
        "a": "skipped",
        "b": "skipped",
        "slow": "skipped",
        "bad": "error",
    }
    assert again["a"]["pid"] == by_id["a"]["pid"], "a skipped job keeps the record of the run that made it"


def test_workers_are_placed_one_per_gpu_or_per_cpus_per_job():
    pytest.importorskip("ray")
    from explorer.batch.ray_runner import plan_workers

    assert plan_workers({"CPU": 128.0, "GPU": 8.0}, None, 4) == (8, {"num_gpus": 1, "num_cpus": 1})
    assert plan_workers({"CPU": 16.0}, None, 4) == (4, {"num_cpus": 4})
    assert plan_workers({"CPU": 2.0}, 8, 1) == (2, {"num_cpus": 1}), "no more workers than the resources hold"
    with pytest.raises(ValueError, match="--cpus-per-job 4: the Ray cluster has 2 CPUs and no GPU"):
        plan_workers({"CPU": 2.0}, None, 4)  # the actor would wait for resources forever
    with pytest.raises(ValueError, match="--cpus-per-job must be >= 1"):
        plan_workers({"CPU": 2.0}, None, 0)
