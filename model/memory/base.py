"""What every spatial memory shares: settings, results, the write contract, the file format and the state.

The pipeline, the worker and the session use a memory through :class:`SpatialMemory`. Both kinds,
:class:`model.memory.latent.LatentSpatialMemory` (one point per latent cell, read out by a z-buffer) and the
pixel-space baseline :class:`model.baselines.rgb_memory.RGBPointCloudMemory` (one point per pixel, read out by
rasterising and VAE-encoding), derive from :class:`PointMemory`, which owns their state and does
everything except lifting a write to points and reading out. :mod:`model.baselines.kinds` is the one
place that picks a kind by name.

Design decisions:

* **One write contract.** :func:`check_write` validates and normalises the arguments of ``update`` /
  ``initialize`` and touches no memory; the memory then computes its new state from that
  :class:`WriteBatch` (pure) and commits it in one step, so a failing write leaves it as it was.
* **State as named tensors.** A kind declares every tensor it holds in :meth:`PointMemory._layout`
  (dtype, and shape with a symbolic row count); clearing, copying, moving, saving and the strict
  checks on load all follow that one declaration.
* **One file format**: safetensors with the format name, version, config and integer counters in
  the metadata (:func:`write_memory_file`, :func:`read_memory_file`). Config keys renamed since
  version 1 (``voxel_policy`` -> ``keep_observation``) are read under their new name.
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from dataclasses import fields as fields_of
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

import torch
import torch.nn.functional as F

from model.geometry.camera import validate_intrinsics, validate_poses
from model.io.formats import Layout, check_tensors, read_versioned, write_versioned

if TYPE_CHECKING:
    from model.memory.latent import TensorRows

#: Names of the memory kinds (``PipelineConfig.memory_kind``); :mod:`model.baselines.kinds` maps each to its class.
MEMORY_KINDS = ("latent", "rgb")
FEATURE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_RENAMED_CONFIG_KEYS = {"voxel_policy": "keep_observation"}  # MemoryConfig fields renamed in format version 1
#: How each latent point is read out (``MemoryConfig.splat``): over its cell's footprint, or into the one cell
#: it lands in.
SPLATS = ("footprint", "point")
#: MemoryConfig fields added since format version 1: files without them take the default.
_ADDED_CONFIG_KEYS = ("splat",)


class CellLabel(IntEnum):
    """Why a latent cell was (not) written to the memory."""

    STATIC = 0  # written
    DYNAMIC = 1  # a moving object (or excluded by the user)
    SKY = 2  # sky or too far away
    INVALID = 3  # no valid depth
    DISAGREE = 4  # aligned model depth departs from the memory's surface (model.memory.alignment)
    UNANCHORED = 5  # no depth model and no memory behind the cell: its depth would be the flat prior


@dataclass
class MemoryConfig:
    """Settings of a memory (the RGB memory ignores ``feature_dtype``, ``depth_bin`` and ``splat``)."""

    # "view": a cell the memory already shows at that depth is a duplicate; "voxel": one point per voxel
    dedup: str = "view"
    voxel_size: float = 0.05  # metres; voxel edge of the "voxel" de-duplication
    view_tolerance: float = 0.05  # "view" de-duplication: relative depth difference under which a cell counts as seen
    # de-duplication ("view" and "voxel"): a known place keeps its "first" observation or takes the "newest"
    keep_observation: str = "first"
    feature_dtype: str = "float16"  # storage dtype of latent features: "float16" or "bfloat16"
    near: float = 0.05  # metres; points closer to the camera than this are never read out
    depth_bin: float = (
        0.02  # max relative width of the z-buffer's log-spaced depth bins (1/64 used); ties go to the older point
    )
    # readout (and "view" de-duplication) of a latent point: "footprint" covers the cells its latent cell's
    # footprint covers at the target camera (no cracks when the camera comes closer); "point": the one cell it lands in
    splat: str = "footprint"

    def __post_init__(self) -> None:
        if not (self.voxel_size > 0):
            raise ValueError(f"voxel_size must be > 0 metres, got {self.voxel_size}")
        if self.dedup not in ("view", "voxel"):
            raise ValueError(f"dedup must be 'view' or 'voxel', got {self.dedup!r}")
        if not (self.view_tolerance > 0):
            raise ValueError(f"view_tolerance must be > 0, got {self.view_tolerance}")
        if self.keep_observation not in ("first", "newest"):
            raise ValueError(f"keep_observation must be 'first' or 'newest', got {self.keep_observation!r}")
        if self.feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {self.feature_dtype!r}")
        if not (self.near > 0):
            raise ValueError(f"near must be > 0 metres, got {self.near}")
        if not (0 < self.depth_bin < 1):
            raise ValueError(f"depth_bin must be in (0, 1), got {self.depth_bin}")
        if self.splat not in SPLATS:
            raise ValueError(f"splat must be one of {SPLATS}, got {self.splat!r}")


@dataclass
class MemoryStats:
    """Size of the memory: ``points`` stored, ``bytes`` of all per-point tensors, ``rejected`` cells of the last
    write.
    """

    points: int
    bytes: int
    rejected: int

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


@dataclass
class Readout:
    """What the memory shows at ``F`` target cameras on an ``h x w`` grid.

    Attributes:
        latent: ``[F, C, h, w]`` features of the nearest point per cell, zero where nothing is visible.
        visible: ``[F, h, w]`` bool, True where some point landed in the cell.
        depth: ``[F, h, w]`` float32 z-depth of that point in metres, 0 where not visible.
        index: ``[F, h, w]`` int64 index of that point in the memory, -1 where not visible.
        mapping: ``[F, 6, h, w]`` float32 where each cell samples its point's patch
            (:func:`model.memory.footprint.cell_mapping`), or None for a memory whose readout is per pixel.
    """

    latent: torch.Tensor
    visible: torch.Tensor
    depth: torch.Tensor
    index: torch.Tensor
    mapping: torch.Tensor | None = None


class SpatialMemory(Protocol):
    """The interface of every memory kind: what the pipeline, the worker and the session use.

    Per-point tensors have ``N = len(memory)`` rows on ``device``.

    Attributes:
        kind: the kind's name in :data:`MEMORY_KINDS`.
        config: its settings. next_segment: segment number of the next write (provenance).
        positions: ``[N, 3]`` float32 world metres. colors: ``[N, 3]`` uint8 display colours.
        segments, frames: ``[N]`` int32 provenance (segment and frame that wrote each point).
        features: ``[N, C]`` latent features, or None for a memory that stores pixels.
        sizes: ``[N]`` world size of each point in metres where the memory stores it, else None.
        rejected_positions: ``[M, 3]`` float32 (NaN without depth) and rejected_labels ``[M]`` uint8
            :class:`CellLabel` of the last write's rejected cells (empty where they are not kept).
        channels: channels ``C`` of a readout's latent (None while unknown).
    """

    kind: ClassVar[str]
    config: MemoryConfig
    device: torch.device
    next_segment: int
    positions: torch.Tensor
    colors: torch.Tensor
    segments: torch.Tensor
    frames: torch.Tensor
    features: torch.Tensor | None
    sizes: torch.Tensor | None
    rejected_positions: torch.Tensor
    rejected_labels: torch.Tensor

    @property
    def channels(self) -> int | None: ...

    def __len__(self) -> int: ...

    def initialize(
        self,
        latent: torch.Tensor,
        depth: torch.Tensor,
        K: torch.Tensor,
        w2c: torch.Tensor,
        keep: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> None: ...

    def update(
        self,
        latents: torch.Tensor,
        depth: torch.Tensor,
        w2c: torch.Tensor,
        K: torch.Tensor,
        keep: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        frames: torch.Tensor | None = None,
        frame_ids: torch.Tensor | list[int] | None = None,
    ) -> MemoryStats: ...

    def readout(
        self,
        w2c: torch.Tensor,
        K: torch.Tensor,
        h: int,
        w: int,
        image_hw: tuple[int, int] | None = None,
        mapping: bool = False,
    ) -> Readout: ...

    def stats(self) -> MemoryStats: ...

    def save(self, path: str | os.PathLike) -> None: ...

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> SpatialMemory: ...

    def clone(self) -> SpatialMemory: ...

    def to(self, device: str | torch.device) -> SpatialMemory: ...


# --------------------------------------------------------------------------------------------
# The write contract
# --------------------------------------------------------------------------------------------


def cell_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sample a boolean mask ``[T, H, W]`` (or already ``[T, h, w]``) at the centres of an ``h x w`` grid (nearest)."""
    if mask.shape[-2:] == (h, w):
        return mask.to(torch.bool)
    return F.interpolate(mask[:, None].to(torch.float32), size=(h, w), mode="nearest")[:, 0] > 0.5


