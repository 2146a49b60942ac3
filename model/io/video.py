"""MP4 (H.264, yuv420p) writing, joining and reading with the ffmpeg that imageio-ffmpeg ships; the
one place that runs ffmpeg (generation, sessions, walkthroughs, evaluation and training data).

:class:`Mp4Writer` streams frames to an ffmpeg process that writes a temporary file beside the target
(:class:`model.io.atomic.OutputSet`), and checks ffmpeg's exit status when closing: a failed encode (a
full disk, a killed ffmpeg) is an :class:`~model.io.atomic.OutputError` naming the video, and never a
broken file under the final name. :func:`concat_mp4` joins videos of one encoding by a stream copy
with JSON in the ``comment`` tag, which :func:`read_mp4_metadata` reads back; :func:`iter_mp4_frames`
decodes frame by frame. Other ffmpeg runs go through :func:`run_ffmpeg`, which checks the exit status.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from model.io.atomic import OutputError, OutputSet, signals_held

CRF = 10  # libx264 constant rate factor (what imageio-ffmpeg's quality=8 gave)
MIN_BYTES_PER_PIXEL = 0.05  # H.264 at CRF 10 stays above this (smooth renders ~0.1, noisy frames ~0.5)


class FfmpegError(RuntimeError):
    """ffmpeg exited with an error; the message is the last line it wrote (or its exit status)."""


def run_ffmpeg(args: Sequence[str]) -> str:
    """Run ffmpeg (errors only on stderr) with ``args`` and return what it wrote to stdout.

    Raises:
        FfmpegError: when ffmpeg exits with an error status.
        OSError: when ffmpeg cannot be started.
    """
    done = subprocess.run(_ffmpeg_command(args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [_log_line(line) for line in done.stderr.splitlines()]
        raise FfmpegError(next((line for line in reversed(lines) if line), f"exit status {done.returncode}"))
    return done.stdout


def _ffmpeg_command(args: Sequence[str]) -> list[str]:
    """The command line that runs the bundled ffmpeg with ``args``, logging errors only."""
    return [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *args]


def _log_line(raw: str) -> str:
    """One line of ffmpeg's log without the ``[libx264 @ 0x...]`` source prefix."""
    return re.sub(r"^\[[^\]]*\]\s*", "", raw.strip())


def min_video_bytes(frames: int, height: int, width: int) -> int:
    """A rough lower bound of the size of an :class:`Mp4Writer` video, for free-space checks that
    never refuse a video that would fit."""
    return int(frames * height * width * MIN_BYTES_PER_PIXEL)


