"""Rotations, written once: elementary rotations, yaw/pitch/roll, angles, axis-angle, interpolation.

Torch, batched over leading dimensions; angles given as Python floats become float64 tensors (the
trajectory side of the project is float64, see :mod:`model.geometry.camera`). Conventions are
:mod:`model.geometry.camera`'s: OpenCV camera axes (x right, y down, z forward), the world is the first
camera's frame, world up is ``-y``. A camera orientation is written as

    ``R_c2w = rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)``

with right-handed rotations about the world y, camera x and camera z axes: positive ``yaw`` turns the
view to the right (about world up), positive ``pitch`` tilts it up. Any rotation decomposes this way
(:func:`yaw_pitch_roll`), so a camera started from an arbitrary pose reproduces it.

An axis-angle vector ``[..., 3]`` is ``angle * axis`` (radians, unit axis): the logarithm of a
rotation (:func:`matrix_to_axis_angle`); its exponential (:func:`axis_angle_to_matrix`, Rodrigues'
formula) gives the rotation back.
"""

from __future__ import annotations

import math

import torch


def _matrices(rows) -> torch.Tensor:
    """``[..., 3, 3]`` from three rows of three ``[...]`` tensors."""
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _cos_sin(angle_rad) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``cos, sin, 0, 1`` of angles ``[...]`` (float64 for Python floats)."""
    angle = torch.as_tensor(angle_rad, dtype=torch.float64)
    c, s = torch.cos(angle), torch.sin(angle)
    return c, s, torch.zeros_like(c), torch.ones_like(c)


def rot_x(angle_rad) -> torch.Tensor:
    """Rotations ``[..., 3, 3]`` about +x by ``angle_rad`` (a float or ``[...]``).

    As a c2w pitch, positive tilts the view up (y is down).
    """
    c, s, o, i = _cos_sin(angle_rad)
    return _matrices(((i, o, o), (o, c, -s), (o, s, c)))


def rot_y(angle_rad) -> torch.Tensor:
    """Rotations ``[..., 3, 3]`` about +y by ``angle_rad`` (a float or ``[...]``).

    As a c2w yaw, positive turns the view to the right.
    """
    c, s, o, i = _cos_sin(angle_rad)
    return _matrices(((c, o, s), (o, i, o), (-s, o, c)))


def rot_z(angle_rad) -> torch.Tensor:
    """Rotations ``[..., 3, 3]`` about +z (the optical axis) by ``angle_rad`` (a float or ``[...]``)."""
    c, s, o, i = _cos_sin(angle_rad)
    return _matrices(((c, -s, o), (s, c, o), (o, o, i)))


def yaw_pitch_roll(rot_c2w: torch.Tensor) -> tuple[float, float, float]:
    """Angles in radians with ``rot_c2w == rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)``.

    Args:
        rot_c2w: ``[3, 3]`` camera-to-world rotation.

    At pitch +-90 degrees yaw and roll are not unique; roll is then 0.
    """
    (r00, _, r02), (r10, r11, r12), (r20, _, r22) = torch.as_tensor(rot_c2w, dtype=torch.float64).tolist()
    pitch = math.asin(max(-1.0, min(1.0, -r12)))
    if abs(r12) > 1.0 - 1e-12:  # looking straight up or down
        return math.atan2(-r20, r00), pitch, 0.0
    return math.atan2(r02, r22), pitch, math.atan2(r10, r11)


def _sin_axis(rot: torch.Tensor) -> torch.Tensor:
    """``[..., 3]``: the skew-symmetric part ``(R - R^T) / 2`` of rotations, as ``sin(angle) * axis``."""
    return 0.5 * torch.stack(
        [rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0], rot[..., 1, 0] - rot[..., 0, 1]], dim=-1
    )


def _cos(rot: torch.Tensor) -> torch.Tensor:
    """``[...]``: ``cos(angle) = (trace R - 1) / 2`` of rotations ``[..., 3, 3]``."""
    return 0.5 * (rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)


def rotation_angle(rot: torch.Tensor) -> torch.Tensor:
    """Angle of rotations ``[..., 3, 3]``: ``[...]`` radians in ``[0, pi]``.

    ``atan2(|sin(angle) axis|, cos(angle))`` from the skew-symmetric part and the trace: accurate at
    every angle, where ``acos`` of the trace alone loses digits near 0 and pi. The angle between two
    rotations is ``rotation_angle(rot_a.mT @ rot_b)``.

    Example:
        >>> round(math.degrees(rotation_angle(rot_y(math.radians(30.0))).item()), 9)
        30.0
    """
    return torch.atan2(_sin_axis(rot).norm(dim=-1), _cos(rot))


def matrix_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """Logarithm of rotations ``[..., 3, 3]``: axis-angle vectors ``[..., 3]``, angle in ``[0, pi]``.

    Below 90 degrees the axis is that of the skew-symmetric part ``(R - R^T) / 2 = sin(angle) [axis]_x``.
    From 90 degrees on, where ``sin`` shrinks to 0 at pi, it is the largest column of the symmetric
    part ``(R + R^T) / 2 - cos(angle) I = (1 - cos(angle)) axis axis^T``, signed like the
    skew-symmetric part. At exactly pi both signs are the same rotation; either may be returned.
    """
    sin_axis, cos = _sin_axis(rot), _cos(rot)
    sin = sin_axis.norm(dim=-1)
    angle = torch.atan2(sin, cos)
    small = sin_axis * torch.where(sin > 0, angle / sin, 1.0)[..., None]  # angle / sin -> 1 at 0
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    sym = 0.5 * (rot + rot.mT) - cos[..., None, None] * eye
    k = sym.diagonal(dim1=-2, dim2=-1).argmax(dim=-1)
    column = torch.take_along_dim(sym, k[..., None, None].expand(*k.shape, 3, 1), dim=-1)[..., 0]
    axis = column / column.norm(dim=-1, keepdim=True)
    large = axis * torch.where((axis * sin_axis).sum(-1) < 0, -angle, angle)[..., None]
    return torch.where((cos < 0)[..., None], large, small)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Exponential of axis-angle vectors ``[..., 3]`` (Rodrigues' formula): rotations ``[..., 3, 3]``.

    ``R = I + (sin(angle) / angle) W + ((1 - cos(angle)) / angle^2) W^2`` with ``W`` the cross-product
    matrix of the vector, both factors written with ``sinc`` (exact at angle 0, no cancellation).
    """
    x, y, z = axis_angle.unbind(-1)
    o = torch.zeros_like(x)
    W = _matrices(((o, -z, y), (z, o, -x), (-y, x, o)))
    angle = axis_angle.norm(dim=-1)
    a = torch.sinc(angle / math.pi)[..., None, None]  # sin(angle) / angle
    b = 0.5 * torch.sinc(angle / (2.0 * math.pi))[..., None, None] ** 2  # (1 - cos(angle)) / angle^2
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a * W + b * (W @ W)


def interpolate_rotation(rot_a: torch.Tensor, rot_b: torch.Tensor, t) -> torch.Tensor:
    """Rotations a fraction ``t`` of the way from ``rot_a`` to ``rot_b`` along the shortest arc.

    ``R_a exp(t log(R_a^T R_b))``: a constant angular speed about one axis, the same path as
    quaternion slerp.

    Args:
        rot_a, rot_b: ``[..., 3, 3]`` rotations.
        t: a float or ``[...]`` fractions (0 gives ``rot_a``, 1 gives ``rot_b`` up to round-off).

    Returns:
        ``[..., 3, 3]`` rotations.
    """
    t = torch.as_tensor(t, dtype=rot_a.dtype, device=rot_a.device)
    step = matrix_to_axis_angle(rot_a.mT @ rot_b)
    return rot_a @ axis_angle_to_matrix(t[..., None] * step)
