"""The latent spatial memory: a 3D cache of the diffusion model's own VAE latent tokens.

Each element is one latent cell lifted to 3D with depth: a world position (fp32, metres) and the
cell's latent feature vector (fp16 or bf16). It is read out by a hard z-buffer at latent resolution
(no rasteriser, no VAE) and written back after every segment with moving objects and sky removed.

Layout, following gsplat: pure functions (:func:`downsample_depth`, :func:`zbuffer_project`,
:func:`voxel_keys`, :func:`deduplicate`) under one small stateful object (:class:`LatentSpatialMemory`).
It implements only lifting a write to cells and the readout; validation at the API boundary, state,
copies and files are shared with the RGB baseline (:class:`model.memory.base.PointMemory`).

Design decisions (see also ``DESIGN.md``):

* **Cell centres.** Depth is downsampled bilinearly to the latent grid (cells with any invalid
  contributing pixel are invalid) and each latent cell centre ``(u + 0.5, v + 0.5)`` is
  back-projected with the latent-grid intrinsics.
* **Z-buffer.** Each point covers the cells its latent cell's footprint covers at the target camera
  (``config.splat = "footprint"``, the default; :mod:`model.memory.footprint`: two world half-axes
  per point, taken from the neighbouring cells of the same surface when it is written and capped at
  depth discontinuities), or only the cell ``floor(u), floor(v)`` it lands in (``"point"``, which
  leaves a lattice of holes when the camera comes closer). Points behind the near plane or whose
  footprint misses the grid are culled first; the survivors' cells are reduced with ONE
  ``scatter_reduce(amin)`` over int64 keys ``depth_bin << 40 | cover_rank << 32 | point_index``, so the
  nearest point wins and ties go to the lower index — the older observation. Depth bins are
  log-spaced (the float32 exponent and top mantissa bits), at most ``config.depth_bin`` (2 %) wide:
  two observations of the same surface a few millimetres apart tie, so a camera that comes back
  sees what it saw first, not a later point that happens to lie a hair nearer; real occluders are
  much more than 2 % nearer. A footprint that only covers a cell counts two bins farther and
  after the points landing there (``cover_rank``), so footprints fill the gaps between samples and
  never displace a cell's own sample. Integer ``amin`` does not depend on the order of the
  scatter, so the result is identical on CPU and CUDA. At the writing camera every footprint
  covers exactly its own cell: the readout returns the written latent bit for bit.
* **De-duplication** (``config.dedup``), so that revisiting seen space does not grow the cache:

  - ``"view"`` (default): frames are written one by one; a cell is already known when the memory's
    own z-buffer at the writing camera (the readout's, footprints included) shows a point in that
    cell whose depth agrees within ``view_tolerance`` (relative) plus the cell's own depth spread
    (grazing surfaces). A 1-cell gap between known cells is a sampling hole of the latent z-buffer,
    not unseen space, and is not written. This works at the latent resolution itself, so it needs no
    metric voxel size, never merges neighbouring cells of one view (the writer's view keeps every
    cell), and a revisit adds only what the memory could not show.
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

import math
from collections import namedtuple
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from model.geometry.camera import invert_pose, scale_intrinsics, unproject_depth
from model.memory.base import (  # noqa: F401 - MemoryStats stays importable from here with the other public names
    FEATURE_DTYPES,
    CellLabel,
    Layout,
    MemoryConfig,
    MemoryStats,
    PointMemory,
    Readout,
    WriteBatch,
    check_cameras,
)
from model.memory.blocks import PointBlocks, frame_matrix, pack_points
from model.memory.footprint import (
    cell_axes,
    cell_mapping,
    cover_keys,
    footprint_cells,
    footprint_radii,
    may_cover,
    splat_keys,
)

_INT64_MAX = torch.iinfo(torch.int64).max
_VOXEL_BITS = 21  # per axis; keys cover +-2^20 voxels (+-52 km at 5 cm)
_VOXEL_HALF = 1 << (_VOXEL_BITS - 1)
_DEFAULT_COLOR = 128


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
    points: torch.Tensor,
    w2c: torch.Tensor,
    K: torch.Tensor,
    h: int,
    w: int,
    near: float = 0.05,
    depth_bin: float = 0.02,
    axes: torch.Tensor | None = None,
    blocks: PointBlocks | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Z-buffer of a point set into ``F`` cameras at grid resolution, each point splatted over its footprint.

    Point ``i`` covers the cells of target ``f`` whose centres lie in its projected footprint
    (:func:`model.memory.footprint.footprint_cells`; without ``axes``, or with zero axes, only the
    cell ``(floor(u), floor(v))`` its projection ``(u, v)`` lands in); per cell the point in the
    nearest depth bin wins (log-spaced bins, see :func:`depth_bin_shift`); within a bin a point
    that lands in the cell comes before one whose footprint only covers it, and those by the
    distance of their centre to the cell's (:func:`model.memory.footprint.cover_rank`); remaining
    ties go to the lower index.

    Cost (what makes it fast): per frame, whole blocks outside the frustum are skipped
    (``blocks``), the points of the others are projected, with their footprint axes, by ONE
    ``[10, 11] x [11, M]`` matrix product over packed rows
    (:func:`model.memory.blocks.frame_matrix`), and only the few footprints that may still win a
    cell beyond their landing cell (:func:`model.memory.footprint.may_cover`, ~10 % where the
    memory holds a surface many times over) are splatted.

    Args:
        points: ``[N, 3]`` float32 world positions in metres (``N < 2^32``).
        w2c: ``[F, 4, 4]`` world-to-camera poses.
        K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics of the ``h x w`` grid.
        near: metres; points with ``z <= near`` are culled.
        depth_bin: upper bound on the relative width of a depth bin (log-spaced).
        axes: optional ``[N, 2, 3]`` footprint half-axes in world metres
            (:func:`model.memory.footprint.cell_axes`); None: one cell per point.
        blocks: optional :class:`~model.memory.blocks.PointBlocks` of ``points`` (and their axes),
            used instead of ``axes``: whole blocks outside a frustum are culled before their points
            are projected (same result, less work).

    Returns:
        index: ``[F, h, w]`` int64 winning point index, -1 where empty.
        depth: ``[F, h, w]`` float32 z-depth of the winner in metres, 0 where empty.
    """
    n_frames = w2c.shape[0]
    device = points.device
    K = K.to(device, torch.float32).expand(n_frames, 3, 3)
    P = K @ w2c[:, :3, :].to(device, torch.float32)  # [F,3,4]
    if blocks is None:  # points whose axes are all zero cover one cell each: the point path
        packed, order = pack_points(points, axes), None
        footprints = axes is not None and bool(packed[:, 10].any())
    # per frame, the largest grid distance per metre of reach over the view: hypot(focal, principal offset)
    reach_px = torch.stack(
        [
            torch.hypot(K[:, 0, 0], K[:, 0, 2]),
            torch.hypot(K[:, 0, 0], w - K[:, 0, 2]),
            torch.hypot(K[:, 1, 1], K[:, 1, 2]),
            torch.hypot(K[:, 1, 1], h - K[:, 1, 2]),
        ]
    ).amax(0)
    best = torch.full((n_frames * h * w + 1,), _INT64_MAX, dtype=torch.int64, device=device)  # + a trash slot
    trash = best.shape[0] - 1
    shift = depth_bin_shift(depth_bin)
    splats: list[list[torch.Tensor]] = []  # per frame: the footprints to splat
    for f in range(n_frames):
        # 1. chunk culling: only the blocks whose box reaches into the frustum
        if blocks is not None:
            visible = blocks.visible(P[f], h, w, near)
            packed, order, footprints = *blocks.gather(visible), blocks.any_spreads(visible)
        # 2. project everything a point needs at once: [x, y, z, reach_px * reach, K R a, K R b] = matrix @ row
        matrix = frame_matrix(P[f], reach_px[f]) if footprints else frame_matrix(P[f], None)
        proj = torch.mm(matrix, packed[:, : matrix.shape[1]].T)  # [3 or 10, M0]
        x, y, z = proj[0], proj[1], proj[2]
        # 3. frustum test (with footprints: the grid's edges pushed out by each point's reach in
        #    cells); points outside are not compacted away (cheaper than a gather of ~85 % of
        #    them): their keys go to the trash slot and their footprints get no extent
        u, v = x / z, y / z
        if not footprints:
            inside = (z > near) & (x >= 0) & (y >= 0) & (x < w * z) & (y < h * z)
        else:  # a footprint reaches at most (focal + |u - centre|) reach / z cells from its centre
            reach_cells = proj[3] / z
            low = -reach_cells
            inside = (z > near) & (u >= low) & (v >= low) & (u <= reach_cells + w) & (v <= reach_cells + h)
        point_idx = torch.arange(len(z), device=device) if order is None else order  # the caller's indices
        # 4. one deterministic integer amin per cell over (depth bin, index) keys: the cell each point
        #    lands in, then (footprints) every other cell of its footprint, counted a little farther
        keys = (z.view(torch.int32) >> shift).to(torch.int64) << 32 | point_idx
        lands = inside & (u >= 0) & (v >= 0) & (u < w) & (v < h)  # centres off the grid land nowhere
        cells = (v.clamp(0, h - 1).to(torch.int64) + f * h) * w + u.clamp(0, w - 1).to(torch.int64)
        cells = torch.where(lands, cells, trash)
        best.scatter_reduce_(0, cells, keys, reduce="amin")
        if footprints:  # 5. the footprints that may still win a cell (zero axes, points outside: none)
            axes_hom = proj[4:10]  # [6, M0]: K R a, K R b
            ru, rv = footprint_radii(u, v, z, axes_hom, near, ~inside)
            covering = cover_keys(z, axes_hom, point_idx, shift)
            sel = may_cover(best, f * h * w, h, w, cells, covering, ru, rv)
            splats.append([t.index_select(0, sel) for t in (u, v, ru, rv, covering)])
            splats[-1].append(torch.full_like(sel, f * h * w))
    if splats:  # 6. splat them, all frames at once (each writes only its own frame's cells)
        u, v, ru, rv, covering, offset = (torch.cat(t) for t in zip(*splats, strict=True))
        col0, row0, nx, ny = footprint_cells(u, v, ru, rv, h, w)
        splat_keys(best, offset, col0, row0, nx, ny, covering, w)
    empty = best[:-1] == _INT64_MAX
    index = torch.where(empty, -1, best[:-1] & 0xFFFFFFFF).view(n_frames, h, w)
    # 7. exact depth of the winners (recomputed, not the quantised key)
    if len(points) == 0:
        return index, torch.zeros(n_frames, h, w, dtype=torch.float32, device=device)
    safe = index.clamp(min=0).view(n_frames, -1)
    rot_z = w2c[:, 2, :3].to(device, torch.float32)
    winners = points.index_select(0, safe.view(-1)).view(n_frames, -1, 3)
    depth = (winners * rot_z[:, None, :]).sum(-1) + w2c[:, 2, 3].to(device, torch.float32)[:, None]
    depth = torch.where(empty.view(n_frames, -1), 0.0, depth).view(n_frames, h, w)
    return index, depth


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
        return type(self)(*(torch.cat([a, b]) for a, b in zip(self, other, strict=True)))

    def replace(self, index: torch.Tensor, other):
        """A copy with rows ``index`` replaced by ``other``'s rows."""
        out = [a.clone() for a in self]
        for a, b in zip(out, other, strict=True):
            a[index] = b
        return type(self)(*out)


