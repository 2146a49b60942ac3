"""Headless OpenGL shared by every offscreen renderer (procedural scenes, memory preview, RGB splats).

One place owns the moderngl context life cycle: an EGL context (no display needed; Mesa llvmpipe on
CPU machines, the GPU driver elsewhere), a framebuffer that is reused while its size stays the same,
and release in the right order. Several contexts live in one process, so every draw must make its
own context current first: ``with self._ctx:``.
"""

from __future__ import annotations

import moderngl


class OffscreenGL:
    """Base of headless renderers: a moderngl EGL context and one reusable framebuffer.

    Subclasses set :attr:`COLOR_ATTACHMENTS`, build their programs after ``super().__init__()``
    (inside ``with self._ctx:``), release their own GL objects in :meth:`_release_gl`, and get
    ``close()`` / context-manager support. A depth renderbuffer is always attached.
    """

    #: ``(components, dtype)`` of each colour attachment, e.g. ``(4, "f1")`` RGBA8, ``(1, "f4")`` R32F.
    COLOR_ATTACHMENTS: tuple[tuple[int, str], ...] = ((4, "f1"),)

    def __init__(self) -> None:
        self._ctx: moderngl.Context | None = moderngl.create_standalone_context(backend="egl", require=330)
        self._fbo: moderngl.Framebuffer | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._ctx is None

    def close(self) -> None:
        """Release every GL object and the context. Safe to call twice."""
        if self._ctx is None:
            return
        with self._ctx:
            self._release_gl()
            self._release_framebuffer()
        self._ctx.release()
        self._ctx = None

    def _release_gl(self) -> None:
        """Release the subclass's programs, buffers and vertex arrays (the context is current)."""

    def _framebuffer(self, width: int, height: int) -> moderngl.Framebuffer:
        """The ``width x height`` framebuffer, created on first use and when the size changes."""
        if self._fbo is None or self._fbo.size != (width, height):
            self._release_framebuffer()
            size = (width, height)
            colours = [
                self._ctx.renderbuffer(size, components, dtype=dtype) for components, dtype in self.COLOR_ATTACHMENTS
            ]
            self._fbo = self._ctx.framebuffer(colours, self._ctx.depth_renderbuffer(size))
        return self._fbo

    def _release_framebuffer(self) -> None:
        if self._fbo is not None:
            for attachment in (*self._fbo.color_attachments, self._fbo.depth_attachment):
                attachment.release()
            self._fbo.release()
            self._fbo = None
