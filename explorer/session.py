"""Recording and replaying explorer sessions.

A session folder holds:

* ``video.mp4``: every generated frame, H.264 yuv420p (the first recorded segment's 33 frames, then
  32 new frames per segment), with the session JSON in the MP4 ``comment`` tag (drop the video
  anywhere and the settings travel with it);
* ``session.json``: format/version, settings, seed, model description, source (``"bundled"`` or the
  photo's path), prompt, size, fps, K, start pose, per-segment poses (33 camera-to-world matrices,
  row-major, OpenCV axes), actions, timings and memory stats, the planned camera path's keyframes
  (``camera_path``, optional: :meth:`explorer.camera_path.CameraPath.to_dict`; sessions without one
  still load), and the file names below;
* ``cameras.txt``: the poses of every video frame as a RealEstate10K camera file;
* ``memory.safetensors``: the memory after the last segment (:meth:`LatentSpatialMemory.save`);
* ``last_frame.png``: the last generated frame, lossless, so a continued session resumes from the
  exact frame and not from its H.264 copy;
* ``branches/<slug>/`` (optional): each branch kept by a rewind (:mod:`explorer.history`) when the recording
  stopped, as a session folder of its own (:meth:`SessionRecorder.save_branch`): ``first_segment`` is its fork,
  ``branch`` its name, its memory the one at its tip. :func:`saved_branches` lists them; opening one continues it.

Per segment, ``session.json`` also holds the depth source and the depth model's alignment residual
(``depth_source``, ``depth_residual``; absent in older sessions, which still load).

Crash safety: every recorded segment is committed. The recorder builds the next version of the whole
folder under a temporary name beside it and swaps it in atomically (:class:`model.io.atomic.OutputSet`),
so at any instant the folder is a valid session: the previous recording until the first segment is
committed, then all segments up to the last committed one. A crash, ``kill -9`` or a failed write
loses at most the segment in flight; the next recording into that folder removes the temporaries a
killed recorder left. Each segment is encoded on its own and appended to the committed video by a
stream copy (:func:`model.io.video.concat_mp4`, no re-encoding), with the session JSON as the comment read
from an ffmetadata file, so long sessions do not hit command-line length limits.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from explorer.camera_path import CameraPath
from model.baselines.kinds import load_memory
from model.geometry.camera import Trajectory, invert_pose, validate_intrinsics, validate_poses
from model.io.atomic import OutputSet
from model.io.cameras import write_camera_path_json, write_re10k
from model.io.formats import read_json_object
from model.io.images import load_image, save_png
from model.io.video import Mp4Writer, concat_mp4, read_mp4_frames

FORMAT_NAME = "mirage-explorer-session"
FORMAT_VERSION = 1
VIDEO, SESSION_JSON, CAMERAS, MEMORY, LAST_FRAME = (
    "video.mp4",
    "session.json",
    "cameras.txt",
    "memory.safetensors",
    "last_frame.png",
)
BRANCHES = "branches"


class SessionError(ValueError):
    """A session folder that cannot be read; the message names the file and what is wrong."""


def _c2w_rows(w2c) -> list[list[float]]:
    w2c = torch.as_tensor(w2c, dtype=torch.float64)
    return invert_pose(w2c).reshape(-1, 16).tolist()


class SessionRecorder:
    """Records one session into ``folder`` (see the module docstring for the files), one committed segment at a time.

    Args:
        folder: the session folder; replaced as a whole when the first segment is committed.
        fps: frame rate of the video and the camera file.

    Example:
        >>> recorder = SessionRecorder("sessions/kitchen")  # doctest: +SKIP
        >>> recorder.start(width=1280, height=704, K=K, start_w2c=np.eye(4), source="photo.jpg")  # doctest: +SKIP
        >>> for result in segments: recorder.add_segment(result, action="forward", memory=pipe.memory)  # doctest: +SKIP
        >>> recorder.finish()  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike, fps: float = 16.0) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        self.folder, self.fps = Path(folder), float(fps)
        self._recording = False
        self._info: dict = {}
        self._segments: list[dict] = []
        self._poses: list[torch.Tensor] = []
        self.camera_path: dict | None = None  # CameraPath.to_dict() of the planned path; written with each segment

    @property
    def recording(self) -> bool:
        return self._recording

    @property
    def segments(self) -> int:
        """Segments committed to the folder."""
        return len(self._segments)

    def start(
        self,
        *,
        width: int,
        height: int,
        K,
        start_w2c,
        source: str,
        prompt: str = "",
        seed: int = 0,
        settings: dict | None = None,
        model: dict | str | None = None,
        first_segment: int = 0,
    ) -> None:
        """Check the folder and remember the session's constants; nothing is written yet.

        Args:
            source: ``"bundled"`` or the photo's path. first_segment: index of the first segment this
                recording will hold (> 0 when it continues a replayed session).

        Raises:
            OutputError: when the folder cannot be written (a file there, an unwritable parent).
        """
        if self.recording:
            raise RuntimeError(f"{self.folder}: already recording")
        K = validate_intrinsics(torch.as_tensor(K, dtype=torch.float64), "K")
        start_w2c = validate_poses(torch.as_tensor(start_w2c, dtype=torch.float64), "start_w2c")
        OutputSet().add(self.folder, folder=True)  # checks the folder, removes what a killed recorder left
        self._info = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": {
                "kind": "bundled" if source == "bundled" else "image",
                "path": None if source == "bundled" else str(source),
            },
            "prompt": prompt,
            "seed": int(seed),
            "settings": settings or {},
            "model": model,
            "width": int(width),
            "height": int(height),
            "fps": self.fps,
            "K": K.tolist(),
            "start_c2w": _c2w_rows(start_w2c)[0],
            "first_segment": int(first_segment),
        }
        self._segments, self._poses = [], []
        self._recording = True

    def add_segment(self, result, action: str | None = None, *, memory) -> None:
        """Commit a :class:`~model.generation.pipeline.SegmentResult` to the folder: its frames appended to the video,
        its poses to ``session.json`` and ``cameras.txt``, ``memory`` and the last frame saved.

        Args:
            memory: the pipeline's memory after this segment (anything with ``save(path)`` and ``stats()``).

        Raises:
            OutputError: when a file cannot be written. The recording ends; the folder keeps the
                segments committed before this one.
        """
        if not self.recording:
            raise RuntimeError(f"{self.folder}: not recording (call start first)")
        frames = np.asarray(result.frames)
        w2c = validate_poses(torch.as_tensor(result.w2c, dtype=torch.float64), "segment poses")
        if frames.ndim != 4 or len(frames) != len(w2c):
            raise ValueError(f"segment {result.index}: {len(frames)} frames but {len(w2c)} poses")
        action = action if action is not None else getattr(result, "action", "")
        segments = [
            *self._segments,
            {
                "index": int(result.index),
                "action": action or "",
                "frame_ids": [int(result.frame_ids[0]), int(result.frame_ids[-1])],
                "c2w": _c2w_rows(w2c),
                "timings_s": {k: float(v) for k, v in result.timings.items()},
                "memory": {"points": int(result.memory_points), "bytes": int(result.memory_bytes)},
                "depth_source": str(getattr(result, "depth_source", "") or ""),
                "depth_residual": _optional_float(getattr(result, "depth_residual", None)),
            },
        ]
        poses = [*self._poses, w2c]
        try:
            with OutputSet() as outputs:
                outputs.write(
                    self.folder, lambda tmp: self._write_folder(tmp, segments, poses, frames, memory), folder=True
                )
        except BaseException:
            self._recording = False
            raise
        self._segments, self._poses = segments, poses

    def _write_folder(
        self, tmp: Path, segments: list[dict], poses: list[torch.Tensor], frames: np.ndarray, memory
    ) -> None:
        """Write the session with ``segments`` into the empty folder ``tmp``."""
        stats = memory.stats()
        data = {
            **self._info,
            "segments": segments,
            "segments_done": self._info["first_segment"] + len(segments),
            "frames": 1 + sum(len(p) - 1 for p in poses),
            "files": {"video": VIDEO, "cameras": CAMERAS, "memory": MEMORY, "last_frame": LAST_FRAME},
            "memory": {"points": int(stats.points), "bytes": int(stats.bytes)},
        }
        if self.camera_path is not None:
            data["camera_path"] = self.camera_path
        part = tmp / ".segment.mp4"
        with Mp4Writer(part, self._info["width"], self._info["height"], self.fps) as video:
            for frame in frames if len(segments) == 1 else frames[1:]:  # later segments repeat the last frame
                video.append(frame)
        concat_mp4([part] if len(segments) == 1 else [self.folder / VIDEO, part], tmp / VIDEO, data)
        part.unlink()
        (tmp / SESSION_JSON).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        K = torch.tensor(self._info["K"], dtype=torch.float64)
        write_re10k(
            tmp / CAMERAS,
            _all_frames(poses),
            K,
            self._info["width"],
            self._info["height"],
            fps=self.fps,
            url=f"mirage-explorer session seed={self._info['seed']}",
        )
        memory.save(tmp / MEMORY)
        save_png(tmp / LAST_FRAME, frames[-1])

    def finish(self) -> Path:
        """End the recording (every segment is already in the folder); returns the session folder.

        Raises:
            ValueError: when no segment was recorded (the folder is untouched).
        """
        if not self.recording:
            raise RuntimeError(f"{self.folder}: not recording")
        self._recording = False
        if not self._segments:
            raise ValueError(f"{self.folder}: no segments were recorded; nothing saved")
        return self.folder

    def abort(self) -> None:
        """End the recording without complaint; the folder keeps the segments committed so far (or its
        previous content when there were none)."""
        self._recording = False

    def save_branch(self, name: str, fork: int, segments: list[BranchSegment]) -> Path:
        """Write a branch kept by a rewind into ``branches/<slug>/`` of the finished recording's folder.

        The branch is a session folder of its own with this recording's settings, ``first_segment = fork``
        and ``"branch": name`` in its ``session.json``; its memory is the last segment's.

        Args:
            name: the branch's name (``"branch 1"``). fork: segments done before its first segment.
            segments: its segments in order, each with all its frames (the shared first one included).

        Returns:
            the branch's folder.

        Raises:
            RuntimeError: while still recording or before anything was recorded. ValueError: no segments.
            OutputError: when the folder cannot be written.
        """
        if self.recording or not self._info:
            raise RuntimeError(f"{self.folder}: save branches after a finished recording")
        if not segments:
            raise ValueError(f"branch {name!r}: no segments")
        if fork < 0:
            raise ValueError(f"branch {name!r}: fork must be >= 0, got {fork}")
        slug = "".join(c if c.isalnum() else "-" for c in name.strip().lower()).strip("-") or "branch"
        branch = SessionRecorder(self.folder / BRANCHES / slug, self.fps)
        branch._info = {
            **self._info,
            "first_segment": int(fork),
            "branch": str(name),
            "start_c2w": _c2w_rows(torch.as_tensor(segments[0].w2c[0], dtype=torch.float64))[0],
        }
        branch._recording = True
        for segment in segments:
            branch.add_segment(segment, memory=segment.memory)
        return branch.finish()


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


