"""Binary PLY point clouds (model/io/ply.py): layout, round trip, refusals."""

import numpy as np
import pytest

from model.io.ply import VERTEX_DTYPE, point_records, read_ply_points, write_ply_points


def _cloud(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return point_records(
        rng.normal(size=(n, 3)) * 3,
        rng.integers(0, 256, (n, 3)),
        rng.integers(0, 4, n),
        rng.integers(0, 9, n),
        rng.integers(0, 300, n),
    )


def test_round_trip_keeps_every_vertex_and_property(tmp_path):
    records = _cloud(257)
    path = tmp_path / "cloud.ply"
    write_ply_points(path, records)
    header = path.read_bytes().split(b"end_header\n")[0].decode("ascii")
    assert "format binary_little_endian 1.0" in header and "element vertex 257" in header
    for line in ("property float x", "property uchar red", "property uchar label", "property int segment"):
        assert line in header
    back = read_ply_points(path)
    assert back.dtype == VERTEX_DTYPE and len(back) == 257
    for name in VERTEX_DTYPE.names:
        np.testing.assert_array_equal(back[name], records[name])  # exact: bytes written and read back


def test_empty_cloud_is_a_valid_file(tmp_path):
    write_ply_points(tmp_path / "empty.ply", _cloud(0))
    assert len(read_ply_points(tmp_path / "empty.ply")) == 0


def test_bad_points_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="finite"):
        point_records(np.full((2, 3), np.nan), np.zeros((2, 3)), np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="colors must be"):
        point_records(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="0..255"):
        point_records(np.zeros((1, 3)), np.full((1, 3), 300), np.zeros(1), np.zeros(1), np.zeros(1))


def test_truncated_or_foreign_files_are_refused(tmp_path):
    path = tmp_path / "cut.ply"
    write_ply_points(path, _cloud(10))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="cut.ply: truncated"):
        read_ply_points(path)
    (tmp_path / "other.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n")
    with pytest.raises(ValueError, match="other.ply: not a Mirage"):
        read_ply_points(tmp_path / "other.ply")
