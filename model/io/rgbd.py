"""RGB-D views on disk: one image, one metric depth map, one camera (the bundled sample scene's format).

A view folder holds three files:

* ``image.png``: RGB, 8 bits per channel (RGBA, grey and palette images are converted to RGB).
* ``depth.png``: 16-bit single channel, z-depth in units of ``depth_unit_m`` (default 1 mm);
  ``0`` marks an invalid pixel (sky, no measurement). Alternatively ``depth.npy``: float z-depth in
  metres, where non-finite or ``<= 0`` is invalid.
* ``camera.json``: ``{"width", "height", "fx", "fy", "cx", "cy", "w2c": 4x4 list,
  "depth_unit_m": 0.001, "source": {...}}`` with intrinsics in pixels and the world-to-camera pose
  in OpenCV axes (see :mod:`model.geometry.camera`). ``depth_unit_m`` and ``source`` are optional.

In memory (:class:`RGBDView`) an invalid depth is ``+inf``, the same as what
:class:`model.eval.scenes.SceneRenderer` returns for the sky. All arrays are numpy; pass ``K`` and ``w2c``
through ``torch.from_numpy`` to use them with :mod:`model.geometry.camera`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from model.geometry.camera import validate_poses
from model.io.atomic import atomic_path, write_json_atomic
from model.io.formats import read_json_object
from model.io.images import ImageSize, load_image, save_png

#: The sample scene bundled with the application (independent of the working directory).
SAMPLE_SCENE_DIR = Path(__file__).resolve().parents[2] / "resources" / "sample_scene"

IMAGE_FILE = "image.png"
DEPTH_PNG_FILE = "depth.png"
DEPTH_NPY_FILE = "depth.npy"
CAMERA_FILE = "camera.json"
#: Depth unit of 16-bit depth PNGs unless ``camera.json`` says otherwise: millimetres.
DEFAULT_DEPTH_UNIT_M = 0.001

_DEPTH_PNG_MODES = ("I;16", "I;16B", "I")


@dataclass
class RGBDView(ImageSize):
    """One RGB-D view with its camera.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB.
        depth: ``[H, W]`` float32 z-depth in metres; ``+inf`` where invalid (sky, no measurement).
        K: ``[3, 3]`` float64 intrinsics in pixels of the ``W x H`` image.
        w2c: ``[4, 4]`` float64 world-to-camera pose (OpenCV axes).
        source: free-form provenance stored under ``"source"`` in ``camera.json`` (may be empty).
    """

    image: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    w2c: np.ndarray
    source: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Single files
# --------------------------------------------------------------------------------------------


def load_depth_file(path: str | os.PathLike, png_unit_m: float = DEFAULT_DEPTH_UNIT_M) -> np.ndarray:
    """Read a depth map as ``[H, W]`` float32 z-depth in metres, ``+inf`` where invalid.

    Args:
        path: ``.png`` (16-bit single channel in units of ``png_unit_m``, 0 = invalid) or ``.npy``
            (2-D float array in metres; non-finite or ``<= 0`` = invalid; pickles are refused).
        png_unit_m: metres per PNG count (default 1 mm).

    Raises:
        ValueError: naming the file, for a missing or unreadable file, an unknown suffix, an 8-bit
            or multi-channel PNG, or an array that is not a 2-D real array.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return _load_depth_png(path, png_unit_m)
    if suffix == ".npy":
        return _load_depth_npy(path)
    raise ValueError(f"{path}: unsupported depth file type {path.suffix!r} (expected .png or .npy)")


def write_depth_png(path: str | os.PathLike, depth: np.ndarray, unit_m: float = DEFAULT_DEPTH_UNIT_M) -> None:
    """Write ``[H, W]`` z-depth in metres as a 16-bit PNG in units of ``unit_m`` (atomically).

    Invalid depth (non-finite or ``<= 0``) becomes 0; valid depth is rounded to the unit and kept
    at least 1 unit so that it stays valid.

    Raises:
        ValueError: if the array is not 2-D, or a valid depth exceeds ``65535 * unit_m``.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"{path}: depth must be [H, W], got shape {list(depth.shape)}")
    valid = np.isfinite(depth) & (depth > 0)
    counts = np.zeros(depth.shape, dtype=np.float64)
    counts[valid] = np.maximum(np.round(depth[valid] / unit_m), 1.0)
    if valid.any() and counts.max() > 65535:
        raise ValueError(f"{path}: depth {depth[valid].max():.3f} m does not fit a 16-bit PNG with unit {unit_m} m")
    with atomic_path(path) as tmp:
        Image.fromarray(counts.astype(np.uint16)).save(tmp, format="PNG")


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def load_rgbd_folder(path: str | os.PathLike) -> RGBDView:
    """Load a view folder (``image.png``, ``depth.png`` or ``depth.npy``, ``camera.json``).

    Raises:
        ValueError: naming the file and what is wrong: a missing folder or file, an unreadable
            image, bad or missing JSON keys, non-finite or non-positive intrinsics, a pose that is
            not rigid, or image / depth / JSON sizes that disagree.

    Example:
        >>> view = load_rgbd_folder(SAMPLE_SCENE_DIR)
        >>> view.image.shape, view.depth.dtype.name
        ((704, 1280, 3), 'float32')
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (expected {IMAGE_FILE}, {DEPTH_PNG_FILE}, {CAMERA_FILE})")
    camera_path = folder / CAMERA_FILE
    camera = _read_camera_json(camera_path)
    image_path = folder / IMAGE_FILE
    image = load_image(image_path)
    expected = (camera["height"], camera["width"])
    if image.shape[:2] != expected:
        raise ValueError(
            f"{image_path}: image is {image.shape[1]}x{image.shape[0]} but {CAMERA_FILE} says "
            f"{expected[1]}x{expected[0]}"
        )
    depth_path = _find_depth_file(folder)
    depth = load_depth_file(depth_path, camera["depth_unit_m"])
    if depth.shape != image.shape[:2]:
        raise ValueError(
            f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]} but {IMAGE_FILE} is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    return RGBDView(image=image, depth=depth, K=camera["K"], w2c=camera["w2c"], source=camera["source"])


