"""Baselines the latent memory is measured against (the pixel-space RGB point cloud), and the one place a memory kind
becomes a memory.

Public names load on first use (:mod:`model._exports`)."""

from model._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)
