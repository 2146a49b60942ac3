"""Offscreen OpenGL (moderngl on EGL, no display).

Public names load on first use (:mod:`model._exports`)."""

from model._exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)
