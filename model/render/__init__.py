"""Offscreen OpenGL (moderngl on EGL, no display).

Public names are importable from here (``from model.render import ...``); they load on first use."""

from model._exports import lazy_exports

_EXPORTS = {
    "OffscreenGL": "offscreen_gl",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
