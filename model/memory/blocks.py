"""Chunk culling for the latent memory's readout: spatially compact blocks of points, one bounding box each.

The readout's cost should follow what is in view, not what is stored: a cache written from views
all around a room holds far more points than the few cameras of one segment can see. Before any
point is projected, whole blocks whose bounding box lies outside a target camera's frustum are
dropped (:meth:`PointBlocks.visible`).

* **Blocks.** The points are put in Morton (Z-curve) order of their position on a 1024^3 lattice
  over their bounding box, so :data:`BLOCK_POINTS` consecutive points are close in space whatever
  order they were written in (and however ``keep_observation="newest"`` rewrote them). Each block's
  box holds every point's sphere of footprint reach (:func:`model.memory.footprint.reach`) and a
  rounding margin, so a culled block holds no point the per-point test would keep.
* **Same result.** Culling only removes work: the z-buffer keys keep each point's original index,
  so the readout with blocks equals the readout without, bit for bit.
* **Packed rows.** Each point is stored as one row ``(x, y, z, 1, a, b, reach)``
  (:func:`pack_points`) in block order, so the visible blocks are gathered by one copy of whole
  rows (:meth:`PointBlocks.gather`) and projected, footprint axes included, by one matrix product
  per camera (:func:`frame_matrix`) instead of a gather and a product per quantity.
* **Cost.** Building the blocks sorts the points once (the memory keeps them until its positions
  change); testing ``N / 256`` boxes against five planes per frame is negligible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Points per block.
BLOCK_POINTS = 256
_MORTON_BITS = 10  # per axis
_ROUNDING_M = 1e-3  # metres added around every box (float32 rounding of the per-point test)
_ROUNDING_REL = 1e-5  # ... plus this fraction of the box's coordinates


def _spread_bits(q: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits after each of the low 10 bits of ``q`` (int64): ``b9..b0 -> b9 0 0 ... b0``."""
    q = (q | (q << 16)) & 0x030000FF
    q = (q | (q << 8)) & 0x0300F00F
    q = (q | (q << 4)) & 0x030C30C3
    return (q | (q << 2)) & 0x09249249


def morton_order(points: torch.Tensor) -> torch.Tensor:
    """``[N]`` int64 permutation that puts ``[N, 3]`` points in Z-curve order (stable for equal codes)."""
    if len(points) == 0:
        return torch.zeros(0, dtype=torch.int64, device=points.device)
    lo, hi = points.amin(0), points.amax(0)
    scale = ((1 << _MORTON_BITS) - 1) / (hi - lo).clamp(min=1e-6)
    q = ((points - lo) * scale).to(torch.int64).clamp(0, (1 << _MORTON_BITS) - 1)
    code = _spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << 1) | (_spread_bits(q[:, 2]) << 2)
    return torch.sort(code, stable=True).indices


