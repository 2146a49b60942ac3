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

Rotations (elementary, yaw/pitch/roll, angles, interpolation) live in :mod:`model.rotations`,
camera paths (builders, interpolation, resampling) in :mod:`model.trajectories`.

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

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.atomic import write_json_atomic, write_text_atomic

#: Tolerance on ``|det(R) - 1|`` and on ``R^T R = I`` for a matrix to count as a rotation.
ROTATION_TOLERANCE = 1e-3
#: Rotation tolerance for text files, whose matrices are often printed with few digits.
FILE_ROTATION_TOLERANCE = 1e-2
#: Default near / far clipping distances of the GL renderers (:func:`gl_projection`), metres.
NEAR_M, FAR_M = 0.05, 200.0

# OpenCV <-> OpenGL camera axes: flip y and z.
_CV_FROM_GL = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


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


def rotation_error(rot: torch.Tensor) -> torch.Tensor:
    """Per-matrix distance from a proper rotation: ``max(|det R - 1|, max|R^T R - I|)``, shape ``[...]``."""
    rot = rot.to(torch.float64)
    eye = torch.eye(3, dtype=torch.float64, device=rot.device)
    ortho = (rot.transpose(-1, -2) @ rot - eye).abs().amax(dim=(-1, -2))
    return torch.maximum((torch.linalg.det(rot) - 1.0).abs(), ortho)


def validate_poses(w2c: torch.Tensor, name: str = "w2c", tolerance: float = ROTATION_TOLERANCE) -> torch.Tensor:
    """Check world-to-camera poses at an API boundary and return them as a tensor.

    Args:
        w2c: ``[4, 4]`` or ``[F, 4, 4]`` rigid transforms.
        name: argument name used in error messages.

    Raises:
        ValueError: wrong shape, NaN/Inf, bottom row not ``[0, 0, 0, 1]``, or a rotation whose
            determinant is far from +1 / that is not orthonormal.
    """
    w2c = torch.as_tensor(w2c)
    if w2c.ndim not in (2, 3) or w2c.shape[-2:] != (4, 4):
        raise ValueError(f"{name}: expected a [4,4] or [F,4,4] pose, got shape {list(w2c.shape)}")
    if not w2c.is_floating_point():
        w2c = w2c.to(torch.float64)
    if not torch.isfinite(w2c).all():
        raise ValueError(f"{name}: pose contains NaN or Inf")
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=w2c.dtype, device=w2c.device)
    if not torch.allclose(w2c[..., 3, :], bottom.expand_as(w2c[..., 3, :]), atol=1e-6):
        raise ValueError(f"{name}: bottom row of a pose must be [0, 0, 0, 1]")
    err = rotation_error(w2c[..., :3, :3])
    if (err > tolerance).any():
        bad = int(torch.nonzero(err.reshape(-1) > tolerance)[0])
        raise ValueError(f"{name}: frame {bad} is not a rotation (|det-1| or orthogonality error {float(err.reshape(-1)[bad]):.3g})")
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
# Trajectory (the container the camera files below read and write; paths: model.trajectories)
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

    def with_poses(self, w2c: torch.Tensor) -> Trajectory:
        """The same camera and frame rate with other poses."""
        return Trajectory(w2c, self.K, self.width, self.height, self.fps)


# --------------------------------------------------------------------------------------------
# RealEstate10K camera files
# --------------------------------------------------------------------------------------------


@dataclass
class Re10kCameras:
    """Contents of a RealEstate10K camera file.

    Attributes:
        url: the source URL from line 1 (may be empty).
        timestamps_us: ``[T]`` int64 microseconds.
        intrinsics: ``[T, 4]`` float64 ``fx/W, fy/H, cx/W, cy/H``.
        w2c: ``[T, 4, 4]`` float64 world-to-camera poses (OpenCV axes).
    """

    url: str
    timestamps_us: torch.Tensor
    intrinsics: torch.Tensor
    w2c: torch.Tensor

    def K(self, width: int, height: int) -> torch.Tensor:
        """``[T, 3, 3]`` pixel intrinsics for a ``width x height`` image."""
        K = torch.zeros(len(self.intrinsics), 3, 3, dtype=torch.float64)
        K[:, 0, 0] = self.intrinsics[:, 0] * width
        K[:, 1, 1] = self.intrinsics[:, 1] * height
        K[:, 0, 2] = self.intrinsics[:, 2] * width
        K[:, 1, 2] = self.intrinsics[:, 3] * height
        K[:, 2, 2] = 1.0
        return K

    def trajectory(self, width: int, height: int) -> Trajectory:
        """A :class:`Trajectory` with the first frame's intrinsics and the frame rate of the timestamps."""
        if len(self.timestamps_us) > 1:
            span = float(self.timestamps_us[-1] - self.timestamps_us[0])
            fps = (len(self.timestamps_us) - 1) * 1e6 / span if span > 0 else 30.0
        else:
            fps = 30.0
        return Trajectory(self.w2c, self.K(width, height)[0], width, height, fps)


