"""Builder trajectories with parameters: ``orbit:degrees=60,radius=1.5`` (generate) and
``{"builder": "orbit", ...}`` (render-batch job files)."""

import json

import pytest
import torch

from explorer.batch.jobs import read_jobs
from explorer.generate import build_trajectory, parse_builder
from model.geometry.camera import invert_pose

EYE = torch.eye(4, dtype=torch.float64)


def centre_travel(w2c: torch.Tensor) -> float:
    """Distance in metres between the first and the last camera centre."""
    c2w = invert_pose(w2c)
    return float((c2w[-1, :3, 3] - c2w[0, :3, 3]).norm())


def test_parameters_default_and_override():
    assert parse_builder("orbit") == ("orbit", {"radius": None, "degrees": 40.0})
    assert parse_builder("pan:degrees=90") == ("pan", {"degrees": 90.0})
    assert parse_builder("cams/orbit.txt") is None, "not a builder: a camera file"
    assert torch.allclose(build_trajectory("orbit:degrees=40", 9, EYE, 2.0), build_trajectory("orbit", 9, EYE, 2.0))
    assert centre_travel(build_trajectory("forward:distance=2.5", 9, EYE, 2.0)) == pytest.approx(2.5)
    # an orbit of radius r through a sweep of a degrees moves the centre by the chord 2 r sin(a / 2)
    wide = build_trajectory("orbit:degrees=60,radius=1.5", 9, EYE, 99.0)
    assert centre_travel(wide) == pytest.approx(2 * 1.5 * 0.5, rel=1e-6)


@pytest.mark.parametrize("spec", ["orbit:degree=60", "pan:degrees=wide", "forward:distance=nan", "orbit:radius"])
def test_a_bad_parameter_is_refused_naming_what_the_builder_takes(spec):
    with pytest.raises(ValueError, match="takes"):
        parse_builder(spec)


def test_a_job_gives_a_builder_as_an_object_or_as_the_generate_spelling(tmp_path):
    lines = [
        {"id": "a", "trajectory": {"builder": "orbit", "degrees": 60, "radius": 1.5}},
        {"id": "b", "trajectory": "pan:degrees=30"},
    ]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    a, b = read_jobs(tmp_path / "jobs.jsonl")
    assert a.settings["trajectory"] == "orbit:degrees=60,radius=1.5"
    assert b.settings["trajectory"] == "pan:degrees=30"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "c", "trajectory": {"builder": "pan", "radius": 1}}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: trajectory: pan takes numbers degrees, got radius=1"):
        read_jobs(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text(json.dumps({"id": "c", "trajectory": "orbit:speed=2"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: trajectory: --trajectory 'orbit:speed=2'"):
        read_jobs(tmp_path / "bad2.jsonl")
