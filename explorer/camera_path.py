"""Planned camera paths: keyframes -> a smooth path -> generation segments (Qt-free).

A :class:`CameraPath` holds keyframes (a ``[4, 4]`` float64 world-to-camera pose in OpenCV axes and
a time in seconds, strictly increasing) and a frame rate. Between keyframes the camera centre
follows a centripetal Catmull-Rom spline (it passes through every keyframe and never overshoots
into loops, unlike a uniform one) and the rotation a slerp (the shortest arc,
:func:`model.geometry.rotations.interpolate_rotation`). :meth:`CameraPath.segments` cuts the
sampled path into generation segments of :data:`explorer.flight.SEGMENT_FRAMES` poses; consecutive
segments share their end pose, as the pipeline expects.

Files: the sampled path (one pose per frame at :attr:`CameraPath.fps`) is written as nerfstudio
camera-path JSON or RealEstate10K text by :mod:`model.io.cameras`; reading either makes each of its
poses a keyframe (at most :data:`MAX_IMPORTED_KEYFRAMES`, evenly chosen, the ends kept). Sessions
store the keyframes themselves (:meth:`CameraPath.to_dict`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from explorer.flight import SEGMENT_FRAMES
from model.geometry.camera import Trajectory, invert_pose, rigid, validate_poses
from model.geometry.rotations import interpolate_rotation
from model.io.cameras import read_camera_path_json, read_re10k, write_camera_path_json, write_re10k

DEFAULT_GAP_S = 2.0  # seconds between a new keyframe and the one before it
MAX_IMPORTED_KEYFRAMES = 200  # a dense imported path is thinned to this many keyframes
FILE_KINDS = ("json", "re10k")  # nerfstudio camera-path JSON, RealEstate10K text


@dataclass(frozen=True)
class Keyframe:
    """One keyframe: ``w2c`` ``[4, 4]`` float64 (OpenCV axes) at ``time_s`` seconds from the path's start."""

    w2c: np.ndarray
    time_s: float


def _pose(w2c, name: str) -> np.ndarray:
    pose = validate_poses(torch.as_tensor(np.asarray(w2c), dtype=torch.float64), name)
    if pose.shape != (4, 4):
        raise ValueError(f"{name}: expected [4,4], got {list(pose.shape)}")
    return pose.numpy().copy()


