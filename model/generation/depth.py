"""Metric depth and intrinsics for photos and generated frames.

:class:`DepthSource` is what the pipeline asks for the depth of generated frames (from pixels and
cameras, with a ``name`` for logs and reports). Every :class:`DepthEstimator` is one; it estimates
from pixels only (``estimate(images [T,H,W,3] uint8) -> DepthEstimate``):

* :class:`TransformersDepthEstimator`: any *metric* ``transformers`` depth-estimation model from a local
  folder (Depth Anything V2 Metric, ZoeDepth, GLPN, Depth Pro). Relative-depth models (Depth Anything
  with ``depth_estimation_type="relative"``, DPT/MiDaS) predict affine-invariant inverse depth whose
  scale and shift a single photo cannot pin down, so they are **rejected** when loading, as are model
  types whose output semantics are unknown.
* :class:`ExactDepth`: wraps a callable returning exact depth (procedural scenes, tests).
* :class:`PriorDepth`: the fallback when no depth model is configured: a flat ground plane 1.6 m
  below the camera cut by a backdrop 6 m away. It warns loudly and says so in ``is_prior``.

Depth supplied with the photo (``--depth FILE``) is read by :func:`load_depth_for_photo`, which crops
and resizes it exactly like :func:`model.io.images.load_photo` crops the photo.

Conventions (see :mod:`model.geometry.camera`): depth is z-depth in metres, float32, on the CPU; an invalid
pixel (sky, no measurement, a model output that is non-finite or ``<= 0``) is ``+inf``.

:func:`resolve_intrinsics` picks the intrinsics of the photo: given > EXIF > depth model > default.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from model.geometry.camera import intrinsics_from_fov, validate_intrinsics
from model.io.folders import ModelFolderError, check_model_folder
from model.io.images import center_crop_box
from model.io.rgbd import load_depth_file

logger = logging.getLogger(__name__)

#: Default camera when nothing else is known: 65 degrees across the longer image side, the field of
#: view of a phone's main camera (26 mm equivalent: 67 degrees across a 4:3 frame, 72 across 16:9).
DEFAULT_FOV_LONG_SIDE_DEG = 65.0
#: Fields of view (degrees, across the longer side) accepted from EXIF or a depth model; values
#: outside are treated as broken metadata / a failed estimate and skipped with a warning.
PLAUSIBLE_FOV_LONG_SIDE_DEG = (10.0, 150.0)
#: :class:`PriorDepth`: camera height above the ground (eye level) and distance of the backdrop.
PRIOR_EYE_HEIGHT_M = 1.6
PRIOR_BACKDROP_M = 6.0
#: ``model_type`` values of ``transformers`` depth models whose output is metric depth in metres.
METRIC_MODEL_TYPES = ("depth_pro", "zoedepth", "glpn")
#: ``model_type`` values whose output is relative (affine-invariant inverse) depth.
RELATIVE_MODEL_TYPES = ("dpt",)


class PriorDepthWarning(UserWarning):
    """Raised (as a warning) when the flat depth prior stands in for a depth model."""


@dataclass
class DepthEstimate:
    """Depth for ``T`` frames.

    Attributes:
        depth: ``[T, H, W]`` float32 z-depth in metres on the CPU; ``+inf`` where invalid.
        fov_y_deg: vertical field of view in degrees estimated by the model (median over frames), or
            None when the source does not estimate the camera.
        name: the source, for logs and the UI (e.g. ``"depth_anything:/models/da2-metric"``).
        is_prior: True when the depth is the flat prior, not a measurement or an estimate.
    """

    depth: torch.Tensor
    fov_y_deg: float | None
    name: str
    is_prior: bool = False


class DepthSource(Protocol):
    """Metric depth of generated frames, for the memory write-back
    (:class:`model.generation.pipeline.MiragePipeline`).
    """

    #: Shown in logs, reports and the UI (``"prior ..."`` for the flat prior).
    name: str
    #: How the pipeline makes this depth agree with the memory before writing it
    #: (:mod:`model.memory.alignment`): ``"scale"`` (a metric model: per-frame scale), ``"affine"``
    #: (scale and shift), ``"none"`` (exact depth, written as is). A source without the attribute is
    #: written as is.
    alignment: str
    #: True for the flat prior (:class:`PriorDepth`): generated frames then never write its depth
    #: (:func:`model.memory.alignment.anchor_to_readout`). A source without the attribute is not the prior.
    is_prior: bool

    def __call__(self, frames: np.ndarray, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """``frames [T, H, W, 3]`` uint8, ``w2c [T, 4, 4]``, ``K [3, 3]`` pixels -> ``[T, H, W]`` metres
        (+inf invalid)."""
        ...


class DepthEstimator(ABC):
    """Metric depth for RGB frames, and a :class:`DepthSource` (that ignores the cameras).

    Subclasses implement :meth:`_estimate`.
    """

    #: Shown in logs and the UI.
    name: str = "depth"
    #: True only for :class:`PriorDepth`: the CLI/UI report "no depth model: using a flat prior".
    is_prior: bool = False
    #: :attr:`DepthSource.alignment`: a metric model's scale drifts per frame, so it is fitted to the memory.
    alignment: str = "scale"

    def estimate(self, images) -> DepthEstimate:
        """Depth of ``images``: ``[T, H, W, 3]`` uint8 RGB (NumPy or tensor) -> :class:`DepthEstimate`."""
        images = _check_images(images)
        depth, fov_y_deg = self._estimate(images)
        depth = sanitize_depth(depth)
        if tuple(depth.shape) != tuple(images.shape[:3]):
            raise RuntimeError(
                f"{self.name}: returned depth of shape {list(depth.shape)} for images {list(images.shape)}"
            )
        return DepthEstimate(depth, fov_y_deg, self.name, self.is_prior)

    def __call__(self, frames: np.ndarray, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """The :class:`DepthSource` call: the depth of ``frames`` from their pixels alone."""
        return self.estimate(frames).depth

    @abstractmethod
    def _estimate(self, images: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """``images [T, H, W, 3]`` uint8 CPU -> (depth ``[T, H, W]`` metres, vertical FoV in degrees or None)."""


def depth_source_label(source: DepthSource) -> str:
    """What a depth source is, for segment stats, run files and the HUD: ``"prior"`` for the flat
    prior, else its ``name`` (``"exact"``, ``"depth_anything:/models/da2-metric"``, ...; a callable
    without one: its type's name)."""
    if getattr(source, "is_prior", False):
        return "prior"
    return str(getattr(source, "name", type(source).__name__))


def sanitize_depth(depth) -> torch.Tensor:
    """Float32 CPU copy of ``depth`` with every invalid value (non-finite or ``<= 0``) set to ``+inf``."""
    depth = torch.as_tensor(depth).detach().to("cpu", torch.float32)
    return torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.inf)


