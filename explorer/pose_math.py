"""Small rotation helpers shared by the fly camera and the flight path (numpy, float64).

Conventions are :mod:`model.camera`'s: OpenCV camera axes (x right, y down, z forward), the world is
the first camera's frame, world up is ``-y``. A camera orientation is written as

    ``R_c2w = R_y(yaw) @ R_x(pitch) @ R_z(roll)``

with ``R_y`` / ``R_x`` / ``R_z`` right-handed rotations about the world y / camera x / camera z axes.
Positive ``yaw`` turns the view to the right (about world up), positive ``pitch`` tilts it up, the same
signs as :func:`model.camera.yaw_pan` and :func:`model.camera.look_around`. Any rotation decomposes
this way (:func:`yaw_pitch_roll`), so a camera started from an arbitrary pose reproduces it exactly.

Quaternions are ``(w, x, y, z)``; :func:`slerp` takes the short arc.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from model.camera import invert_pose


def rot_y(angle_rad: float) -> np.ndarray:
    """Rotation ``[3, 3]`` about +y by ``angle_rad``; as a c2w yaw, positive turns the view right."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(angle_rad: float) -> np.ndarray:
    """Rotation ``[3, 3]`` about +x by ``angle_rad``; as a c2w pitch, positive tilts the view up (y is down)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_z(angle_rad: float) -> np.ndarray:
    """Rotation ``[3, 3]`` about +z (the optical axis) by ``angle_rad``."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def yaw_pitch_roll(rot_c2w: np.ndarray) -> tuple[float, float, float]:
    """Angles in radians with ``rot_c2w == rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)``.

    At pitch +-90 degrees yaw and roll are not unique; roll is then 0.
    """
    r = np.asarray(rot_c2w, dtype=np.float64)
    pitch = math.asin(max(-1.0, min(1.0, -r[1, 2])))
    if abs(r[1, 2]) > 1.0 - 1e-12:  # looking straight up or down
        return math.atan2(-r[2, 0], r[0, 0]), pitch, 0.0
    return math.atan2(r[0, 2], r[2, 2]), pitch, math.atan2(r[1, 0], r[1, 1])


def to_c2w_numpy(w2c) -> np.ndarray:
    """``[..., 4, 4]`` float64 numpy camera-to-world from a w2c (numpy or torch)."""
    return invert_pose(torch.as_tensor(w2c, dtype=torch.float64)).numpy()


def to_w2c_torch(c2w: np.ndarray) -> torch.Tensor:
    """``[..., 4, 4]`` float64 torch world-to-camera from a numpy c2w."""
    return invert_pose(torch.as_tensor(np.asarray(c2w), dtype=torch.float64))


def rigid(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """``[4, 4]`` from a ``[3, 3]`` rotation and a ``[3]`` translation."""
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rot, trans
    return out


def quat_from_matrix(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` of a rotation ``[3, 3]`` (Shepperd's method, ``w >= 0``)."""
    m = np.asarray(rot, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = np.array([0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s])
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = np.array([(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s])
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = np.array([(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s])
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = np.array([(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def matrix_from_quat(q: np.ndarray) -> np.ndarray:
    """Rotation ``[3, 3]`` of a quaternion ``(w, x, y, z)`` (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions along the short arc (``t`` in [0, 1])."""
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 1.0 - 1e-10:  # nearly identical: lerp is exact enough and avoids 0/0
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(1.0, dot))
    s = math.sin(theta)
    return (math.sin((1.0 - t) * theta) * q0 + math.sin(t * theta) * q1) / s


def rotation_angle(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    """Angle in radians of the rotation taking ``rot_a`` to ``rot_b``."""
    cos = (np.trace(np.asarray(rot_a).T @ np.asarray(rot_b)) - 1.0) / 2.0
    return math.acos(max(-1.0, min(1.0, cos)))


def interpolate_c2w(c2w_a: np.ndarray, c2w_b: np.ndarray, t: float) -> np.ndarray:
    """Pose between two c2w ``[4, 4]``: camera centre linear, rotation slerp; exact at ``t`` = 0 and 1."""
    if t <= 0.0:
        return np.array(c2w_a, dtype=np.float64)
    if t >= 1.0:
        return np.array(c2w_b, dtype=np.float64)
    q = slerp(quat_from_matrix(c2w_a[:3, :3]), quat_from_matrix(c2w_b[:3, :3]), t)
    return rigid(matrix_from_quat(q), (1.0 - t) * c2w_a[:3, 3] + t * c2w_b[:3, 3])
