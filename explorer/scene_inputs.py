"""What a generation starts from: image, depth, intrinsics and the depth source of generated frames.

Shared by the headless ``generate`` command and the desktop explorer's background worker, so both
open a photo (or the bundled sample scene) exactly the same way:

* the **bundled scene** (``resources/sample_scene``) is a procedural room: its photo is centre-cropped
  to the model size and its depth, like the depth of every generated frame, is rendered exactly;
* a **photo** is loaded with :func:`model.io.images.load_photo` (EXIF-oriented, centre-cropped,
  resized); depth comes from a given depth file, else a ``transformers`` depth model, else the flat
  :class:`model.generation.depth.PriorDepth` with a loud warning; intrinsics from EXIF / the depth model / default.

A photo is opened in two steps: :func:`read_photo_files` reads and checks the files (photo and depth
file, no model involved, so a bad file is refused before anything heavy runs) and reports through
``warn`` what loading changed (an animation's first frame used, a visible centre crop);
:func:`scene_from_photo` adds the depth model and intrinsics. :func:`photo_inputs` does both.

:func:`session_inputs` reopens what a recorded session started from, to continue it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from explorer.session import RecordedSession
from model.eval.scenes import ProceduralScene, SceneConfig, SceneRenderer
from model.generation.depth import (
    DepthSource,
    PriorDepth,
    TransformersDepthEstimator,
    load_depth_for_photo,
    resolve_intrinsics,
)
from model.geometry.camera import scale_intrinsics
from model.io.images import Photo, load_photo
from model.io.rgbd import SAMPLE_SCENE_DIR, load_rgbd_folder

#: Warning shown when a photo has neither a depth file nor a depth model.
PRIOR_DEPTH_WARNING = (
    "no depth model configured: the memory uses a flat prior depth (ground plane + backdrop); "
    "geometry will be approximate. Set a depth model folder (--depth-model) for real geometry."
)


@dataclass
class SceneInputs:
    """Everything :meth:`model.generation.pipeline.MiragePipeline.start` and the generation loop need.

    Attributes:
        image: ``[H, W, 3]`` uint8 at the model size. depth: ``[H, W]`` float32 metres (+inf invalid).
        K: ``[3, 3]`` float64 pixel intrinsics. depth_source: depth of generated frames.
        k_source: where K came from. source: ``"bundled"`` or the photo's path.
    """

    image: np.ndarray
    depth: torch.Tensor
    K: torch.Tensor
    depth_source: DepthSource
    k_source: str
    source: str


class SceneDepth:
    """Exact depth of a procedural scene at the generated frames' poses (a
    :class:`~model.generation.depth.DepthSource`).
    """

    def __init__(self, scene: ProceduralScene, renderer: SceneRenderer, width: int, height: int) -> None:
        self.scene, self.renderer, self.width, self.height = scene, renderer, width, height
        self.name = "exact (procedural scene)"

    def __call__(self, frames: np.ndarray, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(
            np.stack([self.renderer.render(self.scene, p, K, self.width, self.height)[1] for p in w2c])
        )


def bundled_scene(height: int, width: int, renderer: SceneRenderer) -> SceneInputs:
    """The bundled sample scene at ``height x width`` with exact depth (``renderer`` must outlive the result)."""
    view = load_rgbd_folder(SAMPLE_SCENE_DIR)
    scene = ProceduralScene(SceneConfig(**view.source["config"]))
    photo = load_photo(SAMPLE_SCENE_DIR / "image.png", height, width)
    K = scale_intrinsics(torch.from_numpy(view.K), (view.height, view.width), (height, width))
    depth = torch.from_numpy(renderer.render(scene, view.w2c, K, width, height)[1])
    return SceneInputs(
        photo.image,
        depth,
        K,
        SceneDepth(scene, renderer, width, height),
        "bundled sample scene (camera.json)",
        "bundled",
    )


def seeded_scene(seed: int, height: int, width: int, renderer: SceneRenderer) -> SceneInputs:
    """The procedural room ``SceneConfig(seed=seed)`` seen from its start pose (the identity) with the
    bundled camera's intrinsics; image and depth rendered exactly (``renderer`` must outlive the result).
    """
    view = load_rgbd_folder(SAMPLE_SCENE_DIR)
    scene = seeded_room(seed)
    K = scale_intrinsics(torch.from_numpy(view.K), (view.height, view.width), (height, width))
    rgb, depth = renderer.render(scene, scene.start_w2c(), K, width, height)
    return SceneInputs(
        rgb,
        torch.from_numpy(depth),
        K,
        SceneDepth(scene, renderer, width, height),
        f"procedural room seed {seed} (bundled camera intrinsics)",
        f"procedural:{seed}",
    )


def seeded_room(seed: int) -> ProceduralScene:
    """The procedural room of a ``scene_seed`` (default room settings: ceiling, no moving object)."""
    return ProceduralScene(SceneConfig(seed=seed))


def ground_truth_scene(image: str | None, scene_seed: int | None) -> ProceduralScene | None:
    """The room a run's frames can be scored against: the seeded room, the bundled scene (no image),
    or None for a photo (no ground truth)."""
    if scene_seed is not None:
        return seeded_room(scene_seed)
    if image is None:
        return ProceduralScene(SceneConfig(**load_rgbd_folder(SAMPLE_SCENE_DIR).source["config"]))
    return None


@dataclass
class PhotoFiles:
    """A photo and its depth file, read and checked by :func:`read_photo_files` (no model involved).

    Attributes:
        photo: the photo at the model size (:func:`model.io.images.load_photo`).
        depth: ``[H, W]`` float32 metres from the depth file, cropped like the photo; None without one.
    """

    photo: Photo
    depth: torch.Tensor | None


def read_photo_files(
    path: str | Path, height: int, width: int, depth_path: str | None = None, warn: Callable[[str], None] | None = None
) -> PhotoFiles:
    """Read a photo (and its depth file) at ``height x width``; cheap enough to run before any model loads.

    Args:
        depth_path: depth file for the photo (``.png`` mm / ``.npy`` m), cropped like the photo.
        warn: called with each of the photo's :attr:`~model.io.images.Photo.notices` (``"<file>: ..."``).

    Raises:
        model.io.images.ImageLoadError: the photo cannot be used (the message names the file).
        ValueError: a bad depth file (named in the message).
    """
    photo = load_photo(path, height, width)
    if warn is not None:
        for notice in photo.notices:
            warn(notice)
    depth = load_depth_for_photo(depth_path, height, width, photo.original_size) if depth_path else None
    return PhotoFiles(photo, depth)


def scene_from_photo(
    files: PhotoFiles, device=None, depth_model: str | None = None, warn: Callable[[str], None] | None = None
) -> SceneInputs:
    """The scene inputs of a photo read by :func:`read_photo_files`: its depth and intrinsics.

    Args:
        depth_model: local ``transformers`` depth-estimation folder; also the depth of generated frames.
        warn: called with :data:`PRIOR_DEPTH_WARNING` when the flat prior has to be used.

    Raises:
        ValueError: a bad depth model folder (named in the message).
    """
    photo, height, width = files.photo, files.photo.height, files.photo.width
    estimator = TransformersDepthEstimator(depth_model, device=device or "cpu") if depth_model else None
    if estimator is None:
        if warn is not None:
            warn(PRIOR_DEPTH_WARNING)
        estimator = PriorDepth()
    estimate = estimator.estimate(photo.image[None]) if files.depth is None else None
    depth = files.depth if files.depth is not None else estimate.depth[0]
    K, k_source = resolve_intrinsics(
        width, height, exif_focal_px=photo.exif_focal_px, depth_fov_y_deg=estimate.fov_y_deg if estimate else None
    )
    return SceneInputs(photo.image, depth, K, estimator, k_source, str(photo.path))


def photo_inputs(
    path: str | Path,
    height: int,
    width: int,
    device=None,
    depth_path: str | None = None,
    depth_model: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> SceneInputs:
    """A photo at ``height x width`` with its depth and intrinsics: :func:`read_photo_files`, then
    :func:`scene_from_photo` (``warn`` gets the photo's notices and the flat-prior warning).

    Raises:
        model.io.images.ImageLoadError: the photo cannot be used (the message names the file).
        ValueError: a bad depth file or depth model folder (named in the message).
    """
    return scene_from_photo(read_photo_files(path, height, width, depth_path, warn), device, depth_model, warn)


def session_inputs(
    session: RecordedSession,
    renderer: Callable[[], SceneRenderer],
    device=None,
    depth_model: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> SceneInputs:
    """The scene inputs to continue a recorded session, at its frame size and with its intrinsics.

    The bundled scene gets its exact depth again and a photo that still exists is opened again
    (:func:`photo_inputs`); when the photo is gone, new frames get the flat prior depth and ``warn``
    says so.

    Args:
        renderer: gives the :class:`~model.eval.scenes.SceneRenderer` for the bundled scene (called only then;
            it must outlive the result).
        device, depth_model, warn: as for :func:`photo_inputs`.
    """
    height, width = session.height, session.width
    K = torch.from_numpy(session.K.copy())  # the recorded intrinsics, whatever reopening the scene gives
    if session.source == "bundled":
        inputs = bundled_scene(height, width, renderer())
    elif session.source and Path(session.source).exists():
        inputs = photo_inputs(session.source, height, width, device, depth_model=depth_model, warn=warn)
    else:
        if warn is not None:
            warn(f"{session.source} not found; {PRIOR_DEPTH_WARNING}")
        no_depth = torch.full((height, width), float("inf"))
        inputs = SceneInputs(session.last_frame, no_depth, K, PriorDepth(), "session", session.source)
    inputs.K = K
    return inputs
