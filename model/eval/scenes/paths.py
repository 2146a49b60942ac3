"""Camera paths through procedural worlds that leave known space and come back to it.

:func:`world_path` strings segments of the standard moves of :mod:`model.geometry.trajectories`
(orbit, yaw pan, dolly, look-around, and in worlds with an annex a turn towards its doorway and a
walk through it). After the first segment the camera either retraces it exactly (re-entering what
it has seen) or makes another move from where it stands. Every camera centre keeps 0.25 m from
walls and furniture (:meth:`~model.eval.scenes.world.ProceduralScene.is_free`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from model.eval.scenes.world import ProceduralScene
from model.geometry.camera import invert_pose
from model.geometry.trajectories import forward_dolly, look_around, orbit, yaw_pan

#: Distance camera centres keep from walls and furniture along world paths, metres.
PATH_MARGIN_M = 0.25
_MOVES = ("orbit", "yaw_pan", "dolly", "look_around")


def _move(rng: np.random.Generator, name: str, n: int, start: torch.Tensor) -> torch.Tensor:
    """One seeded move of ``n`` frames from ``start`` (``[4, 4]`` w2c)."""
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if name == "orbit":
        return orbit(n, rng.uniform(1.2, 2.2), sign * rng.uniform(20.0, 60.0), start)
    if name == "yaw_pan":
        return yaw_pan(n, sign * rng.uniform(25.0, 70.0), start)
    if name == "dolly":
        return forward_dolly(n, sign * rng.uniform(0.4, 1.2), start)
    return look_around(n, rng.uniform(15.0, 35.0), rng.uniform(5.0, 12.0), start)


def _free(scene: ProceduralScene, w2c: torch.Tensor) -> bool:
    return bool(scene.is_free(invert_pose(w2c)[:, :3, 3].numpy(), PATH_MARGIN_M).all())


def _door_walk(scene: ProceduralScene, n: int, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Turn from ``start`` to face the annex's doorway, then walk towards it and through it as far
    as the annex leaves free; None when no such walk of at least 0.5 m is free."""
    door = scene.annex.door
    centre = np.zeros(3)
    centre[door.axis], centre[door.along] = door.plane, (door.lo + door.hi) / 2
    c2w = invert_pose(start).numpy()
    eye = c2w[:3, 3]
    direction = c2w[:3, :3].T @ (centre - eye)  # in the start camera's frame
    turn = math.degrees(math.atan2(direction[0], direction[2]))
    pan = yaw_pan(n, turn, start)
    if not _free(scene, pan):
        return None
    distance = float(np.hypot(direction[0], direction[2])) + 1.5
    while distance >= 0.5:
        walk = forward_dolly(n, distance, pan[-1])
        if _free(scene, walk):
            return pan, walk
        distance -= 0.25
    return None


def world_path(
    scene: ProceduralScene, seed: int, segments: int = 2, segment_frames: int = 33
) -> tuple[str, torch.Tensor]:
    """A seeded path of ``segments`` segments from the scene's start pose: ``(name, w2c [T, 4, 4])``
    with ``T = segments * (segment_frames - 1) + 1``; consecutive segments share a frame.

    ``name`` lists the moves, e.g. ``"orbit+return"``, ``"yaw_pan+dolly"``, ``"door_turn+door_walk"``.
    """
    if segments < 1 or segment_frames < 2:
        raise ValueError(f"world_path: need segments >= 1 and segment_frames >= 2, got {segments}, {segment_frames}")
    rng = np.random.default_rng([seed, 4])
    start = torch.as_tensor(scene.start_w2c(), dtype=torch.float64)
    names: list[str] = []
    parts: list[torch.Tensor] = []
    if scene.annex is not None and segments >= 2 and rng.random() < 0.3:
        walk = _door_walk(scene, segment_frames, start)
        if walk is not None:
            names += ["door_turn", "door_walk"]
            parts += list(walk)
    while len(parts) < segments:
        here = parts[-1][-1] if parts else start
        if parts and rng.random() < 0.5:
            names.append("return")
            parts.append(parts[-1].flip(0))
            continue
        for _ in range(20):
            name = _MOVES[int(rng.integers(len(_MOVES)))]
            move = _move(rng, name, segment_frames, here)
            if _free(scene, move):
                break
        else:  # nothing free from here: stand still (look-around returns to its start pose)
            name, move = "look_around", look_around(segment_frames, 10.0, 3.0, here)
        names.append(name)
        parts.append(move)
    parts = parts[:segments]
    w2c = torch.cat([parts[0]] + [p[1:] for p in parts[1:]])
    return "+".join(names[:segments]), w2c
