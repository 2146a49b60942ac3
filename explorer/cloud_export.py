"""Memory -> PLY point cloud: the one mapping from memory points to PLY vertices, used by
``main.py export-cloud`` (from a saved memory file) and the explorer's File → Export point cloud
(from the cache panel's :class:`~explorer.worker.messages.MemorySnapshot`).

Every stored point becomes one vertex (:data:`model.io.ply.VERTEX_DTYPE`): its position, its display
colour (what the cache panel shows in "Display RGB"), label static (stored points are the cells
the writes kept), and the segment and frame that wrote it. Rejected cells are not stored points and
are not exported.
"""

from __future__ import annotations

import os

import numpy as np

from model.baselines.kinds import load_memory
from model.io.ply import point_records, write_ply_points
from model.memory.base import MEMORY_KINDS, CellLabel, SpatialMemory


def cloud_records(points) -> np.ndarray:
    """PLY vertices of every stored point of ``points``.

    Args:
        points: anything with numpy-convertible ``positions [N, 3]`` (metres), ``colors [N, 3]`` uint8,
            ``segments [N]`` and ``frames [N]``: a :class:`~explorer.worker.messages.MemorySnapshot` or a memory.

    Returns:
        ``[N]`` structured array of :data:`model.io.ply.VERTEX_DTYPE`.
    """

    def host(value) -> np.ndarray:
        return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)

    positions = host(points.positions)
    return point_records(
        positions,
        host(points.colors),
        np.full(len(positions), int(CellLabel.STATIC), np.uint8),
        host(points.segments),
        host(points.frames),
    )


def load_any_memory(path: str | os.PathLike) -> SpatialMemory:
    """A memory file of any kind (latent or RGB baseline), on the CPU.

    Raises:
        ValueError: naming the file, when no memory kind reads it.
    """
    errors = []
    for kind in MEMORY_KINDS:
        try:
            return load_memory(path, kind)
        except ValueError as error:
            errors.append(error)
    raise errors[0]


def export_cloud(memory_path: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Write the memory saved at ``memory_path`` as a PLY point cloud at ``out_path``; returns the vertex count.

    Raises:
        ValueError: the memory file is not readable, or ``out_path`` does not end in ``.ply``.
        OSError: naming ``out_path`` when it cannot be written.
    """
    if not str(out_path).lower().endswith(".ply"):
        raise ValueError(f"{out_path}: the point cloud's file name must end in .ply")
    records = cloud_records(load_any_memory(memory_path))
    write_ply_points(out_path, records)
    return len(records)
