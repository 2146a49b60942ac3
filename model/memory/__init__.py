"""The latent spatial memory: the :class:`SpatialMemory` protocol, the latent memory and its write masks.

Public names are importable from here (``from model.memory import ...``); they load on first use."""

from model._exports import lazy_exports

_EXPORTS = {
    "CellLabel": "latent",
    "LatentSpatialMemory": "latent",
    "MEMORY_KINDS": "base",
    "MemoryConfig": "base",
    "MemoryStats": "base",
    "Readout": "base",
    "SemanticSkySegmenter": "masks",
    "SpatialMemory": "base",
    "dynamic_mask": "masks",
    "sky_mask": "masks",
    "write_masks": "masks",
    "zbuffer_project": "latent",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
