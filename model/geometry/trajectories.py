"""Camera paths: the standard builders, interpolation between poses and resampling of a path.

Poses are ``[..., 4, 4]`` float64 torch, OpenCV axes (:mod:`model.geometry.camera`); the builders return
world-to-camera poses ``[T, 4, 4]`` whose frame 0 is the start pose, and are written as camera motions
in the start camera's frame (rotations from :mod:`model.geometry.rotations`). Interpolation works on
camera-to-world poses: the camera centre moves along a line, the rotation along the shortest arc.
The :class:`model.geometry.camera.Trajectory` container (poses, intrinsics, frame rate) stays in
:mod:`model.geometry.camera` beside the camera file formats that read and write it.
"""

from __future__ import annotations

import math

import torch

from model.geometry.camera import invert_pose, rigid, validate_poses
from model.geometry.rotations import interpolate_rotation, rot_x, rot_y


def _relative_path(rel_c2w: torch.Tensor, start_w2c: torch.Tensor | None) -> torch.Tensor:
    """Turn camera motions expressed in the start camera's frame (``[T,4,4]`` c2w) into world ``w2c``."""
    start_c2w = (
        torch.eye(4, dtype=torch.float64)
        if start_w2c is None
        else invert_pose(validate_poses(torch.as_tensor(start_w2c, dtype=torch.float64), "start_w2c"))
    )
    return invert_pose(start_c2w @ rel_c2w)


