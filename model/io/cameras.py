"""Camera files: RealEstate10K camera text files and nerfstudio-style camera-path JSON, read and written.

Every reader names the file, the field or line and the frame index of what is wrong.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from model.geometry.camera import (
    CV_FROM_GL,
    Trajectory,
    intrinsics_from_fov,
    invert_pose,
    pose_problem,
    rigid_mask,
    validate_intrinsics,
    validate_poses,
)
from model.io.atomic import write_json_atomic, write_text_atomic
from model.io.formats import json_kind, read_json_object

#: Rotation tolerance for text files, whose matrices are often printed with few digits.
FILE_ROTATION_TOLERANCE = 1e-2

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
        ValueError: ``"<file>: line <n>: <reason>"``, for a wrong column count, an unparsable or
            non-finite number (naming its column), a non-positive focal length, a matrix that is not a
            rotation, or ``"<file>: <reason>"`` for an unreadable file or one without frames.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read RealEstate10K camera file: {exc}") from exc
    if not lines:
        raise ValueError(f"{path}: empty file (expected a URL line and one line per frame)")
    url = lines[0].strip()
    rows, linenos = [], []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 19:
            raise ValueError(f"{path}: line {lineno}: expected 19 columns, got {len(cols)}")
        try:
            rows.append([float(text) for text in cols])
        except ValueError:
            column = next(i for i, text in enumerate(cols, start=1) if not _is_float(text))
            raise ValueError(f"{path}: line {lineno}: column {column}: not a number ({cols[column - 1]!r})") from None
        linenos.append(lineno)
    if not rows:
        raise ValueError(f"{path}: no camera frames after the URL line")
    values = torch.tensor(rows, dtype=torch.float64)  # [T, 19]
    w2c = torch.eye(4, dtype=torch.float64).repeat(len(values), 1, 1)
    w2c[:, :3, :] = values[:, 7:].reshape(-1, 3, 4)
    finite = torch.isfinite(values)
    focal_ok = (values[:, 1] > 0) & (values[:, 2] > 0)
    ok = finite.all(dim=1) & focal_ok & rigid_mask(w2c, FILE_ROTATION_TOLERANCE)
    if not ok.all():
        bad = int(torch.nonzero(~ok)[0])
        where = f"{path}: line {linenos[bad]}"
        if not finite[bad].all():
            raise ValueError(f"{where}: column {int(torch.nonzero(~finite[bad])[0]) + 1}: NaN or Inf value")
        if not focal_ok[bad]:
            raise ValueError(
                f"{where}: focal lengths fx, fy (columns 2-3) must be positive, got {values[bad, 1]:g}, "
                f"{values[bad, 2]:g}"
            )
        raise ValueError(f"{where}: {pose_problem(w2c[bad], FILE_ROTATION_TOLERANCE)}")
    return Re10kCameras(
        url=url, timestamps_us=torch.round(values[:, 0]).to(torch.int64), intrinsics=values[:, 1:5].clone(), w2c=w2c
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
        rows.append(
            " ".join(
                [str(int(timestamps_us[i]))] + [repr(float(v)) for v in intr] + ["0", "0"] + [repr(v) for v in mat]
            )
        )
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
        {
            "camera_to_world": c2w.reshape(-1).tolist(),
            "fov": trajectory.fov_y_deg,
            "aspect": trajectory.width / trajectory.height,
        }
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

    Intrinsics come from the ``intrinsics`` object (``fx``, ``fy``, ``cx``, ``cy`` in pixels) when the
    file has one, else from ``camera_path[0].fov``; an incomplete ``intrinsics`` object is an error,
    never silently replaced by ``fov``. Every matrix must be a rigid transform within
    :data:`ROTATION_TOLERANCE` (the tolerance of the :class:`Trajectory` returned).

    Raises:
        ValueError: ``"<file>: <field>: <reason>"`` naming the field and the frame index, e.g.
            ``"path.json: camera_path[3].camera_to_world: not a rotation (det -1.000)"`` or
            ``"path.json: intrinsics.fx: missing ..."``; ``"<file>: <reason>"`` when the file is not
            readable JSON.
    """
    path = Path(path)
    data = read_json_object(path, "camera-path JSON")
    frames = _json_field(path, data, "camera_path", "", list, "a list of frames")
    if not frames:
        raise ValueError(f"{path}: camera_path: no frames")
    width = _json_positive_int(path, data, "render_width")
    height = _json_positive_int(path, data, "render_height")
    fps = _json_number(path, data["fps"], "fps", positive=True) if "fps" in data else 16.0
    convention = data.get("camera_convention", "opengl")
    if convention not in ("opencv", "opengl"):
        raise ValueError(f"{path}: camera_convention: must be 'opencv' or 'opengl', got {convention!r}")
    rows = []
    for i, frame in enumerate(frames):
        field = f"camera_path[{i}]"
        if not isinstance(frame, dict):
            raise ValueError(f"{path}: {field}: expected an object with camera_to_world, got {json_kind(frame)}")
        mat = _json_field(path, frame, "camera_to_world", f"{field}.", list, "16 numbers (row-major 4x4) or 12 (3x4)")
        try:
            mat = torch.tensor(mat, dtype=torch.float64).reshape(-1)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"{path}: {field}.camera_to_world: expected 16 numbers (row-major 4x4) or 12 (3x4): {exc}"
            ) from exc
        if mat.numel() not in (12, 16):
            raise ValueError(
                f"{path}: {field}.camera_to_world: expected 16 numbers (row-major 4x4) or 12 (3x4), got {mat.numel()}"
            )
        rows.append(
            mat if mat.numel() == 16 else torch.cat([mat, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)])
        )
    c2w = torch.stack(rows).reshape(-1, 4, 4)
    ok = rigid_mask(c2w)
    if not ok.all():
        bad = int(torch.nonzero(~ok)[0])
        raise ValueError(f"{path}: camera_path[{bad}].camera_to_world: {pose_problem(c2w[bad])}")
    if convention == "opengl":
        c2w = c2w @ CV_FROM_GL
    if "intrinsics" in data:
        intr = _json_field(path, data, "intrinsics", "", dict, "an object {fx, fy, cx, cy} in pixels")
        for key in ("fx", "fy", "cx", "cy"):
            if key not in intr:
                raise ValueError(f"{path}: intrinsics.{key}: missing (intrinsics needs fx, fy, cx and cy in pixels)")
        fx, fy = (_json_number(path, intr[key], f"intrinsics.{key}", positive=True) for key in ("fx", "fy"))
        cx, cy = (_json_number(path, intr[key], f"intrinsics.{key}") for key in ("cx", "cy"))
        K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)
    else:
        field = "camera_path[0].fov"
        if "fov" not in frames[0]:
            raise ValueError(f"{path}: {field}: missing (needed when the file has no intrinsics object)")
        fov = _json_number(path, frames[0]["fov"], field, positive=True)
        if fov >= 180.0:
            raise ValueError(f"{path}: {field}: must be a vertical field of view in (0, 180) degrees, got {fov:g}")
        K = intrinsics_from_fov(fov, width, height)
    return Trajectory(invert_pose(c2w), K, width, height, fps)