def _check_images(images) -> torch.Tensor:
    images = (images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))).cpu()
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images: expected uint8 [T,H,W,3] with T >= 1, got {images.dtype} {list(images.shape)}")
    return images


# --------------------------------------------------------------------------------------------
# transformers models from a local folder
# --------------------------------------------------------------------------------------------


def depth_output_kind(config) -> str:
    """What a ``transformers`` depth model predicts: ``"metric"``, ``"relative"`` or ``"unknown"``.

    Depth Anything says it in ``config.depth_estimation_type``; Depth Pro, ZoeDepth and GLPN are
    metric; DPT (MiDaS) is relative; anything else is unknown.
    """
    model_type = getattr(config, "model_type", "")
    if model_type == "depth_anything":
        return "metric" if getattr(config, "depth_estimation_type", "relative") == "metric" else "relative"
    if model_type in METRIC_MODEL_TYPES:
        return "metric"
    if model_type in RELATIVE_MODEL_TYPES:
        return "relative"
    return "unknown"


def check_depth_model_folder(model_dir: str | os.PathLike) -> Path:
    """Check a depth model folder without loading it: :func:`model.io.folders.check_model_folder` and a
    ``config.json`` that says the model predicts metric depth (:func:`depth_output_kind`).

    Raises:
        ModelFolderError: listing what is missing, or that the model predicts relative / unknown depth.
    """
    from types import SimpleNamespace

    from model.io.formats import read_json_object

    folder = check_model_folder(model_dir, "depth model")
    config = read_json_object(folder / "config.json", "depth model config")
    kind = depth_output_kind(SimpleNamespace(**config))
    if kind != "metric":
        problem = f"{folder / 'config.json'}: the model predicts {kind} depth; metric depth in metres is needed"
        raise ModelFolderError(folder, "depth model", [problem])
    return folder


