"""The batch worker without Ray: depth and sky models stay loaded across jobs, keyed by their folder.

Three tiny-backend photo jobs at 64x64 run in one :class:`~explorer.batch.worker.BatchWorker`: the
first two name the same depth and sky model folders (loaded once), the third another depth folder
(a second load replacing the first) and no sky model. The records count the loads as they do the
backbone's.
"""

import json

import numpy as np
from PIL import Image

from explorer.batch.jobs import read_jobs
from explorer.batch.worker import BatchWorker
from tests.model.test_depth import _save_tiny_depth_anything

SMALL = {"backend": "tiny", "height": 64, "width": 64, "steps": 1, "segments": 1}


def test_depth_and_sky_models_are_loaded_once_per_folder_and_counted(tmp_path, save_tiny_segformer):
    for name in ("depth_a", "depth_b"):
        _save_tiny_depth_anything(tmp_path / name)
    save_tiny_segformer(tmp_path / "sky", {0: "wall", 1: "sky"})
    pixels = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    photo = {"image": "photo.png", **SMALL}
    lines = [
        {"id": "a", **photo, "depth_model": "depth_a", "sky_model": "sky"},
        {"id": "b", **photo, "depth_model": "depth_a", "sky_model": "sky", "seed": 2},
        {"id": "c", **photo, "depth_model": "depth_b"},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    worker = BatchWorker(threads=1)
    jobs = read_jobs(tmp_path / "jobs.jsonl")
    records = {job.id: worker.run(job, str(tmp_path / "out")) for job in jobs}

    assert {k: r["status"] for k, r in records.items()} == {"a": "ok", "b": "ok", "c": "ok"}, records
    loads = {k: (r["model_loads"], r["depth_model_loads"], r["sky_model_loads"]) for k, r in records.items()}
    assert loads == {"a": (1, 1, 1), "b": (1, 1, 1), "c": (1, 2, 1)}
    assert worker.helper_loads == {"depth": 2, "sky": 1}
    assert records["a"]["load_s"] > 0 and records["c"]["load_s"] > 0
    assert all(job.is_complete(tmp_path / "out") for job in jobs)
    for job in jobs:  # the video's depth came from the job's own model folder
        report = json.loads(job.outputs(tmp_path / "out")[1].read_text())
        assert report["depth_source"].startswith("depth_anything:"), report["depth_source"]
