"""Depth of generated frames made to agree with the memory before it is written.

A depth model sees one generated frame at a time; its metric scale drifts from frame to frame and
never quite matches the scale of the memory, which was fixed by the photo's depth. Written as is,
every segment would add a second, slightly larger or smaller copy of the surfaces the memory
already holds. Two cases, both pure functions on tensors:

* **A depth model** (:func:`align_depth`): per frame, a robust fit of ``memory ~ scale * model``
  (``mode="scale"``, in log-depth: median of log-ratios, then Huber IRLS, then a trimmed refit on
  the inliers) or ``memory ~ scale * model + shift`` (``mode="affine"``, Huber IRLS on the relative
  error, then the same trimmed refit), on the cells where the memory's readout is visible and
  confident (:func:`model.memory.masks.confident_cells`) and that hold their point's own sample
  (:func:`landed_cells`: a footprint-covered cell reads the covering point's depth). A frame with fewer than
  :data:`MIN_FIT_CELLS` such cells takes the fit pooled over its segment (or, with none at all,
  keeps the model's depth). The aligned depth is the model's depth with each frame's fit applied at
  pixel resolution; visible cells whose aligned depth still departs from the readout's by more than
  ``tolerance`` (relative) plus the depth spread of the memory's surface there
  (:func:`model.memory.latent.depth_spread` of the readout: grazing surfaces) *disagree* and are
  not written (:attr:`model.memory.base.CellLabel.DISAGREE`).
* **No depth model** (:func:`anchor_to_readout`): the flat prior is no measurement, so generated
  frames never write it. Visible cells take the readout's depth (the memory's own surface: the view
  de-duplication then finds them known, so nothing is duplicated), and cells with no memory behind
  them are *unanchored* and not written (:attr:`model.memory.base.CellLabel.UNANCHORED`); they keep
  the prior's depth only so that the cache panel can draw where they would have gone. The price:
  content generated beyond the photo is not remembered.

Residuals are relative: the median over the fitted cells of ``|log(aligned / memory)|`` (0.05 is
about 5 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.memory.base import CellLabel
from model.memory.latent import depth_spread, downsample_depth

#: Fit modes: ``"scale"`` for metric models (per-frame scale), ``"affine"`` for models whose depth
#: is known only up to scale and shift.
ALIGNMENT_MODES = ("scale", "affine")
#: A visible cell whose aligned depth departs from the memory's by more than this (relative, plus
#: the cell's depth spread) disagrees with the memory and is not written.
DEFAULT_DISAGREE_TOLERANCE = 0.1
#: Fewest confident cells for a frame's own fit (below: the segment's pooled fit).
MIN_FIT_CELLS = 16
#: Huber threshold of the IRLS, in log-depth (scale) or relative error (affine): about 3 %.
HUBER_DELTA = 0.03
_IRLS_STEPS = 12
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class DepthFit:
    """One frame's fit ``memory ~ scale * model + shift``.

    Attributes:
        scale: dimensionless, > 0. shift: metres (0 in mode ``"scale"``).
        residual: median ``|log(aligned / memory)|`` over the fitted cells (relative), None when the
            frame had no cells of its own to fit on.
        cells: confident cells the frame offered (0: the fit was borrowed or is the identity).
    """

    scale: float
    shift: float
    residual: float | None
    cells: int

    def apply(self, depth: torch.Tensor) -> torch.Tensor:
        """``scale * depth + shift``, with results that are not positive set to ``+inf`` (invalid)."""
        aligned = depth * self.scale + self.shift
        return torch.where(torch.isfinite(aligned) & (aligned > 0), aligned, torch.inf)


IDENTITY = DepthFit(1.0, 0.0, None, 0)


@dataclass
class DepthAlignment:
    """The result of :func:`align_depth` for ``T`` frames.

    Attributes:
        depth: ``[T, H, W]`` float32 aligned depth in metres (``+inf`` invalid).
        disagree: ``[T, h, w]`` bool visible cells whose aligned depth departs from the memory.
        fits: one :class:`DepthFit` per frame.
        residual: the segment's relative residual (median over all fitted cells of all frames), None
            when no frame had cells to fit on.
    """

    depth: torch.Tensor
    disagree: torch.Tensor
    fits: list[DepthFit]
    residual: float | None


def _log_residual(pred: torch.Tensor, ref: torch.Tensor, fit: DepthFit) -> torch.Tensor:
    """``|log(aligned / ref)|`` per cell (``+inf`` where the aligned depth is invalid)."""
    return (torch.log(fit.apply(pred)) - torch.log(ref)).abs()


def _trimmed(errors: torch.Tensor) -> torch.Tensor:
    """Inliers of a fit: ``|error| <= max(3 sigma_MAD, 2 HUBER_DELTA)``."""
    sigma = _MAD_TO_SIGMA * errors.abs().median()
    return errors.abs() <= max(3.0 * float(sigma), 2.0 * HUBER_DELTA)


def _huber_weights(errors: torch.Tensor) -> torch.Tensor:
    return HUBER_DELTA / errors.abs().clamp(min=HUBER_DELTA)


def _fit_log_scale(pred: torch.Tensor, ref: torch.Tensor) -> float:
    """Robust ``log(scale)`` of ``ref ~ scale * pred``: median of log-ratios, Huber IRLS, trimmed mean."""
    ratios = torch.log(ref) - torch.log(pred)
    log_scale = ratios.median()
    for _ in range(_IRLS_STEPS):
        weights = _huber_weights(ratios - log_scale)
        log_scale = (weights * ratios).sum() / weights.sum()
    inliers = _trimmed(ratios - log_scale)
    return float(ratios[inliers].mean()) if inliers.any() else float(log_scale)


def _fit_affine(pred: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """Robust ``(scale, shift)`` of ``ref ~ scale * pred + shift``: relative-error Huber IRLS from the
    scale-only fit, then a trimmed weighted least-squares refit. Falls back to scale-only when the
    affine fit is degenerate (all cells at one depth) or its scale is not positive."""
    scale, shift = math.exp(_fit_log_scale(pred, ref)), 0.0
    design = torch.stack([pred, torch.ones_like(pred)], dim=1)  # [n, 2]

    def solve(weights: torch.Tensor) -> tuple[float, float] | None:
        w = weights / ref.square()  # relative error: (s * pred + t - ref) / ref
        normal = design.T @ (design * w[:, None])
        if torch.linalg.matrix_rank(normal.to(torch.float64)) < 2:
            return None
        solution = torch.linalg.solve(normal.to(torch.float64), (design.T @ (w * ref)).to(torch.float64))
        s, t = float(solution[0]), float(solution[1])
        return (s, t) if s > 0 and math.isfinite(s) and math.isfinite(t) else None

    for _ in range(_IRLS_STEPS):
        solved = solve(_huber_weights((scale * pred + shift - ref) / ref))
        if solved is None:
            return scale, shift
        scale, shift = solved
    inliers = _trimmed((scale * pred + shift - ref) / ref).to(pred.dtype)
    solved = solve(inliers) if inliers.sum() >= 2 else None
    return solved if solved is not None else (scale, shift)


def fit_depth(pred: torch.Tensor, ref: torch.Tensor, mode: str = "scale") -> DepthFit:
    """Robust fit of ``ref ~ scale * pred (+ shift)`` on paired cells (see the module docstring).

    Args:
        pred: ``[n]`` model depth in metres (> 0, finite). ref: ``[n]`` memory depth in metres (> 0, finite).
        mode: ``"scale"`` or ``"affine"``.

    Returns:
        :class:`DepthFit` with ``cells = n`` (the identity when ``n == 0``).
    """
    if mode not in ALIGNMENT_MODES:
        raise ValueError(f"alignment mode must be one of {ALIGNMENT_MODES}, got {mode!r}")
    pred, ref = pred.to(torch.float64).reshape(-1), ref.to(torch.float64).reshape(-1)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref: expected the same number of cells, got {pred.numel()} and {ref.numel()}")
    ok = torch.isfinite(pred) & (pred > 0) & torch.isfinite(ref) & (ref > 0)
    pred, ref = pred[ok], ref[ok]
    if not len(pred):
        return IDENTITY
    if mode == "scale":
        scale, shift = math.exp(_fit_log_scale(pred, ref)), 0.0
    else:
        scale, shift = _fit_affine(pred, ref)
    fit = DepthFit(scale, shift, None, len(pred))
    return DepthFit(scale, shift, float(_log_residual(pred, ref, fit).median()), len(pred))


def align_depth(
    depth: torch.Tensor,
    readout_depth: torch.Tensor,
    visible: torch.Tensor,
    confident: torch.Tensor,
    mode: str = "scale",
    tolerance: float = DEFAULT_DISAGREE_TOLERANCE,
) -> DepthAlignment:
    """Align a depth model's depth of ``T`` written frames to the memory (see the module docstring).

    Args:
        depth: ``[T, H, W]`` model depth in metres (invalid: non-finite or ``<= 0``).
        readout_depth: ``[T, h, w]`` the memory readout's depth at the same cameras, metres.
        visible: ``[T, h, w]`` bool cells where the readout shows a point.
        confident: ``[T, h, w]`` bool visible cells trusted for the fit
            (e.g. :func:`~model.memory.masks.confident_cells`).
        mode: ``"scale"`` or ``"affine"``. tolerance: relative depth difference beyond which a visible
            cell disagrees with the memory (plus the readout's depth spread at the cell).

    Returns:
        :class:`DepthAlignment`.
    """
    depth = torch.as_tensor(depth).to(torch.float32)
    readout_depth = torch.as_tensor(readout_depth).to(depth.device, torch.float32)
    visible = torch.as_tensor(visible).to(depth.device, torch.bool)
    confident = torch.as_tensor(confident).to(depth.device, torch.bool) & visible
    if depth.ndim != 3 or readout_depth.ndim != 3 or readout_depth.shape[0] != depth.shape[0]:
        raise ValueError(
            f"depth and readout_depth: expected [T,H,W] and [T,h,w], got {list(depth.shape)} and "
            f"{list(readout_depth.shape)}"
        )
    if visible.shape != readout_depth.shape or confident.shape != readout_depth.shape:
        raise ValueError(f"visible and confident: expected {list(readout_depth.shape)}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    n_frames, h, w = readout_depth.shape
    cells = downsample_depth(depth, h, w)
    usable = confident & torch.isfinite(cells) & (readout_depth > 0)
    fits = [fit_depth(cells[t][usable[t]], readout_depth[t][usable[t]], mode) for t in range(n_frames)]
    if any(f.cells < MIN_FIT_CELLS for f in fits):
        pooled = fit_depth(cells[usable], readout_depth[usable], mode)
        if pooled.cells >= MIN_FIT_CELLS:
            fits = [f if f.cells >= MIN_FIT_CELLS else DepthFit(pooled.scale, pooled.shift, None, 0) for f in fits]
        else:
            fits = [IDENTITY] * n_frames
    aligned = torch.stack([fit.apply(depth[t]) for t, fit in enumerate(fits)])
    aligned_cells = downsample_depth(aligned, h, w)
    gap = (aligned_cells - readout_depth).abs()
    spread = depth_spread(torch.where(visible, readout_depth, torch.inf))  # the memory's surface, not the model's
    disagree = visible & torch.isfinite(aligned_cells) & (gap > tolerance * readout_depth + spread)
    residuals = [
        (torch.log(aligned_cells[t][usable[t]]) - torch.log(readout_depth[t][usable[t]])).abs()
        for t, fit in enumerate(fits)
        if fit.residual is not None
    ]
    pooled_residuals = torch.cat(residuals) if residuals else torch.zeros(0)
    pooled_residuals = pooled_residuals[torch.isfinite(pooled_residuals)]
    residual = float(pooled_residuals.median()) if len(pooled_residuals) else None
    return DepthAlignment(aligned, disagree, fits, residual)


def landed_cells(positions: torch.Tensor, index: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Readout cells whose winning point projects into the cell itself, not only covers it with its footprint.

    A footprint (:mod:`model.memory.footprint`) spreads one point's depth over the cells around it;
    where the surface recedes (a floor, a wall seen at an angle) and footprints overlap, the nearest
    one wins, so footprint-covered cells read nearer than the surface at their centre. The
    point's own cell holds its true depth to within a cell: only those cells are fitted on.

    Args:
        positions: ``[N, 3]`` world metres of the memory's points. index: ``[F, h, w]`` int64 readout
            winners (-1: none). w2c: ``[F, 4, 4]`` the readout's cameras. K: ``[3, 3]`` intrinsics of the
            ``h x w`` grid.

    Returns:
        ``[F, h, w]`` bool.
    """
    n_frames, h, w = index.shape
    if not len(positions):
        return torch.zeros(n_frames, h, w, dtype=torch.bool)
    points = positions.detach().to("cpu", torch.float64)[index.cpu().clamp(min=0)]  # [F, h, w, 3]
    w2c = torch.as_tensor(w2c).to("cpu", torch.float64)
    cam = torch.einsum("fij,fhwj->fhwi", w2c[:, :3, :3], points) + w2c[:, None, None, :3, 3]
    K = torch.as_tensor(K).to("cpu", torch.float64)
    z = cam[..., 2].clamp(min=1e-9)
    col = torch.floor(K[0, 0] * cam[..., 0] / z + K[0, 2])
    row = torch.floor(K[1, 1] * cam[..., 1] / z + K[1, 2])
    return (index.cpu() >= 0) & (col == torch.arange(w)) & (row == torch.arange(h)[:, None])


def anchor_to_readout(
    prior_depth: torch.Tensor, readout_depth: torch.Tensor, visible: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth for frames written without a depth model: the memory's own depth where it shows a point.

    Args:
        prior_depth: ``[T, H, W]`` the flat prior's depth in metres (``H, W`` multiples of ``h, w``);
            kept, for display only, in the cells the memory does not show.
        readout_depth: ``[T, h, w]`` the readout's depth in metres. visible: ``[T, h, w]`` bool.

    Returns:
        depth: ``[T, H, W]`` float32 metres, constant over each cell's pixel block (so that
        :func:`~model.memory.latent.downsample_depth` gives back exactly the cell's depth): the
        readout's where visible, the prior's cell depth elsewhere.
        unanchored: ``[T, h, w]`` bool cells with no memory behind them (never to be written).
    """
    prior_depth = torch.as_tensor(prior_depth).to(torch.float32)
    visible = torch.as_tensor(visible).to(prior_depth.device, torch.bool)
    readout_depth = torch.as_tensor(readout_depth).to(prior_depth.device, torch.float32)
    n_frames, height, width = prior_depth.shape
    h, w = readout_depth.shape[-2:]
    if readout_depth.shape != (n_frames, h, w) or visible.shape != readout_depth.shape:
        raise ValueError(
            f"readout_depth and visible: expected [{n_frames},h,w], got {list(readout_depth.shape)} and "
            f"{list(visible.shape)}"
        )
    if height % h or width % w:
        raise ValueError(f"depth {height}x{width} is not a whole number of {h}x{w} cells")
    cells = torch.where(visible, readout_depth, downsample_depth(prior_depth, h, w))
    pixels = F.interpolate(cells[:, None], size=(height, width), mode="nearest")[:, 0]
    return pixels, ~visible


def reject_cells(keep: torch.Tensor, labels: torch.Tensor, cells: torch.Tensor, label: CellLabel) -> None:
    """Relabel kept (STATIC) ``cells`` as ``label`` and drop them from ``keep``, in place.

    Cells already rejected for another reason (dynamic, sky, invalid) keep that label.

    Args:
        keep: ``[T, h, w]`` bool. labels: ``[T, h, w]`` uint8 :class:`CellLabel`. cells: ``[T, h, w]`` bool.
    """
    hit = keep & cells.to(keep.device, torch.bool)
    labels[hit] = int(label)
    keep &= ~hit
