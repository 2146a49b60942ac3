"""Background generation for the desktop explorer: a QObject worker in a QThread (QtCore only).

Qt's worker-object pattern: :class:`GenerationWorker` owns the backbone, the
:class:`~model.pipeline.MiragePipeline` and the scene, lives in its own ``QThread`` and is driven
only through queued signals; :class:`GenerationController` is the GUI-thread facade the widgets
talk to. Every worker signal is re-emitted by the controller in the GUI thread, so widgets connect
to the controller and never touch the worker.

Requests (controller methods; all return at once):

* :meth:`GenerationController.load_backbone` (``BackboneConfig``, ``PipelineConfig`` and optional
  :class:`GenerationSettings`: frame size, prompt, depth model, memory weights);
* :meth:`~GenerationController.open_image` / :meth:`~GenerationController.open_bundled` /
  :meth:`~GenerationController.continue_session`: start a scene (the same openers as
  ``main.py generate``, :mod:`explorer.scene_inputs`);
* :meth:`~GenerationController.queue_segment`: poses ``[33, 4, 4]`` of the next segment, through a
  **latest-value mailbox**: at most one request waits beyond the running one. A newer request
  replaces the waiting one; when it continues it (its first pose is the waiting one's last, as
  :class:`explorer.flight.FlightPath` makes them) both paths are merged and resampled into one
  segment (:func:`explorer.flight.resample_path`), so the chain of segments never jumps;
* :meth:`~GenerationController.cancel`: sets the running request's ``threading.Event``, polled by
  the pipeline between denoising steps (takes effect within one step; long blocking calls such as
  model loading or VAE decoding are not interruptible) and drops the waiting request. What was
  generated is kept; a cancelled segment leaves the memory exactly as it was;
* :meth:`~GenerationController.load_memory`, :meth:`~GenerationController.request_memory_snapshot`,
  :meth:`~GenerationController.shutdown` (cancels, closes the worker's resources, joins the thread).

Signals (on both classes): ``status(str)``, ``backbone_ready(str describe)``,
``scene_ready(SceneInfo)``, ``step_progress(segment, step, steps)``,
``segment_ready(SegmentResult)``, ``memory_changed(MemorySnapshot)``, ``failed(title, message)``,
``cancelled(segment)``, ``idle()`` (nothing running or waiting), ``recording_saved(folder)``.

Recording (:meth:`~GenerationController.start_recording` / :meth:`~GenerationController.stop_recording`)
happens in the worker thread, in order with the segments, so the saved memory always matches the
recorded frames.

There is no per-step image preview: the pipeline's step callback exposes no latents (only
``(segment, step, steps)``), and a useful preview of Wan2.2's 48-channel latent needs fitted
latent->RGB factors or a tiny decoder; the UI shows the instant memory preview
(:mod:`explorer.preview`) while a segment runs instead.

Errors never end the thread: each request runs under a handler that turns exceptions into
``failed(title, message)`` whose message says how to fix it (:func:`describe_error`).
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, Signal, Slot

from explorer.flight import resample_path
from explorer.preview import cell_footprints
from explorer.scene_inputs import SceneInputs, bundled_scene, photo_inputs
from model.backbone import WAN_FOLDER, Backbone, BackboneConfig
from model.camera import validate_poses
from model.folders import ModelFolderError
from model.image_io import ImageLoadError
from model.memory_base import SpatialMemory
from model.memory_kinds import load_memory, make_memory, point_stride
from model.pipeline import GenerationCancelled, MiragePipeline, PipelineConfig
from model.profiles import profile
from model.stack import load_generation_stack

#: Signals the worker emits and the controller re-emits in the GUI thread.
SIGNAL_NAMES = (
    "status", "backbone_ready", "scene_ready", "step_progress", "segment_ready", "memory_changed", "failed", "cancelled", "idle",
    "recording_saved",
)


@dataclass
class GenerationSettings:
    """Explorer settings beyond the backbone / pipeline configs."""

    height: int | None = None  # frame height in pixels; None: the backend profile's generate_size (model.profiles)
    width: int | None = None  # frame width in pixels; None: the backend profile's generate_size
    prompt: str = ""  # text prompt of every segment
    depth_model: str | None = None  # transformers depth-estimation folder; None: flat prior depth (warned)
    memory_weights: str | None = None  # trained memory branch + LoRA folder (pipeline mode "branch")

    def size(self, backend: str) -> tuple[int, int]:
        """``(height, width)`` in pixels of the generated frames."""
        return profile(backend).generation_size(self.height, self.width)


@dataclass
class SceneInfo:
    """A scene is ready (``scene_ready``).

    Attributes:
        image: ``[H, W, 3]`` uint8 first frame (the photo at the model size, or a resumed session's last frame).
        K: ``[3, 3]`` float64 pixel intrinsics of ``image``. start_w2c: ``[4, 4]`` float64 pose of ``image``.
        depth: ``[H, W]`` float32 metres of the photo (+inf invalid), None for a resumed session.
        source: ``"bundled"``, the photo's path, or ``"session:<folder>"``.
        depth_source: what gives the depth of generated frames. k_source: where K came from.
        prior_depth: True when the flat prior depth stands in for a depth model (geometry is rough).
        segments_done: segments already generated (0 unless resumed).
        points, bytes: memory size.
        latent_stride: pixels per latent cell (16 for Wan2.2, 4 for the tiny patch VAE).
    """

    image: np.ndarray
    K: np.ndarray
    start_w2c: np.ndarray
    depth: np.ndarray | None
    source: str
    depth_source: str
    k_source: str
    prior_depth: bool
    segments_done: int
    points: int
    bytes: int
    latent_stride: int


@dataclass
class MemorySnapshot:
    """Numpy copies of the memory for the cache panel and the preview (``memory_changed``).

    Attributes:
        positions: ``[N, 3]`` float32 metres. colors: ``[N, 3]`` uint8. segments, frames: ``[N]`` int32 provenance.
        footprint_m: ``[N]`` float32 world size of each point's latent cell (0: unknown; see
            :func:`explorer.preview.cell_footprints`).
        rejected_positions: ``[M, 3]`` float32 and rejected_labels ``[M]`` uint8 (:class:`model.memory.CellLabel`)
            of the last write's rejected cells (empty for memories that do not keep them).
        points, bytes, rejected: :class:`model.memory.MemoryStats`.
        reason: ``"scene"``, ``"segment"``, ``"loaded"``, ``"requested"``.
        segments_done: segments generated so far.
        features: ``[N, C]`` float16 latent features for the panel's latent-PCA colours (None for
            memories without latent features, e.g. the RGB baseline).
    """

    positions: np.ndarray
    colors: np.ndarray
    segments: np.ndarray
    frames: np.ndarray
    footprint_m: np.ndarray
    rejected_positions: np.ndarray
    rejected_labels: np.ndarray
    points: int
    bytes: int
    rejected: int
    reason: str
    segments_done: int
    features: np.ndarray | None = None


@dataclass
class SegmentJob:
    """One queued segment: poses, the action(s) that made it, and its own cancel flag."""

    poses: torch.Tensor
    action: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


class SegmentMailbox:
    """Thread-safe latest-value mailbox: the running job and at most one waiting job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: SegmentJob | None = None
        self._running: SegmentJob | None = None

    def put(self, job: SegmentJob) -> str:
        """Queue ``job``; returns ``"queued"``, ``"merged"`` (continues the waiting job) or ``"replaced"``."""
        with self._lock:
            pending = self._pending
            if pending is None:
                self._pending = job
                return "queued"
            if len(pending.poses) == len(job.poses) and torch.allclose(pending.poses[-1], job.poses[0], atol=1e-9, rtol=0):
                merged = resample_path(torch.cat([pending.poses, job.poses[1:]]), len(job.poses))
                actions = "+".join(a for a in (pending.action, job.action) if a)
                self._pending = SegmentJob(merged, actions)
                return "merged"
            self._pending = job
            return "replaced"

    def take(self) -> SegmentJob | None:
        """The waiting job, now running (None when nothing waits)."""
        with self._lock:
            job, self._pending = self._pending, None
            if job is not None:
                self._running = job
            return job

    def done(self) -> None:
        with self._lock:
            self._running = None

    def cancel_all(self) -> bool:
        """Cancel the running job and drop the waiting one; True if anything was running or waiting."""
        with self._lock:
            found = self._running is not None or self._pending is not None
            if self._running is not None:
                self._running.cancel.set()
            self._pending = None
            return found

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running is not None or self._pending is not None


