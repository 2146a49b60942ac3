"""The explorer's main window: viewport in the centre, controls on the left, the latent-cache panel
on the right, menus, drag-and-drop of photos and session folders, the on-canvas and status-bar HUD.

Wiring (everything heavy runs in :class:`explorer.worker.GenerationController`'s thread):

* a 60 Hz :class:`QTimer` ticks the :class:`~explorer.fly_camera.FlyCamera`; when the pose changed
  the preview (:class:`ui.live_preview.LivePreview`, in this thread: it owns a GL context)
  renders the memory at the new pose and the viewport shows it at once;
* free flight records every moved pose into a :class:`~explorer.flight.FlightPath`; when it is
  ``ready()`` (or on Space / Generate) its segment is queued on the controller; steps mode queues
  one :func:`~explorer.flight.step_segment` per button or key; U (reset) is a teleport that starts
  a new flight at the reset pose;
* controller signals drive the HUD, the viewport (frames), the cache panel (memory snapshots),
  the recording (:class:`ui.recording.RecordingFlow`), and error boxes (``QMessageBox.critical``;
  the app keeps running). A scene that fails to open leaves the open one as it was.

What the user sees besides: the HUD's idle state names the keys of the current mode; warnings that
matter (no depth model, no preview, damaged settings) stay in the viewport's banner until resolved;
while recording, the record button is red and the viewport shows "● REC m:ss". Below
:data:`ui.docks.NARROW_WIDTH` the two docks share one tabbed column. Geometry, dock layout, the cache
panel's colour mode and each file dialog's last folder persist in the window's QSettings store.

The viewer's extras live in their own modules and are wired in here: the on-canvas HUD
(:mod:`ui.hud_overlay`; the mouse wheel sets the fly speed), the help overlay (:mod:`ui.help_overlay`,
on first start and ``?``/F1), exports (:mod:`ui.exports`), recent files and the empty-state screen
(:mod:`ui.recent_files`), the photo dialog with preview (:mod:`ui.image_dialog`) and the menu actions
with their shortcuts (:mod:`ui.window_actions`). The title names the open photo or session and says
when recording.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox

from explorer.flight import FlightPath, step_segment
from explorer.fly_camera import STEP_ACTIONS, Action, FlyCamera
from explorer.session import RecordedSession, load_session
from explorer.worker import GenerationController, GenerationSettings, SceneInfo
from model.generation.backbone import BackboneConfig
from model.generation.pipeline import PipelineConfig
from model.generation.profiles import default_backend, profile
from model.geometry.camera import Trajectory
from model.io.cameras import write_camera_path_json
from ui.cache_panel import COLOR_MODES, CachePanel
from ui.controls_panel import ControlsPanel
from ui.docks import SideDocks, add_scrolling_dock
from ui.exports import Exports
from ui.help_overlay import HelpOverlay
from ui.hud import Hud
from ui.hud_overlay import HudOverlay, wheel_speed
from ui.image_dialog import ImageFileDialog
from ui.input_router import InputRouter
from ui.launch import LaunchOptions
from ui.live_preview import LivePreview
from ui.memory_view import MemoryView
from ui.path_editor import PathFlow
from ui.recent_files import EmptyState, RecentFiles
from ui.recording import RecordingFlow
from ui.rewind import RewindFlow
from ui.settings import ExplorerSettings, help_at_start, last_folder, remember_folder, set_help_at_start
from ui.settings_dialog import SettingsDialog
from ui.viewport import Viewport
from ui.window_actions import add_viewer_actions

TICK_MS = 16  # camera tick (~60 Hz)
PRIOR_DEPTH_WARNING = "No depth model: the memory uses a flat prior depth; geometry is approximate."
SESSION_MARKER = "session.json"  # a dropped folder (or this file) opens as a session


def depth_source_message(scene: SceneInfo) -> str:
    """What File > Open image says about a photo's depth: ``"photo.jpg: depth from <source>"`` (+ how to
    get a depth model when it is the flat prior)."""
    text = f"{Path(scene.source).name}: depth from {scene.depth_source}"
    if scene.prior_depth:
        text += " (no depth model: set one in Settings, or run python main.py fetch-models)"
    return text


class MainWindow(QMainWindow):
    """The explorer window.

    Args:
        store: where settings persist (the user's QSettings; tests pass a temporary INI file).
        options: start-up options from the command line.
        controller: the generation facade (default: a new :class:`GenerationController`).
    """

    def __init__(
        self, store: QSettings, options: LaunchOptions | None = None, controller: GenerationController | None = None
    ) -> None:
        super().__init__()
        self.setWindowTitle("Mirage Explorer")
        self.resize(1500, 860)
        self.setAcceptDrops(True)
        self.store, self.options = store, options or LaunchOptions()
        self.settings = ExplorerSettings.load(store)
        self.backend = self._choose_backend()
        self.controller = controller or GenerationController()
        self.camera: FlyCamera | None = None
        self.flight: FlightPath | None = None
        self.scene: SceneInfo | None = None
        self.replayed: RecordedSession | None = None  # the session the open scene continues, if any
        self.trajectory: list[np.ndarray] = []  # w2c of every generated frame
        self.segments_done = 0  # segments generated in this scene (a continued session included)
        self.pending = 0  # segments queued and not yet finished
        self._pending_open: tuple[str, str | None] | None = None
        self._opening = False  # a scene was asked for and has neither opened nor failed yet
        self._loaded_options = None  # the generation options the loaded backbone uses
        self._seconds_per_frame: float | None = None
        self._device = torch.device(self.options.device or ("cuda" if torch.cuda.is_available() else "cpu"))

        self.viewport = Viewport(self.options.fps)
        self.setCentralWidget(self.viewport)
        self.controls = ControlsPanel()
        self.controls.steps.setValue(self.options.steps or profile(self.backend).steps)
        self.controls.inpaint.setValue(profile(self.backend).inpaint_fraction)
        self.cache_panel = CachePanel()
        self.controls_dock = add_scrolling_dock(self, "Controls", self.controls, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.cache_dock = add_scrolling_dock(
            self, "Latent cache", self.cache_panel, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.docks = SideDocks(self, self.controls_dock, self.cache_dock)
        self.preview = LivePreview(self.viewport)
        self.hud_overlay = HudOverlay(self.viewport.view)
        self.viewport.view.overlays.append(self.hud_overlay)
        self.viewport.view.wheel_turned.connect(self.change_speed)
        self.hud = Hud(self.statusBar(), self.hud_overlay)
        self.help = HelpOverlay(self.viewport.view)
        self.help.show_at_start_changed.connect(lambda show: set_help_at_start(store, show))
        self.help.hide_at_start.setChecked(not help_at_start(store))
        self.exports = Exports(self, store)
        self.recent = RecentFiles(store)
        self.empty_state = EmptyState(self.viewport.view, self.recent, self.open_image, self.open_session)
        self.hud.set_device(self._device)
        self.recording = RecordingFlow(self, store, self.controller, self.controls, self.viewport, self._scene_open)
        self._build_menus()

        self.router = InputRouter(self, self.viewport.view, self._trigger)
        self._apply_settings()
        self.tick_timer = QTimer(self, interval=TICK_MS)
        self.tick_timer.timeout.connect(self._tick)
        self._last_tick = time.perf_counter()
        self.hud_timer = QTimer(self, interval=500)
        self.hud_timer.timeout.connect(self._refresh_hud)
        self.hud_timer.start()
        self._connect_controls()
        self._connect_controller()
        self._add_path_memory_rewind()
        self.viewport.set_warning("settings", "; ".join(self.settings.problems))  # until the settings are saved
        self._restore_window_state()

    # ---- construction --------------------------------------------------------------------

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, slot, shortcut, tip in (
            ("&Open image…", self.choose_image, QKeySequence.StandardKey.Open, "start from a photo"),
            ("&Bundled sample scene", self.open_bundled, "Ctrl+B", "start from the bundled RGB-D room"),
            ("Open &session…", self.choose_session, "Ctrl+Shift+O", "continue a recorded session"),
            ("&Export camera path…", self.choose_export_path, "Ctrl+E", "write the flown path as camera-path JSON"),
            ("Se&ttings…", self.edit_settings, "Ctrl+,", "keys, mouse, speed, models"),
            ("&Quit", self.close, QKeySequence.StandardKey.Quit, "close the explorer"),
        ):
            action = QAction(text, self)
            if shortcut is not None:
                action.setShortcut(shortcut)
            action.setToolTip(tip)
            action.setStatusTip(tip)
            action.triggered.connect(slot)
            file_menu.addAction(action)
            self.addAction(action)
        view_menu = self.view_menu = self.menuBar().addMenu("&View")
        for dock in self.findChildren(QDockWidget):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = self.menuBar().addMenu("&Help")
        self.actions_by_name = add_viewer_actions(self, file_menu, view_menu, help_menu)

    def _restore_window_state(self) -> None:
        """Geometry, dock layout and the cache panel's colour mode as the last window left them
        (saved on close; the colour mode whenever it changes)."""
        geometry, layout = self.store.value("window/geometry"), self.store.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if layout is not None:
            self.restoreState(layout)
        if self.store.value("window/color_mode") in COLOR_MODES:
            self.cache_panel.set_color_mode(self.store.value("window/color_mode"))
        self.cache_panel.mode_box.currentIndexChanged.connect(
            lambda: self.store.setValue("window/color_mode", self.cache_panel.color_mode)
        )

    def _connect_controls(self) -> None:
        self.controls.generate_clicked.connect(self.generate_now)
        self.controls.cancel_clicked.connect(self.cancel)
        self.controls.record_toggled.connect(self.set_recording)
        self.controls.step_clicked.connect(self.step)
        self.controls.options_changed.connect(self._options_changed)
        self.controls.mode_changed.connect(self._mode_changed)

    def _connect_controller(self) -> None:
        c = self.controller
        c.status.connect(self._on_status)
        c.backbone_ready.connect(self._on_backbone_ready)
        c.scene_ready.connect(self._on_scene_ready)
        c.step_progress.connect(self._on_step)
        c.segment_ready.connect(self._on_segment)
        c.memory_changed.connect(self._on_memory)
        c.failed.connect(self._on_failed)
        c.cancelled.connect(self._on_cancelled)
        c.idle.connect(self._on_idle)
        c.recording_saved.connect(self.recording.saved)

    def _add_path_memory_rewind(self) -> None:
        """The camera-path dock (:mod:`ui.path_editor`), the memory-vs-model view (:mod:`ui.memory_view`) and
        rewind / branches (:mod:`ui.rewind`); each connects to the controller after the window's own slots."""
        self.memory_view = MemoryView()
        self.viewport.set_overlay(self.memory_view.overlay)
        self.controller.readout_ready.connect(self.memory_view.add)
        self.paths = PathFlow(self)
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        self.path_dock = add_scrolling_dock(self, "Camera path", self.paths.editor, left)
        self.tabifyDockWidget(self.controls_dock, self.path_dock)  # a tab beside the controls: no taller window
        self.controls_dock.raise_()
        self.path_dock.hide()  # View -> Camera path (or Timeline -> Camera path editor) shows it
        self.view_menu.addAction(self.path_dock.toggleViewAction())
        self.path_dock.toggleViewAction().setShortcut(QKeySequence("Ctrl+3"))
        self.rewinds = RewindFlow(self, self.memory_view)

    def _choose_backend(self) -> str:
        """``--backend`` if given, else :func:`model.generation.profiles.default_backend` (wan when a model folder is
        known: flag or settings).
        """
        return self.options.backend or default_backend(bool(self.options.model or self.settings.model_dir))

    def _apply_settings(self) -> None:
        """Use the current settings (a changed model folder takes effect with the next scene opened)."""
        self.backend = self._choose_backend()
        self.router.bindings = self.settings.bindings
        self.router.capture_mouse = self.settings.capture_mouse
        self.controls.set_key_hints(self.settings.bindings)
        if self.camera is not None:
            self.camera.speed_mps = self.settings.speed_mps
            self.camera.sensitivity_deg_per_px = self.settings.sensitivity_deg_per_px

    # ---- start-up and scenes -------------------------------------------------------------

    def backbone_config(self) -> BackboneConfig:
        model = self.options.model or self.settings.model_dir or None
        return BackboneConfig(
            backend=self.backend,
            model_dir=model if profile(self.backend).needs_model_dir else None,
            device=self.options.device,
            offload=self.options.offload,
        )

    def pipeline_config(self) -> PipelineConfig:
        o = self.controls.options()
        return PipelineConfig.for_backend(self.backend, steps=o.steps, seed=o.seed, inpaint_fraction=o.inpaint_fraction)

    def generation_settings(self) -> GenerationSettings:
        return GenerationSettings(
            height=self.options.height,
            width=self.options.width,
            prompt=self.controls.options().prompt,
            depth_model=self.settings.depth_model_dir or None,
            sky_model=self.settings.sky_model_dir or None,
        )

    def start(self) -> None:
        """Load the backbone, then open the start scene (a session, a photo, or the bundled sample)."""
        if self.options.session:
            self.open_session(self.options.session)
        elif self.options.image:
            self.open_image(self.options.image)
        else:
            self.open_bundled()
        if help_at_start(self.store):
            self.show_controls_help()

    def _open(self, kind: str, value: str | None) -> None:
        """Open a scene; (re)load the backbone first when the model options changed since it was loaded.

        The open scene stays up (no segments are queued) until the new one is ready, so a photo that
        fails to open leaves it as it was. A recording ends here: it belongs to the scene it started in.
        """
        self.set_recording(False)
        self._opening = True
        wanted = (self.backbone_config(), self.pipeline_config(), self.generation_settings())
        if wanted == self._loaded_options:
            self._post_open(kind, value)
            return
        self._pending_open = (kind, value)
        self.hud.set_state("loading the model…")
        self.controller.load_backbone(*wanted)
        self._loaded_options = wanted

    def _post_open(self, kind: str, value: str | None) -> None:
        self.hud.set_state("opening…")
        if kind == "image":
            notice = profile(self.backend).photo_notice  # mini: a miniature trained on synthetic rooms
            if notice:
                self.statusBar().showMessage(notice, 30000)
            self.controller.open_image(value)
        elif kind == "session":
            self.controller.continue_session(value)
        else:
            self.controller.open_bundled()

    def choose_image(self) -> None:
        path = ImageFileDialog(self, last_folder(self.store, "image")).chosen()
        if path:
            remember_folder(self.store, "image", path)
            self.open_image(path)

    def open_image(self, path: str) -> None:
        """Start from a photo (a bad file gets a message box naming it; the app keeps running)."""
        self.replayed = None
        self._open("image", str(path))

    def open_bundled(self) -> None:
        """Start from the bundled RGB-D sample scene."""
        self.replayed = None
        self._open("bundled", None)

    def _reset_scene(self) -> None:
        self.set_recording(False)
        self.viewport.clear()
        self.trajectory, self.segments_done = [], 0
        self.hud.clear_progress()
        self.cache_panel.set_data(None)
        self.camera = self.flight = self.scene = self.router.camera = None
        self.tick_timer.stop()
        self._update_title()

    def _on_backbone_ready(self, description: str) -> None:
        self.statusBar().showMessage(f"Model ready: {description}", 8000)
        if self._pending_open is not None:
            kind, value = self._pending_open
            self._pending_open = None
            self._post_open(kind, value)

    def _on_scene_ready(self, scene: SceneInfo) -> None:
        if self._pending_open is not None:
            return  # the worker reopened the previous scene after a model reload; ours comes next
        self._opening = False
        self._reset_scene()
        self.scene = scene
        start = torch.as_tensor(np.asarray(scene.start_w2c), dtype=torch.float64)
        self.camera = FlyCamera(start, self.settings.speed_mps, self.settings.sensitivity_deg_per_px)
        self.flight = FlightPath(start, time.perf_counter())
        self.router.camera = self.camera
        self.segments_done = scene.segments_done
        if self.replayed is not None and scene.source == f"session:{self.replayed.folder}":
            self.trajectory = list(self.replayed.all_w2c())
            self.viewport.append_frames(self.replayed.frames)
        else:
            self.trajectory = [start.numpy()]
        self.viewport.set_live(
            np.asarray(scene.image), "start image" if not scene.segments_done else "last generated frame"
        )
        self.preview.set_scene(scene)
        self.viewport.set_warning("depth", PRIOR_DEPTH_WARNING if scene.prior_depth else None)
        self.hud.set_depth("prior" if scene.prior_depth else scene.depth_source)
        if scene.source != "bundled" and not scene.source.startswith("session:"):
            self.statusBar().showMessage(depth_source_message(scene), 15000)  # a photo: say where its depth came from
        self.cache_panel.set_scene(scene.source)
        self._remember_recent(scene.source)
        self.empty_state.hide()
        self._update_title()
        self.hud.set_state(self._ready_text())
        self.viewport.view.setFocus()
        self._update_cameras()
        self._last_tick = time.perf_counter()
        self.tick_timer.start()

    # ---- driving -------------------------------------------------------------------------

    def _trigger(self, action: Action) -> None:
        if action is Action.PAUSE and self.help.isVisible():
            self.help.hide()  # Esc closes the help first
        elif action is Action.PAUSE:
            self.set_paused(not self.router.paused)
        elif action is Action.RESET and self.camera is not None:
            self.camera.reset()
            # a teleport, not flown motion: the next segment starts at the reset pose, none flies the jump
            self.flight = FlightPath(self.camera.w2c, time.perf_counter())
        elif action is Action.GENERATE_NOW:
            self.generate_now()
        elif action in STEP_ACTIONS:
            self.step(action)

    def set_paused(self, paused: bool) -> None:
        """Esc: pause flying and release the mouse (a click on the view resumes)."""
        self.router.paused = paused
        self.router.release_all()
        self.hud_overlay.update(paused=paused)
        self.hud.set_state(
            "paused: click the view to resume" if paused else "generating" if self.pending else self._ready_text()
        )

    def _ready_text(self) -> str:
        """The HUD state while nothing runs: the keys that drive the current mode."""
        b = self.settings.bindings
        if self.controls.mode == "steps":
            return (
                f"ready: step {b.step_forward}/{b.step_back}, turn {b.turn_left}/{b.turn_right}, "
                f"orbit {b.orbit_left}/{b.orbit_right}"
            )
        return f"ready: fly with {b.forward}/{b.left}/{b.back}/{b.right}, drag to look, {b.generate_now} generates"

    def _mode_changed(self) -> None:
        """Another driving mode: the idle hint names its keys."""
        if self.scene is not None and not self.pending and not self.router.paused:
            self.hud.set_state(self._ready_text())

    def _tick(self) -> None:
        now = time.perf_counter()
        dt, self._last_tick = now - self._last_tick, now
        if self.camera is None or self.router.paused:
            return
        if self.camera.tick(min(dt, 0.1)):
            w2c = self.camera.w2c
            self.flight.record(now, w2c)
            self.preview.render(w2c.numpy(), self.scene)
            self._update_cameras()
        if self.controls.mode == "flight" and self.flight.ready():
            self.generate_now()

    def generate_now(self) -> None:
        """Free flight: queue a segment from the motion since the last generated pose."""
        if self.flight is None or self._opening or self.controls.mode != "flight" or len(self.flight) < 2:
            return
        self._queue(self.flight.take_segment())

    def step(self, action: Action) -> None:
        """Steps mode: one segment for a step action, from the last queued pose."""
        if self.flight is None or self._opening or self.controls.mode != "steps":
            return
        poses = step_segment(action, self.flight.anchor_w2c)
        self.flight = FlightPath(poses[-1], time.perf_counter())  # the next step or flight starts at its end
        self.camera.set_pose(poses[-1])
        self._queue(poses)

    def queue_poses(self, poses: torch.Tensor) -> None:
        """Queue a planned segment ``[33, 4, 4]`` w2c; the next segment (and the camera) start at its end."""
        if self.flight is None or self._opening:
            return
        self.flight = FlightPath(poses[-1], time.perf_counter())
        self.camera.set_pose(poses[-1])
        self._queue(poses)

    def _queue(self, poses: torch.Tensor) -> None:
        self.pending += 1
        self.controls.set_busy(True)
        self.hud.set_state("generating")
        self.controller.queue_segment(poses)

    def cancel(self) -> None:
        """Cancel the running and queued segments (the memory keeps what was written)."""
        self.hud.set_state("cancelling…")
        self.controller.cancel()

    def _options_changed(self) -> None:
        """Steps, seed, prompt and inpaint fraction go to the loaded pipeline and apply from the next segment."""
        if self._loaded_options is None or self._pending_open is not None:
            return  # nothing loaded yet (or loading): the options are read when the model loads
        options = self.controls.options()
        self.controller.update_generation(
            prompt=options.prompt, steps=options.steps, seed=options.seed, inpaint_fraction=options.inpaint_fraction
        )
        self._loaded_options = (self.backbone_config(), self.pipeline_config(), self.generation_settings())

    # ---- preview and panel ---------------------------------------------------------------

    def _update_cameras(self) -> None:
        if self.scene is None:
            return
        height, width = np.asarray(self.scene.image).shape[:2]
        current = self.camera.w2c.numpy() if self.camera is not None else None
        self.cache_panel.set_cameras(np.stack(self.trajectory), current, np.asarray(self.scene.K), width, height)

    # ---- controller signals --------------------------------------------------------------

    def _on_status(self, message: str) -> None:
        self.statusBar().showMessage(message, 5000)

    def _on_step(self, segment: int, step: int, steps: int) -> None:
        self.hud.set_step(segment, step, steps, queued=max(self.pending - 1, 0))

    def _on_segment(self, result) -> None:
        # frame 0 of a segment repeats the previous segment's last frame (for the first one: the photo)
        self.viewport.append_frames(result.frames if self.viewport.frame_count == 0 else result.frames[1:])
        self.trajectory.extend(np.asarray(result.w2c)[1:])
        self.segments_done = result.index + 1
        self.pending = max(self.pending - 1, 0)
        self._seconds_per_frame = result.timings["total"] / max(len(result.frames) - 1, 1)
        self.hud.set_done(f"segment {result.index + 1} done ({result.timings['total']:.1f} s)")
        self.hud.set_depth(result.depth_source, result.depth_residual)
        self._update_cameras()

    def _on_memory(self, snapshot) -> None:
        first = self.cache_panel.drawn_points.size == 0
        self.cache_panel.set_data(snapshot)
        if first:
            self.cache_panel.show_scene_view()
        if self.preview.set_points(snapshot) and self.camera is not None:
            self.preview.render(self.camera.w2c.numpy(), self.scene)

    def _on_failed(self, title: str, message: str) -> None:
        if self._pending_open is not None:  # the model did not load: the next open tries again
            self._pending_open = self._loaded_options = None
        self._opening = False  # an open that failed leaves the scene that was open
        self.hud.set_state("error")
        QMessageBox.critical(self, title, message)

    def _on_cancelled(self, segment: int) -> None:
        self.pending = 0
        if self.flight is not None and len(self.trajectory):
            self.flight.rebase(torch.as_tensor(self.trajectory[-1]))
        self.hud.clear_progress(f"segment {segment + 1} cancelled")

    def _on_idle(self) -> None:
        self.pending = 0
        self.controls.set_busy(False)
        self.hud.set_state(self._ready_text() if self.scene is not None else "no scene")

    def _refresh_hud(self) -> None:
        self.hud.set_rates(self.viewport.view.paint_rate(), self._seconds_per_frame)
        self.hud.set_device(self._device)
        self.recording.update_badge()
        self._sync_overlay()
        self._update_title()

    def _sync_overlay(self) -> None:
        """The on-canvas HUD's fields the window polls: mode, speed, capture, queue, warnings."""
        self.hud_overlay.update(
            mode=self.controls.mode,
            speed_mps=self.camera.speed_mps if self.camera is not None else None,
            captured=self.router.capture_mouse,
            queued=max(self.pending - 1, 0),
            warnings=self.viewport.warnings,
        )

    def change_speed(self, notches: float) -> None:
        """Mouse wheel over the view: fly speed × 1.25 per notch (shown in the HUD; the settings keep the default)."""
        if self.camera is None:
            return
        self.camera.speed_mps = wheel_speed(self.camera.speed_mps, notches)
        self._sync_overlay()
        self.statusBar().showMessage(f"fly speed {self.camera.speed_mps:.2f} m/s", 2000)

    def set_capture_mouse(self, on: bool) -> None:
        """Captured mouse-look on or off (C, View → Captured mouse-look); remembered in the settings."""
        self.settings.capture_mouse = bool(on)
        self.store.setValue("capture_mouse", bool(on))
        self.router.capture_mouse = bool(on)
        if not on:
            self.router.release_all()
        self._sync_overlay()

    def window_title(self) -> str:
        """``"Mirage Explorer — photo.jpg · ● REC"``: the open photo / session / sample, and the recording state."""
        parts = ["Mirage Explorer"]
        if self.scene is not None:
            source = self.scene.source
            if source == "bundled":
                parts.append("bundled sample scene")
            elif source.startswith("session:"):
                parts.append(f"session {Path(source.removeprefix('session:')).name}")
            else:
                parts.append(Path(source).name)
        title = " — ".join(parts)
        return f"{title} · ● REC" if self.recording.folder is not None else title

    def _update_title(self) -> None:
        title = self.window_title()
        if title != self.windowTitle():
            self.setWindowTitle(title)

    def _remember_recent(self, source: str) -> None:
        if source.startswith("session:"):
            self.recent.add("session", source.removeprefix("session:"))
        elif source != "bundled" and Path(source).is_file():
            self.recent.add("photo", source)

    # ---- sessions ------------------------------------------------------------------------

    def set_recording(self, on: bool) -> None:
        """Record into a folder the user picks, or stop (see :meth:`ui.recording.RecordingFlow.set_recording`)."""
        self.recording.set_recording(on)

    def start_recording(self, folder: str) -> None:
        """Record every segment generated from now on into ``folder`` (replaced when the recording finishes)."""
        self.recording.start(folder)

    def _scene_open(self, title: str) -> bool:
        """Whether a scene is open; if not, a message box titled ``title`` says to open one."""
        if self.scene is None:
            QMessageBox.information(self, title, "Open a scene first.")
        return self.scene is not None

    def choose_session(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a recorded session", last_folder(self.store, "session"))
        if folder:
            remember_folder(self.store, "session", folder)
            self.open_session(folder)

    def open_session(self, folder: str) -> None:
        """Replay a recording (frames into the timeline, memory into the panel); generating continues from its end."""
        try:
            session = load_session(folder)
        except (ValueError, OSError) as error:
            self._on_failed("Open session", f"{error}\n\nChoose a folder written by Record.")
            return
        self.replayed = session
        self._open("session", str(session.folder))

    def choose_export_path(self) -> None:
        suggested = Path(last_folder(self.store, "export")) / "camera_path.json"
        path, _ = QFileDialog.getSaveFileName(self, "Export camera path", str(suggested), "Camera path (*.json)")
        if path:
            remember_folder(self.store, "export", path)
            self.export_camera_path(path)

    def export_camera_path(self, path: str) -> None:
        """Write the trajectory of every generated frame as camera-path JSON (OpenCV axes)."""
        if self.scene is None or len(self.trajectory) < 2:
            QMessageBox.information(
                self, "Export camera path", "Nothing generated yet: fly and generate a segment first."
            )
            return
        height, width = np.asarray(self.scene.image).shape[:2]
        try:
            write_camera_path_json(
                path,
                Trajectory(
                    torch.from_numpy(np.stack(self.trajectory)),
                    torch.from_numpy(np.asarray(self.scene.K)),
                    width,
                    height,
                    self.viewport.fps,
                ),
            )
        except (ValueError, OSError) as error:
            self._on_failed("Export camera path", f"{path}: {error}")
            return
        self.statusBar().showMessage(f"Camera path written to {path}", 8000)

    # ---- settings, help, drag and drop, closing ------------------------------------------

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() and dialog.result_settings() is not None:
            self.settings = dialog.result_settings()
            self.settings.save(self.store)
            self.viewport.set_warning("settings", None)  # what was damaged has been written anew
            self._apply_settings()

    def show_controls_help(self) -> None:
        """Open the help overlay (built from the live key bindings and shortcuts), or close it if open."""
        if self.help.isVisible():
            self.help.hide()
            return
        self.router.release_all()
        self.help.open(self.settings.bindings, self.findChildren(QAction))

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.mimeData().hasUrls() and any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt override)
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_dropped(files[0])

    def open_dropped(self, path: str) -> None:
        """A dropped folder (or its session.json) opens as a session, anything else as a photo."""
        dropped = Path(path)
        if dropped.is_dir() or dropped.name == SESSION_MARKER:
            self.open_session(str(dropped if dropped.is_dir() else dropped.parent))
        else:
            self.open_image(path)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self.docks.fit()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.type() == event.Type.ActivationChange and not self.isActiveWindow():
            self.router.release_all()
        super().changeEvent(event)

    def shutdown(self) -> None:
        """Stop timers, finish a recording, stop the worker thread and free the preview context."""
        self.tick_timer.stop()
        self.hud_timer.stop()
        self.recording.folder = None  # the worker saves an active recording when it closes
        self.router.detach()
        self.controller.shutdown()
        self.preview.close()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.store.setValue("window/geometry", self.saveGeometry())
        self.store.setValue("window/state", self.saveState())
        self.store.sync()
        self.shutdown()
        super().closeEvent(event)
