"""Cell footprints of the latent memory: what each point covers when it is read out.

A memory point summarises one latent cell, i.e. a small patch of surface, not a point. Drawing it
into the single cell its centre lands in leaves a lattice of holes as soon as the camera comes
closer to the surface (each cell of the new view is smaller than the patch) or turns around it.

* **Footprint.** At write time each cell gets two half-axes in world metres, ``a`` along the grid's
  x and ``b`` along its y (:func:`cell_axes`): tangent to the surface (towards the neighbouring
  cells' points) and half a cell long as the writing camera sees them, so the parallelogram
  ``p +- a +- b`` is the patch of surface the cell saw (side ~ cell size x depth / focal,
  foreshortening included). At readout the footprint's extent is its first-order projection and the
  point covers every target cell that extent overlaps by more than :data:`MIN_OVERLAP` of a cell
  along both axes (:func:`footprint_cells`), and always the cell its centre lands in. The z-buffer
  keeps the nearest point per cell, so overlapping footprints of one surface do no harm and a
  nearer surface still hides a farther one. Where a point only covers a cell (its centre lands
  elsewhere) it counts as deep as its patch one cell away, and :data:`COVER_BINS` depth bins
  farther (:func:`cover_keys`): a cell shows its own surface sample wherever there is one,
  footprints fill only the gaps between samples, and a real occluder still wins.
* **Depth discontinuities.** A neighbour across a depth discontinuity is not part of the patch: an
  axis uses only the neighbours that continue the surface: the cell lies on the plane of the three
  cells on that side (inverse depth is affine in the image on any plane; second differences within
  :data:`PLANAR_TOLERANCE`), or the cell and both neighbours lie on one plane that goes on past one
  of them, or the neighbour's inverse depth is within
  :data:`JUMP_TOLERANCE` of the cell's (curved surfaces seen face-on). With one continuous
  neighbour the half-axis is half the step to it; with none it is zero, so a cell whose neighbours
  all lie across a discontinuity (an isolated point, or a depth sample mixing a foreground and a
  background) covers one cell at readout, as every point did before footprints.
* **Identity.** At the camera that wrote it, a cell's footprint extends exactly half a cell (to first
  order, by construction; an axis along one grid direction does not move along the other, since
  the cells of one grid column lie in one plane through the camera), so it overlaps no neighbouring
  cell and covers exactly its own: the readout at the writing camera returns the written latent
  unchanged.
"""

from __future__ import annotations

import torch

#: Relative inverse-depth step to a neighbour under which that neighbour continues the surface.
JUMP_TOLERANCE = 0.02
#: Relative second difference of inverse depth (previous, cell, next) under which the three cells lie
#: on one surface (a plane seen at any angle: 0 up to the bilinear depth sampling).
PLANAR_TOLERANCE = 0.04
#: A footprint covers a target cell when it overlaps the cell by more than this fraction of a cell along
#: both grid axes (0.5: the cell's centre lies inside it).
MIN_OVERLAP = 0.1
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


