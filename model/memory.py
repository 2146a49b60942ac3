"""The latent spatial memory: a 3D cache of the diffusion model's own VAE latent tokens.

Each element is one latent cell lifted to 3D with depth: a world position (fp32, metres) and the
cell's latent feature vector (fp16 or bf16). It is read out by a hard z-buffer at latent resolution
(no rasteriser, no VAE) and written back after every segment with moving objects and sky removed.

Layout, following gsplat: pure functions (:func:`downsample_depth`, :func:`zbuffer_project`,
:func:`voxel_keys`) under one small stateful object (:class:`LatentSpatialMemory`), which validates
everything at its API boundary.

Design decisions (see also ``DESIGN.md``):

* **Cell centres.** Depth is downsampled bilinearly to the latent grid (cells with any invalid
  contributing pixel are invalid) and each latent cell centre ``(u + 0.5, v + 0.5)`` is
  back-projected with the latent-grid intrinsics.
* **Z-buffer.** Each point projects to the cell ``floor(u), floor(v)`` of the target grid. Points
  behind the near plane or outside the grid are culled first; the survivors are reduced with ONE
  ``scatter_reduce(amin)`` over int64 keys ``depth_bin << 32 | point_index``, so the nearest point
  wins and ties go to the lower index — the older observation. Depth bins are log-spaced (the
  float32 exponent and top mantissa bits), at most ``config.depth_bin`` (2 %) wide: two observations of the same surface a few millimetres apart tie,
  so a camera that comes back sees what it saw first, not a later point that happens to lie a hair
  nearer; real occluders are much more than 2 % nearer. Integer ``amin`` does not depend on the
  order of the scatter, so the result is identical on CPU and CUDA.
* **De-duplication** (``config.dedup``), so that revisiting seen space does not grow the cache:

  - ``"view"`` (default): frames are written one by one; a cell is already known when the memory's
    own z-buffer at the writing camera shows a point in that cell whose depth agrees within
    ``view_tolerance`` (relative) plus the cell's own depth spread (grazing surfaces). A 1-cell gap
    between known cells is a sampling hole of the latent z-buffer, not unseen space, and is not
    written. This works at the latent resolution itself, so it needs no metric voxel size, never
    merges neighbouring cells of one view (the writer's view keeps every cell), and a revisit adds
    only what the memory could not show.
  - ``"voxel"``: positions are hashed into voxels of ``voxel_size`` metres, one point per voxel.
    A fixed metric voxel is either finer than a latent cell's footprint (far surfaces: several
    points per cell-area after a segment's nine overlapping frames) or coarser (near surfaces:
    neighbouring cells merge, holes at the writer's view); ``benchmarks/memory_ops.py`` measures both.

  In both modes, with ``keep_observation="first"`` (default) a known place keeps its first
  observation: the memory stays anchored to the input photo and the earliest generated view of a
  place, and a camera that loops back reads exactly what it saw (no drift through repeated
  rewrites). With ``"newest"`` the newest observation replaces it. Running means are not offered:
  an average of latent tokens is not a token the VAE produced.
* **Display data.** Each point carries a display colour (uint8 RGB, mean of its pixel patch when
  frames are given, grey otherwise) and provenance (segment, frame). They are for viewing only and
  never enter conditioning. The last write's rejected cells are kept with their label.
"""

from __future__ import annotations

import json
import math
import os
from collections import namedtuple
from dataclasses import asdict, dataclass
from dataclasses import fields as fields_of
from enum import IntEnum
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.atomic import atomic_path
from model.camera import invert_pose, scale_intrinsics, unproject_depth, validate_intrinsics, validate_poses

FORMAT_NAME = "mirage-latent-memory"
FORMAT_VERSION = 1

_INT64_MAX = torch.iinfo(torch.int64).max
_VOXEL_BITS = 21  # per axis; keys cover +-2^20 voxels (+-52 km at 5 cm)
_VOXEL_HALF = 1 << (_VOXEL_BITS - 1)
_DEFAULT_COLOR = 128
_FEATURE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_RENAMED_CONFIG_KEYS = {"voxel_policy": "keep_observation"}  # MemoryConfig fields renamed since format version 1: old -> new


class CellLabel(IntEnum):
    """Why a latent cell was (not) written to the memory."""

    STATIC = 0  # written
    DYNAMIC = 1  # a moving object (or excluded by the user)
    SKY = 2  # sky or too far away
    INVALID = 3  # no valid depth


