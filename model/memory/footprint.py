"""Cell footprints of the latent memory: what each point covers when it is read out.

A memory point summarises one latent cell, i.e. a small patch of surface, not a point. Drawing it
into the single cell its centre lands in leaves a lattice of holes as soon as the camera comes
closer to the surface (each cell of the new view is smaller than the patch) or turns around it.

* **Footprint.** At write time each cell gets two half-axes in world metres, ``a`` along the grid's
  x and ``b`` along its y (:func:`cell_axes`): half the vector to its neighbouring cells' points,
  so the parallelogram ``p +- a +- b`` is the patch of surface the cell saw (side ~ cell size x depth
  / focal, foreshortening included). At readout the four corners are projected exactly and the
  point covers every target cell that the corners' bounding box overlaps by more than
  :data:`MIN_OVERLAP` of a cell along both axes (:func:`footprint_cells`), and always the cell its
  centre lands in. The z-buffer keeps the nearest point per cell, so overlapping footprints of one
  surface do no harm and a nearer surface still hides a farther one. Where a point only covers a
  cell (its centre lands elsewhere) it counts :data:`COVER_BINS` depth bins (about 3 %) farther
  away and, within a bin, behind the points that land there and after those whose centre is
  nearer the cell's (:func:`cover_rank`): a cell shows its own surface sample wherever there is
  one, and footprints fill only the gaps between samples; a real occluder, more than a few
  percent nearer, still wins.
* **Depth discontinuities.** A neighbour across a depth discontinuity is not part of the patch: an
  axis uses only the neighbours that continue the surface: the cell, the neighbour and the next cell
  beyond lie on one plane (inverse depth is affine in the image on any plane; second difference
  within :data:`PLANAR_TOLERANCE`), or so do the cell and both neighbours with the plane going on
  past one of them, or the neighbour's inverse depth is within
  :data:`JUMP_TOLERANCE` of the cell's (curved surfaces seen face-on). With one continuous
  neighbour the half-axis is half the step to it; with none it is zero, so a cell whose neighbours
  all lie across a discontinuity (an isolated point, or a depth sample mixing a foreground and a
  background) covers one cell at readout, as every point did before footprints.
* **Identity.** At the camera that wrote it, a cell's corners project about half a cell around its
  centre, so its footprint overlaps the neighbouring cells by far less than :data:`MIN_OVERLAP` and
  covers exactly its own cell: the readout at the writing camera returns the written latent unchanged.
"""

from __future__ import annotations

import torch

#: Relative inverse-depth step to a neighbour under which that neighbour continues the surface.
JUMP_TOLERANCE = 0.02
#: Relative second difference of inverse depth (previous, cell, next) under which the three cells lie
#: on one surface (a plane seen at any angle: 0 up to the bilinear depth sampling).
PLANAR_TOLERANCE = 0.02
#: A footprint covers a target cell when it overlaps the cell by more than this fraction of a cell along
#: both grid axes (0.5: the cell's centre lies inside it).
MIN_OVERLAP = 0.15
#: Bits of :func:`cover_rank` in the z-buffer's keys (between the depth bin and the point index).
RANK_BITS = 8
#: Depth bins a point counts behind where its footprint only covers a cell (it does not land in it).
COVER_BINS = 2


def _shifted(x: torch.Tensor, dim: int, step: int, fill: float) -> torch.Tensor:
    """``x`` moved by ``step`` along ``dim`` (``out[i] = x[i + step]``), ``fill`` where that leaves the grid."""
    out = torch.full_like(x, fill)
    n = x.shape[dim]
    if abs(step) >= n:
        return out
    src = x.narrow(dim, max(step, 0), n - abs(step))
    out.narrow(dim, max(-step, 0), n - abs(step)).copy_(src)
    return out