@dataclass
class BranchSegment:
    """One segment of a branch to save (:meth:`SessionRecorder.save_branch`), shaped like a pipeline result.

    Attributes:
        index: the segment's global number. frames: ``[T, H, W, 3]`` uint8 (frame 0 shared with the
            previous segment). w2c: ``[T, 4, 4]`` float64. action: what made it.
        memory: the memory after it (``save(path)``, ``stats()``; e.g. a rewind checkpoint's).
    """

    index: int
    frames: np.ndarray
    w2c: np.ndarray
    action: str
    memory: object
    depth_source: str = ""
    depth_residual: float | None = None
    timings: dict = field(default_factory=dict)

    @property
    def frame_ids(self) -> list[int]:
        """Global numbers of the first and last frame."""
        stride = len(self.frames) - 1
        return [self.index * stride, (self.index + 1) * stride]

    @property
    def memory_points(self) -> int:
        return int(self.memory.stats().points)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory.stats().bytes)


@dataclass(frozen=True)
class SavedBranch:
    """A branch saved in a session folder: its name, fork (segments done before it), segment count and folder."""

    name: str
    fork: int
    segments: int
    folder: Path

    @property
    def end(self) -> int:
        """Segments done at its tip."""
        return self.fork + self.segments


def saved_branches(folder: str | os.PathLike) -> list[SavedBranch]:
    """The branches saved in a session folder's ``branches/`` (none for sessions without one), by name.

    Raises:
        SessionError: a branch's ``session.json`` is unreadable or not a session (the message names it).
    """
    root = Path(folder) / BRANCHES
    if not root.is_dir():
        return []
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        json_path = sub / SESSION_JSON
        try:
            data = read_json_object(json_path, "branch session JSON")
            if data.get("format") != FORMAT_NAME or not isinstance(data.get("segments"), list):
                raise ValueError("not a Mirage Explorer session")
            out.append(
                SavedBranch(str(data.get("branch", sub.name)), int(data["first_segment"]), len(data["segments"]), sub)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(json_path, f"invalid saved branch: {exc}") from exc
    return out


def _all_frames(poses: list[torch.Tensor]) -> torch.Tensor:
    """Poses of every video frame: the first segment whole, then each next one without its shared frame."""
    return torch.cat([poses[0]] + [p[1:] for p in poses[1:]])


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedSession:
    """A session folder read back by :func:`load_session`.

    Attributes:
        frames: ``[T, H, W, 3]`` uint8 video frames (decoded H.264: lossy).
        w2c: ``[S, 33, 4, 4]`` float64 poses of each segment's frames.
        K: ``[3, 3]`` float64. start_w2c: ``[4, 4]`` float64.
        last_frame: ``[H, W, 3]`` uint8, the exact last frame (``last_frame.png``; the video's when absent).
        memory_path: the saved memory. data: the whole ``session.json``.
    """

    folder: Path
    data: dict
    frames: np.ndarray
    w2c: np.ndarray
    K: np.ndarray
    start_w2c: np.ndarray
    last_frame: np.ndarray
    memory_path: Path
    actions: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return float(self.data["fps"])

    @property
    def width(self) -> int:
        return int(self.data["width"])

    @property
    def height(self) -> int:
        return int(self.data["height"])

    @property
    def prompt(self) -> str:
        return str(self.data.get("prompt", ""))

    @property
    def seed(self) -> int:
        return int(self.data.get("seed", 0))

    @property
    def settings(self) -> dict:
        return dict(self.data.get("settings", {}))

    @property
    def source(self) -> str:
        """``"bundled"`` or the photo's path."""
        src = self.data["source"]
        return "bundled" if src["kind"] == "bundled" else str(src["path"])

    @property
    def first_segment(self) -> int:
        return int(self.data.get("first_segment", 0))

    @property
    def segments_done(self) -> int:
        return self.first_segment + len(self.w2c)

    @property
    def branches(self) -> list[SavedBranch]:
        """The branches saved with the session (:func:`saved_branches`)."""
        return saved_branches(self.folder)

    @property
    def branch_name(self) -> str | None:
        """The branch's name when this session is a saved branch of another (None otherwise)."""
        return self.data.get("branch")

    @property
    def camera_path(self) -> CameraPath | None:
        """The planned camera path saved with the session (None: the session has none)."""
        data = self.data.get("camera_path")
        return None if data is None else CameraPath.from_dict(data)

    def all_w2c(self) -> np.ndarray:
        """``[T, 4, 4]`` poses of every video frame."""
        return _all_frames([torch.from_numpy(p) for p in self.w2c]).numpy()

    def poses_by_frame(self) -> dict[int, np.ndarray]:
        """Global frame id -> w2c of every recorded frame (and the start pose as frame 0 of segment 0)."""
        out = {0: self.start_w2c} if self.first_segment == 0 else {}
        for k, poses in enumerate(self.w2c):
            base = (self.first_segment + k) * (len(poses) - 1)
            for j, pose in enumerate(poses):
                out[base + j] = pose
        return out


def _fail(path: Path, why: str) -> SessionError:
    return SessionError(f"{path}: {why}")


def load_session(folder: str | os.PathLike) -> RecordedSession:
    """Read and strictly validate a session folder.

    Raises:
        SessionError: (a ``ValueError``) naming the file: a missing folder/file, invalid JSON, another
            format or version, missing or malformed keys, bad poses / intrinsics, or a video whose
            frame count or size does not match the JSON.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise _fail(folder, "not a session folder (does not exist or is not a folder)")
    json_path = folder / SESSION_JSON
    if not json_path.is_file():
        raise _fail(json_path, "missing (every session folder has one)")
    try:
        data = read_json_object(json_path, "session JSON")
    except ValueError as exc:
        raise SessionError(str(exc)) from exc
    if data.get("format") != FORMAT_NAME:
        raise _fail(json_path, f"not a Mirage Explorer session (format {data.get('format')!r})")
    if data.get("version") != FORMAT_VERSION:
        raise _fail(
            json_path, f"unsupported session version {data.get('version')!r} (this build reads {FORMAT_VERSION})"
        )
    try:
        width, height, fps = int(data["width"]), int(data["height"]), float(data["fps"])
        if width <= 0 or height <= 0 or not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"width/height/fps must be positive, got {width}, {height}, {fps}")
        source = data["source"]
        if (
            not isinstance(source, dict)
            or source.get("kind") not in ("bundled", "image")
            or (source["kind"] == "image" and not isinstance(source.get("path"), str))
        ):
            raise ValueError(
                f"source must be {{'kind': 'bundled'}} or {{'kind': 'image', 'path': ...}}, got {source!r}"
            )
        K = validate_intrinsics(torch.tensor(data["K"], dtype=torch.float64), "K")
        if K.shape != (3, 3):
            raise ValueError(f"K must be 3x3, got {list(K.shape)}")
        start_c2w = torch.tensor(data["start_c2w"], dtype=torch.float64).reshape(4, 4)
        start_w2c = validate_poses(invert_pose(validate_poses(start_c2w, "start_c2w")), "start pose")
        segments = data["segments"]
        if not isinstance(segments, list) or not segments:
            raise ValueError("segments must be a non-empty list")
        poses, actions = [], []
        for i, seg in enumerate(segments):
            try:
                c2w = torch.tensor(seg["c2w"], dtype=torch.float64)
                if c2w.ndim != 2 or c2w.shape[1] != 16 or len(c2w) < 2:
                    raise ValueError(f"c2w must be a list of 16-number rows, got shape {list(c2w.shape)}")
                w2c = invert_pose(validate_poses(c2w.reshape(-1, 4, 4), "c2w"))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"segments[{i}]: {exc}") from exc
            if poses and len(w2c) != len(poses[0]):
                raise ValueError(f"segments[{i}]: {len(w2c)} poses, segment 0 has {len(poses[0])}")
            poses.append(w2c.numpy())
            actions.append(str(seg.get("action", "")))
        first_segment = int(data.get("first_segment", 0))
        if first_segment < 0:
            raise ValueError(f"first_segment must be >= 0, got {first_segment}")
        if data.get("camera_path") is not None:
            CameraPath.from_dict(data["camera_path"])  # checked here so a bad one names the file
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise _fail(json_path, f"invalid session: {what}") from exc

    video = folder / VIDEO
    if not video.is_file():
        raise _fail(video, "missing (the session's video)")
    try:
        frames = read_mp4_frames(video)
    except (OSError, RuntimeError, StopIteration, ValueError) as exc:
        raise _fail(video, f"cannot decode the video ({exc})") from exc
    expected = 1 + sum(len(p) - 1 for p in poses)
    if frames.shape != (expected, height, width, 3):
        raise _fail(
            video,
            f"holds {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]}, but {json_path.name} describes "
            f"{expected} frames of {width}x{height}",
        )
    memory_path = folder / MEMORY
    if not memory_path.is_file():
        raise _fail(memory_path, "missing (the memory after the last segment)")
    last_path = folder / LAST_FRAME
    if last_path.is_file():
        try:
            last_frame = load_image(last_path)
        except ValueError as exc:
            raise _fail(last_path, f"unreadable ({exc})") from exc
        if last_frame.shape != (height, width, 3):
            raise _fail(last_path, f"is {last_frame.shape[1]}x{last_frame.shape[0]}, expected {width}x{height}")
    else:
        last_frame = frames[-1].copy()
    return RecordedSession(
        folder, data, frames, np.stack(poses), K.numpy(), start_w2c.numpy(), last_frame, memory_path, actions
    )


def session_memory(session: RecordedSession, pipeline_config=None, backbone=None):
    """Load a session's memory, of the pipeline's memory kind (the latent memory without a pipeline config)."""
    kind = "latent" if pipeline_config is None else pipeline_config.memory_kind
    return load_memory(session.memory_path, kind, vae=None if backbone is None else backbone.vae)


def export_camera_path(path: str | os.PathLike, session: RecordedSession) -> None:
    """Write the session's camera path (every video frame) as camera-path JSON (nerfstudio's shape, OpenCV axes)."""
    trajectory = Trajectory(
        torch.from_numpy(session.all_w2c()), torch.from_numpy(session.K), session.width, session.height, session.fps
    )
    write_camera_path_json(path, trajectory)
