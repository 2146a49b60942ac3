"""The one camera model of the project, written down once.

Conventions (every module uses these and nothing else):

* Camera axes follow OpenCV: x right, y down, z forward. The world frame is the first camera's frame,
  so "world up" is -y.
* A pose is a world-to-camera rigid transform ``w2c`` (4x4, ``points_cam = w2c @ points_world``).
  ``c2w`` is its inverse. Poses are float64 on the trajectory side; the memory casts to float32.
* Intrinsics ``K`` (3x3) are in pixels of an image of size ``(height, width)``. Pixel ``(u, v)``
  (column, row) covers ``[u, u+1) x [v, v+1)`` and has its centre at ``(u + 0.5, v + 0.5)``.
* A grid of another size (the VAE latent grid, ``h = H / 16``) uses intrinsics scaled per axis:
  ``fx, cx`` by ``w / W`` and ``fy, cy`` by ``h / H`` (:func:`scale_intrinsics`).
* Depth is z-depth (distance along the optical axis) in metres; non-finite or ``<= 0`` is invalid.
* The OpenGL clip matrix of a camera is derived in one place, :func:`gl_projection`.

Rotations (elementary, yaw/pitch/roll, angles, interpolation) live in :mod:`model.geometry.rotations`,
camera paths (builders, interpolation, resampling) in :mod:`model.geometry.trajectories`.

File formats:

* RealEstate10K camera files (:func:`read_re10k`, :func:`write_re10k`): line 1 a URL, then one line
  per frame with 19 columns: timestamp (microseconds), ``fx fy cx cy`` normalised by width/height,
  two unused zeros, and the row-major 3x4 world-to-camera matrix (OpenCV axes).
* Camera-path JSON (:func:`read_camera_path_json`, :func:`write_camera_path_json`), shaped like
  nerfstudio's: ``camera_path[i].camera_to_world`` (16 floats, row-major), ``fov`` (vertical,
  degrees), ``fps``. Our files say ``"camera_convention": "opencv"``; a file without that key is a
  nerfstudio file, whose matrices use OpenGL axes, and is converted on reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: Tolerance on ``|det(R) - 1|`` and on ``R^T R = I`` for a matrix to count as a rotation.
ROTATION_TOLERANCE = 1e-3
#: Default near / far clipping distances of the GL renderers (:func:`gl_projection`), metres.
NEAR_M, FAR_M = 0.05, 200.0

#: OpenCV <-> OpenGL camera axes (flip y and z; its own inverse), right-multiplied onto a ``c2w`` ``[4, 4]``.
CV_FROM_GL = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# Intrinsics
# --------------------------------------------------------------------------------------------


def intrinsics_from_fov(fov_y_deg: float, width: int, height: int) -> torch.Tensor:
    """Pinhole intrinsics with square pixels and the principal point at the image centre.

    Args:
        fov_y_deg: vertical field of view in degrees, in (0, 180).
        width, height: image size in pixels.

    Returns:
        K: ``[3, 3]`` float64, in pixels.

    Example:
        >>> K = intrinsics_from_fov(90.0, 64, 32)
        >>> round(K[1, 1].item(), 6), K[0, 2].item(), K[1, 2].item()
        (16.0, 32.0, 16.0)
    """
    if not 0.0 < fov_y_deg < 180.0 or not math.isfinite(fov_y_deg):
        raise ValueError(f"fov_y_deg must be in (0, 180), got {fov_y_deg}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2.0)
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def fov_y_from_intrinsics(K: torch.Tensor, height: int) -> float:
    """Vertical field of view in degrees of ``K`` ``[3, 3]`` for an image ``height`` pixels tall."""
    return math.degrees(2.0 * math.atan(0.5 * height / float(K[1, 1])))


def scale_intrinsics(K: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """Intrinsics of the same camera on a grid of another size (e.g. the VAE latent grid).

    ``fx, cx`` scale by ``w / W`` and ``fy, cy`` by ``h / H``; with pixel centres at +0.5 this maps
    the area of latent cell ``(u, v)`` exactly onto the pixel patch it summarises.

    Args:
        K: ``[..., 3, 3]`` intrinsics in pixels of a ``src_hw = (H, W)`` image.
        src_hw: ``(H, W)`` of the image ``K`` belongs to.
        dst_hw: ``(h, w)`` of the target grid.

    Returns:
        ``[..., 3, 3]`` intrinsics in cells of the ``(h, w)`` grid (same dtype as ``K``).

    Example:
        >>> K = intrinsics_from_fov(60.0, 1280, 704)
        >>> scale_intrinsics(K, (704, 1280), (44, 80))[0, 2].item()
        40.0
    """
    sx = dst_hw[1] / src_hw[1]
    sy = dst_hw[0] / src_hw[0]
    out = K.clone()
    out[..., 0, :] = K[..., 0, :] * sx
    out[..., 1, :] = K[..., 1, :] * sy
    return out


def pixel_centers(h: int, w: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Centres ``(u + 0.5, v + 0.5)`` of every cell of an ``h x w`` grid.

    Returns:
        ``[h, w, 2]``: ``[..., 0]`` is the column coordinate, ``[..., 1]`` the row coordinate.
    """
    v, u = torch.meshgrid(
        torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device), indexing="ij"
    )
    return torch.stack([u + 0.5, v + 0.5], dim=-1)


