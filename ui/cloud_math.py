"""Numpy helpers of the latent-cache view: display axes, decimation, colour modes, frustums, picking.

Qt-free so they are testable alone. Conventions:

- Memory positions are in the OpenCV world frame (x right, y down, z forward, metres). The 3D view
  (pyqtgraph's orbit camera) is Z-up, so points are shown at ``(x, z, -y)``: a proper rotation
  (determinant +1), forward becomes the view's +Y and "up" (-y) becomes +Z.
- Colours are float ``[N, 4]`` RGBA in ``0..1``, what ``GLScatterPlotItem.setData(color=...)`` takes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from model.memory.latent import CellLabel

# RGBA per CellLabel: written (static) points, and the last write's rejected cells.
LABEL_COLORS = {
    CellLabel.STATIC: (0.35, 0.78, 0.38, 1.0),
    CellLabel.DYNAMIC: (1.0, 0.45, 0.1, 1.0),
    CellLabel.SKY: (0.45, 0.75, 1.0, 1.0),
    CellLabel.INVALID: (0.85, 0.25, 0.85, 1.0),
    CellLabel.DISAGREE: (0.95, 0.2, 0.2, 1.0),
    CellLabel.UNANCHORED: (0.6, 0.6, 0.6, 1.0),
}
PCA_SAMPLE = 20_000  # rows of the feature matrix the PCA basis is fitted on


def to_display(points_cv: np.ndarray) -> np.ndarray:
    """OpenCV world ``[N, 3]`` -> Z-up display ``[N, 3]`` float32: ``(x, y, z) -> (x, z, -y)``."""
    points_cv = np.asarray(points_cv, dtype=np.float32).reshape(-1, 3)
    return np.stack([points_cv[:, 0], points_cv[:, 2], -points_cv[:, 1]], axis=1)


def decimate_index(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` points with a fixed stride (deterministic).

    Example:
        >>> decimate_index(10, 4).tolist()
        [0, 3, 6, 9]
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    stride = max(1, math.ceil(n / max_points))
    return np.arange(0, n, stride, dtype=np.int64)


def rgb_colors(colors_u8: np.ndarray) -> np.ndarray:
    """Display colours ``[N, 3]`` uint8 -> ``[N, 4]`` float RGBA."""
    colors = np.asarray(colors_u8, dtype=np.float32).reshape(-1, 3) / 255.0
    return np.concatenate([colors, np.ones((len(colors), 1), np.float32)], axis=1)


def pca_colors(features: np.ndarray, sample: int = PCA_SAMPLE) -> np.ndarray:
    """The first three principal components of latent features as colours ``[N, 4]``.

    The basis is fitted (SVD) on a deterministic strided subsample of at most ``sample`` rows; each
    component's sign is fixed so its largest loading is positive, and it is mapped to ``0..1``
    between its 1st and 99th percentile on the subsample (clipped), so the colours do not flicker
    between calls on the same data.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32).reshape(len(features), -1)
    if len(x) == 0:
        return np.zeros((0, 4), np.float32)
    fit = x[decimate_index(len(x), sample)]
    mean = fit.mean(dim=0)
    _, _, vh = torch.linalg.svd(fit - mean, full_matrices=False)
    basis = vh[:3]  # [k, C], k = min(3, rows, C)
    basis = basis * torch.sign(basis.gather(1, basis.abs().argmax(dim=1, keepdim=True)))
    proj_fit = (fit - mean) @ basis.T
    lo, hi = torch.quantile(proj_fit, 0.01, dim=0), torch.quantile(proj_fit, 0.99, dim=0)
    proj = ((x - mean) @ basis.T - lo) / torch.clamp(hi - lo, min=1e-6)
    rgb = torch.full((len(x), 3), 0.5)
    rgb[:, : proj.shape[1]] = proj.clamp(0.0, 1.0)
    return np.concatenate([rgb.numpy(), np.ones((len(x), 1), np.float32)], axis=1)


