"""Fixtures of the UI tests: a memory built from the bundled scene, temporary QSettings, GL detection,
and a main window on a fake controller (the window's own logic without a model).

pytest-xvfb starts an X server for the session, so Qt runs on ``xcb`` and OpenGL works through
Mesa; GL-dependent tests skip with the reason when no GL context can be made.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PySide6.QtCore import QCoreApplication, QSettings, Qt
from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext

from explorer.flight import step_segment
from explorer.worker import GenerationSignals, SceneInfo
from model.io.rgbd import SAMPLE_SCENE_DIR, load_rgbd_folder
from tests.sample_memory import memory_from_view
from ui.launch import LaunchOptions
from ui.main_window import MainWindow

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
    memory = memory_from_view(view)
    rng = np.random.default_rng(0)
    memory.rejected_positions = memory.positions[rng.choice(len(memory), 50, replace=False)] + 0.01
    memory.rejected_labels = torch.tensor([1] * 30 + [2] * 20, dtype=torch.uint8)
    return memory


class FakeController(GenerationSignals):
    """Stands in for :class:`explorer.worker.GenerationController`: the same signals, no model.

    Every request is appended to :attr:`requests` as ``(name, args)``; nothing is generated. Tests
    play the worker's part by emitting the signals, directly or through :meth:`open` and :meth:`finish_segment`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, tuple]] = []
        self.busy = False

    def calls(self, name: str) -> list[tuple]:
        """The arguments of every ``name`` request, in order."""
        return [args for kind, args in self.requests if kind == name]

    def _request(self, name: str, *args) -> None:
        self.requests.append((name, args))

    def load_backbone(self, *args) -> None:
        self._request("load_backbone", *args)

    def open_image(self, path, depth_path=None) -> None:
        self._request("open_image", str(path))

    def open_bundled(self) -> None:
        self._request("open_bundled")

    def continue_session(self, folder) -> None:
        self._request("continue_session", str(folder))

    def save_memory(self, path) -> None:
        self._request("save_memory", str(path))

    def start_recording(self, folder, fps: float = 16.0) -> None:
        self._request("start_recording", str(folder), fps)

    def stop_recording(self, branches=()) -> None:
        self._request("stop_recording", list(branches))

    def update_generation(self, prompt=None, **changes) -> None:
        self._request("update_generation", prompt, changes)

    def queue_segment(self, poses, action: str = "") -> str:
        self._request("queue_segment", torch.as_tensor(poses).clone(), action)
        return "queued"

    def cancel(self) -> None:
        self._request("cancel")

    def rewind(self, segments_done, keep_as=None) -> None:
        self._request("rewind", segments_done, keep_as)

    def switch_branch(self, name, keep_as=None) -> None:
        self._request("switch_branch", name, keep_as)

    def set_camera_path(self, camera_path) -> None:
        self._request("set_camera_path", camera_path)

    def shutdown(self, timeout_ms: int = 0) -> bool:
        self._request("shutdown")
        return True

    # ---- the worker's part -----------------------------------------------------------------

    @staticmethod
    def scene(prior_depth: bool = False, source: str = "bundled", height: int = 64, width: int = 128) -> SceneInfo:
        """A :class:`SceneInfo` as the worker sends it (a horizontal grey ramp, identity start pose)."""
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        image = np.repeat(np.broadcast_to(ramp, (height, width))[..., None], 3, axis=-1).astype(np.uint8)
        K = np.array([[100.0, 0.0, width / 2], [0.0, 100.0, height / 2], [0.0, 0.0, 1.0]])
        return SceneInfo(
            image=image,
            K=K,
            start_w2c=np.eye(4),
            depth=None,
            source=source,
            depth_source="prior" if prior_depth else "exact",
            k_source="default",
            prior_depth=prior_depth,
            segments_done=0,
            points=0,
            bytes=0,
            latent_stride=4,
        )

    def open(self, window, scene: SceneInfo) -> None:
        """Open ``scene`` in ``window`` the way the worker answers: model ready (first time only), scene ready, idle."""
        first = not self.calls("load_backbone")
        window.open_bundled()
        if first:
            self.backbone_ready.emit("fake backbone")
        self.scene_ready.emit(scene)
        self.idle.emit()

    def finish_segment(
        self, index: int, start_w2c, height: int = 64, width: int = 128, depth_source: str = "exact"
    ) -> SimpleNamespace:
        """Emit ``segment_ready`` (a step forward from ``start_w2c``, 33 flat frames) and ``idle``; returns the
        result.
        """
        poses = step_segment("step_forward", torch.as_tensor(start_w2c, dtype=torch.float64))
        frames = np.full((len(poses), height, width, 3), 40 + 5 * index, np.uint8)
        result = SimpleNamespace(
            index=index,
            frames=frames,
            w2c=poses,
            timings={"total": 1.0},
            depth_source=depth_source,
            depth_residual=None,
        )
        self.segment_ready.emit(result)
        self.idle.emit()
        return result


@pytest.fixture
def fake_controller(qapp):
    """A :class:`FakeController` (requests recorded, signals emitted by the test)."""
    return FakeController()


@pytest.fixture
def new_fake_window(qtbot, settings):
    """Makes shown main windows on a :class:`FakeController` (no model, nothing generated), all on
    the isolated QSettings of ``settings``: ``new_fake_window(controller=None) -> MainWindow``."""

    def make(controller: FakeController | None = None) -> MainWindow:
        window = MainWindow(
            settings,
            LaunchOptions(backend="tiny", height=64, width=128, fps=200.0),
            controller=controller or FakeController(),
        )
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=3000)
        return window

    return make


@pytest.fixture
def fake_window(new_fake_window, fake_controller):
    """A shown 1400x800 main window on ``fake_controller``."""
    window = new_fake_window(fake_controller)
    window.resize(1400, 800)
    return window