class _Points(namedtuple("_Points", "positions features colors segments frames axes"), TensorRows):
    """Per-point fields, stored (``[N, ...]``) or per cell (``[T, h, w, ...]``): positions float32
    metres ``[..., 3]``, features fp16/bf16 ``[..., C]``, colors uint8 RGB ``[..., 3]``, segments and
    frames int32, axes float32 ``[..., 2, 3]`` metres (the footprint's half-axes, :func:`cell_axes`)."""

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


def merge_unseen(
    store: TensorRows, new: TensorRows, write: torch.Tensor, known: torch.Tensor, index: torch.Tensor, newest: bool
) -> TensorRows:
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


#: What a memory shows at one writing camera: ``(store, depth [h, w], w2c [4, 4], K [3, 3])`` ->
#: ``(known [h, w], index [h, w])`` (:func:`seen_at_depth` of the memory's own view, and its points).
KnownCells = Callable[[TensorRows, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def deduplicate(
    store: TensorRows,
    new: TensorRows,
    write: torch.Tensor,
    depth: torch.Tensor,
    w2c: torch.Tensor,
    K: torch.Tensor,
    config: MemoryConfig,
    known: KnownCells,
) -> TensorRows:
    """Merge one write into ``store`` by ``config.dedup`` (within the write and against the memory),
    keeping ``config.keep_observation``. Shared by every memory kind, on cells or pixels.

    Args:
        store: the stored points. new: the write's candidates, ``[T, h, w, ...]`` fields.
        write: ``[T, h, w]`` candidates to write. depth: ``[T, h, w]`` their depth in metres (+inf invalid).
        w2c: ``[T, 4, 4]`` writing cameras. K: ``[T, 3, 3]`` intrinsics of the ``h x w`` grid.
        known: the memory's view at a writing camera ("view" de-duplication, frame by frame).

    Returns:
        The merged point set (``store`` itself is not modified).
    """
    newest = config.keep_observation == "newest"
    if config.dedup == "voxel":
        keys, in_range = voxel_keys(new.positions[write], config.voxel_size)
        return merge_voxels(store, new.select(write).select(in_range), keys[in_range], config.voxel_size, newest)
    for t in range(write.shape[0]):
        frame = new.frame(t)
        if not len(store.positions):
            store = store.cat(frame.select(write[t]))
            continue
        seen, index = known(store, depth[t], w2c[t], K[t])
        store = merge_unseen(store, frame, write[t], seen, index, newest)
    return store


class LatentSpatialMemory(PointMemory):
    """A 3D cache of latent tokens: positions ``[N, 3]`` fp32 and features ``[N, C]`` fp16/bf16.

    Example:
        >>> import torch
        >>> from model.geometry.camera import intrinsics_from_fov
        >>> mem = LatentSpatialMemory()
        >>> K = intrinsics_from_fov(60.0, 64, 32)
        >>> mem.initialize(torch.randn(48, 2, 4), torch.full((32, 64), 3.0), K, torch.eye(4))
        >>> out = mem.readout(torch.eye(4)[None], K, 2, 4, image_hw=(32, 64))
        >>> out.latent.shape, bool(out.visible.all())
        (torch.Size([1, 48, 2, 4]), True)
    """

    kind = "latent"
    FORMAT_NAME = "mirage-latent-memory"
    FORMAT_VERSION = 2  # 2: per-point footprint axes
    READABLE_VERSIONS = (1, 2)  # version 1 files load with zero axes: their points cover one cell each, as before
    Points = _Points
    COUNTERS = ("channels", "next_segment")
    sizes = None  # a latent cell's world size is not stored: it follows from the view that wrote it

    def __init__(self, config: MemoryConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.channels: int | None = None  # channels of the stored features (None before the first write)
        self._blocks: PointBlocks | None = None  # culling blocks of the readout, kept until the points change
        self._blocks_of: tuple = ()  # (positions, axes or None) _blocks was made from
        super().__init__(config, device)

    @classmethod
    def from_points(
        cls,
        positions: torch.Tensor,
        features: torch.Tensor,
        colors: torch.Tensor | None = None,
        config: MemoryConfig | None = None,
        device: str | torch.device = "cpu",
        axes: torch.Tensor | None = None,
    ) -> LatentSpatialMemory:
        """A memory holding given points (segment 0, frame 0).

        Args:
            positions: ``[N, 3]`` world positions in metres. features: ``[N, C]``.
            colors: optional ``[N, 3]`` uint8 display colours (grey by default).
            axes: optional ``[N, 2, 3]`` footprint half-axes in metres (:func:`cell_axes`); zero by
                default (each point covers one cell).
        """
        positions = torch.as_tensor(positions)
        features = torch.as_tensor(features)
        if (
            positions.ndim != 2
            or positions.shape[1] != 3
            or features.ndim != 2
            or features.shape[0] != positions.shape[0]
        ):
            raise ValueError(
                f"from_points: expected positions [N,3] and features [N,C], got {list(positions.shape)} and "
                f"{list(features.shape)}"
            )
        if not torch.isfinite(positions).all() or not torch.isfinite(features).all():
            raise ValueError("from_points: positions and features must be finite")
        memory = cls(config, device)
        n = positions.shape[0]
        memory.channels, memory.next_segment = int(features.shape[1]), 1
        memory.positions = positions.to(memory.device, torch.float32).contiguous()
        memory.features = features.to(memory.device, memory.feature_dtype).contiguous()
        memory.colors = (
            torch.full((n, 3), _DEFAULT_COLOR, dtype=torch.uint8)
            if colors is None
            else torch.as_tensor(colors, dtype=torch.uint8)
        ).to(memory.device)
        memory.segments = torch.zeros(n, dtype=torch.int32, device=memory.device)
        memory.frames = torch.zeros(n, dtype=torch.int32, device=memory.device)
        if axes is None:
            axes = torch.zeros(n, 2, 3)  # no footprint: one cell each
        axes = torch.as_tensor(axes)
        if axes.shape != (n, 2, 3) or not torch.isfinite(axes).all():
            raise ValueError(f"from_points: expected finite axes [{n},2,3], got {list(axes.shape)}")
        memory.axes = axes.to(memory.device, torch.float32).contiguous()
        return memory

    # ---- state ---------------------------------------------------------------------------

    @classmethod
    def _layout(cls, config: MemoryConfig, counters: Mapping[str, int]) -> Layout:
        return {
            "positions": (torch.float32, ("N", 3)),
            "features": (FEATURE_DTYPES[config.feature_dtype], ("N", counters["channels"])),
            "colors": (torch.uint8, ("N", 3)),
            "segments": (torch.int32, ("N",)),
            "frames": (torch.int32, ("N",)),
            "axes": (torch.float32, ("N", 2, 3)),
            "rejected_positions": (torch.float32, ("M", 3)),
            "rejected_labels": (torch.uint8, ("M",)),
        }

    @property
    def feature_dtype(self) -> torch.dtype:
        return FEATURE_DTYPES[self.config.feature_dtype]

    @property
    def rejected(self) -> int:
        """Cells rejected by the last write (kept with their label in ``rejected_positions`` / ``rejected_labels``)."""
        return int(self.rejected_labels.numel())

    # ---- writing -------------------------------------------------------------------------

    def _write(self, batch: WriteBatch) -> dict[str, object]:
        """Lift every latent cell centre with bilinearly downsampled depth, label the cells, merge the kept ones."""
        n_frames, channels, h, w = batch.latents.shape
        H, W = batch.depth.shape[-2:]
        # 1. lift every cell centre with bilinearly downsampled depth
        depth_cells = downsample_depth(batch.depth, h, w)
        valid = torch.isfinite(depth_cells)
        K_cells = scale_intrinsics(batch.K.to(torch.float64), (H, W), (h, w))
        c2w = invert_pose(batch.w2c.to(torch.float64))
        points = unproject_depth(torch.where(valid, depth_cells, 1.0).to(torch.float64), K_cells, c2w).to(torch.float32)
        _, in_range = voxel_keys(points.view(-1, 3), self.config.voxel_size)
        valid &= in_range.view(n_frames, h, w)
        # 2. label every cell; rejected ones are kept for inspection
        keep, labels = batch.keep_at(h, w), batch.labels
        cell_labels = torch.full((n_frames, h, w), int(CellLabel.STATIC), dtype=torch.uint8, device=self.device)
        if labels is not None:
            cell_labels = torch.where(labels == CellLabel.STATIC, int(CellLabel.DYNAMIC), labels)
            cell_labels = torch.where(keep, int(CellLabel.STATIC), cell_labels)
        else:
            cell_labels[~keep] = int(CellLabel.DYNAMIC)
        cell_labels[~valid & (cell_labels != CellLabel.SKY)] = int(CellLabel.INVALID)  # sky has no depth either
        write = cell_labels == CellLabel.STATIC
        rejected = ~write
        # 3. candidates per cell, then de-duplicate within the write and against the memory
        if batch.frames is not None:
            colors = patch_colors(batch.frames, h, w)
        else:
            colors = torch.full((n_frames, h, w, 3), _DEFAULT_COLOR, dtype=torch.uint8, device=self.device)
        cells = _Points(
            points,
            batch.latents.permute(0, 2, 3, 1).to(self.feature_dtype),
            colors,
            torch.full((n_frames, h, w), self.next_segment, dtype=torch.int32, device=self.device),
            batch.frame_ids[:, None, None].expand(n_frames, h, w).to(torch.int32),
            cell_axes(points, depth_cells, batch.w2c, K_cells),
        )
        store = self._points()
        if store.features.shape[1] != channels:  # an empty memory takes the write's channels
            store = store._replace(features=store.features.new_zeros(0, channels))
        K_grid = K_cells.to(torch.float32).expand(n_frames, 3, 3)
        store = deduplicate(store, cells, write, depth_cells, batch.w2c, K_grid, self.config, self._known)
        return {
            **store._asdict(),
            "rejected_positions": torch.where(valid[..., None], points, torch.nan)[rejected],
            "rejected_labels": cell_labels[rejected],
            "channels": channels,
        }

    def _known(
        self, store: _Points, depth: torch.Tensor, w2c: torch.Tensor, K_grid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:data:`KnownCells` of the memory's own z-buffer at a writing camera."""
        h, w = depth.shape
        index, seen_depth = zbuffer_project(
            store.positions, w2c[None], K_grid, h, w, self.config.near, self.config.depth_bin, axes=self._splat(store)
        )
        return seen_at_depth(index[0], seen_depth[0], depth, self.config.view_tolerance), index[0]

    # ---- reading -------------------------------------------------------------------------

    def readout(
        self,
        w2c: torch.Tensor,
        K: torch.Tensor,
        h: int,
        w: int,
        image_hw: tuple[int, int] | None = None,
        mapping: bool = False,
    ) -> Readout:
        """Z-buffered projection of the memory onto ``F`` target cameras at grid resolution.

        Args:
            w2c: ``[F, 4, 4]`` (or ``[4, 4]``) poses.
            K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics of the ``h x w`` grid, or in pixels of an
                ``image_hw = (H, W)`` image when that is given (then scaled to the grid).
            h, w: target grid size (latent resolution).
            mapping: also compute :attr:`Readout.mapping` (:func:`~model.memory.footprint.cell_mapping`,
                ~5 ms for 9 frames of 44x80 on 2 CPU cores); else it is None.

        Returns:
            :class:`Readout`: ``latent [F,C,h,w]``, ``visible [F,h,w]``, ``depth [F,h,w]``, ``index [F,h,w]``,
            ``mapping [F,6,h,w]`` or None.
        """
        w2c, K = check_cameras(w2c, K, self.device)
        if h <= 0 or w <= 0:
            raise ValueError(f"readout grid must be positive, got {h}x{w}")
        if image_hw is not None:
            K = scale_intrinsics(K, image_hw, (h, w))
        index, depth = zbuffer_project(
            self.positions, w2c, K, h, w, self.config.near, self.config.depth_bin, blocks=self._readout_blocks()
        )
        visible = index >= 0
        n_frames, channels = w2c.shape[0], self.channels or 0
        if len(self):
            latent = self.features.index_select(0, index.clamp(min=0).view(-1)).view(n_frames, h, w, channels)
            latent = latent.masked_fill_(~visible[..., None], 0).permute(0, 3, 1, 2).contiguous()
        else:
            latent = torch.zeros(n_frames, channels, h, w, dtype=self.feature_dtype, device=self.device)
        cells = cell_mapping(self.positions, self._points().axes, index, w2c, K) if mapping else None
        return Readout(latent, visible, depth, index, cells)

    def _splat(self, points: _Points) -> torch.Tensor | None:
        """The footprint axes the z-buffer splats ``points`` with (``config.splat``), None for one cell each."""
        return points.axes if self.config.splat == "footprint" else None

    def _readout_blocks(self) -> PointBlocks:
        """The points (and footprint axes, per ``config.splat``) in culling blocks, rebuilt when they change."""
        axes = self._splat(self._points())
        if len(self._blocks_of) != 2 or self._blocks_of[0] is not self.positions or self._blocks_of[1] is not axes:
            self._blocks, self._blocks_of = PointBlocks.build(self.positions, axes), (self.positions, axes)
        return self._blocks

    # ---- persistence ---------------------------------------------------------------------

    @classmethod
    def _upgrade(cls, tensors: dict[str, torch.Tensor], version: int) -> dict[str, torch.Tensor]:
        """Version 1 files have no footprints: their points get zero axes (one cell each, their old readout)."""
        if version == 1 and "axes" not in tensors and "positions" in tensors:
            tensors = {**tensors, "axes": torch.zeros(len(tensors["positions"]), 2, 3)}
        return tensors

    @classmethod
    def _check_tensors(
        cls, path: Path, tensors: Mapping[str, torch.Tensor], config: MemoryConfig, counters: Mapping[str, int]
    ) -> None:
        super()._check_tensors(path, tensors, config, counters)
        labels = tensors["rejected_labels"]
        if labels.numel() and labels.max() > max(CellLabel):
            raise ValueError(f"{path}: tensor 'rejected_labels' holds unknown labels")
