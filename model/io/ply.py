"""Point clouds as binary little-endian PLY: one vertex per point, written atomically.

The vertex layout (:data:`VERTEX_DTYPE`) is what ``main.py export-cloud`` and the explorer's
File → Export point cloud write for a memory, readable by MeshLab, CloudCompare, Open3D and
Blender:

=========  =======  ======================================================================
property   type     meaning
=========  =======  ======================================================================
x, y, z    float    position in metres, OpenCV world axes (x right, y down, z forward)
red ...    uchar    display colour (``red``, ``green``, ``blue``), the colour the cache panel shows
label      uchar    :class:`model.memory.base.CellLabel` (0 = static: every stored point)
segment    int      segment that wrote the point (0 = the photo)
frame      int      frame index that wrote the point
=========  =======  ======================================================================

:func:`read_ply_points` reads such a file back (strictly: the header must be this layout).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from model.io.atomic import atomic_path

#: One PLY vertex: numpy dtype, little-endian, in file order.
VERTEX_DTYPE = np.dtype(
    [
        ("x", "<f4"),
        ("y", "<f4"),
        ("z", "<f4"),
        ("red", "u1"),
        ("green", "u1"),
        ("blue", "u1"),
        ("label", "u1"),
        ("segment", "<i4"),
        ("frame", "<i4"),
    ]
)
_PLY_TYPES = {"<f4": "float", "u1": "uchar", "<i4": "int"}


def ply_header(count: int) -> bytes:
    """The ASCII header of a cloud of ``count`` vertices in :data:`VERTEX_DTYPE` layout."""
    lines = [
        "ply",
        "format binary_little_endian 1.0",
        "comment Mirage Explorer memory points",
        f"element vertex {count}",
    ]
    for name in VERTEX_DTYPE.names:
        lines.append(f"property {_PLY_TYPES[VERTEX_DTYPE[name].str.replace('|', '')]} {name}")
    return ("\n".join([*lines, "end_header"]) + "\n").encode("ascii")


def point_records(
    positions: np.ndarray, colors: np.ndarray, labels: np.ndarray, segments: np.ndarray, frames: np.ndarray
) -> np.ndarray:
    """Pack per-point arrays into a ``[N]`` structured array of :data:`VERTEX_DTYPE`.

    Args:
        positions: ``[N, 3]`` metres (finite). colors: ``[N, 3]`` uint8 display RGB.
        labels: ``[N]`` CellLabel values (0..255). segments, frames: ``[N]`` integers.

    Raises:
        ValueError: a shape mismatch, a non-finite position or an out-of-range colour/label.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n = len(positions)
    if positions.shape != (n, 3):
        raise ValueError(f"positions must be [N, 3], got {list(positions.shape)}")
    if not np.isfinite(positions).all():
        raise ValueError("positions must be finite (a point without a position has no place in a cloud)")
    colors = np.asarray(colors)
    if colors.shape != (n, 3):
        raise ValueError(f"colors must be [{n}, 3], got {list(colors.shape)}")
    columns = {"labels": np.asarray(labels), "segments": np.asarray(segments), "frames": np.asarray(frames)}
    for name, column in columns.items():
        if column.shape != (n,):
            raise ValueError(f"{name} must be [{n}], got {list(column.shape)}")
    for name, column in (("colors", colors), ("labels", columns["labels"])):
        if n and (column.min() < 0 or column.max() > 255):
            raise ValueError(f"{name} must lie in 0..255")
    records = np.empty(n, VERTEX_DTYPE)
    for axis, name in enumerate("xyz"):
        records[name] = positions[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        records[name] = colors[:, channel]
    records["label"] = columns["labels"]
    records["segment"] = columns["segments"]
    records["frame"] = columns["frames"]
    return records


def write_ply_points(path: str | os.PathLike, records: np.ndarray) -> None:
    """Write ``records`` (``[N]`` of :data:`VERTEX_DTYPE`, see :func:`point_records`) to ``path`` atomically.

    Raises:
        ValueError: records of another dtype. OSError: naming ``path`` when it cannot be written.
    """
    if records.dtype != VERTEX_DTYPE:
        raise ValueError(f"{path}: records must have the PLY vertex dtype, got {records.dtype}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(ply_header(len(records)))
            handle.write(np.ascontiguousarray(records).tobytes())


def read_ply_points(path: str | os.PathLike) -> np.ndarray:
    """Read a cloud written by :func:`write_ply_points`: ``[N]`` structured array of :data:`VERTEX_DTYPE`.

    Raises:
        ValueError: naming the file: not a PLY, another layout, or truncated.
    """
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    header = [line.strip() for line in data[:end].decode("ascii", "replace").splitlines()]
    counts = [line.split() for line in header if line.startswith("element vertex")]
    if len(counts) != 1 or len(counts[0]) != 3 or not counts[0][2].isdigit():
        raise ValueError(f"{path}: no 'element vertex N' line")
    count = int(counts[0][2])
    expected = ply_header(count).decode("ascii").splitlines()[:-1]
    body = [line for line in header if not line.startswith("comment")]
    if body != [line for line in expected if not line.startswith("comment")]:
        raise ValueError(f"{path}: not a Mirage point-cloud PLY (header {body})")
    payload = data[end + len(b"end_header\n") :]
    if len(payload) != count * VERTEX_DTYPE.itemsize:
        raise ValueError(f"{path}: truncated: {len(payload)} bytes for {count} vertices of {VERTEX_DTYPE.itemsize}")
    return np.frombuffer(payload, VERTEX_DTYPE).copy()
