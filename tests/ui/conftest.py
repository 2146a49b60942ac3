"""Fixtures of the UI tests: a memory built from the bundled scene, temporary QSettings, GL detection.

pytest-xvfb starts an X server for the session, so Qt runs on ``xcb`` and OpenGL works through
Mesa; GL-dependent tests skip with the reason when no GL context can be made.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QCoreApplication, QSettings, Qt
from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext

from model.frames import frames_to_tensor
from model.memory import LatentSpatialMemory
from model.patch_vae import PatchVAE
from model.rgbd_io import SAMPLE_SCENE_DIR, load_rgbd_folder

# as ui.app.run does: pyqtgraph shares one shader program between all GL widgets (set before the
# QApplication exists; pytest-qt creates it lazily)
QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)


def gl_context_problem() -> str | None:
    """Why no OpenGL context can be created here (None when one can)."""
    if QGuiApplication.platformName() == "offscreen":
        return "Qt platform 'offscreen' has no OpenGL widgets (run under Xvfb / a display)"
    surface = QOffscreenSurface()
    surface.create()
    context = QOpenGLContext()
    if not context.create() or not context.makeCurrent(surface):
        return "no OpenGL context could be created on this display"
    context.doneCurrent()
    return None


@pytest.fixture
def needs_gl(qapp):
    """Skip the test (with the reason) when OpenGL widgets cannot work."""
    problem = gl_context_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def settings(tmp_path):
    """A QSettings in an INI file under ``tmp_path`` (never the user's configuration)."""
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture(scope="session")
def sample_view():
    """The bundled RGB-D sample view."""
    return load_rgbd_folder(SAMPLE_SCENE_DIR)


@pytest.fixture(scope="session")
def sample_memory(sample_view):
    """A memory lifted from the bundled view with exact 4x4 pixel-patch features (plus a fake rejected write)."""
    view = sample_view
    memory = LatentSpatialMemory()
    memory.initialize(PatchVAE().encode(frames_to_tensor(view.image))[0], torch.from_numpy(view.depth.copy()), torch.from_numpy(view.K.copy()), torch.from_numpy(view.w2c.copy()), image=torch.from_numpy(view.image.copy()))
    rng = np.random.default_rng(0)
    memory.rejected_positions = memory.positions[rng.choice(len(memory), 50, replace=False)] + 0.01
    memory.rejected_labels = torch.tensor([1] * 30 + [2] * 20, dtype=torch.uint8)
    return memory