def _fov_y_from_result(result: dict, height: int) -> float | None:
    """Vertical FoV (degrees) from one post-processed result, using its ``focal_length`` in pixels
    of the target size (Depth Pro); None for models that do not estimate the camera."""
    focal = result.get("focal_length")
    if focal is None:
        return None
    focal = float(focal)
    return math.degrees(2.0 * math.atan(0.5 * height / focal)) if math.isfinite(focal) and focal > 0 else None


class TransformersDepthEstimator(DepthEstimator):
    """A metric ``transformers`` depth model loaded from a local folder (no network, no remote code).

    Loads with ``AutoConfig`` / ``AutoImageProcessor`` / ``AutoModelForDepthEstimation`` and
    ``local_files_only=True``, ``use_safetensors=True``, ``trust_remote_code=False``. The output is
    resized to the input size by the processor's ``post_process_depth_estimation``; Depth Pro's
    estimated field of view is reported as ``fov_y_deg``.

    Args:
        model_dir: folder written by ``save_pretrained`` (see :func:`model.io.folders.check_model_folder`).
        device: where the model runs.
        dtype: model weights dtype (float16/bfloat16 on CUDA to save memory).
        batch_size: frames per forward pass.

    Raises:
        ModelFolderError: folder missing or incomplete, not a depth-estimation model, a relative-depth
            or unknown model, or a processor that needs a package that is not installed.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 4,
    ) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation

        folder = check_model_folder(model_dir, "depth model")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        config = _load_hf(folder, "depth model config", AutoConfig)
        kind = depth_output_kind(config)
        if kind != "metric":
            raise ModelFolderError(
                folder,
                "depth model",
                [
                    f"{config.model_type!r} model predicts {kind} depth, but metric depth in metres is needed. "
                    "Use a metric model: Depth Anything V2 Metric (depth_estimation_type='metric'), Depth Pro, "
                    "ZoeDepth or GLPN."
                ],
            )
        self.processor = _load_hf(folder, "image processor", AutoImageProcessor)
        model = _load_hf(folder, "depth model", AutoModelForDepthEstimation, use_safetensors=True, dtype=dtype)
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.name = f"{config.model_type}:{folder}"
        self._post_params = inspect.signature(self.processor.post_process_depth_estimation).parameters

    @torch.inference_mode()
    def _estimate(self, images: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        height, width = int(images.shape[1]), int(images.shape[2])
        depths, fovs = [], []
        for start in range(0, len(images), self.batch_size):
            batch = [frame.numpy() for frame in images[start : start + self.batch_size]]
            inputs = self.processor(images=batch, return_tensors="pt")
            pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
            outputs = self.model(pixel_values=pixel_values)
            outputs.predicted_depth = outputs.predicted_depth.float()
            sizes = [(height, width)] * len(batch)
            extra = {"source_sizes": sizes} if "source_sizes" in self._post_params else {}  # ZoeDepth un-pads with it
            for result in self.processor.post_process_depth_estimation(outputs, target_sizes=sizes, **extra):
                depths.append(result["predicted_depth"].reshape(height, width).float().cpu())
                fovs.append(_fov_y_from_result(result, height))
        known = [f for f in fovs if f is not None]
        return torch.stack(depths), (float(np.median(known)) if known else None)


def _load_hf(folder: Path, what: str, auto_class, **kwargs):
    """``auto_class.from_pretrained(folder)`` offline, with failures turned into :class:`ModelFolderError`."""
    try:
        return auto_class.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False, **kwargs)
    except ImportError as exc:
        problem = f"the {what} needs a package that is not installed: {exc}"
        raise ModelFolderError(folder, "depth model", [problem]) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(folder, "depth model", [f"cannot load the {what}: {exc}"]) from exc


# --------------------------------------------------------------------------------------------
# Other depth sources
# --------------------------------------------------------------------------------------------


class ExactDepth(DepthEstimator):
    """Exact depth from a callable (a procedural scene's renderer, a test).

    Args:
        fn: ``images [T, H, W, 3] uint8 -> depth [T, H, W]`` metres; it usually ignores the images and
            renders the depth of the frames' cameras, which the caller closes over.
        fov_y_deg: the true vertical FoV to report, if the caller wants it used.
        name: shown in logs and the UI.
    """

    alignment = "none"  # exact depth is written as is

    def __init__(
        self, fn: Callable[[torch.Tensor], torch.Tensor], fov_y_deg: float | None = None, name: str = "exact"
    ) -> None:
        self.fn = fn
        self.fov_y_deg = fov_y_deg
        self.name = name

    def _estimate(self, images: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        return torch.as_tensor(self.fn(images)), self.fov_y_deg


class PriorDepth(DepthEstimator):
    """Plausible metric depth without a model: a photo taken at eye level looking horizontally.

    Each pixel's ray hits a ground plane ``eye_height_m`` below the camera (rows below the horizon)
    or a fronto-parallel backdrop ``backdrop_m`` away, whichever is nearer. The horizon is the row of
    the principal point (image centre). Depth depends only on the row; the images are ignored.

    Constructing one emits a :class:`PriorDepthWarning` and logs a warning; ``is_prior`` is True.

    Args:
        fov_y_deg: vertical FoV of the frames; None uses :func:`default_intrinsics` at their size.
        eye_height_m, backdrop_m: metres.
    """

    is_prior = True
    alignment = "none"  # never fitted: generated frames take the memory's depth instead (model.memory.alignment)

    def __init__(
        self,
        fov_y_deg: float | None = None,
        eye_height_m: float = PRIOR_EYE_HEIGHT_M,
        backdrop_m: float = PRIOR_BACKDROP_M,
    ) -> None:
        if not (eye_height_m > 0 and backdrop_m > 0):
            raise ValueError(f"eye_height_m and backdrop_m must be positive, got {eye_height_m}, {backdrop_m}")
        self.fov_y_deg = fov_y_deg
        self.eye_height_m = eye_height_m
        self.backdrop_m = backdrop_m
        self.name = f"prior (flat ground {eye_height_m:g} m below, backdrop at {backdrop_m:g} m)"
        message = f"no depth model configured: using a flat depth prior ({self.name}); geometry will be rough"
        warnings.warn(message, PriorDepthWarning, stacklevel=2)
        logger.warning(message)

    def _estimate(self, images: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        n_frames, height, width = (int(s) for s in images.shape[:3])
        if self.fov_y_deg is None:
            K = default_intrinsics(width, height)
        else:
            K = intrinsics_from_fov(self.fov_y_deg, width, height)
        ray_y = (torch.arange(height, dtype=torch.float64) + 0.5 - K[1, 2]) / K[1, 1]  # [H] y/z of each row's rays
        ground = torch.where(ray_y > 0, self.eye_height_m / ray_y.clamp(min=1e-12), torch.inf)
        rows = torch.clamp(ground, max=self.backdrop_m).to(torch.float32)
        return rows[None, :, None].expand(n_frames, height, width).clone(), None


def load_depth_for_photo(
    path: str | os.PathLike, height: int, width: int, photo_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Read a depth file given with the photo and crop/resize it exactly like the photo.

    The file (read by :func:`model.io.rgbd.load_depth_file`: ``.png`` 16-bit millimetres with 0 =
    invalid, or ``.npy`` float metres) must cover the EXIF-oriented photo, at any resolution with the
    same aspect ratio. It is centre-cropped to the ``height x width`` aspect with the same
    (fractional) box as :func:`model.io.images.load_photo` and resampled by **nearest neighbour** at
    output pixel centres: depth values are never blended across edges (no flying pixels) and
    invalid pixels stay invalid.

    Args:
        height, width: output size in pixels (the photo's).
        photo_size: ``(H, W)`` of the oriented original photo (``Photo.original_size``); when given, the
            depth map's aspect ratio must match it within 1 %.

    Returns:
        ``[height, width]`` float32 metres, ``+inf`` where invalid.

    Raises:
        ValueError: naming the file, for unreadable/unsupported files or a mismatched aspect ratio.
    """
    path = Path(path)
    depth = load_depth_file(path)
    src_h, src_w = depth.shape
    if photo_size is not None and abs((src_w / src_h) / (photo_size[1] / photo_size[0]) - 1.0) > 0.01:
        raise ValueError(
            f"{path}: depth map is {src_w}x{src_h}, which does not have the aspect ratio of the "
            f"{photo_size[1]}x{photo_size[0]} photo"
        )
    x0, y0, x1, y1 = center_crop_box((src_h, src_w), (height, width))
    cols = np.clip(np.floor(x0 + (np.arange(width) + 0.5) * (x1 - x0) / width).astype(np.int64), 0, src_w - 1)
    rows = np.clip(np.floor(y0 + (np.arange(height) + 0.5) * (y1 - y0) / height).astype(np.int64), 0, src_h - 1)
    return sanitize_depth(torch.from_numpy(np.ascontiguousarray(depth[rows[:, None], cols[None, :]])))


# --------------------------------------------------------------------------------------------
# Intrinsics
# --------------------------------------------------------------------------------------------


def default_intrinsics(width: int, height: int) -> torch.Tensor:
    """``[3, 3]`` float64 pixel intrinsics of the default camera: :data:`DEFAULT_FOV_LONG_SIDE_DEG`
    across the longer side, square pixels, principal point at the centre."""
    return intrinsics_from_fov(
        _fov_y_from_focal(_focal_from_long_side_fov(DEFAULT_FOV_LONG_SIDE_DEG, width, height), height), width, height
    )


def _focal_from_long_side_fov(fov_deg: float, width: int, height: int) -> float:
    return 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2.0)