@dataclass
class MemoryConfig:
    """Settings of a :class:`LatentSpatialMemory`."""

    dedup: str = "view"  # "view": a cell the memory already shows at that depth is a duplicate; "voxel": one point per voxel
    voxel_size: float = 0.05  # metres; voxel edge of the "voxel" de-duplication
    view_tolerance: float = 0.05  # "view" de-duplication: relative depth difference under which a cell counts as seen
    keep_observation: str = "first"  # de-duplication ("view" and "voxel"): a known place keeps its "first" observation or takes the "newest"
    feature_dtype: str = "float16"  # storage dtype of latent features: "float16" or "bfloat16"
    near: float = 0.05  # metres; points closer to the camera than this are never read out
    depth_bin: float = 0.02  # max relative width of the z-buffer's log-spaced depth bins (1/64 used); ties go to the older point

    def __post_init__(self) -> None:
        if not (self.voxel_size > 0):
            raise ValueError(f"voxel_size must be > 0 metres, got {self.voxel_size}")
        if self.dedup not in ("view", "voxel"):
            raise ValueError(f"dedup must be 'view' or 'voxel', got {self.dedup!r}")
        if not (self.view_tolerance > 0):
            raise ValueError(f"view_tolerance must be > 0, got {self.view_tolerance}")
        if self.keep_observation not in ("first", "newest"):
            raise ValueError(f"keep_observation must be 'first' or 'newest', got {self.keep_observation!r}")
        if self.feature_dtype not in _FEATURE_DTYPES:
            raise ValueError(f"feature_dtype must be one of {sorted(_FEATURE_DTYPES)}, got {self.feature_dtype!r}")
        if not (self.near > 0):
            raise ValueError(f"near must be > 0 metres, got {self.near}")
        if not (0 < self.depth_bin < 1):
            raise ValueError(f"depth_bin must be in (0, 1), got {self.depth_bin}")


@dataclass
class MemoryStats:
    """Size of the memory: ``points`` stored, ``bytes`` of all per-point tensors, ``rejected`` cells of the last write."""

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
    """

    latent: torch.Tensor
    visible: torch.Tensor
    depth: torch.Tensor
    index: torch.Tensor


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def downsample_depth(depth: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinearly resample depth maps to an ``h x w`` grid, sampling at cell centres.

    A cell whose bilinear footprint touches an invalid pixel (non-finite or ``<= 0``) is invalid
    (``+inf``), so depth never bleeds across holes or the sky.

    Args:
        depth: ``[T, H, W]`` z-depth in metres.

    Returns:
        ``[T, h, w]`` float32 metres, ``+inf`` where invalid.
    """
    depth = depth.to(torch.float32)
    if depth.shape[-2:] == (h, w):
        return torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.inf)
    valid = (torch.isfinite(depth) & (depth > 0)).to(torch.float32)
    filled = torch.where(valid > 0, depth, 0.0)
    size = (h, w)
    d = F.interpolate(filled[:, None], size=size, mode="bilinear", align_corners=False, antialias=False)[:, 0]
    v = F.interpolate(valid[:, None], size=size, mode="bilinear", align_corners=False, antialias=False)[:, 0]
    return torch.where(v > 1.0 - 1e-5, d, torch.inf)


def depth_spread(depth: torch.Tensor) -> torch.Tensor:
    """Largest depth difference of each cell to its 4 neighbours, ``[..., h, w]`` metres (0 next to invalid cells).

    On a surface seen at a grazing angle, one cell spans about this much depth, so the nearest memory
    point in the cell may lie this much in front of the cell centre.
    """
    padded = F.pad(depth[None], (1, 1, 1, 1), mode="replicate")[0]
    centre = padded[..., 1:-1, 1:-1]
    neighbours = (padded[..., :-2, 1:-1], padded[..., 2:, 1:-1], padded[..., 1:-1, :-2], padded[..., 1:-1, 2:])
    spread = torch.stack([(n - centre).abs() for n in neighbours]).amax(0)
    return torch.where(torch.isfinite(spread), spread, 0.0)


def fills_gap(mask: torch.Tensor) -> torch.Tensor:
    """Cells ``[h, w]`` whose left and right, or upper and lower, neighbours are both set in ``mask``."""
    padded = F.pad(mask[None, None].to(torch.float32), (1, 1, 1, 1))[0, 0] > 0
    horizontal = padded[1:-1, :-2] & padded[1:-1, 2:]
    vertical = padded[:-2, 1:-1] & padded[2:, 1:-1]
    return horizontal | vertical


