"""MP4 (H.264, yuv420p) writing and reading with the ffmpeg that imageio-ffmpeg ships.

Writers stream frames to a temporary file next to the target and rename it on :meth:`Mp4Writer.close`,
so an error or a full disk never leaves a half-written video under the final name.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from model.atomic import atomic_path


class Mp4Writer:
    """Streaming H.264 writer; use as a context manager.

    Args:
        path: final ``.mp4`` path.
        width, height: frame size in pixels (multiples of 2; multiples of 16 avoid any padding).
        fps: frames per second.
        metadata: optional JSON-serialisable dict stored in the MP4 ``comment`` tag.

    Example:
        >>> with Mp4Writer("out/preview.mp4", 640, 352, 16) as video:  # doctest: +SKIP
        ...     video.append(frame_uint8_hw3)
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, metadata: dict | None = None) -> None:
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise ValueError(f"{path}: H.264 yuv420p needs even, positive frame sizes, got {width}x{height}")
        self.path, self.width, self.height = Path(path), width, height
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        params = ["-movflags", "+faststart"]
        if metadata is not None:
            params = ["-metadata", f"comment={json.dumps(metadata, separators=(',', ':'))}", *params]
        self._gen = imageio_ffmpeg.write_frames(
            str(self._tmp), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
            macro_block_size=16, quality=8, output_params=params, ffmpeg_log_level="error",
        )
        self._gen.send(None)
        self.frames_written = 0

    def append(self, frame: np.ndarray) -> None:
        """Add one frame: ``[height, width, 3]`` uint8 RGB."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            raise ValueError(f"{self.path}: expected uint8 frames of shape {(self.height, self.width, 3)}, got {frame.dtype} {frame.shape}")
        self._gen.send(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        self._gen.close()
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written")
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the partial file; the final path is left untouched."""
        self._gen.close()
        aborted = RuntimeError("video aborted")
        self._atomic.__exit__(RuntimeError, aborted, None)  # deletes the temporary file, raises nothing

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_mp4_frames(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video as ``[T, H, W, 3]`` uint8 RGB."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader]
    return np.stack(frames)


def read_mp4_metadata(path: str | os.PathLike) -> dict:
    """The JSON stored in an MP4's ``comment`` tag (empty dict when there is none)."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        if line.startswith("comment="):
            return json.loads(line[len("comment="):].replace("\\=", "=").replace("\\;", ";").replace("\\#", "#").replace("\\\\", "\\"))
    return {}
