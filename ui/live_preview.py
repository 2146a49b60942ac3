"""The live preview: the latent memory rendered at the camera's pose, shown in the viewport at once
while the camera moves (generated frames come later, from the worker thread).

The renderer (:class:`~explorer.preview.MemoryPreviewRenderer`) draws in this (the GUI) thread through
its own EGL context; without offscreen OpenGL the app works without the preview and the viewport's
banner says so.
"""

from __future__ import annotations

import numpy as np
import torch
from PySide6.QtGui import QOpenGLContext

from explorer.preview import MemoryPreviewRenderer
from explorer.worker import SceneInfo
from model.geometry.camera import scale_intrinsics
from ui.viewport import Viewport

PREVIEW_MAX_WIDTH = 640  # preview renders at the generation size, at most this wide


class LivePreview:
    """The memory preview of the main window's viewport (the renderer is made on first use).

    Args:
        viewport: where the preview shows, and whose banner warns when there is none.
    """

    def __init__(self, viewport: Viewport) -> None:
        self.viewport = viewport
        self._renderer: MemoryPreviewRenderer | bool | None = None  # False: no offscreen OpenGL here

    def renderer(self) -> MemoryPreviewRenderer | None:
        """The preview renderer, with no Qt OpenGL context current.

        The preview draws through its own EGL context; with a Qt (GLX) context still current in this
        thread, Mesa's dispatch crashed in ``glDrawElements`` (seen under Xvfb/llvmpipe). Qt makes
        its context current again whenever it paints.
        """
        current = QOpenGLContext.currentContext()
        if current is not None:
            current.doneCurrent()
        if self._renderer is None:
            try:
                self._renderer = MemoryPreviewRenderer()
            except Exception as error:  # noqa: BLE001 (no EGL: the app works without the preview)
                self.viewport.set_warning("preview", f"Preview unavailable (no offscreen OpenGL): {error}")
                self._renderer = False
        return self._renderer or None

    def set_scene(self, scene: SceneInfo) -> None:
        """A new scene: splats cover its latent cells (``cell_angle_rad = stride / f_generation``)."""
        renderer = self.renderer()
        if renderer is not None:
            renderer.cell_angle_rad = scene.latent_stride / float(scene.K[0, 0])

    def set_points(self, snapshot) -> bool:
        """Preview the points of a memory snapshot; whether there was a renderer and points to show."""
        renderer = self.renderer()
        if renderer is None or not len(snapshot.positions):
            return False
        renderer.set_points(snapshot.positions, snapshot.colors, snapshot.footprint_m, snapshot.axes)
        return True

    def render(self, w2c: np.ndarray, scene: SceneInfo | None) -> None:
        """Show the memory seen from ``w2c`` with ``scene``'s intrinsics, at most :data:`PREVIEW_MAX_WIDTH` wide."""
        renderer = self.renderer()
        if renderer is None or scene is None:
            return
        height, width = np.asarray(scene.image).shape[:2]
        scale = min(1.0, PREVIEW_MAX_WIDTH / width)
        size = (max(2, round(height * scale)), max(2, round(width * scale)))
        K = scale_intrinsics(torch.as_tensor(np.asarray(scene.K), dtype=torch.float64), (height, width), size)
        self.viewport.set_live(renderer.render(w2c, K, size[1], size[0]))

    def close(self) -> None:
        """Free the renderer's context (when one was made)."""
        if self._renderer:
            self.renderer().close()
        self._renderer = None
