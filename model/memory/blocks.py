"""Chunk culling for the latent memory's readout: spatially compact blocks of points, one bounding box each.

The readout's cost should follow what is in view, not what is stored: a cache written from views
all around a room holds far more points than the few cameras of one segment can see. Before any
point is projected, whole blocks whose bounding box lies outside a target camera's frustum are
dropped (:meth:`PointBlocks.rows`).

* **Blocks.** The points are put in Morton (Z-curve) order of their position on a 1024^3 lattice
  over their bounding box, so :data:`BLOCK_POINTS` consecutive points are close in space whatever
  order they were written in (and however ``keep_observation="newest"`` rewrote them). Each block's
  box holds every point's sphere of footprint reach (:func:`model.memory.footprint.reach`) and a
  rounding margin, so a culled block holds no point the per-point test would keep.
* **Same result.** Culling only removes work: the z-buffer keys keep each point's original index,
  so the readout with blocks equals the readout without, bit for bit.
* **Cost.** Building the blocks sorts the points once (the memory keeps them until its positions
  change); testing ``N / 256`` boxes against five planes per frame is negligible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


@dataclass(frozen=True)
class PointBlocks:
    """A point set in spatially compact blocks (see the module docstring).

    Attributes:
        order: ``[N]`` int64, the original index of each point in block order.
        points_t: ``[3, N]`` float32 positions in block order, transposed (contiguous rows x, y, z).
        axes_t: ``[6, N]`` float32 footprint half-axes ``a`` (rows 0-2) and ``b`` (rows 3-5) in block
            order, or None (one cell per point).
        margin: ``[N]`` float32 metres, each point's footprint reach in block order (zeros without axes).
        lo, hi: ``[B, 3]`` float32 corners of each block's box, reach and rounding margin included.
        size: points per block (the last block may hold fewer).
    """

    order: torch.Tensor
    points_t: torch.Tensor
    axes_t: torch.Tensor | None
    margin: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    size: int = BLOCK_POINTS

    @classmethod
    def build(cls, points: torch.Tensor, axes: torch.Tensor | None = None, size: int = BLOCK_POINTS) -> PointBlocks:
        """Blocks of ``size`` consecutive points of ``[N, 3]`` world positions (metres) with optional
        ``[N, 2, 3]`` half-axes."""
        from model.memory.footprint import reach

        order = morton_order(points)
        sorted_points = points.index_select(0, order)
        sorted_axes = None if axes is None else axes.to(torch.float32).index_select(0, order)
        margin = torch.zeros(len(points), device=points.device) if sorted_axes is None else reach(sorted_axes)
        n_blocks = -(-len(points) // size)
        pad = n_blocks * size - len(points)
        padded = torch.cat([sorted_points, sorted_points[-1:].expand(pad, 3)]) if pad and len(points) else sorted_points
        padded_margin = torch.cat([margin, margin[-1:].expand(pad)]) if pad and len(points) else margin
        grouped = padded.view(n_blocks, size, 3)
        grow = padded_margin.view(n_blocks, size, 1)  # each point's sphere of reach
        lo, hi = (grouped - grow).amin(1), (grouped + grow).amax(1)
        lo = lo - _ROUNDING_M - _ROUNDING_REL * lo.abs()
        hi = hi + _ROUNDING_M + _ROUNDING_REL * hi.abs()
        axes_t = None if sorted_axes is None else sorted_axes.reshape(-1, 6).T.contiguous()
        return cls(order, sorted_points.T.contiguous(), axes_t, margin, lo, hi, size)

    def __len__(self) -> int:
        return int(self.order.shape[0])

    def rows(self, P: torch.Tensor, h: int, w: int, near: float) -> torch.Tensor | None:
        """Rows (in block order) of the blocks whose box may reach into a camera's frustum.

        Args:
            P: ``[3, 4]`` float32 ``K [R | t]`` of the camera (``K`` of the ``h x w`` grid).
            near: metres.

        Returns:
            ``[M]`` int64 rows, or None when every block may be visible (use all points).
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
        blocks = torch.nonzero(visible).squeeze(1)
        rows = (blocks[:, None] * self.size + torch.arange(self.size, device=blocks.device)).view(-1)
        return rows[rows < len(self)]