def describe_error(exc: BaseException, doing: str) -> tuple[str, str]:
    """``(title, message)`` for the UI: what went wrong while ``doing`` and how to fix it."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return "Out of GPU memory", (
            f"{doing} ran out of GPU memory: {text.splitlines()[0]}\n\n"
            "Fix: lower the resolution or use --offload group (Settings > Offload: group; 'model' saves less), "
            "or use fewer denoising steps. Nothing generated so far is lost."
        )
    if isinstance(exc, ModelFolderError) and exc.what == WAN_FOLDER:
        return "Model weights not found", (
            f"{text}\n\nFix: point the model folder at a local Wan2.2-TI2V-5B diffusers download "
            "(model_index.json, scheduler/, tokenizer/, text_encoder/, transformer/, vae/ with *.safetensors), "
            "or choose the tiny backend."
        )
    if isinstance(exc, ModelFolderError):  # a depth (or sky segmentation) model
        return "Depth model not usable", f"{text}\n\nFix: choose a local metric depth-estimation model folder, or none (flat prior depth)."
    if isinstance(exc, ImageLoadError):
        return "Cannot open image", f"{text}\n\nFix: choose a readable photo (JPEG, PNG, WebP, TIFF ...)."
    if isinstance(exc, FileNotFoundError):
        return "File not found", f"{doing}: {text}"
    if isinstance(exc, ValueError):
        return "Invalid input", f"{doing}: {text}"
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return "Generation error", f"{doing} failed: {last}"


def snapshot_memory(memory: SpatialMemory, reason: str, segments_done: int, poses_by_frame: dict[int, np.ndarray], K: torch.Tensor | None, stride: int) -> MemorySnapshot:
    """Numpy copies of any pipeline memory (latent or RGB) for the UI."""

    def host(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().copy()

    positions = host(memory.positions)
    frames = host(memory.frames)
    if memory.sizes is not None:  # the RGB memory stores each point's footprint itself
        footprint = memory.sizes.detach().float().cpu().numpy()
    elif K is not None and len(positions):
        focal = float(0.5 * (K[0, 0] + K[1, 1]))
        footprint = cell_footprints(positions, frames, poses_by_frame, focal, stride)
    else:
        footprint = np.zeros(len(positions), np.float32)
    stats = memory.stats()
    return MemorySnapshot(
        positions=positions,
        colors=host(memory.colors),
        segments=host(memory.segments),
        frames=frames,
        footprint_m=footprint.astype(np.float32),
        rejected_positions=host(memory.rejected_positions),
        rejected_labels=host(memory.rejected_labels),
        points=stats.points,
        bytes=stats.bytes,
        rejected=stats.rejected,
        reason=reason,
        segments_done=segments_done,
        features=None if memory.features is None else memory.features.detach().float().cpu().numpy().astype(np.float16),
    )


class _GenerationSignals(QObject):
    """The signals the worker emits and the controller re-emits in the GUI thread (:data:`SIGNAL_NAMES`)."""

    status = Signal(str)
    backbone_ready = Signal(str)
    scene_ready = Signal(object)
    step_progress = Signal(int, int, int)
    segment_ready = Signal(object)
    memory_changed = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal(int)
    idle = Signal()
    recording_saved = Signal(str)


class GenerationWorker(_GenerationSignals):
    """Owns backbone, pipeline and scene; lives in the generation thread (see the module docstring)."""

    def __init__(self, mailbox: SegmentMailbox) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._closing = threading.Event()
        self._backbone: Backbone | None = None
        self._branch = None
        self._config: PipelineConfig | None = None
        self._settings = GenerationSettings()
        self._pipe: MiragePipeline | None = None
        self._inputs: SceneInputs | None = None
        self._renderer = None  # SceneRenderer for the bundled scene's exact depth, created in this thread
        self._poses_by_frame: dict[int, np.ndarray] = {}
        self._last_pose: torch.Tensor | None = None
        self._scene_request: tuple | None = None
        self._recorder = None  # explorer.session.SessionRecorder while recording

    # ---- dispatch -------------------------------------------------------------------------

    @Slot(object)
    def handle(self, request: tuple) -> None:
        """Run one request ``(kind, args)`` from the controller; errors become ``failed``."""
        kind, args = request
        if kind == "close":
            self._close()
            return
        if self._closing.is_set():
            return
        handler, doing = {
            "load_backbone": (self._load_backbone, "Loading the model"),
            "open_image": (self._open_image, f"Opening {args[0] if args else ''}"),
            "open_bundled": (self._open_bundled, "Opening the bundled scene"),
            "continue_session": (self._continue_session, f"Continuing session {args[0] if args else ''}"),
            "load_memory": (self._load_memory, f"Loading memory {args[0] if args else ''}"),
            "snapshot": (self._emit_snapshot_requested, "Reading the memory"),
            "start_recording": (self._start_recording, f"Recording to {args[0] if args else ''}"),
            "stop_recording": (self._stop_recording, "Saving the recording"),
            "update_generation": (self._update_generation, "Changing the generation settings"),
        }[kind]
        self._guarded(handler, doing, *args)
        self._maybe_idle()

    @Slot()
    def wake(self) -> None:
        """A segment was queued: run what the mailbox holds (if it was not taken already)."""
        if self._closing.is_set():
            return
        job = self._mailbox.take()
        if job is not None:
            try:
                self._guarded(self._run_segment, f"Generating segment {self._pipe.segments_done if self._pipe else 0}", job)
            finally:
                self._mailbox.done()
        self._maybe_idle()

    def _guarded(self, handler, doing: str, *args) -> None:
        try:
            handler(*args)
        except Exception as exc:  # noqa: BLE001 - the thread must survive anything a request raises
            if "out of memory" in str(exc).lower() and torch.cuda.is_available():
                torch.cuda.empty_cache()
            title, message = describe_error(exc, doing)
            self.status.emit(f"{title}: {message.splitlines()[0]}")
            self.failed.emit(title, message)

    def _maybe_idle(self) -> None:
        if not self._mailbox.busy and not self._closing.is_set():
            self.idle.emit()

    # ---- requests --------------------------------------------------------------------------

    def _load_backbone(self, backbone_config: BackboneConfig, pipeline_config: PipelineConfig, settings: GenerationSettings | None) -> None:
        self._backbone = self._pipe = self._branch = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._settings = settings or GenerationSettings()
        height, width = self._settings.size(backbone_config.backend)
        backbone, self._branch = load_generation_stack(
            backbone_config, self._settings.memory_weights, (height, width),
            mode=pipeline_config.mode, on_status=self.status.emit,
        )
        self._backbone, self._config = backbone, pipeline_config
        self.backbone_ready.emit(backbone.describe())
        self.status.emit(f"Model ready: {backbone_config.backend}, {width}x{height}, {pipeline_config.steps} steps")
        if self._scene_request is not None:  # a new model: reopen the scene that was open
            kind, args = self._scene_request
            self.status.emit("Reopening the scene with the new model…")
            {"open_image": self._open_image, "open_bundled": self._open_bundled, "continue_session": self._continue_session}[kind](*args)

    def _require_backbone(self) -> Backbone:
        if self._backbone is None:
            raise ValueError("no model is loaded yet: load a backbone first (Settings > Model)")
        return self._backbone

    def _require_pipe(self) -> MiragePipeline:
        if self._pipe is None:
            raise ValueError("no scene is open: open a photo or the bundled scene first")
        return self._pipe

    def _scene_renderer(self):
        if self._renderer is None:
            from model.scenes import SceneRenderer

            self._renderer = SceneRenderer()
        return self._renderer

    def _open_image(self, path: str, depth_path: str | None = None) -> None:
        backbone = self._require_backbone()
        height, width = self._settings.size(backbone.config.backend)
        self.status.emit(f"Opening {path} at {width}x{height}…")
        inputs = photo_inputs(
            path, height, width, backbone.device, depth_path=depth_path, depth_model=self._settings.depth_model,
            warn=lambda message: self.status.emit(f"WARNING: {message}"),
        )
        self._start_scene(inputs, ("open_image", (path, depth_path)))

    def _open_bundled(self) -> None:
        backbone = self._require_backbone()
        height, width = self._settings.size(backbone.config.backend)
        self.status.emit(f"Opening the bundled sample scene at {width}x{height} (exact depth)…")
        self._start_scene(bundled_scene(height, width, self._scene_renderer()), ("open_bundled", ()))

    def _start_scene(self, inputs: SceneInputs, request: tuple) -> None:
        backbone = self._require_backbone()
        self.status.emit("Building the memory from the first frame…")
        memory = make_memory(self._config.memory_kind, self._config.memory, backbone.device, backbone.vae)
        pipe = MiragePipeline(backbone, self._config, self._branch, memory)
        pipe.start(inputs.image, inputs.depth, inputs.K, prompt=self._settings.prompt)  # a failure keeps the open scene
        self._pipe, self._inputs, self._scene_request = pipe, inputs, request
        start = torch.eye(4, dtype=torch.float64)
        self._poses_by_frame = {0: start.numpy()}
        self._last_pose = start
        stats = pipe.memory.stats()
        self.scene_ready.emit(SceneInfo(
            image=inputs.image.copy(), K=inputs.K.numpy().copy(), start_w2c=start.numpy().copy(), depth=inputs.depth.numpy().copy(),
            source=inputs.source, depth_source=inputs.depth_name, k_source=inputs.k_source,
            prior_depth=inputs.depth_name.startswith("prior"),
            segments_done=0, points=stats.points, bytes=stats.bytes, latent_stride=self._stride(),
        ))
        self._emit_snapshot("scene")
        self.status.emit(f"Scene ready: {inputs.source}; memory {stats.points} points")

    def _continue_session(self, folder: str) -> None:
        from explorer.session import load_session, session_memory

        backbone = self._require_backbone()
        session = load_session(folder)
        height, width = session.frames.shape[1:3]
        expected = self._settings.size(backbone.config.backend)
        if (height, width) != expected:
            self._settings = replace(self._settings, height=height, width=width)
            self.status.emit(f"Using the session's frame size {width}x{height}")
        if session.source == "bundled":
            inputs = bundled_scene(height, width, self._scene_renderer())
        else:
            inputs = None
            if session.source and Path(session.source).exists():
                inputs = photo_inputs(session.source, height, width, backbone.device, depth_model=self._settings.depth_model,
                                      warn=lambda message: self.status.emit(f"WARNING: {message}"))
        memory = session_memory(session, self._config, backbone)
        pipe = MiragePipeline(backbone, self._config, self._branch, memory)
        pipe.resume(session.last_frame, session.K, session.prompt, memory, session.segments_done)
        if inputs is None:  # the photo is gone: depth of new frames from the flat prior
            from explorer.scene_inputs import PRIOR_DEPTH_WARNING
            from model.depth import PriorDepth
            from model.pipeline import estimator_depth

            self.status.emit(f"WARNING: {session.source} not found; {PRIOR_DEPTH_WARNING}")
            inputs = SceneInputs(session.last_frame, torch.full((height, width), float("inf")), torch.from_numpy(session.K), estimator_depth(PriorDepth()), "session", session.source)
        inputs.K = torch.from_numpy(session.K.copy())
        self._pipe, self._inputs, self._scene_request = pipe, inputs, ("continue_session", (folder,))
        self._poses_by_frame = session.poses_by_frame()
        last = torch.from_numpy(session.w2c[-1][-1].copy())
        self._last_pose = last
        stats = pipe.memory.stats()
        self.scene_ready.emit(SceneInfo(
            image=session.last_frame.copy(), K=session.K.copy(), start_w2c=last.numpy().copy(), depth=None,
            source=f"session:{folder}", depth_source=inputs.depth_name, k_source="session", prior_depth=inputs.depth_name.startswith("prior"),
            segments_done=session.segments_done, points=stats.points, bytes=stats.bytes, latent_stride=self._stride(),
        ))
        self._emit_snapshot("loaded")
        self.status.emit(f"Continuing {folder} after {session.segments_done} segments; memory {stats.points} points")

    def _load_memory(self, path: str) -> None:
        pipe = self._require_pipe()
        pipe.load_memory(load_memory(path, self._config.memory_kind, pipe.backbone.vae), source=path)
        self._emit_snapshot("loaded")
        self.status.emit(f"Loaded memory {path}: {pipe.memory.stats().points} points")

    def _run_segment(self, job: SegmentJob) -> None:
        pipe = self._require_pipe()
        poses = validate_poses(torch.as_tensor(job.poses, dtype=torch.float64), "segment poses")
        if poses.shape != (pipe.config.segment_frames, 4, 4):
            raise ValueError(f"segment poses: expected [{pipe.config.segment_frames},4,4], got {list(poses.shape)}")
        if self._last_pose is not None and not torch.allclose(poses[0], self._last_pose, atol=1e-6):
            self.status.emit("WARNING: the segment does not start at the last generated pose; the video will jump")
        index = pipe.segments_done
        self.status.emit(f"Generating segment {index + 1}…")
        should_cancel = lambda: job.cancel.is_set() or self._closing.is_set()  # noqa: E731
        try:
            result = pipe.run_segment(poses, self._inputs.depth_source, on_step=lambda s, i, n: self.step_progress.emit(s, i, n), should_cancel=should_cancel)
        except GenerationCancelled:
            self.cancelled.emit(index)
            self.status.emit(f"Segment {index + 1} cancelled; the memory is unchanged")
            return
        result.action = job.action  # what made the segment (for session recording)
        written = result.frame_ids[::4][1:]
        for frame_id, pose in zip(written, result.w2c[::4][1:]):
            self._poses_by_frame[int(frame_id)] = pose.numpy().copy()
        self._last_pose = result.w2c[-1].clone()
        if self._recorder is not None:
            try:
                self._recorder.add_segment(result, job.action, memory=pipe.memory)
            except Exception as exc:  # noqa: BLE001 - the segment itself is fine; only the recording stops
                recorder, self._recorder = self._recorder, None
                recorder.abort()
                kept = f"The folder keeps the {recorder.segments} segment(s) recorded before." if recorder.segments else "The folder is unchanged."
                self.failed.emit("Recording stopped", f"Adding segment {index + 1} to the recording failed: {exc}\n\n{kept}")
        self.segment_ready.emit(result)
        self._emit_snapshot("segment")
        self.status.emit(f"Segment {index + 1} done in {result.timings['total']:.1f} s; memory {result.memory_points} points")

    def _start_recording(self, folder: str, fps: float) -> None:
        from dataclasses import asdict

        from explorer.session import SessionRecorder

        pipe = self._require_pipe()
        if self._recorder is not None:
            raise ValueError(f"already recording to {self._recorder.folder}; stop that recording first")
        recorder = SessionRecorder(folder, fps)
        height, width = pipe.frame_hw
        recorder.start(
            width=width, height=height, K=pipe.K, start_w2c=self._last_pose, source=self._inputs.source, prompt=self._settings.prompt,
            seed=pipe.config.seed, model=pipe.describe(), first_segment=pipe.segments_done,
            settings={"backbone": asdict(self._backbone.config), "pipeline": asdict(pipe.config), "generation": asdict(self._settings)},
        )
        self._recorder = recorder
        self.status.emit(f"Recording to {folder}")

    def _stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            raise ValueError("not recording")
        if not recorder.segments:  # news, not an error: nothing to save
            recorder.abort()
            self.status.emit(f"Recording stopped: nothing was recorded (no segment was generated); {recorder.folder} is unchanged")
            return
        folder = recorder.finish()
        self.recording_saved.emit(str(folder))
        self.status.emit(f"Recording saved to {folder} ({recorder.segments} segments)")

    def _update_generation(self, changes: dict, prompt: str | None) -> None:
        """New steps / seed / inpaint fraction / prompt for the next segments (and scenes opened later)."""
        if self._config is None:
            raise ValueError("load a model first")
        self._config = replace(self._config, **changes)
        if prompt is not None:
            self._settings = replace(self._settings, prompt=prompt)
        if self._pipe is not None:
            self._pipe.update_config(prompt=prompt, **changes)
        self.status.emit("Generation settings updated; they apply from the next segment")

    def _emit_snapshot_requested(self) -> None:
        self._emit_snapshot("requested")

    def _emit_snapshot(self, reason: str) -> None:
        pipe = self._require_pipe()
        self.memory_changed.emit(snapshot_memory(pipe.memory, reason, pipe.segments_done, self._poses_by_frame, pipe.K, self._stride()))

    def _stride(self) -> int:
        return point_stride(self._config.memory_kind, self._require_backbone().vae)

    def _close(self) -> None:
        self._closing.set()
        try:
            if self._recorder is not None:  # every recorded segment is already in its folder
                self._recorder.abort()
                self._recorder = None
            if self._renderer is not None:
                self._renderer.close()
        finally:
            self._renderer = None
            self._pipe = self._backbone = self._branch = self._inputs = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            QThread.currentThread().quit()


class GenerationController(_GenerationSignals):
    """GUI-thread facade: creates the generation thread and forwards requests to the worker.

    Example:
        >>> controller = GenerationController()  # doctest: +SKIP
        >>> controller.segment_ready.connect(view.show_segment)  # doctest: +SKIP
        >>> controller.load_backbone(BackboneConfig(backend="tiny"), PipelineConfig(steps=4))  # doctest: +SKIP
        >>> controller.open_bundled()  # doctest: +SKIP
        >>> controller.queue_segment(step_segment("step_forward", camera.w2c))  # doctest: +SKIP
    """

    _request = Signal(object)
    _wake = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._mailbox = SegmentMailbox()
        self._thread = QThread()
        self._thread.setObjectName("mirage-generation")
        self._worker = GenerationWorker(self._mailbox)
        self._worker.moveToThread(self._thread)
        self._request.connect(self._worker.handle)  # queued: the worker lives in the other thread
        self._wake.connect(self._worker.wake)
        for name in SIGNAL_NAMES:
            getattr(self._worker, name).connect(getattr(self, name))  # re-emitted in the GUI thread
        self._thread.finished.connect(self._worker.deleteLater)
        self._pipeline_config: PipelineConfig | None = None
        self._thread.start()

    @property
    def worker(self) -> GenerationWorker:
        """The worker object (lives in the generation thread; connect with care)."""
        return self._worker

    @property
    def running(self) -> bool:
        """Whether the generation thread is alive."""
        return self._thread.isRunning()

    @property
    def busy(self) -> bool:
        """Whether a segment is running or waiting."""
        return self._mailbox.busy

    def load_backbone(self, backbone_config: BackboneConfig, pipeline_config: PipelineConfig, settings: GenerationSettings | None = None) -> None:
        """Load (or replace) the model; an open scene is reopened with it."""
        self._pipeline_config = pipeline_config
        self._post("load_backbone", backbone_config, pipeline_config, settings)

    def open_image(self, path: str | Path, depth_path: str | None = None) -> None:
        """Start a scene from a photo (at the model size; depth from ``depth_path``, the depth model, or the prior)."""
        self._post("open_image", str(path), depth_path)

    def open_bundled(self) -> None:
        """Start the bundled sample scene (exact depth for every frame)."""
        self._post("open_bundled")

    def continue_session(self, folder: str | Path) -> None:
        """Resume a recorded session (:mod:`explorer.session`): its memory, last frame and segment count."""
        self._post("continue_session", str(folder))

    def load_memory(self, path: str | Path) -> None:
        """Replace the open scene's memory by a saved one (``.safetensors``)."""
        self._post("load_memory", str(path))

    def start_recording(self, folder: str | Path, fps: float = 16.0) -> None:
        """Record every following segment into a session folder (:mod:`explorer.session`)."""
        self._post("start_recording", str(folder), float(fps))

    def stop_recording(self) -> None:
        """Finish the recording (after the segments already queued); ``recording_saved(folder)`` follows,
        or only a status when no segment was recorded (nothing is saved, the folder is left alone)."""
        self._post("stop_recording")

    def update_generation(self, prompt: str | None = None, **changes) -> None:
        """Change ``steps``, ``seed``, ``inpaint_fraction`` (and the prompt) from the next segment on, no reload."""
        self._post("update_generation", dict(changes), prompt)

    def request_memory_snapshot(self) -> None:
        """Ask for a ``memory_changed`` with the current memory."""
        self._post("snapshot")

    def queue_segment(self, poses, action: str = "") -> str:
        """Queue the next segment's poses ``[segment_frames, 4, 4]`` w2c (latest-value mailbox).

        Returns:
            ``"queued"``, ``"merged"`` or ``"replaced"`` (see :class:`SegmentMailbox`).
        """
        poses = torch.as_tensor(poses, dtype=torch.float64)
        frames = self._pipeline_config.segment_frames if self._pipeline_config else None
        if poses.ndim != 3 or poses.shape[1:] != (4, 4) or (frames is not None and len(poses) != frames):
            raise ValueError(f"queue_segment: expected poses [{frames or 'T'},4,4], got {list(poses.shape)}")
        outcome = self._mailbox.put(SegmentJob(poses.clone(), action))
        self._wake.emit()
        return outcome

    def cancel(self) -> None:
        """Cancel the running segment (within one denoising step) and drop the waiting one. Thread-safe."""
        self._mailbox.cancel_all()

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel everything, release the worker's resources and join the thread; True when it ended."""
        if not self._thread.isRunning():
            return True
        self._worker._closing.set()  # noqa: SLF001 - requests already queued are skipped
        self._mailbox.cancel_all()
        self._request.emit(("close", ()))
        return bool(self._thread.wait(timeout_ms))

    def _post(self, kind: str, *args) -> None:
        if not self._thread.isRunning():
            raise RuntimeError("the generation thread has been shut down")
        self._request.emit((kind, args))