@dataclass(frozen=True)
class WriteBatch:
    """One validated write (:func:`check_write`), on the memory's device.

    Attributes:
        latents: ``[T, C, h, w]`` finite latent frames.
        depth: ``[T, H, W]`` float32 z-depth in metres (``H >= h``, ``W >= w``; invalid: non-finite or ``<= 0``).
        w2c: ``[T, 4, 4]`` poses. K: ``[3, 3]`` or ``[T, 3, 3]`` intrinsics in pixels of ``H x W``.
        keep: ``[T, h, w]`` or ``[T, H, W]`` bool, True where cells / pixels may be written; None keeps all.
        labels: ``[T, h, w]`` uint8 :class:`CellLabel` codes, or None.
        frames: ``[T, H, W, 3]`` uint8 decoded frames, or None.
        frame_ids: ``[T]`` frame numbers (provenance).
    """

    latents: torch.Tensor
    depth: torch.Tensor
    w2c: torch.Tensor
    K: torch.Tensor
    keep: torch.Tensor | None
    labels: torch.Tensor | None
    frames: torch.Tensor | None
    frame_ids: torch.Tensor

    def keep_at(self, h: int, w: int) -> torch.Tensor:
        """``keep`` sampled on an ``h x w`` grid (cells or pixels): ``[T, h, w]`` bool, all True when None."""
        if self.keep is None:
            return torch.ones(self.latents.shape[0], h, w, dtype=torch.bool, device=self.latents.device)
        return cell_mask(self.keep, h, w)