def _json_field(path: Path, container: dict, key: str, prefix: str, kind: type, expected: str):
    """``container[key]`` when it is a ``kind``; else ``ValueError("<file>: <prefix><key>: ...")``."""
    if key not in container:
        raise ValueError(f"{path}: {prefix}{key}: missing (expected {expected})")
    value = container[key]
    if not isinstance(value, kind):
        raise ValueError(f"{path}: {prefix}{key}: expected {expected}, got {json_kind(value)}")
    return value


def _json_number(path: Path, value, field: str, positive: bool = False) -> float:
    """``value`` as a finite float (``> 0`` when ``positive``); else ``ValueError("<file>: <field>: ...")``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path}: {field}: expected a number, got {json_kind(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{path}: {field}: NaN or Inf value")
    if positive and value <= 0:
        raise ValueError(f"{path}: {field}: must be positive, got {value:g}")
    return float(value)


def _json_positive_int(path: Path, data: dict, key: str) -> int:
    """``data[key]`` as a positive whole number of pixels; else ``ValueError("<file>: <key>: ...")``."""
    if key not in data:
        raise ValueError(f"{path}: {key}: missing (expected the image size in pixels)")
    value = _json_number(path, data[key], key, positive=True)
    if not value.is_integer():
        raise ValueError(f"{path}: {key}: expected a whole number of pixels, got {value:g}")
    return int(value)