def cell_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sample a boolean mask ``[T, H, W]`` (or already ``[T, h, w]``) at the centres of an ``h x w`` grid (nearest)."""
    if mask.shape[-2:] == (h, w):
        return mask.to(torch.bool)
    return F.interpolate(mask[:, None].to(torch.float32), size=(h, w), mode="nearest")[:, 0] > 0.5


def patch_colors(frames: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Mean RGB of each cell's pixel patch: ``[T, H, W, 3]`` uint8 -> ``[T, h, w, 3]`` uint8."""
    pooled = F.adaptive_avg_pool2d(frames.permute(0, 3, 1, 2).to(torch.float32), (h, w))
    return pooled.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def voxel_keys(positions: torch.Tensor, voxel_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hash world positions ``[N, 3]`` into int64 voxel keys ``[N]`` (21 bits per axis).

    Returns:
        keys: ``[N]`` int64. in_range: ``[N]`` bool, False for points beyond ``+-2^20`` voxels.
    """
    q = torch.floor(positions.to(torch.float64) / voxel_size).to(torch.int64) + _VOXEL_HALF
    in_range = ((q >= 0) & (q < (1 << _VOXEL_BITS))).all(dim=-1)
    q = q.clamp(0, (1 << _VOXEL_BITS) - 1)
    keys = (q[:, 0] << (2 * _VOXEL_BITS)) | (q[:, 1] << _VOXEL_BITS) | q[:, 2]
    return keys, in_range


def depth_bin_shift(depth_bin: float) -> int:
    """Right shift of a positive float32's bit pattern that leaves its exponent and the top
    ``m = ceil(log2(1 / depth_bin))`` mantissa bits: log-spaced depth bins of relative width
    ``2^-m`` (at most ``depth_bin``; 1/64 = 1.6 % for the default 0.02) for the price of a shift."""
    mantissa_bits = math.ceil(math.log2(1.0 / depth_bin))
    return 23 - min(mantissa_bits, 23)


def zbuffer_project(
    points: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, h: int, w: int, near: float = 0.05, depth_bin: float = 0.02,
    points_t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard z-buffer of a point set into ``F`` cameras at grid resolution.

    Point ``i`` lands in cell ``(floor(u), floor(v))`` of target ``f`` where ``(u, v)`` is its
    projection; per cell the point in the nearest depth bin wins (log-spaced bins, see
    :func:`depth_bin_shift`), ties within a bin go to the lower index.

    Args:
        points: ``[N, 3]`` float32 world positions in metres (``N < 2^32``).
        w2c: ``[F, 4, 4]`` world-to-camera poses.
        K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics of the ``h x w`` grid.
        near: metres; points with ``z <= near`` are culled.
        depth_bin: upper bound on the relative width of a depth bin (log-spaced).
        points_t: optional ``[3, N]`` contiguous transpose of ``points`` (callers that read out the
            same points repeatedly keep it instead of transposing on every call).

    Returns:
        index: ``[F, h, w]`` int64 winning point index, -1 where empty.
        depth: ``[F, h, w]`` float32 z-depth of the winner in metres, 0 where empty.
    """
    n_frames = w2c.shape[0]
    device = points.device
    P = K.to(device, torch.float32).expand(n_frames, 3, 3) @ w2c[:, :3, :].to(device, torch.float32)  # [F,3,4]
    if points_t is None:
        points_t = points.T.contiguous()  # [3, N]: contiguous x/y/z rows keep each frame's pass in cache
    best = torch.full((n_frames * h * w,), _INT64_MAX, dtype=torch.int64, device=device)
    shift = depth_bin_shift(depth_bin)
    for f in range(n_frames):
        # 1. project: hom = (u z, v z, z) = P_f [p; 1], then (u, v, z) in place
        hom = torch.addmm(P[f, :, 3:], P[f, :, :3], points_t)
        z = hom[2]
        hom[:2] /= z.clamp(min=near)
        u, v = hom[0], hom[1]
        # 2. frustum culling before the scatter; one gather of the survivors' (u, v, z)
        point_idx = torch.nonzero((z > near) & (u >= 0) & (v >= 0) & (u < w) & (v < h)).squeeze(1)
        kept = hom.index_select(1, point_idx)
        cells = (kept[1].to(torch.int64) + f * h) * w + kept[0].to(torch.int64)
        # 3. one deterministic integer amin per cell over (depth bin, index) keys
        bins = (kept[2].contiguous().view(torch.int32) >> shift).to(torch.int64)
        best.scatter_reduce_(0, cells, (bins << 32) | point_idx, reduce="amin", include_self=True)
    empty = best == _INT64_MAX
    index = torch.where(empty, -1, best & 0xFFFFFFFF).view(n_frames, h, w)
    # 4. exact depth of the winners (recomputed, not the quantised key)
    if len(points) == 0:
        return index, torch.zeros(n_frames, h, w, dtype=torch.float32, device=device)
    safe = index.clamp(min=0).view(n_frames, -1)
    rot_z = w2c[:, 2, :3].to(device, torch.float32)
    depth = (points[safe] * rot_z[:, None, :]).sum(-1) + w2c[:, 2, 3].to(device, torch.float32)[:, None]
    depth = torch.where(empty.view(n_frames, -1), 0.0, depth).view(n_frames, h, w)
    return index, depth


def write_memory_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor], format_name: str, version: int, config: MemoryConfig, **fields: int) -> None:
    """Write a memory's tensors to a safetensors file (atomically) with its format, version, config
    and integer ``fields`` in the metadata. Shared by every memory kind."""
    metadata = {"format": format_name, "version": str(version), "config": json.dumps(asdict(config)), **{k: str(int(v)) for k, v in fields.items()}}
    with atomic_path(path) as tmp:
        save_file({name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}, str(tmp), metadata=metadata)


