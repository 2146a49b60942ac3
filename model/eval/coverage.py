"""Coverage of a memory readout against the surfaces the memory holds (exact ground truth from depth).

A memory built from RGB-D views holds the surfaces those depth maps describe. Lifting every valid
depth *pixel* (full resolution, far denser than the memory's latent cells) and projecting it into a
target camera marks the grid cells those surfaces truly cover there (:func:`surface_cells`); a
crack-free readout fills those cells and no others (:func:`coverage_stats`). Occlusion plays no part:
a cell is covered when any surface lies in it.
"""

from __future__ import annotations

import torch

from model.geometry.camera import invert_pose, unproject_depth


def surface_cells(
    depth: torch.Tensor,
    K: torch.Tensor,
    w2c: torch.Tensor,
    targets: torch.Tensor,
    K_grid: torch.Tensor,
    h: int,
    w: int,
    near: float = 0.05,
    cells: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cells of ``F`` target grids where the surfaces of depth maps project.

    Args:
        depth: ``[T, H, W]`` z-depth in metres (invalid: non-finite or ``<= 0``).
        K: ``[3, 3]`` intrinsics in pixels of ``H x W``. w2c: ``[T, 4, 4]`` poses of the depth maps.
        targets: ``[F, 4, 4]`` target poses. K_grid: ``[3, 3]`` intrinsics of the ``h x w`` target grid.
        near: metres; surface points nearer than this to a target camera are not counted (the readout's near plane).
        cells: optional ``[T, hc, wc]`` bool, the latent cells of the depth maps the memory holds
            (``H, W`` multiples of ``hc, wc``): only the pixels of those cells count (the surfaces
            *the memory* holds, not those it dropped at invalid depth).

    Returns:
        ``[F, h, w]`` bool, True where at least one valid depth pixel projects.
    """
    depth = torch.as_tensor(depth, dtype=torch.float64)
    valid = torch.isfinite(depth) & (depth > 0)
    if cells is not None:
        sy, sx = depth.shape[1] // cells.shape[1], depth.shape[2] // cells.shape[2]
        valid &= cells.cpu().bool().repeat_interleave(sy, 1).repeat_interleave(sx, 2)
    c2w = invert_pose(torch.as_tensor(w2c, dtype=torch.float64))
    K = torch.as_tensor(K, dtype=torch.float64).expand(depth.shape[0], 3, 3)
    points = unproject_depth(torch.where(valid, depth, 1.0), K, c2w)[valid]  # [P, 3]
    targets = torch.as_tensor(targets, dtype=torch.float64)
    P = torch.as_tensor(K_grid, dtype=torch.float64) @ targets[:, :3, :]  # [F, 3, 4]
    out = torch.zeros(targets.shape[0], h * w, dtype=torch.bool)
    for f in range(targets.shape[0]):
        hom = points @ P[f, :, :3].T + P[f, :, 3]
        z = hom[:, 2]
        u, v = hom[:, 0] / z.clamp(min=near), hom[:, 1] / z.clamp(min=near)
        inside = (z > near) & (u >= 0) & (v >= 0) & (u < w) & (v < h)
        cells = v[inside].to(torch.int64).clamp(max=h - 1) * w + u[inside].to(torch.int64).clamp(max=w - 1)
        out[f, cells] = True
    return out.view(-1, h, w)


def coverage_stats(visible: torch.Tensor, surfaces: torch.Tensor) -> dict[str, float]:
    """How a readout's visible cells compare with the surfaces' cells (both ``[F, h, w]`` bool).

    Returns:
        ``readout``: fraction of the grid the readout fills; ``surfaces``: fraction the surfaces
        cover; ``ratio``: ``readout & surfaces`` over ``surfaces`` (1.0 = every surface cell filled);
        ``over``: fraction of the grid filled where no surface projects.
    """
    visible, surfaces = visible.cpu().bool(), surfaces.cpu().bool()
    n_surface = int(surfaces.sum())
    return {
        "readout": float(visible.float().mean()),
        "surfaces": float(surfaces.float().mean()),
        "ratio": float((visible & surfaces).sum()) / n_surface if n_surface else 1.0,
        "over": float((visible & ~surfaces).float().mean()),
    }