# --------------------------------------------------------------------------------------------
# Poses
# --------------------------------------------------------------------------------------------


def invert_pose(pose: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]`` (``w2c`` <-> ``c2w``), computed as ``[R^T | -R^T t]``."""
    rot = pose[..., :3, :3]
    trans = pose[..., :3, 3:]
    out = torch.zeros_like(pose)
    rot_t = rot.transpose(-1, -2)
    out[..., :3, :3] = rot_t
    out[..., :3, 3:] = -rot_t @ trans
    out[..., 3, 3] = 1.0
    return out


def rigid(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """Rigid transforms ``[..., 4, 4]`` from rotations ``[..., 3, 3]`` and translations ``[..., 3]``.

    The leading dimensions broadcast; the result has ``rot``'s dtype and device. As a ``c2w``,
    ``trans`` is the camera centre in world metres.
    """
    trans = torch.as_tensor(trans, dtype=rot.dtype, device=rot.device)
    out = rot.new_zeros(*torch.broadcast_shapes(rot.shape[:-2], trans.shape[:-1]), 4, 4)
    out[..., :3, :3] = rot
    out[..., :3, 3] = trans
    out[..., 3, 3] = 1.0
    return out


def _rotation_errors(rot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(det R, max|R^T R - I|)`` per matrix of ``rot`` ``[..., 3, 3]``, both float64 of shape ``[...]``."""
    rot = rot.to(torch.float64)
    eye = torch.eye(3, dtype=torch.float64, device=rot.device)
    return torch.linalg.det(rot), (rot.transpose(-1, -2) @ rot - eye).abs().amax(dim=(-1, -2))