def provenance_colors(segments: np.ndarray) -> np.ndarray:
    """Segment numbers ``[N]`` -> colours ``[N, 4]`` along the viridis colormap (first -> last segment)."""
    import pyqtgraph as pg

    segments = np.asarray(segments).reshape(-1)
    if len(segments) == 0:
        return np.zeros((0, 4), np.float32)
    lo, hi = int(segments.min()), int(segments.max())
    t = (segments - lo) / max(hi - lo, 1)
    return pg.colormap.get("viridis").map(t.astype(np.float64), mode="float").astype(np.float32)


def label_colors(labels: np.ndarray) -> np.ndarray:
    """:class:`~model.memory.latent.CellLabel` values ``[N]`` -> colours ``[N, 4]``."""
    table = np.array([LABEL_COLORS[label] for label in CellLabel], dtype=np.float32)
    return table[np.asarray(labels, dtype=np.int64).reshape(-1)]


def frustum_lines(w2c: np.ndarray, K: np.ndarray, width: int, height: int, depth: float) -> np.ndarray:
    """Wireframe pyramids of cameras as line-segment endpoints in display axes.

    Args:
        w2c: ``[T, 4, 4]`` (or ``[4, 4]``) world-to-camera poses. K: ``[3, 3]`` pixels of ``width x height``.
        depth: distance of the drawn image plane from the camera centre, metres.

    Returns:
        ``[T * 16, 3]`` float32 pairs of points (``GLLinePlotItem(mode="lines")``): four edges from
        the centre to the image-plane corners and the four edges of the image rectangle per camera.
    """
    w2c = np.asarray(w2c, dtype=np.float64).reshape(-1, 4, 4)
    corners_px = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
    corners_cam = (np.linalg.inv(np.asarray(K, dtype=np.float64)) @ corners_px.T).T * depth  # [4, 3]
    c2w = np.linalg.inv(w2c)
    centres = c2w[:, :3, 3]  # [T, 3]
    corners = np.einsum("tij,kj->tki", c2w[:, :3, :3], corners_cam) + centres[:, None]  # [T, 4, 3]
    rim = np.roll(corners, -1, axis=1)
    spokes = np.stack([np.repeat(centres[:, None], 4, axis=1), corners], axis=2)  # [T, 4, 2, 3]
    edges = np.stack([corners, rim], axis=2)
    return to_display(np.concatenate([spokes, edges], axis=1).reshape(-1, 3))


