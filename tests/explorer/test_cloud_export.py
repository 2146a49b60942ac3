"""``main.py export-cloud MEMORY OUT.ply`` and the memory -> PLY mapping (explorer/cloud_export.py)."""

import numpy as np
import pytest
import torch

import main
from explorer.cloud_export import cloud_records
from model.io.ply import read_ply_points
from model.io.rgbd import SAMPLE_SCENE_DIR, load_rgbd_folder
from model.memory.base import CellLabel
from tests.sample_memory import memory_from_view


@pytest.fixture(scope="module")
def memory():
    """A memory lifted from the bundled view, with varied provenance (as after several segments)."""
    view = load_rgbd_folder(SAMPLE_SCENE_DIR)
    memory = memory_from_view(view)
    n = len(memory)
    memory.segments = (torch.arange(n, dtype=memory.segments.dtype) % 4).to(memory.segments.dtype)
    memory.frames = (torch.arange(n, dtype=memory.frames.dtype) % 33).to(memory.frames.dtype)
    return memory


def test_export_cloud_matches_the_memory_point_for_point(memory, tmp_path, capsys):
    saved = tmp_path / "memory.safetensors"
    memory.save(saved)
    out = tmp_path / "cloud.ply"
    assert main.main(["export-cloud", str(saved), str(out)]) == 0
    assert f"{len(memory)} points" in capsys.readouterr().out
    cloud = read_ply_points(out)
    assert len(cloud) == len(memory) > 1000
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1)
    np.testing.assert_allclose(xyz, memory.positions.numpy(), rtol=0, atol=1e-6)
    rgb = np.stack([cloud["red"], cloud["green"], cloud["blue"]], axis=1)
    np.testing.assert_array_equal(rgb, memory.colors.numpy())
    np.testing.assert_array_equal(cloud["segment"], memory.segments.numpy())
    np.testing.assert_array_equal(cloud["frame"], memory.frames.numpy())
    assert (cloud["label"] == int(CellLabel.STATIC)).all()
    assert len(set(cloud["segment"].tolist())) == 4


def test_records_of_a_snapshot_equal_those_of_the_memory(memory):
    from explorer.worker.messages import snapshot_memory

    snapshot = snapshot_memory(memory, "requested", 0, {}, None, 4)
    a, b = cloud_records(snapshot), cloud_records(memory)
    assert a.tobytes() == b.tobytes()  # the same numbers copied, no arithmetic


def test_export_cloud_refuses_bad_input_with_exit_code_2(tmp_path, capsys):
    bogus = tmp_path / "not-a-memory.safetensors"
    bogus.write_bytes(b"garbage")
    assert main.main(["export-cloud", str(bogus), str(tmp_path / "c.ply")]) == 2
    assert "not-a-memory.safetensors" in capsys.readouterr().err
    assert main.main(["export-cloud", str(bogus), str(tmp_path / "c.txt")]) == 2
    assert "c.txt" in capsys.readouterr().err
    assert not (tmp_path / "c.ply").exists()
