"""Training clips: RealEstate10K-layout folders on disk, or procedural rooms rendered on the fly.

Folder layout of a data set (``--data DIR``), one sub-folder per clip::

    DIR/
      <clip_id>/                 any folder name without leading "." (it is the clip id)
        cameras.txt              RealEstate10K camera file: line 1 the source URL (may be empty),
                                 then one line per frame: timestamp_us fx/W fy/H cx/W cy/H 0 0
                                 followed by the row-major 3x4 world-to-camera matrix (OpenCV axes)
        frames/                  the frames as images (PNG/JPEG/...), sorted by file name, OR
        video.mp4                the frames as a video (exactly one of the two)
        prompt.txt               optional text prompt (UTF-8); empty prompt without it

Camera line ``i`` belongs to frame ``i``; the frame and camera counts must be equal. Frames are
centre-cropped to the training aspect ratio and resized like photos (:func:`model.io.images.crop_resize`);
the intrinsics of the first camera line, cropped and scaled the same way, serve the whole clip.
Folders starting with "." (e.g. a cache) are ignored.

A :class:`ClipSource` gives the cameras and reads frames lazily; anything wrong raises
:class:`ClipError` naming the clip and the reason, so the data layer can skip and log it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from model.eval.scenes import ProceduralScene, SceneConfig, SceneRenderer
from model.geometry.camera import intrinsics_from_fov
from model.geometry.trajectories import forward_dolly, look_around, orbit, yaw_pan
from model.io.cameras import read_re10k
from model.io.images import ImageLoadError, center_crop_box, crop_resize, load_image
from model.io.video import iter_mp4_frames, mp4_frame_size

CAMERA_FILE = "cameras.txt"
FRAMES_DIR = "frames"
VIDEO_FILE = "video.mp4"
PROMPT_FILE = "prompt.txt"
#: Vertical field of view of procedural clips, degrees (the bundled sample scene's).
PROCEDURAL_FOV_Y_DEG = 55.0
#: Frame rate at which procedural clips advance scene time, frames per second.
PROCEDURAL_FPS = 16.0
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


class ClipError(ValueError):
    """A clip that cannot be used (missing or corrupt file, too short, inconsistent counts)."""


class ClipSource(Protocol):
    """One training clip: cameras, prompt, frames on demand, exact depth when known."""

    clip_id: str

    def describe(self) -> dict:
        """JSON-ready identity of the clip's content (enters the cache key)."""

    def cameras(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w2c [T, 4, 4] float64, K [3, 3] float64 pixels of a height x width frame)``."""

    def read_frames(self, indices: list[int], height: int, width: int) -> np.ndarray:
        """Frames ``indices`` as ``[len, height, width, 3]`` uint8."""

    def exact_depth(self, index: int, height: int, width: int) -> torch.Tensor | None:
        """``[height, width]`` exact z-depth in metres (+inf invalid) of frame ``index``, or None."""

    def prompt(self) -> str:
        """The clip's text prompt."""


# --------------------------------------------------------------------------------------------
# RealEstate10K-layout folders
# --------------------------------------------------------------------------------------------