def check_cameras(
    w2c: torch.Tensor, K: torch.Tensor, device: torch.device | None = None, n_frames: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate poses and intrinsics at a memory's API boundary.

    Args:
        w2c: ``[4, 4]`` or ``[F, 4, 4]`` poses. K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics.
        device: where to put both (None: where they are). n_frames: the ``F`` required, None for any.

    Returns:
        ``w2c [F, 4, 4]`` and ``K`` (its shape as given).
    """
    w2c = validate_poses(torch.as_tensor(w2c), "w2c")
    if w2c.ndim == 2:
        w2c = w2c[None]
    if n_frames is not None and w2c.shape[0] != n_frames:
        raise ValueError(f"w2c: expected {n_frames} poses, got {w2c.shape[0]}")
    K = validate_intrinsics(torch.as_tensor(K), "K")
    if K.ndim == 3 and K.shape[0] != w2c.shape[0]:
        raise ValueError(f"K: expected [3,3] or [{w2c.shape[0]},3,3], got shape {list(K.shape)}")
    if device is not None:
        w2c, K = w2c.to(device), K.to(device)
    return w2c, K


def check_write(
    latents: torch.Tensor,
    depth: torch.Tensor,
    w2c: torch.Tensor,
    K: torch.Tensor,
    keep: torch.Tensor | None,
    labels: torch.Tensor | None,
    frames: torch.Tensor | None,
    frame_ids: torch.Tensor | list[int] | None,
    *,
    device: torch.device,
    channels: int | None = None,
    frames_required: bool = False,
) -> WriteBatch:
    """Validate and normalise the arguments of a memory write; changes nothing.

    Args:
        latents, depth, w2c, K, keep, labels, frames, frame_ids: as in :meth:`PointMemory.update`
            (``frame_ids`` None: ``0..T-1``).
        device: the memory's device. channels: the channel count the latents must have (the memory's,
            once it holds points), None for any. frames_required: True for a memory that stores pixels.

    Raises:
        ValueError: naming the argument and what is wrong.
    """
    latents = torch.as_tensor(latents).to(device)
    if latents.ndim != 4:
        raise ValueError(f"latents: expected [T,C,h,w], got shape {list(latents.shape)}")
    n_frames, latent_channels, h, w = latents.shape
    if channels is not None and latent_channels != channels:
        raise ValueError(f"latents: memory holds {channels}-channel features, got {latent_channels}")
    if not torch.isfinite(latents).all():
        raise ValueError("latents: contain NaN or Inf")
    depth = torch.as_tensor(depth).to(device, torch.float32)
    if depth.ndim != 3 or depth.shape[0] != n_frames:
        raise ValueError(f"depth: expected [{n_frames},H,W], got shape {list(depth.shape)}")
    H, W = depth.shape[1:]
    if H < h or W < w:
        raise ValueError(f"depth: {[H, W]} is smaller than the latent grid {[h, w]}")
    if frames is None and frames_required:
        raise ValueError(
            "frames: this memory stores pixels; pass the decoded frames [T,H,W,3] uint8 (image [H,W,3] to initialize)"
        )
    if frames is not None:
        frames = torch.as_tensor(frames).to(device)
        if frames.dtype != torch.uint8 or frames.shape != (n_frames, H, W, 3):
            got = f"{frames.dtype} {list(frames.shape)}"
            raise ValueError(f"frames: expected uint8 [{n_frames},{H},{W},3] (the depth's size), got {got}")
    w2c, K = check_cameras(w2c, K, device, n_frames)
    if keep is not None:
        keep = torch.as_tensor(keep).to(device)
        if keep.ndim != 3 or keep.shape[0] != n_frames or keep.shape[1:] not in ((h, w), (H, W)):
            expected = f"[{n_frames},{h},{w}] or [{n_frames},{H},{W}]"
            raise ValueError(f"keep: expected {expected}, got shape {list(keep.shape)}")
        keep = keep.to(torch.bool)
    if labels is not None:
        labels = torch.as_tensor(labels).to(device)
        if labels.shape != (n_frames, h, w):
            raise ValueError(f"labels: expected [{n_frames},{h},{w}], got shape {list(labels.shape)}")
        if labels.is_floating_point() or labels.min() < 0 or labels.max() > max(CellLabel):
            raise ValueError(f"labels: values must be CellLabel codes 0..{int(max(CellLabel))}")
        labels = labels.to(torch.uint8)
    frame_ids = torch.arange(n_frames) if frame_ids is None else torch.as_tensor(frame_ids)
    frame_ids = frame_ids.to(device)
    if frame_ids.shape != (n_frames,):
        raise ValueError(f"frame_ids: expected {n_frames} values, got shape {list(frame_ids.shape)}")
    return WriteBatch(latents, depth, w2c, K, keep, labels, frames, frame_ids)


# --------------------------------------------------------------------------------------------
# The file format
# --------------------------------------------------------------------------------------------


def write_memory_file(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    format_name: str,
    version: int,
    config: MemoryConfig,
    **fields: int,
) -> None:
    """Write a memory's tensors to a safetensors file (atomically) with its format, version, config
    and integer ``fields`` in the metadata (:func:`model.io.formats.write_versioned`).

    Raises:
        OSError: naming ``path`` when the file cannot be written.
    """
    entries = {"config": asdict(config), **{name: int(value) for name, value in fields.items()}}
    write_versioned(path, tensors, format_name, version, entries)


def read_memory_file(
    path: str | os.PathLike, format_name: str, versions: tuple[int, ...], fields: tuple[str, ...]
) -> tuple[dict[str, torch.Tensor], MemoryConfig, dict[str, int]]:
    """Read a file written by :func:`write_memory_file`, checking format, version (one of ``versions``),
    config and ``fields``. Config fields added since a file was written (``splat``) take their defaults.

    Returns:
        ``(tensors, config, {field: int})`` with the file's format version as ``"version"``; the
        caller checks the tensors (:func:`model.io.formats.check_tensors`).

    Raises:
        ValueError: naming the file and what is wrong (missing, not safetensors, another format or
            version, bad metadata).
    """
    tensors, entries = read_versioned(path, format_name, versions, ("config", "version", *fields))
    try:
        config_dict = dict(entries["config"])
        for old, new in _RENAMED_CONFIG_KEYS.items():  # files written before the rename
            if old in config_dict:
                config_dict.setdefault(new, config_dict.pop(old))
        names = [f.name for f in fields_of(MemoryConfig) if f.name in config_dict or f.name not in _ADDED_CONFIG_KEYS]
        config = MemoryConfig(**{name: config_dict[name] for name in names})
        values = {name: int(entries[name]) for name in ("version", *fields)}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid {format_name} metadata: {exc}") from exc
    return tensors, config, values


# --------------------------------------------------------------------------------------------
# The shared state
# --------------------------------------------------------------------------------------------


class PointMemory(ABC):
    """State and behaviour shared by the memory kinds: a point set whose per-point fields (and any
    other tensors) are attributes named in :meth:`_layout`, plus settings and a segment counter.

    A kind declares ``kind``, ``FORMAT_NAME``, ``Points`` (its :class:`~model.memory.latent.TensorRows`
    named tuple of per-point fields), ``COUNTERS`` (integer attributes saved in the file) and
    :meth:`_layout`, and implements :meth:`_write` (lift a checked write to the new state),
    :meth:`readout` and ``channels`` (an attribute or a property). Writes are all-or-nothing:
    :func:`check_write` and :meth:`_write` change nothing, and :meth:`_set_state` commits.

    Args:
        config: settings (de-duplication, near plane, ...).
        device: where the tensors live.
    """

    kind: ClassVar[str]
    FORMAT_NAME: ClassVar[str]
    FORMAT_VERSION: ClassVar[int] = 1  # the version written
    READABLE_VERSIONS: ClassVar[tuple[int, ...]] = (1,)  # the versions read (older ones through _upgrade)
    Points: ClassVar[type]
    COUNTERS: ClassVar[tuple[str, ...]]
    FINITE: ClassVar[tuple[str, ...]] = ("positions",)  # tensors that must be finite in a loaded file
    FRAMES_REQUIRED: ClassVar[bool] = False  # True for a memory that stores pixels
    channels: int | None
    rejected: int  # cells (pixels) rejected by the last write

    def __init__(self, config: MemoryConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config or MemoryConfig()
        self.device = torch.device(device)
        self._reset()

    @classmethod
    @abstractmethod
    def _layout(cls, config: MemoryConfig, counters: Mapping[str, int]) -> Layout:
        """Every tensor the memory holds, in save order: name -> (dtype, shape) (see :data:`Layout`)."""

    @abstractmethod
    def _write(self, batch: WriteBatch) -> dict[str, object]:
        """The memory's new attribute values after writing ``batch`` (the point set and the kind's
        record of rejected cells), computed without changing the memory."""

    @abstractmethod
    def readout(
        self,
        w2c: torch.Tensor,
        K: torch.Tensor,
        h: int,
        w: int,
        image_hw: tuple[int, int] | None = None,
        mapping: bool = False,
    ) -> Readout:
        """What the memory shows at ``F`` cameras on the ``h x w`` latent grid (see :class:`Readout`);
        with ``mapping``, a memory that pastes whole cells also says where each cell lies in its point's
        (``Readout.mapping``; None for one whose readout is per pixel, and without ``mapping``)."""

    # ---- state ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def _counters(self) -> dict[str, int]:
        """The integer attributes saved with the memory (``channels`` None, before the first write, as 0)."""
        return {name: int(getattr(self, name) or 0) for name in self.COUNTERS}

    def _state(self) -> dict[str, torch.Tensor]:
        """Every tensor the memory holds, by name."""
        return {name: getattr(self, name) for name in self._layout(self.config, self._counters())}

    def _set_state(self, values: Mapping[str, object]) -> None:
        """Commit new attribute values (the only place a write changes the memory)."""
        for name, value in values.items():
            setattr(self, name, value)

    def _points(self) -> TensorRows:
        """The stored points: a ``Points`` named tuple of ``[N, ...]`` tensors."""
        return self.Points(*(getattr(self, name) for name in self.Points._fields))

    def _reset(self) -> None:
        """Drop every point; the next write is segment 0."""
        self.next_segment = 0
        layout = self._layout(self.config, self._counters())
        self._set_state(
            {
                name: torch.zeros([0 if isinstance(d, str) else d for d in shape], dtype=dtype, device=self.device)
                for name, (dtype, shape) in layout.items()
            }
        )

    def stats(self) -> MemoryStats:
        """Points stored, bytes of every per-point tensor (position, payload, colour, provenance), and
        cells (pixels) rejected by the last write."""
        return MemoryStats(len(self), sum(t.numel() * t.element_size() for t in self._points()), self.rejected)

    def clone(self) -> Self:
        """A deep copy of the tensors; settings (and the RGB memory's VAE) are shared."""
        other = copy.copy(self)
        other._set_state({name: t.clone() for name, t in self._state().items()})
        return other

    def to(self, device: str | torch.device) -> Self:
        """Move every tensor to ``device`` (in place) and return self."""
        self.device = torch.device(device)
        self._set_state({name: t.to(self.device) for name, t in self._state().items()})
        return self

    # ---- writing -------------------------------------------------------------------------

    def initialize(
        self,
        latent: torch.Tensor,
        depth: torch.Tensor,
        K: torch.Tensor,
        w2c: torch.Tensor,
        keep: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> None:
        """Reset the memory and write the first frame (segment 0). Nothing changes when a check fails.

        Args:
            latent: ``[C, h, w]`` latent of the first frame.
            depth: ``[H, W]`` z-depth in metres (invalid: non-finite or ``<= 0``).
            K: ``[3, 3]`` intrinsics in pixels of the ``H x W`` image.
            w2c: ``[4, 4]`` pose of the first frame.
            keep: optional ``[h, w]`` or ``[H, W]`` bool; cells (pixels) outside it are dropped.
            image: ``[H, W, 3]`` uint8 first frame: display colours of the latent memory (optional),
                the points of the RGB memory (required).
        """
        latent = torch.as_tensor(latent)
        if latent.ndim != 3:
            raise ValueError(f"latent: expected [C,h,w], got shape {list(latent.shape)}")
        depth = torch.as_tensor(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth: expected [H,W], got shape {list(depth.shape)}")
        keep = None if keep is None else torch.as_tensor(keep)[None]
        frames = None if image is None else torch.as_tensor(image)[None]
        batch = check_write(
            latent[None],
            depth[None],
            w2c,
            K,
            keep,
            None,
            frames,
            None,
            device=self.device,
            frames_required=self.FRAMES_REQUIRED,
        )
        self._reset()
        self._commit(batch)

    def update(
        self,
        latents: torch.Tensor,
        depth: torch.Tensor,
        w2c: torch.Tensor,
        K: torch.Tensor,
        keep: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        frames: torch.Tensor | None = None,
        frame_ids: torch.Tensor | list[int] | None = None,
    ) -> MemoryStats:
        """Write ``T`` frames of one segment into the memory.

        Only kept cells (pixels) with valid depth are written; places the memory already holds are
        handled by ``config.dedup`` and ``config.keep_observation``. All-or-nothing: a failing call
        leaves the memory as it was.

        Args:
            latents: ``[T, C, h, w]`` latent frames (the RGB memory uses only their grid).
            depth: ``[T, H, W]`` z-depth in metres at image resolution (``H >= h``, ``W >= w``).
            w2c: ``[T, 4, 4]`` poses. K: ``[3, 3]`` or ``[T, 3, 3]`` intrinsics in pixels of ``H x W``.
            keep: ``[T, h, w]`` (or ``[T, H, W]``) bool, True for static, non-sky cells. None keeps all.
            labels: ``[T, h, w]`` uint8 :class:`CellLabel` of each cell, recorded for rejected cells
                by the latent memory (default: DYNAMIC for rejected cells with valid depth).
            frames: ``[T, H, W, 3]`` uint8 decoded frames: display colours of the latent memory
                (optional), the points of the RGB memory (required).
            frame_ids: ``[T]`` frame numbers stored as provenance (default ``0..T-1``).

        Returns:
            The stats after the write.
        """
        batch = check_write(
            latents,
            depth,
            w2c,
            K,
            keep,
            labels,
            frames,
            frame_ids,
            device=self.device,
            channels=self.channels if len(self) else None,
            frames_required=self.FRAMES_REQUIRED,
        )
        return self._commit(batch)

    def _commit(self, batch: WriteBatch) -> MemoryStats:
        self._set_state(self._write(batch))
        self.next_segment += 1
        return self.stats()

    # ---- persistence ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the memory to a safetensors file (atomically) with format version, config and counters."""
        write_memory_file(path, self._state(), self.FORMAT_NAME, self.FORMAT_VERSION, self.config, **self._counters())

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Self:
        """Read a memory written by :meth:`save`, validating format, version, names, dtypes and shapes.

        Raises:
            ValueError: naming the file and what is wrong.
        """
        path = Path(path)
        tensors, config, counters = read_memory_file(path, cls.FORMAT_NAME, cls.READABLE_VERSIONS, cls.COUNTERS)
        tensors = cls._upgrade(tensors, counters.pop("version"))
        cls._check_tensors(path, tensors, config, counters)
        memory = cls(config, device)
        memory._set_state({**counters, **{name: t.to(memory.device) for name, t in tensors.items()}})
        return memory

    @classmethod
    def _upgrade(cls, tensors: dict[str, torch.Tensor], version: int) -> dict[str, torch.Tensor]:
        """The tensors of a file of an older readable format ``version`` in the current layout (unchecked)."""
        return tensors

    @classmethod
    def _check_tensors(
        cls, path: Path, tensors: Mapping[str, torch.Tensor], config: MemoryConfig, counters: Mapping[str, int]
    ) -> None:
        check_tensors(path, tensors, cls._layout(config, counters), cls.FINITE)