def project_to_screen(
    points: np.ndarray, mvp: np.ndarray, width: float, height: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project display points with an OpenGL model-view-projection matrix onto a ``width x height`` view.

    Returns:
        ``xy [N, 2]`` screen pixels (origin top-left, y down), ``depth [N]`` NDC depth, and
        ``inside [N]`` bool (in front of the camera and within the clip volume).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    clip = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.asarray(mvp, dtype=np.float64).T
    w = clip[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        ndc = clip[:, :3] / w[:, None]
    inside = (w > 0) & np.all(np.abs(ndc) <= 1.0, axis=1)
    xy = np.stack([(ndc[:, 0] + 1.0) * 0.5 * width, (1.0 - ndc[:, 1]) * 0.5 * height], axis=1)
    return xy, ndc[:, 2], inside


def pick_nearest(
    xy: np.ndarray, depth: np.ndarray, inside: np.ndarray, click: tuple[float, float], radius_px: float
) -> int | None:
    """Index of the projected point nearest to ``click`` in screen space, or None beyond ``radius_px``.

    Ties in screen distance (points stacked behind each other) go to the nearer one (smaller depth).
    """
    if not inside.any():
        return None
    candidates = np.flatnonzero(inside)
    dist = np.hypot(xy[candidates, 0] - click[0], xy[candidates, 1] - click[1])
    order = np.lexsort((depth[candidates], np.round(dist, 3)))
    best = candidates[order[0]]
    return int(best) if dist[order[0]] <= radius_px else None


def label_counts(labels: np.ndarray, positions: np.ndarray, stored: int) -> dict[CellLabel, tuple[int, int]]:
    """Per :class:`CellLabel`: ``(cells, cells without a position)``.

    Args:
        labels: ``[M]`` labels of the last write's rejected cells. positions: ``[M, 3]`` their positions
            (NaN rows: no depth). stored: points in the memory (all static, all placed).
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    placed = np.isfinite(np.asarray(positions, dtype=np.float64).reshape(-1, 3)).all(axis=1)
    counts = {CellLabel.STATIC: (int(stored), 0)}
    for label in CellLabel:
        if label is not CellLabel.STATIC:
            mine = labels == int(label)
            counts[label] = (int(mine.sum()), int((mine & ~placed).sum()))
    return counts


def legend_entries(
    mode: str, segments: np.ndarray | None = None
) -> list[tuple[str, tuple[float, float, float, float]]]:
    """What the colours of colour ``mode`` mean: ``[(text, rgba 0..1)]`` (rejected cells always use label colours).

    ``rgb``: one entry (the image colour); ``pca``: the three components; ``labels``: one per label;
    ``provenance``: the first, middle and last segment of ``segments`` on the viridis scale.
    """
    if mode == "rgb":
        return [("colour of the image patch the point was lifted from", (0.8, 0.8, 0.8, 1.0))]
    if mode == "pca":
        return [
            ("red: 1st principal component of the latent", (1.0, 0.2, 0.2, 1.0)),
            ("green: 2nd component", (0.2, 1.0, 0.2, 1.0)),
            ("blue: 3rd component", (0.3, 0.4, 1.0, 1.0)),
        ]
    if mode == "labels":
        return [(label.name.lower(), LABEL_COLORS[label]) for label in CellLabel]
    if mode == "provenance":
        segments = np.asarray(segments if segments is not None else [], dtype=np.int64).reshape(-1)
        if len(segments) == 0:
            return []
        lo, hi = int(segments.min()), int(segments.max())
        shown = sorted({lo, (lo + hi) // 2, hi})
        colors = provenance_colors(np.array([lo, hi, *shown]))[2:]  # lo and hi fix the scale
        names = [f"segment {s}" + (" (the photo)" if s == 0 else "") for s in shown]
        return [(name, tuple(c.tolist())) for name, c in zip(names, colors, strict=True)]
    raise ValueError(f"unknown colour mode {mode!r}")


def orbit_through(w2c: np.ndarray, K: np.ndarray, width: int, distance: float = 1.0) -> dict:
    """Orbit-camera parameters (pyqtgraph ``GLViewWidget``, Euler mode) that look through a camera.

    Args:
        w2c: ``[4, 4]`` world-to-camera pose (OpenCV axes). K: ``[3, 3]`` pixels; width: image width, pixels.
        distance: orbit distance; the orbit centre is this far ahead, so the eye sits at the camera centre.

    Returns:
        ``{"center": [3] display axes, "distance", "elevation", "azimuth" (degrees), "fov"}``;
        ``fov`` is the horizontal field of view in degrees (what the view's projection uses).
    """
    c2w = np.linalg.inv(np.asarray(w2c, dtype=np.float64))
    eye = to_display(c2w[:3, 3])[0].astype(np.float64)
    forward = to_display(c2w[:3, 2])[0].astype(np.float64)
    forward /= np.linalg.norm(forward)
    back = -forward  # from the orbit centre towards the eye
    elevation = math.degrees(math.asin(float(np.clip(back[2], -1.0, 1.0))))
    azimuth = math.degrees(math.atan2(back[1], back[0]))
    fov = math.degrees(2.0 * math.atan(width / (2.0 * float(np.asarray(K)[0, 0]))))
    return {
        "center": eye + distance * forward,
        "distance": float(distance),
        "elevation": elevation,
        "azimuth": azimuth,
        "fov": fov,
    }