def write_rgbd_folder(path: str | os.PathLike, view: RGBDView, depth_unit_m: float = DEFAULT_DEPTH_UNIT_M) -> None:
    """Write ``view`` as ``image.png``, ``depth.png`` and ``camera.json`` into folder ``path``.

    Every file is written atomically; ``camera.json`` is written last. The folder is created if
    missing. (A ``depth.npy`` already there is ignored on loading: ``depth.png`` takes precedence.)
    """
    folder = Path(path)
    if view.depth.shape != view.image.shape[:2]:
        raise ValueError(
            f"{folder}: depth shape {list(view.depth.shape)} does not match image {list(view.image.shape[:2])}"
        )
    K = np.asarray(view.K, dtype=np.float64)
    w2c = validate_poses(torch.as_tensor(view.w2c, dtype=torch.float64), "w2c").numpy()
    save_png(folder / IMAGE_FILE, view.image)
    write_depth_png(folder / DEPTH_PNG_FILE, view.depth, depth_unit_m)
    write_json_atomic(
        folder / CAMERA_FILE,
        {
            "width": view.width,
            "height": view.height,
            "fx": float(K[0, 0]),
            "fy": float(K[1, 1]),
            "cx": float(K[0, 2]),
            "cy": float(K[1, 2]),
            "depth_unit_m": depth_unit_m,
            "w2c": w2c.tolist(),
            "source": view.source,
        },
    )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, turning every failure into a ValueError naming ``path``."""
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable image: {exc}") from exc
    return img


def _load_depth_png(path: Path, unit_m: float) -> np.ndarray:
    with _open_image(path) as img:
        if img.mode not in _DEPTH_PNG_MODES:
            raise ValueError(f"{path}: expected a 16-bit single-channel depth PNG, got PIL mode {img.mode}")
        counts = np.array(img).astype(np.int64)
    if counts.min() < 0 or counts.max() > 65535:
        raise ValueError(f"{path}: depth PNG values outside the 16-bit range")
    depth = (counts * unit_m).astype(np.float32)
    depth[counts == 0] = np.inf
    return depth


def _load_depth_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array: {exc}") from exc
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{path}: expected a 2-D real array of metres, got {arr.dtype} {list(arr.shape)}")
    depth = arr.astype(np.float32)
    depth[~(np.isfinite(depth) & (depth > 0))] = np.inf
    return depth


def _find_depth_file(folder: Path) -> Path:
    for name in (DEPTH_PNG_FILE, DEPTH_NPY_FILE):
        if (folder / name).is_file():
            return folder / name
    raise ValueError(f"{folder / DEPTH_PNG_FILE}: file not found (nor {DEPTH_NPY_FILE})")


def _read_camera_json(path: Path) -> dict:
    """Parse and validate ``camera.json``: returns width, height, K [3,3], w2c [4,4], depth_unit_m, source."""
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    data = read_json_object(path, "RGB-D camera JSON")
    width, height = _json_int(data, "width", path), _json_int(data, "height", path)
    fx, fy = _json_float(data, "fx", path), _json_float(data, "fy", path)
    cx, cy = _json_float(data, "cx", path), _json_float(data, "cy", path)
    if fx <= 0 or fy <= 0:
        raise ValueError(f"{path}: focal lengths fx, fy must be positive, got {fx}, {fy}")
    unit = _json_float(data, "depth_unit_m", path) if "depth_unit_m" in data else DEFAULT_DEPTH_UNIT_M
    if unit <= 0:
        raise ValueError(f"{path}: depth_unit_m must be positive, got {unit}")
    source = data.get("source", {})
    if not isinstance(source, dict):
        raise ValueError(f"{path}: 'source' must be a JSON object")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)
    return {
        "width": width,
        "height": height,
        "K": K,
        "w2c": _json_pose(data, path),
        "depth_unit_m": unit,
        "source": source,
    }


def _json_float(data: dict, key: str, path: Path) -> float:
    if key not in data:
        raise ValueError(f"{path}: missing key {key!r}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{path}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def _json_int(data: dict, key: str, path: Path) -> int:
    value = _json_float(data, key, path)
    if value != int(value) or value <= 0:
        raise ValueError(f"{path}: {key!r} must be a positive integer, got {data[key]!r}")
    return int(value)


def _json_pose(data: dict, path: Path) -> np.ndarray:
    if "w2c" not in data:
        raise ValueError(f"{path}: missing key 'w2c'")
    try:
        w2c = np.array(data["w2c"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: 'w2c' must be a 4x4 list of numbers: {exc}") from exc
    if w2c.shape != (4, 4):
        raise ValueError(f"{path}: 'w2c' must be 4x4, got shape {list(w2c.shape)}")
    try:
        validate_poses(torch.from_numpy(w2c), "w2c")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return w2c