def _check_frames(n_frames: int) -> torch.Tensor:
    """``[n_frames]`` path parameters from 0 to 1 (a single frame sits at 0)."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if n_frames == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.linspace(0.0, 1.0, n_frames, dtype=torch.float64)


def orbit(n_frames: int, radius: float = 2.0, degrees: float = 60.0, start_w2c=None) -> torch.Tensor:
    """Orbit about a vertical axis through the point ``radius`` metres in front of the start camera.

    The camera keeps looking at that point; positive ``degrees`` moves the camera to the left while
    it turns right. Returns ``[n_frames, 4, 4]`` w2c; frame 0 is the start pose.
    """
    s = _check_frames(n_frames)
    rot = rot_y(torch.deg2rad(torch.as_tensor(degrees, dtype=torch.float64)) * s)
    target = torch.tensor([0.0, 0.0, radius], dtype=torch.float64)
    trans = target + rot @ torch.tensor([0.0, 0.0, -radius], dtype=torch.float64)
    return _relative_path(rigid(rot, trans), start_w2c)


def yaw_pan(n_frames: int, degrees: float = 45.0, start_w2c=None) -> torch.Tensor:
    """Turn in place about the vertical axis (positive: to the right). Returns ``[n_frames, 4, 4]`` w2c."""
    s = _check_frames(n_frames)
    rot = rot_y(torch.deg2rad(torch.as_tensor(degrees, dtype=torch.float64)) * s)
    return _relative_path(rigid(rot, torch.zeros(3, dtype=torch.float64)), start_w2c)


def forward_dolly(n_frames: int, distance: float = 1.0, start_w2c=None) -> torch.Tensor:
    """Move straight ahead by ``distance`` metres (negative: back). Returns ``[n_frames, 4, 4]`` w2c."""
    s = _check_frames(n_frames)
    trans = torch.zeros(n_frames, 3, dtype=torch.float64)
    trans[:, 2] = distance * s
    return _relative_path(rigid(torch.eye(3, dtype=torch.float64), trans), start_w2c)


def look_around(n_frames: int, yaw_deg: float = 30.0, pitch_deg: float = 10.0, start_w2c=None) -> torch.Tensor:
    """Look around from a fixed position: yaw sweeps right, left and back, pitch up and down twice.

    ``yaw(s) = yaw_deg sin(2 pi s)``, ``pitch(s) = pitch_deg sin(4 pi s)`` for ``s`` in [0, 1];
    the path starts and ends at the start pose. Returns ``[n_frames, 4, 4]`` w2c.
    """
    s = _check_frames(n_frames)
    yaw = torch.deg2rad(torch.as_tensor(yaw_deg, dtype=torch.float64)) * torch.sin(2 * math.pi * s)
    pitch = torch.deg2rad(torch.as_tensor(pitch_deg, dtype=torch.float64)) * torch.sin(4 * math.pi * s)
    return _relative_path(rigid(rot_y(yaw) @ rot_x(pitch), torch.zeros(3, dtype=torch.float64)), start_w2c)


def closed_loop(w2c: torch.Tensor) -> torch.Tensor:
    """The path followed by its reverse: ``[2T, 4, 4]``, frame ``i`` equals frame ``2T - 1 - i``."""
    w2c = torch.as_tensor(w2c)
    if w2c.ndim != 3 or len(w2c) == 0:
        raise ValueError(f"closed_loop: expected a non-empty [T,4,4] path, got shape {list(w2c.shape)}")
    return torch.cat([w2c, w2c.flip(0)], dim=0)


def out_and_back(w2c: torch.Tensor) -> torch.Tensor:
    """The path then back along it, the turning pose not repeated: ``[2T - 1, 4, 4]`` from ``[T, 4, 4]``.

    Frame ``i`` equals frame ``2T - 2 - i``, so the last frame is the start pose again (a closed loop
    whose frame count ``2T - 1`` is ``4k + 1`` whenever ``T`` is ``2k + 1``).
    """
    loop = closed_loop(w2c)
    return torch.cat([loop[: len(w2c)], loop[len(w2c) + 1 :]])


def closed_orbit(n_frames: int, radius: float = 2.0, degrees: float = 40.0, start_w2c=None) -> torch.Tensor:
    """:func:`orbit` out by ``degrees`` and back along the same poses (:func:`out_and_back`).

    Returns ``[n_frames, 4, 4]`` w2c; frame 0 is the start pose, and for odd ``n_frames`` the last one
    is the start pose again (the turn is frame ``n_frames // 2``).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    return out_and_back(orbit(n_frames // 2 + 1, radius, degrees, start_w2c))[:n_frames]


def interpolate_c2w(c2w_a: torch.Tensor, c2w_b: torch.Tensor, t) -> torch.Tensor:
    """Poses a fraction ``t`` of the way between camera-to-world poses.

    The camera centre moves along the line from ``a`` to ``b``, the rotation along the shortest arc
    (:func:`model.geometry.rotations.interpolate_rotation`, the path of quaternion slerp).

    Args:
        c2w_a, c2w_b: ``[..., 4, 4]`` camera-to-world poses.
        t: a float or ``[...]`` fractions (0 gives ``c2w_a``, 1 gives ``c2w_b`` up to round-off).

    Returns:
        ``[..., 4, 4]`` camera-to-world poses.
    """
    t = torch.as_tensor(t, dtype=c2w_a.dtype, device=c2w_a.device)
    rot = interpolate_rotation(c2w_a[..., :3, :3], c2w_b[..., :3, :3], t)
    return rigid(rot, (1.0 - t)[..., None] * c2w_a[..., :3, 3] + t[..., None] * c2w_b[..., :3, 3])


def resample_c2w(c2w: torch.Tensor, knots: torch.Tensor, n_frames: int) -> torch.Tensor:
    """``n_frames`` poses at uniform parameter values along a piecewise path.

    Args:
        c2w: ``[K, 4, 4]`` camera-to-world poses, at the non-decreasing parameters ``knots`` ``[K]``.
        n_frames: poses wanted; the first at ``knots[0]``, the last at ``knots[-1]``.

    Returns:
        ``[n_frames, 4, 4]`` camera-to-world poses, each :func:`interpolate_c2w` of the two poses
        around its parameter; ``c2w[0]`` repeated when the path has one pose or no parameter range.
    """
    knots = torch.as_tensor(knots, dtype=torch.float64)
    if len(c2w) == 1 or knots[-1] <= knots[0]:
        return c2w[0].expand(n_frames, 4, 4).clone()
    s = torch.linspace(float(knots[0]), float(knots[-1]), n_frames, dtype=torch.float64)
    i = (torch.searchsorted(knots, s, right=True) - 1).clamp(0, len(knots) - 2)
    span = knots[i + 1] - knots[i]
    t = torch.where(span > 0, (s - knots[i]) / span, 0.0)
    return interpolate_c2w(c2w[i], c2w[i + 1], t)
