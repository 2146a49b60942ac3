"""Files in and out: atomic output sets, images, RGB-D folders, MP4 video, camera files, versioned safetensors, model
folders.

Public names load on first use (:mod:`model._exports`)."""

from model._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)