def _pose_checks(poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The measurements every pose check uses, per matrix of ``poses`` ``[..., 4, 4]``: all entries
    finite, bottom row ``[0, 0, 0, 1]`` (``isclose``, atol 1e-6), ``det R`` and ``max|R^T R - I|``."""
    finite = torch.isfinite(poses).all(dim=-1).all(dim=-1)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=poses.dtype, device=poses.device)
    bottom_ok = torch.isclose(poses[..., 3, :], bottom.expand_as(poses[..., 3, :]), atol=1e-6).all(dim=-1)
    det, ortho = _rotation_errors(torch.nan_to_num(poses[..., :3, :3]))
    return finite, bottom_ok, det, ortho


def rigid_mask(poses: torch.Tensor, tolerance: float = ROTATION_TOLERANCE) -> torch.Tensor:
    """Which of ``poses`` ``[..., 4, 4]`` are rigid transforms: bool ``[...]`` (see :func:`pose_problem`)."""
    finite, bottom_ok, det, ortho = _pose_checks(poses)
    return finite & bottom_ok & ((det - 1.0).abs() <= tolerance) & (ortho <= tolerance)


def pose_problem(pose: torch.Tensor, tolerance: float = ROTATION_TOLERANCE) -> str | None:
    """Why one ``[4, 4]`` matrix is not a rigid transform, or None when it is one.

    The reasons every pose check reports: ``"NaN or Inf value"``, ``"bottom row must be [0, 0, 0,
    1], got [...]"``, ``"not a rotation (det -1.000)"`` or ``"not a rotation (R^T R differs from I by
    0.25)"``; ``tolerance`` bounds ``|det - 1|`` and that difference.
    """
    pose = torch.as_tensor(pose)
    finite, bottom_ok, det, ortho = (v.item() for v in _pose_checks(pose))
    if not finite:
        return "NaN or Inf value"
    if not bottom_ok:
        return f"bottom row must be [0, 0, 0, 1], got [{', '.join(f'{v:g}' for v in pose[3].tolist())}]"
    if abs(det - 1.0) > tolerance:
        return f"not a rotation (det {det:.3f})"
    if ortho > tolerance:
        return f"not a rotation (R^T R differs from I by {ortho:.3g})"
    return None


def validate_poses(w2c: torch.Tensor, name: str = "w2c", tolerance: float = ROTATION_TOLERANCE) -> torch.Tensor:
    """Check world-to-camera poses at an API boundary and return them as a tensor.

    Args:
        w2c: ``[4, 4]`` or ``[F, 4, 4]`` rigid transforms.
        name: argument name used in error messages.

    Raises:
        ValueError: wrong shape, or ``"<name>: frame <i>: <reason>"`` (``"<name>: <reason>"`` for a
            single pose) with the reason of :func:`pose_problem`: NaN/Inf, bottom row not
            ``[0, 0, 0, 1]``, or a rotation whose determinant is far from +1 / that is not orthonormal.
    """
    w2c = torch.as_tensor(w2c)
    if w2c.ndim not in (2, 3) or w2c.shape[-2:] != (4, 4):
        raise ValueError(f"{name}: expected a [4,4] or [F,4,4] pose, got shape {list(w2c.shape)}")
    if not w2c.is_floating_point():
        w2c = w2c.to(torch.float64)
    ok = rigid_mask(w2c, tolerance).reshape(-1)
    if not ok.all():
        bad = int(torch.nonzero(~ok)[0])
        where = f"{name}: frame {bad}" if w2c.ndim == 3 else name
        raise ValueError(f"{where}: {pose_problem(w2c.reshape(-1, 4, 4)[bad].cpu(), tolerance)}")
    return w2c


def validate_intrinsics(K: torch.Tensor, name: str = "K") -> torch.Tensor:
    """Check pinhole intrinsics ``[3, 3]`` or ``[F, 3, 3]``: finite, positive focal lengths, last row ``[0,0,1]``."""
    K = torch.as_tensor(K)
    if K.ndim not in (2, 3) or K.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected [3,3] or [F,3,3] intrinsics, got shape {list(K.shape)}")
    if not K.is_floating_point():
        K = K.to(torch.float64)
    if not torch.isfinite(K).all():
        raise ValueError(f"{name}: intrinsics contain NaN or Inf")
    if (K[..., 0, 0] <= 0).any() or (K[..., 1, 1] <= 0).any():
        raise ValueError(f"{name}: focal lengths must be positive")
    last = torch.tensor([0.0, 0.0, 1.0], dtype=K.dtype, device=K.device)
    if not torch.allclose(K[..., 2, :], last.expand_as(K[..., 2, :])):
        raise ValueError(f"{name}: last row of K must be [0, 0, 1]")
    return K


def look_at(eye, target, up=(0.0, -1.0, 0.0)) -> torch.Tensor:
    """World-to-camera pose of a camera at ``eye`` looking at ``target`` (OpenCV axes).

    Args:
        eye, target: ``[3]`` world positions in metres.
        up: world up direction (default ``-y``, the up of the first camera's frame).

    Returns:
        ``[4, 4]`` float64 ``w2c``.
    """
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    up = torch.as_tensor(up, dtype=torch.float64)
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)
    if x.norm() < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return invert_pose(c2w)


def projection_matrix(K: torch.Tensor, w2c: torch.Tensor) -> torch.Tensor:
    """``P = K [R | t]``: ``[..., 3, 4]`` maps homogeneous world points to ``(u z, v z, z)``."""
    return K @ w2c[..., :3, :]


def project_points(points_world: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points into cameras.

    Args:
        points_world: ``[N, 3]`` metres.
        w2c: ``[F, 4, 4]`` poses. K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics of the target grid.

    Returns:
        uv: ``[F, N, 2]`` continuous image coordinates (pixel ``(u, v)`` spans ``[u, u+1)``).
        z: ``[F, N]`` z-depth in metres (``<= 0`` behind the camera; uv is then meaningless).
    """
    P = projection_matrix(K.to(points_world.dtype), w2c.to(points_world.dtype))  # [F,3,4]
    hom = points_world @ P[..., :3].transpose(-1, -2) + P[..., None, :, 3]  # [F,N,3]
    z = hom[..., 2]
    uv = hom[..., :2] / z.unsqueeze(-1)
    return uv, z


def unproject_depth(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
    """Back-project the centre of every cell of depth maps into world space.

    Args:
        depth: ``[..., h, w]`` z-depth in metres.
        K: ``[..., 3, 3]`` intrinsics of the ``h x w`` grid (broadcast over the leading dims).
        c2w: ``[..., 4, 4]`` camera-to-world poses.

    Returns:
        points_world: ``[..., h, w, 3]`` metres (meaningless where depth is invalid).

    Example:
        >>> K = torch.tensor([[1.0, 0, 1], [0, 1.0, 1], [0, 0, 1]], dtype=torch.float64)
        >>> unproject_depth(torch.ones(2, 2, dtype=torch.float64), K, torch.eye(4, dtype=torch.float64))[0, 0].tolist()
        [-0.5, -0.5, 1.0]
    """
    h, w = depth.shape[-2:]
    uv = pixel_centers(h, w, dtype=depth.dtype, device=depth.device)
    K = K.to(depth.dtype)[..., None, None, :, :]
    x = (uv[..., 0] - K[..., 0, 2]) / K[..., 0, 0] * depth
    y = (uv[..., 1] - K[..., 1, 2]) / K[..., 1, 1] * depth
    points_cam = torch.stack([x, y, depth], dim=-1)
    c2w = c2w.to(depth.dtype)[..., None, None, :, :]
    return (c2w[..., :3, :3] @ points_cam.unsqueeze(-1)).squeeze(-1) + c2w[..., :3, 3]


# --------------------------------------------------------------------------------------------
# OpenGL
# --------------------------------------------------------------------------------------------


def gl_projection(
    K: np.ndarray | torch.Tensor, width: int, height: int, near: float = NEAR_M, far: float = FAR_M
) -> np.ndarray:
    """OpenGL clip matrix ``[4, 4]`` float64 (numpy, for GL uploads) for OpenCV camera points.

    This is the one place where OpenCV meets OpenGL. For a camera point ``(x, y, z)`` (y down,
    z forward) the pixel is ``u = fx x / z + cx``, ``v = fy y / z + cy`` with ``v`` counted from the
    top. GL's window x equals ``u``; GL's window y counts from the bottom, so it is ``height - v``
    (the renderer flips rows after reading). With ``w_clip = z`` that gives
    ``x_ndc = 2 u / width - 1``, ``y_ndc = 1 - 2 v / height`` and ``z_ndc`` from -1 at ``near`` to 1 at
    ``far``. GL rasterises at window positions ``(i + 0.5, j + 0.5)``, i.e. pixel centres
    ``(u + 0.5, v + 0.5)``, matching this module.

    Args:
        K: ``[3, 3]`` pixel intrinsics (numpy or torch) of a ``width x height`` image.
        near, far: clipping distances along the optical axis, metres.
    """
    K = np.asarray(K)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    return np.array(
        [
            [2.0 * fx / width, 0.0, 2.0 * cx / width - 1.0, 0.0],
            [0.0, -2.0 * fy / height, 1.0 - 2.0 * cy / height, 0.0],
            [0.0, 0.0, (far + near) / (far - near), -2.0 * far * near / (far - near)],
            [0.0, 0.0, 1.0, 0.0],
        ]
    )


# --------------------------------------------------------------------------------------------
# Trajectory (the container the camera files below read and write; paths: model.geometry.trajectories)
# --------------------------------------------------------------------------------------------


@dataclass
class Trajectory:
    """A camera path: one pose per RGB frame, shared intrinsics, a frame rate.

    Attributes:
        w2c: ``[T, 4, 4]`` float64 world-to-camera poses.
        K: ``[3, 3]`` float64 intrinsics in pixels of a ``width x height`` image.
        width, height: image size in pixels.
        fps: frames per second.
    """

    w2c: torch.Tensor
    K: torch.Tensor
    width: int
    height: int
    fps: float = 16.0

    def __post_init__(self) -> None:
        self.w2c = validate_poses(torch.as_tensor(self.w2c, dtype=torch.float64), "trajectory w2c")
        if self.w2c.ndim == 2:
            self.w2c = self.w2c[None]
        if len(self.w2c) == 0:
            raise ValueError("trajectory has no frames")
        self.K = validate_intrinsics(torch.as_tensor(self.K, dtype=torch.float64), "trajectory K")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"trajectory image size must be positive, got {self.width}x{self.height}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"trajectory fps must be positive, got {self.fps}")

    def __len__(self) -> int:
        return int(self.w2c.shape[0])

    @property
    def c2w(self) -> torch.Tensor:
        """``[T, 4, 4]`` camera-to-world poses."""
        return invert_pose(self.w2c)

    @property
    def fov_y_deg(self) -> float:
        return fov_y_from_intrinsics(self.K, self.height)
