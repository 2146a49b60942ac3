"""Scoring a ``generate`` run against ground truth, where it exists: runs of a procedural room (the
bundled sample scene or a ``scene_seed``) are compared with exact renders of that room at the run's
own poses and intrinsics. Photos have no ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from explorer.evaluate import load_run
from explorer.scene_inputs import ground_truth_scene
from model.eval.metrics import mean_psnr, psnr, ssim
from model.eval.scenes import SceneRenderer


def truth_metrics(video: str | Path) -> dict | None:
    """PSNR / SSIM of a run's generated frames (1..N-1; frame 0 is the input view) against exact renders.

    Returns:
        ``{"psnr_db": mean over frames, "ssim": mean, "frames": N - 1}``, or None for a photo run.

    Raises:
        ValueError: the run's files are missing or disagree (:func:`explorer.evaluate.load_run`).
    """
    run = load_run(video)
    settings = run.report.get("settings", {})
    scene = ground_truth_scene(settings.get("image"), settings.get("scene_seed"))
    if scene is None:
        return None
    height, width = run.frames.shape[1:3]
    psnrs, ssims = [], []
    with SceneRenderer() as renderer:
        for frame, w2c in zip(run.frames[1:], run.w2c[1:], strict=True):
            truth = renderer.render(scene, w2c, run.K, width, height)[0]
            psnrs.append(psnr(frame, truth))
            ssims.append(ssim(frame, truth))
    return {"psnr_db": mean_psnr(psnrs), "ssim": float(np.mean(ssims)), "frames": len(psnrs)}
