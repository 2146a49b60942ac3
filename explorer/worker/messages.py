"""What travels between the GUI thread and the generation thread: settings, requests, results.

Plain data, no Qt: :class:`GenerationSettings` goes in with a model load, :class:`Request` carries
every call the controller posts, :class:`SegmentJob` is one queued segment, and :class:`SceneInfo`
and :class:`MemorySnapshot` come back with ``scene_ready`` and ``memory_changed``
(:func:`snapshot_memory` makes the latter from any memory kind), :class:`SegmentReadout` with
``readout_ready``. ``segment_ready`` carries the pipeline's
:class:`~model.generation.pipeline.SegmentResult` itself; its per-segment depth stats are
``depth_source`` (str: ``"exact"``, the depth model's name, or ``"prior"``) and ``depth_residual``
(float relative residual of the alignment to the memory, or None), next to ``SceneInfo.depth_source``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from explorer.preview import cell_footprints
from model.generation.profiles import profile
from model.io.frames import tensor_to_frames
from model.memory.base import SpatialMemory


@dataclass
class GenerationSettings:
    """Explorer settings beyond the backbone / pipeline configs."""

    height: int | None = (
        None  # frame height in pixels; None: the backend profile's generate_size (model.generation.profiles)
    )
    width: int | None = None  # frame width in pixels; None: the backend profile's generate_size
    prompt: str = ""  # text prompt of every segment
    depth_model: str | None = None  # transformers depth-estimation folder; None: flat prior depth (warned)
    sky_model: str | None = None  # transformers segmentation folder with a "sky" class; None: sky by depth only
    memory_weights: str | None = None  # trained memory branch + LoRA folder (pipeline mode "branch")

    def size(self, backend: str) -> tuple[int, int]:
        """``(height, width)`` in pixels of the generated frames."""
        return profile(backend).generation_size(self.height, self.width)


@dataclass(frozen=True)
class Request:
    """One call the controller posts to the worker: ``handler(*args)``, run in the generation thread.

    Attributes:
        handler: a bound request method of :class:`explorer.worker.GenerationWorker`.
        args: its arguments. doing: what it does, for error messages (``"Opening photo.jpg"``).
    """

    handler: Callable[..., None]
    args: tuple
    doing: str


@dataclass
class SceneInfo:
    """A scene is ready (``scene_ready``).

    Attributes:
        image: ``[H, W, 3]`` uint8 first frame (the photo at the model size, or a resumed session's last frame).
        K: ``[3, 3]`` float64 pixel intrinsics of ``image``. start_w2c: ``[4, 4]`` float64 pose of ``image``.
        depth: ``[H, W]`` float32 metres of the photo (+inf invalid), None for a resumed session.
        source: ``"bundled"``, the photo's path, or ``"session:<folder>"``.
        depth_source: what gives the depth of generated frames. k_source: where K came from.
        prior_depth: True when the flat prior depth stands in for a depth model (geometry is rough).
        segments_done: segments already generated (0 unless resumed).
        points, bytes: memory size.
        latent_stride: pixels per latent cell (16 for Wan2.2, 4 for the tiny patch VAE).
    """

    image: np.ndarray
    K: np.ndarray
    start_w2c: np.ndarray
    depth: np.ndarray | None
    source: str
    depth_source: str
    k_source: str
    prior_depth: bool
    segments_done: int
    points: int
    bytes: int
    latent_stride: int


@dataclass
class MemorySnapshot:
    """Numpy copies of the memory for the cache panel and the preview (``memory_changed``).

    Attributes:
        positions: ``[N, 3]`` float32 metres. colors: ``[N, 3]`` uint8. segments, frames: ``[N]`` int32 provenance.
        footprint_m: ``[N]`` float32 world size of each point's latent cell (0: unknown; see
            :func:`explorer.preview.cell_footprints`).
        rejected_positions: ``[M, 3]`` float32 and rejected_labels ``[M]`` uint8
        (:class:`model.memory.latent.CellLabel`)
            of the last write's rejected cells (empty for memories that do not keep them).
        points, bytes, rejected: :class:`model.memory.latent.MemoryStats`.
        reason: ``"scene"``, ``"segment"``, ``"loaded"``, ``"requested"``.
        segments_done: segments generated so far.
        features: ``[N, C]`` float16 latent features for the panel's latent-PCA colours (None for
            memories without latent features, e.g. the RGB baseline).
        axes: ``[N, 2, 3]`` float32 footprint half-axes of the latent memory's points (the preview
            shows the readout's coverage with them); None for memories without them.
    """

    positions: np.ndarray
    colors: np.ndarray
    segments: np.ndarray
    frames: np.ndarray
    footprint_m: np.ndarray
    rejected_positions: np.ndarray
    rejected_labels: np.ndarray
    points: int
    bytes: int
    rejected: int
    reason: str
    segments_done: int
    features: np.ndarray | None = None
    axes: np.ndarray | None = None


@dataclass
class SegmentReadout:
    """What the memory showed the model for one segment (``readout_ready``, before its ``segment_ready``).

    Attributes:
        index: the segment (0-based, global).
        frame_ids: ``[F]`` int64 global RGB frame ids of the latent frames (latent frame ``k`` <-> RGB frame ``4k``).
        frames: ``[F, H, W, 3]`` uint8 readout decoded by the VAE, each latent frame on its own as an image.
        visible: ``[F, h, w]`` bool latent cells where the memory had a point (False: the model invented them).
        decode_s: seconds the decode took (not part of the segment's own timings).
    """

    index: int
    frame_ids: np.ndarray
    frames: np.ndarray
    visible: np.ndarray
    decode_s: float = 0.0

    def latent_frame_of(self, frame_id: int) -> int:
        """The latent frame nearest to global RGB frame ``frame_id`` (clamped to the segment)."""
        return int(np.abs(self.frame_ids - int(frame_id)).argmin())


def decode_readout(vae, result) -> SegmentReadout:
    """The :class:`SegmentReadout` of a :class:`~model.generation.pipeline.SegmentResult` whose ``readout`` is set.

    Each latent frame is decoded on its own, as an image: 9 frames decoded instead of the 33 of a video
    decode (exact with the tiny patch VAE; an approximation of the in-video decode with Wan's VAE).

    Args:
        vae: the backbone's :class:`~model.generation.vae.VideoVAE`.
    """
    started = time.perf_counter()
    with torch.no_grad():
        latents = result.readout.to(vae.device)
        frames = np.concatenate([tensor_to_frames(vae.decode(latent[None])) for latent in latents])
    return SegmentReadout(
        index=int(result.index),
        frame_ids=np.asarray(result.frame_ids[::4], dtype=np.int64).copy(),
        frames=frames,
        visible=result.visible.bool().cpu().numpy().copy(),
        decode_s=time.perf_counter() - started,
    )


@dataclass
class SegmentJob:
    """One queued segment: poses, the action(s) that made it, and its own cancel flag."""

    poses: torch.Tensor
    action: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


def snapshot_memory(
    memory: SpatialMemory,
    reason: str,
    segments_done: int,
    poses_by_frame: dict[int, np.ndarray],
    K: torch.Tensor | None,
    stride: int,
) -> MemorySnapshot:
    """Numpy copies of any pipeline memory (latent or RGB) for the UI."""

    def host(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().copy()

    positions = host(memory.positions)
    frames = host(memory.frames)
    if memory.sizes is not None:  # the RGB memory stores each point's footprint itself
        footprint = memory.sizes.detach().float().cpu().numpy()
    elif K is not None and len(positions):
        focal = float(0.5 * (K[0, 0] + K[1, 1]))
        footprint = cell_footprints(positions, frames, poses_by_frame, focal, stride)
    else:
        footprint = np.zeros(len(positions), np.float32)
    stats = memory.stats()
    return MemorySnapshot(
        positions=positions,
        colors=host(memory.colors),
        segments=host(memory.segments),
        frames=frames,
        footprint_m=footprint.astype(np.float32),
        rejected_positions=host(memory.rejected_positions),
        rejected_labels=host(memory.rejected_labels),
        points=stats.points,
        bytes=stats.bytes,
        rejected=stats.rejected,
        reason=reason,
        segments_done=segments_done,
        features=None if memory.features is None else memory.features.detach().float().cpu().numpy().astype(np.float16),
        axes=host(memory.axes) if getattr(memory, "axes", None) is not None else None,
    )