def pack_points(points: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
    """The per-point rows the z-buffer projects with one matrix product (:func:`frame_matrix`).

    Args:
        points: ``[N, 3]`` float32 world positions in metres.
        axes: optional ``[N, 2, 3]`` footprint half-axes in metres.

    Returns:
        ``[N, 4]`` float32 rows ``(x, y, z, 1)`` without ``axes``; with them ``[N, 11]`` rows
        ``(x, y, z, 1, a_x, a_y, a_z, b_x, b_y, b_z, reach)`` (:func:`model.memory.footprint.reach`).
    """
    from model.memory.footprint import reach

    points = points.to(torch.float32)
    ones = torch.ones(len(points), 1, dtype=torch.float32, device=points.device)
    if axes is None:
        return torch.cat([points, ones], 1)
    axes = axes.to(points)
    return torch.cat([points, ones, axes.reshape(-1, 6), reach(axes)[:, None]], 1)


def frame_matrix(P: torch.Tensor, reach_px: torch.Tensor | None) -> torch.Tensor:
    """``[R, C]`` float32 matrix that maps packed rows (:func:`pack_points`, ``C`` = 4 or 11 columns)
    to what one target camera needs of each point: ``M @ row = (u z, v z, z)`` (``R = 3``), and with
    footprints also ``reach * reach_px`` (grid cells per metre of depth) and ``K R a``, ``K R b``
    (``R = 10``: rows 4-6 and 7-9).

    Args:
        P: ``[3, 4]`` float32 ``K [R | t]`` of the camera (``K`` of the grid).
        reach_px: scalar tensor, the largest grid distance per metre of reach over the view, or None
            (no footprints).
    """
    if reach_px is None:
        return P.clone()
    M = torch.zeros(10, 11, dtype=P.dtype, device=P.device)
    M[:3, :4] = P
    M[3, 10] = reach_px
    M[4:7, 4:7] = P[:, :3]
    M[7:10, 7:10] = P[:, :3]
    return M


@dataclass(frozen=True)
class PointBlocks:
    """A point set in spatially compact blocks (see the module docstring).

    Attributes:
        order: ``[B * size]`` int64, the original index of each point in block order (0 in the padding).
        packed: ``[B, size, C]`` float32 packed rows (:func:`pack_points`) in block order; the last
            block is padded with NaN rows, which no frustum test keeps.
        footprints: whether ``packed`` holds footprint axes (``C = 11``) or not (``C = 4``).
        lo, hi: ``[B, 3]`` float32 corners of each block's box, reach and rounding margin included.
        spreads: ``[B]`` bool, blocks holding a point with a footprint (non-zero reach).
        size: points per block.
        count: number of points (without the padding).
    """

    order: torch.Tensor
    packed: torch.Tensor
    footprints: bool
    lo: torch.Tensor
    hi: torch.Tensor
    spreads: torch.Tensor
    size: int
    count: int

    @classmethod
    def build(cls, points: torch.Tensor, axes: torch.Tensor | None = None, size: int = BLOCK_POINTS) -> PointBlocks:
        """Blocks of ``size`` consecutive points of ``[N, 3]`` world positions (metres) with optional
        ``[N, 2, 3]`` half-axes (all zero: kept as None, one cell each, the cheaper rows)."""
        if axes is not None and not bool(axes.any()):
            axes = None
        order = morton_order(points)
        packed = pack_points(points.index_select(0, order), None if axes is None else axes.index_select(0, order))
        n, n_blocks = len(points), -(-len(points) // size)
        pad = n_blocks * size - n
        sorted_points = packed[:, :3]
        margin = packed[:, 10] if axes is not None else torch.zeros(n, device=points.device)
        padded = torch.cat([sorted_points, sorted_points[-1:].expand(pad, 3)]) if pad and n else sorted_points
        padded_margin = torch.cat([margin, margin[-1:].expand(pad)]) if pad and n else margin
        grouped = padded.reshape(n_blocks, size, 3)
        grow = padded_margin.reshape(n_blocks, size, 1)  # each point's sphere of reach
        lo, hi = (grouped - grow).amin(1), (grouped + grow).amax(1)
        spreads = (grow > 0).reshape(n_blocks, size).any(1)
        lo = lo - _ROUNDING_M - _ROUNDING_REL * lo.abs()
        hi = hi + _ROUNDING_M + _ROUNDING_REL * hi.abs()
        columns = packed.shape[1]
        packed = torch.cat([packed, packed.new_full((pad, columns), torch.nan)]).view(n_blocks, size, columns)
        order = torch.cat([order, order.new_zeros(pad)])
        return cls(order, packed, axes is not None, lo, hi, spreads, size, n)

    def __len__(self) -> int:
        return self.count

    def visible(self, P: torch.Tensor, h: int, w: int, near: float) -> torch.Tensor | None:
        """The blocks whose box may reach into a camera's frustum.

        Args:
            P: ``[3, 4]`` float32 ``K [R | t]`` of the camera (``K`` of the ``h x w`` grid).
            near: metres.

        Returns:
            ``[V]`` int64 block indices, or None when every block may be visible (use all points).
        """
        # the frustum's half-spaces a . [p, 1] >= 0: x >= 0, w z - x >= 0, y >= 0, h z - y >= 0, z - near >= 0
        near_row = torch.zeros(4, dtype=P.dtype, device=P.device)
        near_row[3] = near
        planes = torch.stack([P[0], w * P[2] - P[0], P[1], h * P[2] - P[1], P[2] - near_row])  # [5, 4]
        normal = planes[:, :3]
        # the box corner farthest along each plane's normal
        corner = torch.where(normal[None] > 0, self.hi[:, None], self.lo[:, None])  # [B, 5, 3]
        reach_in = (corner * normal[None]).sum(-1) + planes[:, 3] >= 0  # [B, 5]
        visible = reach_in.all(1)
        if bool(visible.all()):
            return None
        return torch.nonzero(visible).squeeze(1)

    def any_spreads(self, blocks: torch.Tensor | None) -> bool:
        """Whether any of ``blocks`` (None: all) holds a point with a footprint (else one cell each)."""
        if not self.footprints:
            return False
        return bool((self.spreads if blocks is None else self.spreads.index_select(0, blocks)).any())

    def gather(self, blocks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Packed rows ``[V * size, C]`` and original indices ``[V * size]`` of ``blocks`` (None: all,
        padding included); whole blocks are copied, so this costs little more than a memcpy."""
        columns = self.packed.shape[-1]
        if blocks is None:
            return self.packed.view(-1, columns), self.order
        # a row gather of whole blocks: embedding() copies each block's contiguous rows in one go
        packed = F.embedding(blocks, self.packed.view(len(self.packed), -1)).view(-1, columns)
        return packed, F.embedding(blocks, self.order.view(-1, self.size)).view(-1)