def read_memory_file(path: str | os.PathLike, format_name: str, version: int, fields: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], MemoryConfig, dict[str, int]]:
    """Read a file written by :func:`write_memory_file`, checking format, version, config and ``fields``.

    Returns:
        ``(tensors, config, {field: int})``; the caller checks tensor names, dtypes and shapes.

    Raises:
        ValueError: naming the file and what is wrong.
    """
    path = Path(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file: {exc}") from exc
    if metadata.get("format") != format_name:
        raise ValueError(f"{path}: not a {format_name} file (format {metadata.get('format')!r})")
    if metadata.get("version") != str(version):
        raise ValueError(f"{path}: unsupported {format_name} format version {metadata.get('version')!r} (this build reads {version})")
    try:
        config_dict = dict(json.loads(metadata["config"]))
        for old, new in _RENAMED_CONFIG_KEYS.items():  # files written before the rename
            if old in config_dict:
                config_dict.setdefault(new, config_dict.pop(old))
        config = MemoryConfig(**{f.name: config_dict[f.name] for f in fields_of(MemoryConfig)})
        values = {name: int(metadata[name]) for name in fields}
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: invalid {format_name} metadata: {exc}") from exc
    return tensors, config, values


# --------------------------------------------------------------------------------------------
# The memory
# --------------------------------------------------------------------------------------------


class TensorRows:
    """Row operations for a named tuple of tensors that share their leading dimensions (a point set)."""

    __slots__ = ()

    def select(self, index: torch.Tensor):
        """Rows ``index`` (boolean mask or indices) of every field."""
        return type(self)(*(t[index] for t in self))

    def frame(self, t: int):
        """Entry ``t`` of the leading dimension of every field."""
        return type(self)(*(x[t] for x in self))

    def cat(self, other):
        """Rows of ``self`` followed by rows of ``other``."""
        return type(self)(*(torch.cat([a, b]) for a, b in zip(self, other)))

    def replace(self, index: torch.Tensor, other):
        """A copy with rows ``index`` replaced by ``other``'s rows."""
        out = [a.clone() for a in self]
        for a, b in zip(out, other):
            a[index] = b
        return type(self)(*out)


class _Points(namedtuple("_Points", "positions features colors segments frames"), TensorRows):
    """Per-point fields, stored (``[N, ...]``) or per cell (``[T, h, w, ...]``): positions float32
    metres ``[..., 3]``, features fp16/bf16 ``[..., C]``, colors uint8 RGB ``[..., 3]``, segments and
    frames int32."""

    __slots__ = ()


def merge_voxels(store: TensorRows, new: TensorRows, keys: torch.Tensor, voxel_size: float, newest: bool) -> TensorRows:
    """Voxel-hash de-duplication of a write: at most one point per voxel, the first (or, with
    ``newest``, the last) in write order, and none where ``store`` already fills the voxel (which
    ``newest`` overwrites instead).

    Args:
        store: the stored point set. new: the written points, ``[M, ...]`` fields.
        keys: ``[M]`` voxel keys of ``new`` (:func:`voxel_keys`).
    """
    uniq, inverse = torch.unique(keys, return_inverse=True)
    order = torch.arange(len(keys), device=keys.device)
    pick = torch.full((len(uniq),), -1 if newest else len(keys), dtype=torch.int64, device=keys.device)
    pick.scatter_reduce_(0, inverse, order, reduce="amax" if newest else "amin", include_self=True)
    new, keys = new.select(pick), keys[pick]
    old_keys, _ = voxel_keys(store.positions, voxel_size)
    sorted_keys, sort_idx = torch.sort(old_keys)
    slot = torch.searchsorted(sorted_keys, keys).clamp_(max=max(len(sorted_keys) - 1, 0))
    hit = sorted_keys[slot] == keys if len(sorted_keys) else torch.zeros_like(keys, dtype=torch.bool)
    if newest:
        store = store.replace(sort_idx[slot[hit]], new.select(hit))
    return store.cat(new.select(~hit))


def seen_at_depth(index: torch.Tensor, seen_depth: torch.Tensor, depth: torch.Tensor, tolerance: float) -> torch.Tensor:
    """``[h, w]`` cells where the memory's own view shows a point (``index >= 0``) at the written
    depth, within ``tolerance`` (relative) plus the cell's depth spread (:func:`depth_spread`)."""
    return (index >= 0) & ((seen_depth - depth).abs() <= tolerance * depth + depth_spread(depth))


def merge_unseen(store: TensorRows, new: TensorRows, write: torch.Tensor, known: torch.Tensor, index: torch.Tensor, newest: bool) -> TensorRows:
    """View de-duplication of one frame: append the written cells the memory does not know yet.

    Args:
        new: the frame's cells (``[h, w, ...]`` fields). write: ``[h, w]`` cells to write.
        known: ``[h, w]`` cells the memory already shows (:func:`seen_at_depth`); a 1-cell hole
            between known cells is a sampling gap of the memory's view, not unseen space, and
            counts as known too. index: ``[h, w]`` the point the memory shows there (-1: none),
            overwritten by the new cell when ``newest``.
    """
    known = known | ((index < 0) & fills_gap(known))
    if newest:
        store = store.replace(index[write & known], new.select(write & known))
    return store.cat(new.select(write & ~known))


class LatentSpatialMemory:
    """A 3D cache of latent tokens: positions ``[N, 3]`` fp32 and features ``[N, C]`` fp16/bf16.

    Example:
        >>> import torch
        >>> from model.camera import intrinsics_from_fov
        >>> mem = LatentSpatialMemory()
        >>> K = intrinsics_from_fov(60.0, 64, 32)
        >>> mem.initialize(torch.randn(48, 2, 4), torch.full((32, 64), 3.0), K, torch.eye(4))
        >>> out = mem.readout(torch.eye(4)[None], K, 2, 4, image_hw=(32, 64))
        >>> out.latent.shape, bool(out.visible.all())
        (torch.Size([1, 48, 2, 4]), True)
    """

    def __init__(self, config: MemoryConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config or MemoryConfig()
        self.device = torch.device(device)
        self.channels: int | None = None
        self.next_segment = 0
        self._transposed_of: torch.Tensor | None = None  # the positions tensor _transposed was made from
        self._transposed = torch.zeros(3, 0)
        self._set_empty()

    @classmethod
    def from_points(
        cls,
        positions: torch.Tensor,
        features: torch.Tensor,
        colors: torch.Tensor | None = None,
        config: MemoryConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> LatentSpatialMemory:
        """A memory holding given points (segment 0, frame 0).

        Args:
            positions: ``[N, 3]`` world positions in metres. features: ``[N, C]``.
            colors: optional ``[N, 3]`` uint8 display colours (grey by default).
        """
        positions = torch.as_tensor(positions)
        features = torch.as_tensor(features)
        if positions.ndim != 2 or positions.shape[1] != 3 or features.ndim != 2 or features.shape[0] != positions.shape[0]:
            raise ValueError(f"from_points: expected positions [N,3] and features [N,C], got {list(positions.shape)} and {list(features.shape)}")
        if not torch.isfinite(positions).all() or not torch.isfinite(features).all():
            raise ValueError("from_points: positions and features must be finite")
        memory = cls(config, device)
        n = positions.shape[0]
        memory.channels, memory.next_segment = int(features.shape[1]), 1
        memory.positions = positions.to(memory.device, torch.float32).contiguous()
        memory.features = features.to(memory.device, memory.feature_dtype).contiguous()
        memory.colors = (torch.full((n, 3), _DEFAULT_COLOR, dtype=torch.uint8) if colors is None else torch.as_tensor(colors, dtype=torch.uint8)).to(memory.device)
        memory.segments = torch.zeros(n, dtype=torch.int32, device=memory.device)
        memory.frames = torch.zeros(n, dtype=torch.int32, device=memory.device)
        return memory

    # ---- state ---------------------------------------------------------------------------

    @property
    def feature_dtype(self) -> torch.dtype:
        return _FEATURE_DTYPES[self.config.feature_dtype]

    def _set_empty(self) -> None:
        dev, c = self.device, self.channels or 0
        self.positions = torch.zeros(0, 3, dtype=torch.float32, device=dev)
        self.features = torch.zeros(0, c, dtype=self.feature_dtype, device=dev)
        self.colors = torch.zeros(0, 3, dtype=torch.uint8, device=dev)
        self.segments = torch.zeros(0, dtype=torch.int32, device=dev)
        self.frames = torch.zeros(0, dtype=torch.int32, device=dev)
        self.rejected_positions = torch.zeros(0, 3, dtype=torch.float32, device=dev)
        self.rejected_labels = torch.zeros(0, dtype=torch.uint8, device=dev)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def stats(self) -> MemoryStats:
        """Points stored and the bytes of every per-point tensor (positions, features, colours, provenance)."""
        per_point = (self.positions, self.features, self.colors, self.segments, self.frames)
        return MemoryStats(len(self), sum(t.numel() * t.element_size() for t in per_point), int(self.rejected_labels.numel()))

    def clone(self) -> LatentSpatialMemory:
        """A deep copy (same config and device)."""
        other = LatentSpatialMemory(self.config, self.device)
        other.channels, other.next_segment = self.channels, self.next_segment
        for name in _TENSOR_NAMES:
            setattr(other, name, getattr(self, name).clone())
        return other

    def to(self, device: str | torch.device) -> LatentSpatialMemory:
        """Move every tensor to ``device`` (in place) and return self."""
        self.device = torch.device(device)
        for name in _TENSOR_NAMES:
            setattr(self, name, getattr(self, name).to(self.device))
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
        """Reset the memory and lift the first frame's latent cells with depth.

        Args:
            latent: ``[C, h, w]`` latent of the first frame.
            depth: ``[H, W]`` z-depth in metres (invalid: non-finite or ``<= 0``).
            K: ``[3, 3]`` intrinsics in pixels of the ``H x W`` image.
            w2c: ``[4, 4]`` pose of the first frame.
            keep: optional ``[h, w]`` or ``[H, W]`` bool; cells outside it are dropped.
            image: optional ``[H, W, 3]`` uint8 frame for display colours.
        """
        latent = torch.as_tensor(latent)
        if latent.ndim != 3:
            raise ValueError(f"latent: expected [C,h,w], got shape {list(latent.shape)}")
        depth = torch.as_tensor(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth: expected [H,W], got shape {list(depth.shape)}")
        self.channels = int(latent.shape[0])
        self.next_segment = 0
        self._set_empty()
        self.update(
            latent[None],
            depth[None],
            torch.as_tensor(w2c)[None] if torch.as_tensor(w2c).ndim == 2 else w2c,
            K,
            keep=None if keep is None else torch.as_tensor(keep)[None],
            frames=None if image is None else torch.as_tensor(image)[None],
        )

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
        """Write ``T`` latent frames back into the memory (one segment).

        Only kept cells with valid depth are written; voxels already filled are handled by
        ``config.keep_observation``. The write is all-or-nothing: every check happens before the state
        changes, so a failing call leaves the memory as it was.

        Args:
            latents: ``[T, C, h, w]`` latent frames.
            depth: ``[T, H, W]`` z-depth in metres at image resolution (``H, W`` multiples of ``h, w``
                are not required; resampling is bilinear at cell centres).
            w2c: ``[T, 4, 4]`` poses. K: ``[3, 3]`` or ``[T, 3, 3]`` intrinsics in pixels of ``H x W``.
            keep: ``[T, h, w]`` (or ``[T, H, W]``) bool, True for static, non-sky cells. None keeps all.
            labels: ``[T, h, w]`` uint8 :class:`CellLabel` of each cell, recorded for rejected cells
                (default: DYNAMIC for rejected cells with valid depth).
            frames: ``[T, H, W, 3]`` uint8 decoded frames for display colours.
            frame_ids: ``[T]`` frame numbers stored as provenance (default ``0..T-1``).

        Returns:
            The stats after the write.
        """
        latents, depth, w2c, K, keep, labels, frames, frame_ids = self._check_write(latents, depth, w2c, K, keep, labels, frames, frame_ids)
        n_frames, _, h, w = latents.shape
        H, W = depth.shape[-2:]
        # 1. lift every cell centre with bilinearly downsampled depth
        depth_cells = downsample_depth(depth, h, w)
        valid = torch.isfinite(depth_cells)
        K_cells = scale_intrinsics(K.to(torch.float64), (H, W), (h, w))
        points = unproject_depth(torch.where(valid, depth_cells, 1.0).to(torch.float64), K_cells, invert_pose(w2c.to(torch.float64)))
        points = points.to(torch.float32)
        keys, in_range = voxel_keys(points.view(-1, 3), self.config.voxel_size)
        valid &= in_range.view(n_frames, h, w)
        # 2. label every cell; rejected ones are kept for inspection
        cell_labels = torch.full((n_frames, h, w), int(CellLabel.STATIC), dtype=torch.uint8, device=self.device)
        if labels is not None:
            cell_labels = torch.where(labels == CellLabel.STATIC, int(CellLabel.DYNAMIC), labels)
            cell_labels = torch.where(keep, int(CellLabel.STATIC), cell_labels)
        else:
            cell_labels[~keep] = int(CellLabel.DYNAMIC)
        cell_labels[~valid & (cell_labels != CellLabel.SKY)] = int(CellLabel.INVALID)  # sky has no depth either
        write = cell_labels == CellLabel.STATIC
        rejected = ~write
        rejected_positions = torch.where(valid[..., None], points, torch.nan)[rejected]
        # 3. candidates per cell, then de-duplicate within the write and against the memory
        colors = patch_colors(frames, h, w) if frames is not None else torch.full((n_frames, h, w, 3), _DEFAULT_COLOR, dtype=torch.uint8, device=self.device)
        cells = _Points(
            points,
            latents.permute(0, 2, 3, 1).to(self.feature_dtype),
            colors,
            torch.full((n_frames, h, w), self.next_segment, dtype=torch.int32, device=self.device),
            frame_ids[:, None, None].expand(n_frames, h, w).to(torch.int32),
        )
        store = _Points(self.positions, self.features, self.colors, self.segments, self.frames)
        if self.config.dedup == "voxel":
            store = merge_voxels(store, cells.select(write), keys.view(n_frames, h, w)[write], self.config.voxel_size, self.config.keep_observation == "newest")
        else:
            K_grid = K_cells.to(torch.float32).expand(n_frames, 3, 3)
            for t in range(n_frames):
                store = self._merge_view(store, cells.frame(t), write[t], depth_cells[t], w2c[t], K_grid[t])
        # 4. commit (nothing above touched the stored tensors)
        self.positions, self.features, self.colors, self.segments, self.frames = store
        self.rejected_positions = rejected_positions
        self.rejected_labels = cell_labels[rejected]
        self.next_segment += 1
        return self.stats()

    def _check_write(self, latents, depth, w2c, K, keep, labels, frames, frame_ids):
        dev = self.device
        latents = torch.as_tensor(latents).to(dev)
        if latents.ndim != 4:
            raise ValueError(f"latents: expected [T,C,h,w], got shape {list(latents.shape)}")
        n_frames, channels, h, w = latents.shape
        if self.channels is not None and len(self) > 0 and channels != self.channels:
            raise ValueError(f"latents: memory holds {self.channels}-channel features, got {channels}")
        if not torch.isfinite(latents).all():
            raise ValueError("latents: contain NaN or Inf")
        depth = torch.as_tensor(depth).to(dev)
        if depth.ndim != 3 or depth.shape[0] != n_frames:
            raise ValueError(f"depth: expected [{n_frames},H,W], got shape {list(depth.shape)}")
        if depth.shape[1] < h or depth.shape[2] < w:
            raise ValueError(f"depth: {list(depth.shape[1:])} is smaller than the latent grid {[h, w]}")
        w2c = validate_poses(torch.as_tensor(w2c), "w2c").to(dev)
        if w2c.ndim == 2:
            w2c = w2c[None]
        if w2c.shape[0] != n_frames:
            raise ValueError(f"w2c: expected {n_frames} poses, got {w2c.shape[0]}")
        K = validate_intrinsics(torch.as_tensor(K), "K").to(dev)
        if K.ndim == 3 and K.shape[0] != n_frames:
            raise ValueError(f"K: expected [3,3] or [{n_frames},3,3], got shape {list(K.shape)}")
        if keep is None:
            keep = torch.ones(n_frames, h, w, dtype=torch.bool, device=dev)
        else:
            keep = torch.as_tensor(keep).to(dev)
            if keep.ndim != 3 or keep.shape[0] != n_frames or keep.shape[1:] not in (torch.Size([h, w]), depth.shape[1:]):
                raise ValueError(f"keep: expected [{n_frames},{h},{w}] or [{n_frames},H,W], got shape {list(keep.shape)}")
            keep = cell_mask(keep, h, w)
        if labels is not None:
            labels = torch.as_tensor(labels).to(dev)
            if labels.shape != (n_frames, h, w):
                raise ValueError(f"labels: expected [{n_frames},{h},{w}], got shape {list(labels.shape)}")
            if labels.is_floating_point() or labels.min() < 0 or labels.max() > max(CellLabel):
                raise ValueError(f"labels: values must be CellLabel codes 0..{int(max(CellLabel))}")
            labels = labels.to(torch.uint8)
        if frames is not None:
            frames = torch.as_tensor(frames).to(dev)
            if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[0] != n_frames or frames.shape[-1] != 3:
                raise ValueError(f"frames: expected uint8 [{n_frames},H,W,3], got {frames.dtype} {list(frames.shape)}")
        frame_ids = torch.arange(n_frames, device=dev) if frame_ids is None else torch.as_tensor(frame_ids, device=dev)
        if frame_ids.shape != (n_frames,):
            raise ValueError(f"frame_ids: expected {n_frames} values, got shape {list(frame_ids.shape)}")
        self.channels = channels
        if self.features.shape[1] != channels:
            self.features = self.features.new_zeros(0, channels)
        return latents, depth, w2c, K, keep, labels, frames, frame_ids

    def _merge_view(self, store: _Points, new: _Points, write: torch.Tensor, depth: torch.Tensor, w2c: torch.Tensor, K_grid: torch.Tensor) -> _Points:
        """View de-duplication of one frame (:func:`merge_unseen`) against the memory's z-buffer at this camera.

        Args:
            new: the frame's cells (``[h, w, ...]`` fields). write: ``[h, w]`` cells to write.
            depth: ``[h, w]`` the cells' depth. w2c: ``[4, 4]``. K_grid: ``[3, 3]`` grid intrinsics.
        """
        if not len(store.positions):
            return store.cat(new.select(write))
        h, w = write.shape
        index, seen_depth = zbuffer_project(store.positions, w2c[None], K_grid, h, w, self.config.near, self.config.depth_bin)
        known = seen_at_depth(index[0], seen_depth[0], depth, self.config.view_tolerance)
        return merge_unseen(store, new, write, known, index[0], self.config.keep_observation == "newest")

    # ---- reading -------------------------------------------------------------------------

    def readout(
        self, w2c: torch.Tensor, K: torch.Tensor, h: int, w: int, image_hw: tuple[int, int] | None = None
    ) -> Readout:
        """Z-buffered projection of the memory onto ``F`` target cameras at grid resolution.

        Args:
            w2c: ``[F, 4, 4]`` (or ``[4, 4]``) poses.
            K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics of the ``h x w`` grid, or in pixels of an
                ``image_hw = (H, W)`` image when that is given (then scaled to the grid).
            h, w: target grid size (latent resolution).

        Returns:
            :class:`Readout`: ``latent [F,C,h,w]``, ``visible [F,h,w]``, ``depth [F,h,w]``, ``index [F,h,w]``.
        """
        w2c = validate_poses(torch.as_tensor(w2c), "w2c").to(self.device)
        if w2c.ndim == 2:
            w2c = w2c[None]
        K = validate_intrinsics(torch.as_tensor(K), "K").to(self.device)
        if K.ndim == 3 and K.shape[0] != w2c.shape[0]:
            raise ValueError(f"K: expected [3,3] or [{w2c.shape[0]},3,3], got shape {list(K.shape)}")
        if h <= 0 or w <= 0:
            raise ValueError(f"readout grid must be positive, got {h}x{w}")
        if image_hw is not None:
            K = scale_intrinsics(K, image_hw, (h, w))
        index, depth = zbuffer_project(self.positions, w2c, K, h, w, self.config.near, self.config.depth_bin, self._positions_t())
        visible = index >= 0
        n_frames, channels = w2c.shape[0], self.channels or 0
        if len(self):
            latent = self.features.index_select(0, index.clamp(min=0).view(-1)).view(n_frames, h, w, channels)
            latent = latent.masked_fill_(~visible[..., None], 0).permute(0, 3, 1, 2).contiguous()
        else:
            latent = torch.zeros(n_frames, channels, h, w, dtype=self.feature_dtype, device=self.device)
        return Readout(latent, visible, depth, index)

    def _positions_t(self) -> torch.Tensor:
        """``[3, N]`` transpose of the positions, kept until the positions tensor is replaced."""
        if self._transposed_of is not self.positions:
            self._transposed, self._transposed_of = self.positions.T.contiguous(), self.positions
        return self._transposed

    # ---- persistence ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the memory to a safetensors file (atomically) with format version and config metadata."""
        tensors = {name: getattr(self, name) for name in _TENSOR_NAMES}
        write_memory_file(path, tensors, FORMAT_NAME, FORMAT_VERSION, self.config, channels=self.channels or 0, next_segment=self.next_segment)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> LatentSpatialMemory:
        """Read a memory written by :meth:`save`, validating format, version, names, dtypes and shapes.

        Raises:
            ValueError: naming the file and what is wrong.
        """
        path = Path(path)
        tensors, config, values = read_memory_file(path, FORMAT_NAME, FORMAT_VERSION, ("channels", "next_segment"))
        channels, next_segment = values["channels"], values["next_segment"]
        _check_tensors(path, tensors, channels, _FEATURE_DTYPES[config.feature_dtype])
        memory = cls(config, device)
        memory.channels, memory.next_segment = channels, next_segment
        for name in _TENSOR_NAMES:
            setattr(memory, name, tensors[name].to(memory.device))
        return memory


_TENSOR_NAMES = ("positions", "features", "colors", "segments", "frames", "rejected_positions", "rejected_labels")


def _check_tensors(path: Path, tensors: dict[str, torch.Tensor], channels: int, feature_dtype: torch.dtype) -> None:
    """Strict checks of a loaded memory file's tensors (names, dtypes, shapes, finiteness)."""
    missing = [n for n in _TENSOR_NAMES if n not in tensors]
    extra = [n for n in tensors if n not in _TENSOR_NAMES]
    if missing or extra:
        raise ValueError(f"{path}: tensor names differ from the format (missing {missing}, unexpected {extra})")
    n = tensors["positions"].shape[0]
    m = tensors["rejected_labels"].shape[0]
    expected = {
        "positions": (torch.float32, (n, 3)),
        "features": (feature_dtype, (n, channels)),
        "colors": (torch.uint8, (n, 3)),
        "segments": (torch.int32, (n,)),
        "frames": (torch.int32, (n,)),
        "rejected_positions": (torch.float32, (m, 3)),
        "rejected_labels": (torch.uint8, (m,)),
    }
    for name, (dtype, shape) in expected.items():
        t = tensors[name]
        if t.dtype != dtype or tuple(t.shape) != shape:
            raise ValueError(f"{path}: tensor '{name}' is {t.dtype} {list(t.shape)}, expected {dtype} {list(shape)}")
    if not torch.isfinite(tensors["positions"]).all():
        raise ValueError(f"{path}: tensor 'positions' contains NaN or Inf")
    if m and tensors["rejected_labels"].max() > max(CellLabel):
        raise ValueError(f"{path}: tensor 'rejected_labels' holds unknown labels")
