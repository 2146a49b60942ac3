"""Evaluation: consistency metrics and the procedural ground-truth worlds.

Public names are importable from here (``from model.eval import ...``); they load on first use."""

from model._exports import lazy_exports

_EXPORTS = {
    "ProceduralScene": "scenes",
    "SceneConfig": "scenes",
    "SceneRenderer": "scenes",
    "closed_loop_metrics": "metrics",
    "psnr": "metrics",
    "ssim": "metrics",
    "video_metrics": "metrics",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