def catmull_rom(points: torch.Tensor, knots: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Centripetal Catmull-Rom spline through ``points`` [K, 3] at ``knots`` [K] seconds, sampled at ``times`` [T].

    The curve parameter of each piece is the centripetal one (``sqrt`` of the chord length) so the
    curve has no cusps or self-intersections; the time inside a piece maps linearly onto it. The end
    pieces use mirrored phantom points. Returns ``[len(times), 3]``; exact at the knots up to round-off.
    """
    if len(points) == 1:
        return points[0].expand(len(times), 3).clone()
    padded = torch.cat([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    piece = (torch.searchsorted(knots, times, right=True) - 1).clamp(0, len(knots) - 2)
    u = ((times - knots[piece]) / (knots[piece + 1] - knots[piece])).clamp(0.0, 1.0)[:, None]
    p0, p1, p2, p3 = (padded[piece + k] for k in range(4))
    # centripetal parameters t0 = 0 < t1 < t2 < t3 (a tiny floor keeps repeated points finite)
    t1 = (p1 - p0).norm(dim=-1, keepdim=True).sqrt().clamp_min(1e-9)
    t2 = t1 + (p2 - p1).norm(dim=-1, keepdim=True).sqrt().clamp_min(1e-9)
    t3 = t2 + (p3 - p2).norm(dim=-1, keepdim=True).sqrt().clamp_min(1e-9)
    t = t1 + u * (t2 - t1)
    a1 = ((t1 - t) * p0 + t * p1) / t1
    a2 = ((t2 - t) * p1 + (t - t1) * p2) / (t2 - t1)
    a3 = ((t3 - t) * p2 + (t - t2) * p3) / (t3 - t2)
    b1 = ((t2 - t) * a1 + t * a2) / t2
    b2 = ((t3 - t) * a2 + (t - t1) * a3) / (t3 - t1)
    return ((t2 - t) * b1 + (t - t1) * b2) / (t2 - t1)


class CameraPath:
    """Keyframes and the smooth path through them (see the module docstring).

    Args:
        fps: frames per second of the sampled path (the generated video's rate).
    """

    def __init__(self, fps: float = 16.0) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        self.keyframes: list[Keyframe] = []

    def __len__(self) -> int:
        return len(self.keyframes)

    @property
    def duration_s(self) -> float:
        """Seconds from the first keyframe to the last (0 with fewer than two)."""
        return self.keyframes[-1].time_s - self.keyframes[0].time_s if len(self) > 1 else 0.0

    # ---- editing ---------------------------------------------------------------------------

    def add(self, w2c, time_s: float | None = None) -> int:
        """Append a keyframe at ``time_s`` (default: :data:`DEFAULT_GAP_S` after the last); returns its index."""
        if time_s is None:
            time_s = self.keyframes[-1].time_s + DEFAULT_GAP_S if self.keyframes else 0.0
        if not math.isfinite(time_s) or (self.keyframes and time_s <= self.keyframes[-1].time_s):
            last = self.keyframes[-1].time_s if self.keyframes else None
            raise ValueError(f"time_s must be finite and after the last keyframe's {last}, got {time_s}")
        self.keyframes.append(Keyframe(_pose(w2c, "keyframe w2c"), float(time_s)))
        return len(self) - 1

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"keyframe {index} does not exist (the path has {len(self)})")

    def delete(self, index: int) -> None:
        """Remove keyframe ``index`` (the others keep their times)."""
        self._check_index(index)
        del self.keyframes[index]

    def move(self, index: int, to: int) -> None:
        """Reorder: the pose of keyframe ``index`` goes to position ``to``; the times stay in their slots."""
        self._check_index(index)
        self._check_index(to)
        poses = [k.w2c for k in self.keyframes]
        poses.insert(to, poses.pop(index))
        self.keyframes = [Keyframe(pose, k.time_s) for pose, k in zip(poses, self.keyframes, strict=True)]

    def retime(self, index: int, time_s: float) -> None:
        """Set keyframe ``index``'s time; it must stay strictly between its neighbours' times."""
        self._check_index(index)
        low = self.keyframes[index - 1].time_s if index > 0 else -math.inf
        high = self.keyframes[index + 1].time_s if index + 1 < len(self) else math.inf
        if not (math.isfinite(time_s) and low < time_s < high):
            raise ValueError(f"keyframe {index}: time {time_s} s must lie strictly between {low} and {high} s")
        self.keyframes[index] = Keyframe(self.keyframes[index].w2c, float(time_s))

    # ---- sampling --------------------------------------------------------------------------

    def _knots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``([K] seconds, [K, 4, 4] c2w)`` of the keyframes."""
        if not self.keyframes:
            raise ValueError("the camera path has no keyframes: add one from the current camera first")
        times = torch.tensor([k.time_s for k in self.keyframes], dtype=torch.float64)
        c2w = invert_pose(torch.from_numpy(np.stack([k.w2c for k in self.keyframes])))
        return times, c2w

    def sample_at(self, times) -> torch.Tensor:
        """``[T, 4, 4]`` float64 w2c at ``times`` seconds (clamped to the keyframes' span)."""
        knots, c2w = self._knots()
        times = torch.as_tensor(times, dtype=torch.float64).reshape(-1).clamp(float(knots[0]), float(knots[-1]))
        centres = catmull_rom(c2w[:, :3, 3], knots, times)
        if len(knots) == 1:
            rot = c2w[0, :3, :3].expand(len(times), 3, 3)
        else:
            i = (torch.searchsorted(knots, times, right=True) - 1).clamp(0, len(knots) - 2)
            t = ((times - knots[i]) / (knots[i + 1] - knots[i])).clamp(0.0, 1.0)
            rot = interpolate_rotation(c2w[i, :3, :3], c2w[i + 1, :3, :3], t)
        w2c = invert_pose(rigid(rot, centres))
        exact = torch.isclose(times[:, None], knots[None]).nonzero()  # keyframe times give the keyframes exactly
        for frame, key in exact.tolist():
            w2c[frame] = torch.from_numpy(self.keyframes[key].w2c)
        return w2c

    def sample(self) -> torch.Tensor:
        """``[T, 4, 4]`` float64 w2c, one per frame at :attr:`fps` from the first keyframe to the last
        (``T = round(duration * fps) + 1``; the last pose is exactly the last keyframe)."""
        knots, _ = self._knots()
        count = round(self.duration_s * self.fps) + 1
        return self.sample_at(torch.linspace(float(knots[0]), float(knots[-1]), count, dtype=torch.float64))

    def segments(self, start_w2c=None, segment_frames: int = SEGMENT_FRAMES) -> list[torch.Tensor]:
        """The path as generation segments: ``[n, segment_frames, 4, 4]`` float64 w2c as a list.

        Args:
            start_w2c: the pose generation stands at (the last generated one). When it is not the
                first keyframe, the path starts there, :data:`DEFAULT_GAP_S` before the first keyframe,
                so the video does not jump.
            segment_frames: poses per segment (4k+1); consecutive segments share their end pose.

        Returns:
            ``ceil((T - 1) / (segment_frames - 1))`` segments (at least one) covering the path at
            uniform times; the frame rate is as close to :attr:`fps` as whole segments allow.
        """
        if segment_frames < 2:
            raise ValueError(f"segment_frames must be >= 2, got {segment_frames}")
        path = self
        if start_w2c is not None:
            start = _pose(start_w2c, "start_w2c")
            if not self.keyframes or not np.allclose(start, self.keyframes[0].w2c, atol=1e-9):
                path = CameraPath(self.fps)
                path.add(start, (self.keyframes[0].time_s - DEFAULT_GAP_S) if self.keyframes else 0.0)
                path.keyframes.extend(self.keyframes)
        if len(path) < 2:
            raise ValueError("a camera path needs at least two keyframes (or a keyframe away from the camera)")
        knots, _ = path._knots()
        frames = round(path.duration_s * path.fps)
        count = max(1, math.ceil(frames / (segment_frames - 1)))
        times = torch.linspace(float(knots[0]), float(knots[-1]), count * (segment_frames - 1) + 1, dtype=torch.float64)
        w2c = path.sample_at(times)
        step = segment_frames - 1
        return [w2c[k * step : (k + 1) * step + 1].clone() for k in range(count)]

    # ---- files -----------------------------------------------------------------------------

    def trajectory(self, K, width: int, height: int) -> Trajectory:
        """The sampled path (:meth:`sample`) with intrinsics ``K`` ``[3, 3]`` of a ``width x height`` image."""
        return Trajectory(self.sample(), torch.as_tensor(np.asarray(K), dtype=torch.float64), width, height, self.fps)

    def export(self, path: str | os.PathLike, K, width: int, height: int, kind: str | None = None) -> None:
        """Write the sampled path as nerfstudio camera-path JSON (``kind="json"``, or a ``.json`` name) or
        RealEstate10K text (``"re10k"``, any other name), atomically."""
        kind = kind or _kind_of(path)
        trajectory = self.trajectory(K, width, height)
        if kind == "json":
            write_camera_path_json(path, trajectory)
        else:
            url = "mirage-explorer camera path"
            write_re10k(path, trajectory.w2c, trajectory.K, width, height, fps=self.fps, url=url)

    @classmethod
    def from_file(cls, path: str | os.PathLike, kind: str | None = None) -> CameraPath:
        """Read nerfstudio camera-path JSON or RealEstate10K text; each pose becomes a keyframe at its frame time.

        Raises:
            ValueError: naming the file and field or line (from :mod:`model.io.cameras`).
        """
        kind = kind or _kind_of(path)
        if kind == "json":
            trajectory = read_camera_path_json(path)
            times = torch.arange(len(trajectory), dtype=torch.float64) / trajectory.fps
            fps = trajectory.fps
        else:
            cameras = read_re10k(path)
            times = (cameras.timestamps_us - cameras.timestamps_us[0]).to(torch.float64) / 1e6
            fps = cameras.trajectory(1, 1).fps
            if len(times) > 1 and not bool((times[1:] > times[:-1]).all()):
                raise ValueError(f"{path}: timestamps must increase from line to line")
            trajectory = Trajectory(cameras.w2c, torch.eye(3, dtype=torch.float64), 1, 1, fps)
        keep = np.unique(np.linspace(0, len(times) - 1, min(len(times), MAX_IMPORTED_KEYFRAMES)).round().astype(int))
        out = cls(fps)
        for i in keep:
            out.add(trajectory.w2c[i].numpy(), float(times[i]))
        return out

    # ---- sessions --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-ready ``{"fps", "keyframes": [{"time_s", "c2w": 16 numbers, row-major}]}``."""
        return {
            "fps": self.fps,
            "keyframes": [
                {"time_s": k.time_s, "c2w": np.linalg.inv(k.w2c).reshape(-1).tolist()} for k in self.keyframes
            ],
        }

    @classmethod
    def from_dict(cls, data, where: str = "camera_path") -> CameraPath:
        """The inverse of :meth:`to_dict`; a ``ValueError`` names ``where`` and the bad field."""
        try:
            out = cls(float(data["fps"]))
            for i, key in enumerate(data["keyframes"]):
                try:
                    c2w = torch.tensor(key["c2w"], dtype=torch.float64).reshape(4, 4)
                    out.add(invert_pose(validate_poses(c2w, "c2w")).numpy(), float(key["time_s"]))
                except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                    raise ValueError(f"keyframes[{i}]: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"{where}: {what}") from exc
        return out


def _kind_of(path: str | os.PathLike) -> str:
    return "json" if Path(path).suffix.lower() == ".json" else "re10k"
