"""Baselines the latent memory is measured against (the pixel-space RGB point cloud), and the one place a memory kind
becomes a memory.

Public names are importable from here (``from model.baselines import ...``); they load on first use."""

from model._exports import lazy_exports

_EXPORTS = {
    "RGBPointCloudMemory": "rgb_memory",
    "load_memory": "kinds",
    "make_memory": "kinds",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