def _fov_y_from_focal(focal_px: float, height: int) -> float:
    return math.degrees(2.0 * math.atan(0.5 * height / focal_px))


def _plausible_focal(focal_px: float | None, width: int, height: int) -> bool:
    if focal_px is None or not math.isfinite(focal_px) or focal_px <= 0:
        return False
    long_fov = math.degrees(2.0 * math.atan(0.5 * max(width, height) / focal_px))
    return PLAUSIBLE_FOV_LONG_SIDE_DEG[0] <= long_fov <= PLAUSIBLE_FOV_LONG_SIDE_DEG[1]


def resolve_intrinsics(
    width: int,
    height: int,
    given_K: torch.Tensor | None = None,
    exif_focal_px: float | None = None,
    depth_fov_y_deg: float | None = None,
) -> tuple[torch.Tensor, str]:
    """Intrinsics of a ``width x height`` photo from the best source available.

    Order: ``given_K`` (pixels of this image size; validated, used as is) > ``exif_focal_px`` (in
    pixels of this image, e.g. ``Photo.exif_focal_px``) > ``depth_fov_y_deg`` (vertical FoV estimated by
    the depth model) > :func:`default_intrinsics`. EXIF and depth-model values implying a field of view
    outside :data:`PLAUSIBLE_FOV_LONG_SIDE_DEG` across the longer side are skipped with a warning.
    Except for ``given_K``, the principal point is the image centre and pixels are square.

    Returns:
        ``(K [3, 3] float64, source)`` with source one of ``"given"``, ``"exif"``, ``"depth-model"``,
        ``"default"``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if given_K is not None:
        return validate_intrinsics(torch.as_tensor(given_K, dtype=torch.float64), "given K").clone(), "given"
    depth_focal = None
    if depth_fov_y_deg is not None:
        depth_focal = (
            0.5 * height / math.tan(math.radians(depth_fov_y_deg) / 2.0) if 0 < depth_fov_y_deg < 180 else math.nan
        )
    for source, focal in (("exif", exif_focal_px), ("depth-model", depth_focal)):
        if focal is None:
            continue
        if _plausible_focal(focal, width, height):
            return intrinsics_from_fov(_fov_y_from_focal(focal, height), width, height), source
        logger.warning("ignoring implausible %s focal length %.4g px for a %dx%d image", source, focal, width, height)
    return default_intrinsics(width, height), "default"