class Mp4Writer:
    """Streaming H.264 writer; use as a context manager.

    Args:
        path: final ``.mp4`` path.
        width, height: frame size in pixels (even; multiples of 16 avoid any padding inside the encoder).
        fps: frames per second.
        metadata: optional JSON-serialisable dict stored in the MP4 ``comment`` tag.
        outputs: the run's :class:`~model.io.atomic.OutputSet`; the video is renamed into place with the
            set's other files when the set commits. Without one the writer makes its own set, and
            :meth:`close` renames the video into place.

    Raises:
        OutputError: from :meth:`append` or :meth:`close`, naming ``path``, when ffmpeg fails.

    Example:
        >>> with Mp4Writer("out/preview.mp4", 640, 352, 16) as video:  # doctest: +SKIP
        ...     video.append(frame_uint8_hw3)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float,
        metadata: dict | None = None,
        outputs: OutputSet | None = None,
    ) -> None:
        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise ValueError(f"{path}: H.264 yuv420p needs even, positive frame sizes, got {width}x{height}")
        self.path, self.width, self.height = Path(path), width, height
        self.frames_written = 0
        self._own = OutputSet() if outputs is None else None
        tmp = (outputs or self._own).reserve(self.path)
        params = ["-metadata", f"comment={json.dumps(metadata, separators=(',', ':'))}"] if metadata is not None else []
        cmd = _ffmpeg_command(
            [
                "-y",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-s",
                f"{width}x{height}",
                "-r",
                str(Fraction(fps).limit_denominator()),
                "-i",
                "-",
                "-an",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-crf",
                str(CRF),
                *params,
                "-movflags",
                "+faststart",
                str(tmp),
            ]
        )
        self._ffmpeg: subprocess.Popen | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=20)
        try:
            with signals_held():  # a signal must not strike between ffmpeg's start and our handle on it
                # its own session: a Ctrl-C in the terminal reaches Python, which stops ffmpeg and removes the file
                self._ffmpeg = subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
                self._log_reader = threading.Thread(target=self._read_log, daemon=True)
                self._log_reader.start()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise OutputError(self.path, f"cannot start ffmpeg: {exc}") from exc
            raise

    def append(self, frame: np.ndarray) -> None:
        """Add one frame: ``[height, width, 3]`` uint8 RGB."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            raise ValueError(
                f"{self.path}: expected uint8 frames of shape {(self.height, self.width, 3)}, got {frame.dtype} "
                f"{frame.shape}"
            )
        try:
            self._ffmpeg.stdin.write(np.ascontiguousarray(frame).tobytes())
        except OSError as exc:  # ffmpeg exited (a write error of its own, or killed)
            raise self._failure() from exc
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file (and, without an ``outputs`` set, move it to its final name).

        Raises:
            ValueError: when no frame was written. OutputError: when ffmpeg failed.
        """
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written")
        with contextlib.suppress(OSError):  # a broken pipe: the exit status below says why
            self._ffmpeg.stdin.close()
        if self._ffmpeg.wait() != 0:
            raise self._failure()
        self._log_reader.join()
        if self._own is not None:
            self._own.commit()

    def abort(self) -> None:
        """Stop ffmpeg and drop the partial file; the final path is left untouched."""
        if self._ffmpeg is not None:
            if self._ffmpeg.poll() is None:
                self._ffmpeg.kill()
            self._ffmpeg.wait()
            with contextlib.suppress(OSError):
                self._ffmpeg.stdin.close()
        if self._own is not None:
            self._own.abort()

    def _failure(self) -> OutputError:
        """Stop ffmpeg, drop the file, and describe what ffmpeg said."""
        self.abort()
        self._log_reader.join(timeout=5)
        status = self._ffmpeg.returncode
        said = next((line for line in reversed(self._log) if line), "no message")
        return OutputError(self.path, f"ffmpeg failed (exit status {status}): {said}")

    def _read_log(self) -> None:
        """Keep the last lines ffmpeg writes to stderr (read on a thread so that ffmpeg never blocks on it)."""
        for raw in self._ffmpeg.stderr:
            self._log.append(_log_line(raw.decode("utf-8", "replace")))
        self._ffmpeg.stderr.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def concat_mp4(parts: Sequence[Path], dst: Path, metadata: dict) -> None:
    """Join MP4s of one encoding into ``dst`` (stream copy, no re-encoding) with ``metadata`` as JSON
    in its ``comment`` tag. The comment travels in an ffmetadata file, so its length is not limited
    by the command line; ``dst`` is written in place (give a temporary name).

    Raises:
        OutputError: naming ``dst`` when ffmpeg fails.
    """
    listing, meta = dst.with_name(".video-parts.txt"), dst.with_name(".video-comment.ffmeta")
    quoted = ("'" + str(p.resolve()).replace("'", "'\\''") + "'" for p in parts)
    listing.write_text("".join(f"file {q}\n" for q in quoted), encoding="utf-8")
    comment = json.dumps(metadata, separators=(",", ":"))
    for char in ("\\", "=", ";", "#", "\n"):
        comment = comment.replace(char, "\\" + char)
    meta.write_text(";FFMETADATA1\ncomment=" + comment + "\n", encoding="utf-8")
    try:
        run_ffmpeg(
            [
                "-y",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                str(listing),
                "-f",
                "ffmetadata",
                "-i",
                str(meta),
                "-map",
                "0",
                "-map_metadata",
                "1",
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                str(dst),
            ]
        )
    except FfmpegError as exc:
        raise OutputError(dst, f"ffmpeg could not join the video: {exc}") from exc
    finally:
        listing.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)


def mp4_frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of a video's frames, read from its header (nothing decoded)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        width, height = next(reader)["size"]
    finally:
        reader.close()
    return height, width


def iter_mp4_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """The frames of a video, one ``[H, W, 3]`` uint8 RGB array (read-only) at a time."""
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        width, height = next(reader)["size"]
        for buffer in reader:
            yield np.frombuffer(buffer, np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def read_mp4_frames(path: str | os.PathLike) -> np.ndarray:
    """All frames of a video as ``[T, H, W, 3]`` uint8 RGB."""
    return np.stack(list(iter_mp4_frames(path)))


def read_mp4_metadata(path: str | os.PathLike) -> dict:
    """The JSON stored in an MP4's ``comment`` tag by :class:`Mp4Writer` or :func:`concat_mp4` (empty
    dict when there is none).

    Raises:
        FfmpegError: when ffmpeg cannot read the file.
    """
    for line in run_ffmpeg(["-i", str(path), "-f", "ffmetadata", "-"]).splitlines():
        if line.startswith("comment="):
            return json.loads(
                line[len("comment=") :]
                .replace("\\=", "=")
                .replace("\\;", ";")
                .replace("\\#", "#")
                .replace("\\\\", "\\")
            )
    return {}