def cell_axes(points: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Half-axes of each cell's footprint from its neighbours on the same surface (see the module docstring).

    Args:
        points: ``[T, h, w, 3]`` world positions of the cells (metres; any value where ``depth`` is invalid).
        depth: ``[T, h, w]`` z-depth of the cells in metres, ``+inf`` where invalid.

    Returns:
        ``[T, h, w, 2, 3]`` float32: half-axis along the grid's x (``[..., 0, :]``) and y
        (``[..., 1, :]``) in world metres; zero along an axis without a continuous neighbour.
    """
    points = points.to(torch.float32)
    inv = torch.where(torch.isfinite(depth) & (depth > 0), 1.0 / depth.to(torch.float32), torch.nan)

    def planar(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (a - 2 * b + c).abs() <= PLANAR_TOLERANCE * b  # NaN (invalid, off the grid) compares False

    axes = []
    for dim in (2, 1):  # grid x (columns), then grid y (rows)
        prev2, prev, nxt, nxt2 = (_shifted(inv, dim, step, torch.nan) for step in (-2, -1, 1, 2))
        p_prev, p_next = _shifted(points, dim, -1, 0.0), _shifted(points, dim, 1, 0.0)
        on_prev, on_next = planar(prev2, prev, inv), planar(inv, nxt, nxt2)  # continues that side's plane
        # (prev, cell, next) on one plane that goes on at either side: three cells alone are also
        # collinear when the cell is a depth sample halfway between a foreground and a background
        through = planar(prev, inv, nxt) & (on_prev | on_next)
        has_prev = through | on_prev | ((prev - inv).abs() <= JUMP_TOLERANCE * inv)
        has_next = through | on_next | ((nxt - inv).abs() <= JUMP_TOLERANCE * inv)
        both = (has_prev & has_next)[..., None]
        one = torch.where(has_next[..., None], p_next - points, points - p_prev) / 2
        axis = torch.where(both, (p_next - p_prev) / 4, torch.where((has_prev | has_next)[..., None], one, 0.0))
        axes.append(axis)
    return torch.stack(axes, dim=-2)


def footprint_cells(
    uvz: torch.Tensor, axes_hom: torch.Tensor | None, h: int, w: int, near: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Range of target cells each point's footprint covers (cell centres inside the bounding box of
    its four projected corners, and always the cell its centre lands in), clipped to the grid.

    Args:
        uvz: ``[3, M]`` projected centres: grid coordinates ``u, v`` (cells) and z-depth (metres, ``> near``).
        axes_hom: ``[2, 3, M]`` the half-axes mapped by the camera's ``K R`` (homogeneous grid units),
            or None: every point covers the one cell its centre lands in.
        h, w: grid size. near: metres; a footprint reaching behind the near plane covers one cell.

    Returns:
        ``col0, col1, row0, row1``: ``[M]`` int64 inclusive ranges; empty (``col0 > col1`` or
        ``row0 > row1``) where the footprint misses the grid.
    """
    u, v, z = uvz[0], uvz[1], uvz[2]
    col0 = col1 = torch.floor(u)
    row0 = row1 = torch.floor(v)
    if axes_hom is not None:
        centre = torch.stack([u * z, v * z, z])
        a, b = axes_hom[0], axes_hom[1]
        corners = torch.stack([centre + a + b, centre + a - b, centre - a + b, centre - a - b])  # [4, 3, M]
        zc = corners[:, 2]
        inside = (zc > near).all(0)  # a footprint reaching behind the near plane covers one cell
        uc = corners[:, 0] / zc.clamp(min=near)
        vc = corners[:, 1] / zc.clamp(min=near)
        # cells [c, c + 1) that [min, max] overlaps by more than MIN_OVERLAP: c from
        # floor(min + MIN_OVERLAP) to ceil(max - MIN_OVERLAP) - 1
        col0 = torch.where(inside, torch.minimum(torch.floor(uc.amin(0) + MIN_OVERLAP), col0), col0)
        col1 = torch.where(inside, torch.maximum(torch.ceil(uc.amax(0) - MIN_OVERLAP) - 1, col1), col1)
        row0 = torch.where(inside, torch.minimum(torch.floor(vc.amin(0) + MIN_OVERLAP), row0), row0)
        row1 = torch.where(inside, torch.maximum(torch.ceil(vc.amax(0) - MIN_OVERLAP) - 1, row1), row1)
    col0, col1 = col0.clamp(0, w), col1.clamp(-1, w - 1)  # a range off the grid becomes empty
    row0, row1 = row0.clamp(0, h), row1.clamp(-1, h - 1)
    return col0.to(torch.int64), col1.to(torch.int64), row0.to(torch.int64), row1.to(torch.int64)


def expand_cells(
    col0: torch.Tensor, col1: torch.Tensor, row0: torch.Tensor, row1: torch.Tensor, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every cell of every (non-empty) range, flattened: ``(cells [S], owner [S])``.

    Args:
        col0, col1, row0, row1: ``[M]`` int64 inclusive ranges (:func:`footprint_cells`), non-empty.
        w: grid width.

    Returns:
        cells: ``[S]`` int64 flat cell index ``row * w + col``; owner: ``[S]`` int64 index into the ``M`` ranges.
    """
    nx = col1 - col0 + 1
    count = nx * (row1 - row0 + 1)
    single = count == 1
    owner_single = torch.nonzero(single).squeeze(1)
    owner_multi = torch.nonzero(~single).squeeze(1)
    cells_single = row0[owner_single] * w + col0[owner_single]
    if not len(owner_multi):
        return cells_single, owner_single
    count_multi = count[owner_multi]
    owner = torch.repeat_interleave(owner_multi, count_multi)
    start = torch.repeat_interleave(torch.cumsum(count_multi, 0) - count_multi, count_multi)
    local = torch.arange(len(owner), device=owner.device) - start
    nx_o = nx[owner]
    dy = torch.div(local, nx_o, rounding_mode="floor")
    cells_multi = (row0[owner] + dy) * w + col0[owner] + (local - dy * nx_o)
    return torch.cat([cells_single, cells_multi]), torch.cat([owner_single, owner])


def reach(axes: torch.Tensor) -> torch.Tensor:
    """``[N]`` float32 metres: the farthest a footprint corner lies from its point (``|a| + |b|``)."""
    return axes.to(torch.float32).norm(dim=-1).sum(-1)


def cover_rank(cells: torch.Tensor, u: torch.Tensor, v: torch.Tensor, w: int) -> torch.Tensor:
    """Order of the points that cover a cell within one depth bin: 0 for a point whose centre lands
    in the cell, else ``1 +`` the distance from its centre to the cell centre in eighths of a cell
    (at most ``2^RANK_BITS - 1``), so a cell shows the surface sample nearest to it.

    Args:
        cells: ``[S]`` int64 flat cell indices ``row * w + col``. u, v: ``[S]`` grid coordinates of
            the covering point's centre. w: grid width.

    Returns:
        ``[S]`` int64 ranks.
    """
    row = torch.div(cells, w, rounding_mode="floor")
    col = cells - row * w
    lands = (col == torch.floor(u)) & (row == torch.floor(v))
    distance = torch.hypot(col.to(u.dtype) + 0.5 - u, row.to(v.dtype) + 0.5 - v)
    far = (1 + torch.floor(8 * distance)).clamp(max=(1 << RANK_BITS) - 1).to(torch.int64)
    return torch.where(lands, 0, far + (COVER_BINS << RANK_BITS))