def cell_axes(points: torch.Tensor, depth: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Half-axes of each cell's footprint from its neighbours on the same surface (see the module docstring).

    Along each grid axis the half-axis points along the surface towards the continuous neighbours
    (the secant through both, or to the one) and is scaled so that, to first order, it projects to
    exactly half a cell at the writing camera: the footprint is the cell's own patch of surface, and
    the readout at that camera covers exactly the cell.

    Args:
        points: ``[T, h, w, 3]`` world positions of the cells (metres; any value where ``depth`` is invalid).
        depth: ``[T, h, w]`` z-depth of the cells in metres, ``+inf`` where invalid.
        w2c: ``[T, 4, 4]`` writing cameras. K: ``[T, 3, 3]`` (or ``[3, 3]``) intrinsics of the ``h x w`` grid.

    Returns:
        ``[T, h, w, 2, 3]`` float32: half-axis along the grid's x (``[..., 0, :]``) and y
        (``[..., 1, :]``) in world metres; zero along an axis without a continuous neighbour.
    """
    n, h, w = depth.shape
    points = points.to(torch.float64)
    inv = torch.where(torch.isfinite(depth) & (depth > 0), 1.0 / depth.to(torch.float64), torch.nan)
    K = K.to(points).expand(n, 3, 3)
    rot = w2c[:, :3, :3].to(points)
    grid = {
        2: (K[:, 0, 0], K[:, 0, 2], torch.arange(w).to(points)[None, None, :] + 0.5, 0),  # x: fx, cx, u, camera x
        1: (K[:, 1, 1], K[:, 1, 2], torch.arange(h).to(points)[None, :, None] + 0.5, 1),  # y: fy, cy, v, camera y
    }

    def planar(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (a - 2 * b + c).abs() <= PLANAR_TOLERANCE * b  # NaN (invalid, off the grid) compares False

    axes = []
    for dim in (2, 1):  # grid x (columns), then grid y (rows)
        prev3, prev2, prev, nxt, nxt2, nxt3 = (_shifted(inv, dim, step, torch.nan) for step in (-3, -2, -1, 1, 2, 3))
        p_prev, p_next = _shifted(points, dim, -1, 0.0), _shifted(points, dim, 1, 0.0)
        # the cell continues the plane of the three cells on one side (three alone would also line up
        # with a mixed sample and the background behind it)
        on_prev = planar(prev2, prev, inv) & planar(prev3, prev2, prev)
        on_next = planar(inv, nxt, nxt2) & planar(nxt, nxt2, nxt3)
        # (prev, cell, next) on one plane that goes on at either side: three cells alone are also
        # collinear when the cell is a depth sample halfway between a foreground and a background
        through = planar(prev, inv, nxt) & (on_prev | on_next)
        has_prev = (through | on_prev | ((prev - inv).abs() <= JUMP_TOLERANCE * inv))[..., None]
        has_next = (through | on_next | ((nxt - inv).abs() <= JUMP_TOLERANCE * inv))[..., None]
        secant = torch.where(has_prev, points - p_prev, 0.0) + torch.where(has_next, p_next - points, 0.0)
        # first-order image step of the secant along this axis at the writing camera, in cells
        focal, principal, coord, row = grid[dim]
        cam = torch.einsum("tij,thwj->thwi", rot, secant)
        step = (focal[:, None, None] * cam[..., row] + (principal[:, None, None] - coord) * cam[..., 2]) / depth.to(
            points
        )
        scale = torch.where(step > 1e-6, 0.5 / step, 0.0)  # NaN depth or a degenerate secant: no extent
        axes.append(torch.nan_to_num(secant * scale[..., None]))
    return torch.stack(axes, dim=-2).to(torch.float32)


def footprint_radii(
    u: torch.Tensor,
    v: torch.Tensor,
    z: torch.Tensor,
    axes_hom: torch.Tensor,
    near: float,
    skip: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half extents of the footprints on the grid, along u and v (cells).

    The extent is the footprint's first-order projection, ``|J a| + |J b|`` with ``J`` the
    projection's Jacobian at the point (exact along the footprint's centre lines; the corners of a
    cell-sized patch lie well within a cell of it).

    Args:
        u, v: ``[M]`` grid coordinates of the projected points (cells). z: ``[M]`` their depth (metres, ``> near``).
        axes_hom: ``[6, M]`` the half-axes ``a`` (rows 0-2) and ``b`` (rows 3-5) mapped by the camera's ``K R``.
        near: metres; a footprint reaching behind the near plane gets zero extent (one cell).
        skip: optional ``[M]`` bool, points that get zero extent too (e.g. outside the view).

    Returns:
        ``ru, rv``: ``[M]`` float32 cells.
    """
    a, b = axes_hom[:3], axes_hom[3:]
    ru = torch.addcmul(a[0], u, a[2], value=-1).abs_().add_(torch.addcmul(b[0], u, b[2], value=-1).abs_()).div_(z)
    rv = torch.addcmul(a[1], v, a[2], value=-1).abs_().add_(torch.addcmul(b[1], v, b[2], value=-1).abs_()).div_(z)
    flat = a[2].abs().add_(b[2].abs()) >= z - near  # reaches behind the near plane: one cell
    if skip is not None:
        flat |= skip
    return ru.masked_fill_(flat, 0.0), rv.masked_fill_(flat, 0.0)


def footprint_cells(
    u: torch.Tensor, v: torch.Tensor, ru: torch.Tensor, rv: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The block of target cells each footprint covers, clipped to the grid: each cell that
    ``[u - ru, u + ru] x [v - rv, v + rv]`` overlaps by more than :data:`MIN_OVERLAP` of a cell along
    both axes, and always the cell ``(floor(u), floor(v))`` the centre lands in.

    Args:
        u, v: ``[M]`` grid coordinates of the centres (cells). ru, rv: ``[M]`` half extents (:func:`footprint_radii`).
        h, w: grid size.

    Returns:
        ``col0, row0, nx, ny``: ``[M]`` int64 first column and row and the number of columns and rows
        (``<= 0``: the footprint misses the grid).
    """
    fu, fv = torch.floor(u), torch.floor(v)
    # cells [c, c + 1) that [u - ru, u + ru] overlaps by more than MIN_OVERLAP: c from
    # floor(u - ru + MIN_OVERLAP) to ceil(u + ru - MIN_OVERLAP) - 1
    col0 = torch.minimum(torch.floor(u - ru + MIN_OVERLAP), fu).clamp_(0, w)
    col1 = torch.maximum(torch.ceil(u + ru - MIN_OVERLAP) - 1, fu).clamp_(-1, w - 1)
    row0 = torch.minimum(torch.floor(v - rv + MIN_OVERLAP), fv).clamp_(0, h)
    row1 = torch.maximum(torch.ceil(v + rv - MIN_OVERLAP) - 1, fv).clamp_(-1, h - 1)
    return (
        col0.to(torch.int64),
        row0.to(torch.int64),
        (col1 - col0 + 1).to(torch.int64),
        (row1 - row0 + 1).to(torch.int64),
    )


def cover_keys(z: torch.Tensor, axes_hom: torch.Tensor, index: torch.Tensor, shift: int) -> torch.Tensor:
    """Z-buffer keys of footprints where they cover cells other than their landing cell.

    Such a cell lies up to a cell of the patch away from the point, so the key takes the depth of the
    patch one cell away along both axes, ``z + 2 (|a_z| + |b_z|)``, and :data:`COVER_BINS` more bins:
    on a slanted surface a footprint never outbids the neighbouring cell's own point, while a real
    occluder does.

    Args:
        z: ``[M]`` float32 depth of the points (metres). axes_hom: ``[6, M]`` (:func:`footprint_radii`).
        index: ``[M]`` int64 the points' indices. shift: the depth-bin shift (``latent.depth_bin_shift``).

    Returns:
        ``[M]`` int64 keys ``(depth_bin + COVER_BINS) << 32 | index``.
    """
    far = z + 2 * (axes_hom[2].abs() + axes_hom[5].abs())
    return ((far.view(torch.int32) >> shift).to(torch.int64) + COVER_BINS) << 32 | index


def splat_keys(
    best: torch.Tensor,
    offset: int | torch.Tensor,
    col0: torch.Tensor,
    row0: torch.Tensor,
    nx: torch.Tensor,
    ny: torch.Tensor,
    keys: torch.Tensor,
    w: int,
) -> None:
    """Scatter the cover keys of footprints (:func:`cover_keys`) into the cells of their blocks
    (``amin``, in place); the cell a point lands in already has the point's own, smaller key. Blocks of at most 2x2
    cells (nearly all) are scattered as four slots per point, larger ones cell by cell.

    Args:
        best: ``[F * h * w + 1]`` int64 keys; the last slot takes what falls nowhere.
        offset: flat index of the frame's first cell in ``best`` (or ``[M]``, per footprint).
        col0, row0, nx, ny: ``[M]`` int64 blocks (:func:`footprint_cells`); empty ones are skipped.
        keys: ``[M]`` int64 the points' cover keys. w: grid width.
    """
    trash = best.shape[0] - 1
    base = row0 * w + col0 + offset
    hits = (nx > 0) & (ny > 0)  # a footprint may miss the grid
    small = hits & (nx <= 2) & (ny <= 2)
    two_x, two_y = small & (nx == 2), small & (ny == 2)
    for dx, dy, valid in ((1, 0, two_x), (0, 1, two_y), (1, 1, two_x & two_y)):
        cells = torch.where(valid, base + (dy * w + dx), trash)
        best.scatter_reduce_(0, cells, keys, reduce="amin")
    best.scatter_reduce_(0, torch.where(small, base, trash), keys, reduce="amin")
    big = torch.nonzero(hits & ~small).squeeze(1)
    if len(big):
        count = nx[big] * ny[big]
        owner = torch.repeat_interleave(big, count)
        start = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        local = torch.arange(len(owner), device=owner.device) - start
        nx_o = nx[owner]
        dy = torch.div(local, nx_o, rounding_mode="floor")
        best.scatter_reduce_(0, base[owner] + dy * w + (local - dy * nx_o), keys[owner], reduce="amin")


def may_cover(
    best: torch.Tensor, offset: int, h: int, w: int, cells: torch.Tensor, keys: torch.Tensor, ru, rv
) -> torch.Tensor:
    """The points whose footprint may still win a cell beyond the one they land in, once every point
    of the frame is in its landing cell.

    A footprint's cover key (:func:`cover_keys`) can only win a cell whose key is larger; after
    the landing pass the cells' keys only decrease, so a footprint within the 3x3 cells around its
    landing cell (half extents below ``1 - MIN_OVERLAP``) whose key is no smaller than the largest key
    in that neighbourhood can win nothing and is skipped (where the memory holds one surface many
    times over, nearly all are). The result is the same as splatting every footprint.

    Args:
        best: ``[F * h * w + 1]`` int64 keys after the landing pass; the last slot is the trash slot.
        offset: flat index of the frame's first cell. h, w: grid size.
        cells: ``[M]`` int64 flat landing cells (the trash slot for centres off the grid).
        keys: ``[M]`` int64 the points' cover keys.
        ru, rv: ``[M]`` their footprints' half extents (:func:`footprint_radii`).

    Returns:
        ``[K]`` int64 indices into the ``M`` points.
    """
    grid = best[offset : offset + h * w].view(h, w)
    padded = torch.full((h + 2, w + 2), torch.iinfo(torch.int64).min, dtype=torch.int64, device=best.device)
    padded[1:-1, 1:-1] = grid
    bound = torch.empty(h * w + 1, dtype=torch.int64, device=best.device)  # + the trash slot's
    rows = padded[:-2].maximum(padded[1:-1]).maximum(padded[2:])  # [h, w + 2]: max over rows
    torch.maximum(rows[:, :-2].maximum(rows[:, 1:-1]), rows[:, 2:], out=bound[:-1].view(h, w))  # 3x3 max
    bound[-1] = torch.iinfo(torch.int64).min  # a centre off the grid wins nothing there, but is beyond
    extent = torch.maximum(ru, rv)
    trash = best.shape[0] - 1
    local = torch.where(cells == trash, h * w, cells - offset)
    # spreads (else the footprint covers its landing cell only) and (beyond the 3x3 cells, or wins there)
    may = (keys < bound.index_select(0, local)) | (extent >= 1 - MIN_OVERLAP) | (local == h * w)
    return torch.nonzero(may & (extent > MIN_OVERLAP)).squeeze(1)


def reach(axes: torch.Tensor) -> torch.Tensor:
    """``[N]`` float32 metres: the farthest a footprint corner lies from its point (``|a| + |b|``).

    Args:
        axes: ``[N, 2, 3]`` half-axes.
    """
    return axes.to(torch.float32).norm(dim=-1).sum(-1)


#: Channels of :func:`cell_mapping`: where a readout cell's centre lies in its winning point's own cell
#: (``s, t``) and how that moves per target cell (the 2x2 Jacobian, row-major).
MAPPING_CHANNELS = 6
#: The mapping of a cell read out at the camera that wrote it (and of a per-pixel readout): ``s = t = 0``,
#: Jacobian the identity.
IDENTITY_MAPPING = (0.0, 0.0, 1.0, 0.0, 0.0, 1.0)
#: Bound of every mapping entry (source cells, or source cells per target cell).
MAPPING_LIMIT = 4.0


def cell_mapping(
    positions: torch.Tensor, axes: torch.Tensor, index: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor
) -> torch.Tensor:
    """Where each readout cell samples the patch its winning point summarises, to first order.

    A point's patch is ``p + s a + t b`` with ``s, t`` in ``[-1/2, 1/2]`` source cells (``a, b``: its
    footprint half-axes, :func:`cell_axes`, so ``2a`` spans one source cell). The target cell centre
    ``c`` solves ``c = P + s A + t B`` with ``P`` the point's projection and ``A = 2 J a``, ``B = 2 J b``
    its projected cell axes (``J`` the projection's Jacobian at ``p``); its derivative per target cell
    is ``[A B]^-1``. A readout pastes the whole source cell at ``s = t = 0`` with the identity
    Jacobian; a model given this mapping can resample the patch instead (sub-cell shifts, zoom).
    Points with a degenerate footprint (zero axes, or one projecting to under 1/100 cell) get
    ``s, t`` = the centre's offset from ``P`` in target cells and the identity Jacobian.

    Args:
        positions: ``[N, 3]`` float32 world metres. axes: ``[N, 2, 3]`` footprint half-axes (metres).
        index: ``[F, h, w]`` int64 readout winners (-1: none). w2c: ``[F, 4, 4]`` the readout's cameras.
        K: ``[3, 3]`` intrinsics of the ``h x w`` grid.

    Returns:
        ``[F, 6, h, w]`` float32 ``(s, t, ds/dcol, ds/drow, dt/dcol, dt/drow)``, each clamped to
        ``+-MAPPING_LIMIT``; zeros where ``index`` is -1.
    """
    n_frames, h, w = index.shape
    device = index.device
    out = torch.zeros(n_frames, MAPPING_CHANNELS, h, w, dtype=torch.float32, device=device)
    if not len(positions):
        return out
    winner = index.clamp(min=0).view(n_frames, -1)
    p = positions.to(device, torch.float32)[winner]  # [F, hw, 3]
    ax = axes.to(device, torch.float32)[winner]  # [F, hw, 2, 3]
    w2c = w2c.to(device, torch.float32)
    KR = K.to(device, torch.float32) @ w2c[:, :3, :3]  # [F, 3, 3]
    hom = torch.einsum("fij,fnj->fni", KR, p) + (K.to(device, torch.float32) @ w2c[:, :3, 3:]).transpose(1, 2)
    z = hom[..., 2].clamp(min=1e-6)
    u, v = hom[..., 0] / z, hom[..., 1] / z
    axes_hom = 2.0 * torch.einsum("fij,fnkj->fnki", KR, ax)  # [F, hw, 2 (a, b), 3]
    du = (axes_hom[..., 0] - u[..., None] * axes_hom[..., 2]) / z[..., None]  # [F, hw, 2]: (A_u, B_u)
    dv = (axes_hom[..., 1] - v[..., None] * axes_hom[..., 2]) / z[..., None]  # (A_v, B_v)
    det = du[..., 0] * dv[..., 1] - du[..., 1] * dv[..., 0]
    rows = torch.arange(h, device=device, dtype=torch.float32) + 0.5
    cols = torch.arange(w, device=device, dtype=torch.float32) + 0.5
    dc = cols.repeat(h) - u  # [F, hw] target cells from P
    dr = rows.repeat_interleave(w) - v
    ok = det.abs() > 1e-4
    safe = torch.where(ok, det, torch.ones_like(det))
    # [s, t] = [A B]^-1 [dc, dr]; [A B] = [[A_u, B_u], [A_v, B_v]]
    inv = torch.stack([dv[..., 1], -du[..., 1], -dv[..., 0], du[..., 0]], dim=-1) / safe[..., None]
    s = inv[..., 0] * dc + inv[..., 1] * dr
    t = inv[..., 2] * dc + inv[..., 3] * dr
    identity = torch.tensor(IDENTITY_MAPPING[2:], device=device).expand_as(inv)
    mapping = torch.cat(
        [
            torch.where(ok, s, dc)[..., None],
            torch.where(ok, t, dr)[..., None],
            torch.where(ok[..., None], inv, identity),
        ],
        dim=-1,
    )  # [F, hw, 6]
    mapping = mapping.clamp(-MAPPING_LIMIT, MAPPING_LIMIT).nan_to_num(0.0)
    mapping = mapping.masked_fill(index.view(n_frames, -1, 1) < 0, 0.0)
    return mapping.permute(0, 2, 1).reshape(n_frames, MAPPING_CHANNELS, h, w).contiguous()
