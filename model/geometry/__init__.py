"""Cameras (OpenCV axes, ``w2c`` poses, pixel ``K``), rotations and camera paths.

Public names load on first use (:mod:`model._exports`)."""

from model._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)