def crop_intrinsics(K: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """``[3, 3]`` pixel intrinsics of a ``src_hw`` image after the centre crop + resize to ``dst_hw``
    that :func:`model.io.images.center_crop_box` describes."""
    x0, y0, x1, _ = center_crop_box(src_hw, dst_hw)
    scale = dst_hw[1] / (x1 - x0)  # same scale on both axes: the box has the target's aspect ratio
    out = K.clone().to(torch.float64)
    out[0, 0], out[1, 1] = K[0, 0] * scale, K[1, 1] * scale
    out[0, 2], out[1, 2] = (K[0, 2] - x0) * scale, (K[1, 2] - y0) * scale
    return out


class FolderClip:
    """A clip folder in the layout of the module docstring. Parsing is checked on construction.

    Raises:
        ClipError: no or bad ``cameras.txt``, neither or both of ``frames/`` and ``video.mp4``, or a
            frame count different from the camera count (``frames/`` is counted without decoding;
            a video's frames are counted when they are read).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.clip_id = self.folder.name
        try:
            self._cameras = read_re10k(self.folder / CAMERA_FILE)
        except ValueError as exc:
            raise ClipError(f"clip {self.clip_id}: {exc}") from exc
        frames_dir, video = self.folder / FRAMES_DIR, self.folder / VIDEO_FILE
        if frames_dir.is_dir() == video.is_file():
            raise ClipError(
                f"clip {self.clip_id}: needs exactly one of {FRAMES_DIR}/ and {VIDEO_FILE} in {self.folder}"
            )
        self._images = (
            sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if frames_dir.is_dir()
            else None
        )
        self.num_frames = len(self._cameras.w2c)
        if self._images is not None and len(self._images) != self.num_frames:
            raise ClipError(
                f"clip {self.clip_id}: {len(self._images)} frames in {frames_dir} but {self.num_frames} camera lines"
            )

    def describe(self) -> dict:
        files = [self.folder / CAMERA_FILE, *(self._images or [self.folder / VIDEO_FILE])]
        prompt = self.folder / PROMPT_FILE
        if prompt.is_file():
            files.append(prompt)
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return {"kind": "folder", "path": str(self.folder.resolve()), "files": stats}

    def cameras(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        src_hw = self._source_hw()
        K = self._cameras.K(src_hw[1], src_hw[0])[0]
        return self._cameras.w2c.clone(), crop_intrinsics(K, src_hw, (height, width))

    def read_frames(self, indices: list[int], height: int, width: int) -> np.ndarray:
        wanted = sorted(set(indices))
        if wanted and not 0 <= wanted[0] <= wanted[-1] < self.num_frames:
            raise ClipError(
                f"clip {self.clip_id}: frame indices {wanted[0]}..{wanted[-1]} outside 0..{self.num_frames - 1}"
            )
        raw = self._read_images(wanted) if self._images is not None else self._read_video(wanted)
        sizes = {frame.shape for frame in raw.values()}
        if len(sizes) > 1:
            raise ClipError(f"clip {self.clip_id}: frames of different sizes {sorted(sizes)}")
        return np.stack([crop_resize(raw[i], height, width) for i in indices])

    def exact_depth(self, index: int, height: int, width: int) -> torch.Tensor | None:
        return None

    def prompt(self) -> str:
        path = self.folder / PROMPT_FILE
        try:
            return path.read_text(encoding="utf-8").strip() if path.is_file() else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ClipError(f"clip {self.clip_id}: cannot read {path}: {exc}") from exc

    def _source_hw(self) -> tuple[int, int]:
        if self._images is not None:
            try:
                with Image.open(self._images[0]) as img:
                    return img.height, img.width
            except OSError as exc:
                raise ClipError(f"clip {self.clip_id}: cannot open {self._images[0]}: {exc}") from exc
        try:
            return mp4_frame_size(self.folder / VIDEO_FILE)
        except (OSError, RuntimeError, StopIteration) as exc:
            raise ClipError(f"clip {self.clip_id}: cannot read {self.folder / VIDEO_FILE}: {exc}") from exc

    def _read_images(self, wanted: list[int]) -> dict[int, np.ndarray]:
        try:
            return {i: load_image(self._images[i]) for i in wanted}
        except ImageLoadError as exc:
            raise ClipError(f"clip {self.clip_id}: {exc}") from exc

    def _read_video(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Decode the video once, keeping the ``wanted`` frames; the frame count must match the cameras."""
        path, keep, count = self.folder / VIDEO_FILE, set(wanted), 0
        out: dict[int, np.ndarray] = {}
        try:
            for count, frame in enumerate(iter_mp4_frames(path), start=1):
                if count - 1 in keep:
                    out[count - 1] = frame.copy()
        except (OSError, RuntimeError, ValueError) as exc:
            raise ClipError(f"clip {self.clip_id}: cannot decode {path}: {exc}") from exc
        if count != self.num_frames:
            raise ClipError(f"clip {self.clip_id}: {path} has {count} frames but {self.num_frames} camera lines")
        return out


def discover_clips(data_dir: str | os.PathLike) -> tuple[list[FolderClip], list[str]]:
    """Every clip folder under ``data_dir``, sorted by id, and the reasons the others were skipped.

    Returns:
        ``(clips, problems)``: usable clips and one line per skipped folder ("clip X: why").

    Raises:
        ValueError: ``data_dir`` is not a folder.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"--data {root}: not a folder (expected one sub-folder per clip, or 'procedural')")
    clips, problems = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            clips.append(FolderClip(folder))
        except ClipError as exc:
            problems.append(str(exc))
    return clips, problems


# --------------------------------------------------------------------------------------------
# Procedural clips
# --------------------------------------------------------------------------------------------

_PATHS = ("orbit", "yaw_pan", "forward_dolly", "look_around")


def procedural_path(seed: int, num_frames: int) -> tuple[str, torch.Tensor]:
    """A seeded camera path from the identity start pose: ``(name, w2c [num_frames, 4, 4])``.

    One of orbit (radius 2 m, +-20..60 degrees), yaw pan (+-20..45 degrees), forward or backward
    dolly (0.4..1 m) and look-around (yaw 15..30, pitch 5..10 degrees); all stay inside the room
    that :class:`~model.eval.scenes.ProceduralScene` keeps clear.
    """
    rng = np.random.default_rng([seed, 1])
    name = _PATHS[int(rng.integers(len(_PATHS)))]
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if name == "orbit":
        return name, orbit(num_frames, 2.0, sign * rng.uniform(20.0, 60.0))
    if name == "yaw_pan":
        return name, yaw_pan(num_frames, sign * rng.uniform(20.0, 45.0))
    if name == "forward_dolly":
        return name, forward_dolly(num_frames, sign * rng.uniform(0.4, 1.0))
    return name, look_around(num_frames, rng.uniform(15.0, 30.0), rng.uniform(5.0, 10.0))


class ProceduralClip:
    """A procedural room (:class:`~model.eval.scenes.ProceduralScene` of ``seed``, static) along a
    seeded camera path of ``num_frames`` frames, rendered on demand with exact depth."""

    def __init__(self, seed: int, num_frames: int, renderer: SceneRenderer) -> None:
        self.seed, self.num_frames, self.renderer = seed, num_frames, renderer
        self.clip_id = f"procedural-{seed}"
        self.scene = ProceduralScene(SceneConfig(seed=seed))
        self.path_name, self._w2c = procedural_path(seed, num_frames)

    def describe(self) -> dict:
        return {
            "kind": "procedural",
            "seed": self.seed,
            "frames": self.num_frames,
            "path": self.path_name,
            "fov_y_deg": PROCEDURAL_FOV_Y_DEG,
        }

    def cameras(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._w2c.clone(), intrinsics_from_fov(PROCEDURAL_FOV_Y_DEG, width, height).to(torch.float64)

    def read_frames(self, indices: list[int], height: int, width: int) -> np.ndarray:
        w2c, K = self.cameras(height, width)
        return np.stack(
            [self.renderer.render(self.scene, w2c[i], K, width, height, t=i / PROCEDURAL_FPS)[0] for i in indices]
        )

    def exact_depth(self, index: int, height: int, width: int) -> torch.Tensor:
        w2c, K = self.cameras(height, width)
        depth = self.renderer.render(self.scene, w2c[index], K, width, height, t=index / PROCEDURAL_FPS)[1]
        return torch.from_numpy(depth)

    def prompt(self) -> str:
        return "a room"


def procedural_clips(seeds: range | list[int], num_frames: int, renderer: SceneRenderer) -> list[ProceduralClip]:
    """One :class:`ProceduralClip` per seed."""
    return [ProceduralClip(seed, num_frames, renderer) for seed in seeds]
