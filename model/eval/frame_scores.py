"""Frames scored against exact renders, over the whole frame and split by what a memory covered.

The world benchmark (``main.py eval-world``) compares every generated frame with the exact render of
the same camera. Besides the whole frame it scores two complementary pixel sets: ``visible``, the
pixels of latent cells a memory covered (what the model could copy), and ``holes``, the rest (what it
had to make up). Images are ``[H, W, 3]`` uint8; PSNR in dB (peak 255), SSIM with
:func:`model.eval.metrics.ssim_map`'s window.
"""

from __future__ import annotations

import math

import numpy as np

from model.eval.metrics import mean_psnr, psnr, ssim_map

#: The per-frame scores of :func:`frame_scores`, in table order.
SCORES = ("psnr", "ssim", "psnr_visible", "psnr_holes", "ssim_visible", "ssim_holes", "visible_fraction")


def frame_scores(frame: np.ndarray, reference: np.ndarray, visible: np.ndarray) -> dict[str, float]:
    """PSNR / SSIM of one frame against its exact render, whole and split by ``visible``.

    Args:
        frame, reference: ``[H, W, 3]`` uint8.
        visible: ``[H, W]`` bool, True on pixels whose content a memory covered.

    Returns:
        :data:`SCORES`: ``psnr`` / ``ssim`` over all pixels, ``*_visible`` over ``visible``, ``*_holes``
        over the rest (NaN when that set is empty; ``inf`` PSNR for identical pixels), and
        ``visible_fraction`` (share of pixels in ``visible``). SSIM windows see the whole image; only
        the averaging is split.
    """
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != np.asarray(frame).shape[:2]:
        raise ValueError(f"visible: expected shape {list(np.asarray(frame).shape[:2])}, got {list(visible.shape)}")
    similarity = ssim_map(frame, reference)  # once; ssim(mask=...) would recompute it per pixel set
    return {
        "psnr": psnr(frame, reference),
        "ssim": float(similarity.mean()),
        "psnr_visible": psnr(frame, reference, visible),
        "psnr_holes": psnr(frame, reference, ~visible),
        "ssim_visible": float(similarity[visible].mean()) if visible.any() else math.nan,
        "ssim_holes": float(similarity[~visible].mean()) if not visible.all() else math.nan,
        "visible_fraction": float(visible.mean()),
    }


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each score over frames (or runs): PSNRs by :func:`model.eval.metrics.mean_psnr`
    (``inf`` clipped to 100 dB, NaN left out), the others over their finite values; NaN when none."""
    out = {}
    for key in rows[0] if rows else SCORES:
        values = [row[key] for row in rows if row.get(key) is not None]
        if key.startswith("psnr"):
            out[key] = mean_psnr(values)
        else:
            finite = [v for v in values if math.isfinite(v)]
            out[key] = float(np.mean(finite)) if finite else math.nan
    return out