def read_re10k(path: str | os.PathLike) -> Re10kCameras:
    """Read a RealEstate10K camera file.

    Raises:
        ValueError: naming the file and line, for a wrong column count, an unparsable or non-finite
            number, a rotation whose determinant is far from +1, or a file with no frames.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read RealEstate10K camera file: {exc}") from exc
    if not lines:
        raise ValueError(f"{path}: empty file (expected a URL line and one line per frame)")
    url = lines[0].strip()
    stamps, intr, poses = [], [], []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 19:
            raise ValueError(f"{path}:{lineno}: expected 19 columns, got {len(cols)}")
        try:
            values = [float(c) for c in cols]
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: not a number: {exc}") from exc
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}:{lineno}: NaN or Inf value")
        if values[1] <= 0 or values[2] <= 0:
            raise ValueError(f"{path}:{lineno}: focal lengths must be positive")
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :] = torch.tensor(values[7:], dtype=torch.float64).reshape(3, 4)
        err = float(rotation_error(w2c[:3, :3]))
        if err > FILE_ROTATION_TOLERANCE:
            raise ValueError(f"{path}:{lineno}: rotation is not orthonormal with det +1 (error {err:.3g})")
        stamps.append(int(round(values[0])))
        intr.append(values[1:5])
        poses.append(w2c)
    if not poses:
        raise ValueError(f"{path}: no camera frames")
    return Re10kCameras(
        url=url,
        timestamps_us=torch.tensor(stamps, dtype=torch.int64),
        intrinsics=torch.tensor(intr, dtype=torch.float64),
        w2c=torch.stack(poses),
    )


def write_re10k(
    path: str | os.PathLike,
    w2c: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    fps: float = 16.0,
    timestamps_us: torch.Tensor | None = None,
    url: str = "",
) -> None:
    """Write poses as a RealEstate10K camera file (atomically).

    Args:
        w2c: ``[T, 4, 4]`` poses. K: ``[3, 3]`` or ``[T, 3, 3]`` pixel intrinsics of ``width x height``.
        fps: used for timestamps when ``timestamps_us`` is not given.
        url: text for line 1.
    """
    w2c = validate_poses(torch.as_tensor(w2c, dtype=torch.float64), "w2c")
    if w2c.ndim == 2:
        w2c = w2c[None]
    K = validate_intrinsics(torch.as_tensor(K, dtype=torch.float64), "K").expand(len(w2c), 3, 3)
    if timestamps_us is None:
        timestamps_us = torch.round(torch.arange(len(w2c), dtype=torch.float64) * 1e6 / fps).to(torch.int64)
    rows = [url.replace("\n", " ")]
    for i in range(len(w2c)):
        intr = [K[i, 0, 0] / width, K[i, 1, 1] / height, K[i, 0, 2] / width, K[i, 1, 2] / height]
        mat = w2c[i, :3, :].reshape(-1).tolist()
        rows.append(" ".join([str(int(timestamps_us[i]))] + [repr(float(v)) for v in intr] + ["0", "0"] + [repr(v) for v in mat]))
    write_text_atomic(path, "\n".join(rows) + "\n")


# --------------------------------------------------------------------------------------------
# Camera-path JSON
# --------------------------------------------------------------------------------------------


def write_camera_path_json(path: str | os.PathLike, trajectory: Trajectory) -> None:
    """Write a trajectory as camera-path JSON (nerfstudio's shape, OpenCV axes, atomically).

    Besides nerfstudio's keys the file carries ``intrinsics`` (fx, fy, cx, cy in pixels) so a
    principal point off the centre survives a round trip.
    """
    K = trajectory.K
    frames = [
        {"camera_to_world": c2w.reshape(-1).tolist(), "fov": trajectory.fov_y_deg, "aspect": trajectory.width / trajectory.height}
        for c2w in trajectory.c2w
    ]
    write_json_atomic(
        path,
        {
            "camera_type": "perspective",
            "camera_convention": "opencv",
            "render_width": trajectory.width,
            "render_height": trajectory.height,
            "fps": trajectory.fps,
            "seconds": len(trajectory) / trajectory.fps,
            "intrinsics": {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])},
            "camera_path": frames,
        },
    )


def read_camera_path_json(path: str | os.PathLike) -> Trajectory:
    """Read camera-path JSON written by :func:`write_camera_path_json` or by nerfstudio.

    Raises:
        ValueError: naming the file and the frame, for missing keys, non-finite numbers, matrices
            that are not 4x4 rigid transforms, or no frames.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read camera-path JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("camera_path"), list):
        raise ValueError(f"{path}: expected an object with a 'camera_path' list")
    frames = data["camera_path"]
    if not frames:
        raise ValueError(f"{path}: camera_path has no frames")
    try:
        width, height = int(data["render_width"]), int(data["render_height"])
        fps = float(data.get("fps", 16.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: missing or invalid render_width / render_height / fps: {exc}") from exc
    convention = data.get("camera_convention", "opengl")
    if convention not in ("opencv", "opengl"):
        raise ValueError(f"{path}: camera_convention must be 'opencv' or 'opengl', got {convention!r}")
    c2w = []
    for i, frame in enumerate(frames):
        try:
            mat = torch.tensor(frame["camera_to_world"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: camera_path[{i}]: missing or invalid camera_to_world: {exc}") from exc
        if mat.numel() == 12:
            mat = torch.cat([mat.reshape(3, 4), torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)])
        if mat.numel() != 16:
            raise ValueError(f"{path}: camera_path[{i}]: camera_to_world must have 16 (or 12) numbers, got {mat.numel()}")
        mat = mat.reshape(4, 4)
        if convention == "opengl":
            mat = mat @ _CV_FROM_GL
        try:
            validate_poses(mat, "camera_to_world", FILE_ROTATION_TOLERANCE)
        except ValueError as exc:
            raise ValueError(f"{path}: camera_path[{i}]: {exc}") from exc
        c2w.append(mat)
    if "intrinsics" in data:
        intr = data["intrinsics"]
        K = torch.tensor([[intr["fx"], 0.0, intr["cx"]], [0.0, intr["fy"], intr["cy"]], [0.0, 0.0, 1.0]], dtype=torch.float64)
    else:
        try:
            K = intrinsics_from_fov(float(frames[0]["fov"]), width, height)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: camera_path[0]: missing or invalid fov: {exc}") from exc
    try:
        return Trajectory(invert_pose(torch.stack(c2w)), K, width, height, fps)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
