"""The generation worker: a QObject that owns backbone, pipeline and scene in the generation thread.

It is driven only through queued signals from :class:`explorer.worker.GenerationController`: each
:class:`~explorer.worker.messages.Request` names one of its request methods (``load_backbone``,
``open_image``, ...), and ``wake`` runs the segment the :class:`~explorer.worker.mailbox.SegmentMailbox`
holds. Errors never end the thread: each request runs under a handler that turns exceptions into
``failed(title, message)`` whose message says how to fix it (:func:`~explorer.worker.errors.describe_error`).

Recording happens here, in order with the segments, so the saved memory always matches the recorded
frames.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, Signal, Slot

from explorer.history import CHECKPOINT_BUDGET_BYTES, BranchingHistory, MemoryCheckpoint, trim_checkpoints
from explorer.scene_inputs import SceneInputs, bundled_scene, photo_inputs, session_inputs
from explorer.session import BranchSegment, SessionRecorder, load_session, session_memory
from explorer.worker.errors import describe_error
from explorer.worker.mailbox import SegmentMailbox
from explorer.worker.messages import (
    GenerationSettings,
    Request,
    SceneInfo,
    SegmentJob,
    decode_readout,
    snapshot_memory,
)
from model.baselines.kinds import load_memory, make_memory, point_stride
from model.eval.scenes import SceneRenderer
from model.generation.backbone import Backbone, BackboneConfig
from model.generation.memory_branch import MemoryBranch
from model.generation.pipeline import GenerationCancelled, MiragePipeline, PipelineConfig
from model.generation.stack import load_generation_stack
from model.geometry.camera import validate_poses
from model.memory.base import SpatialMemory
from model.memory.masks import SemanticSkySegmenter


class GenerationSignals(QObject):
    """The signals the worker emits and the controller re-emits in the GUI thread (:data:`SIGNAL_NAMES`).

    ``status(str)``, ``backbone_ready(str describe)``, ``scene_ready(SceneInfo)``,
    ``step_progress(segment, step, steps)``, ``segment_ready(SegmentResult)``,
    ``memory_changed(MemorySnapshot)``, ``failed(title, message)``, ``cancelled(segment)``,
    ``idle()`` (nothing running or waiting), ``recording_saved(folder)``,
    ``readout_ready(SegmentReadout)`` (before each ``segment_ready``), ``rewound(segments_done)`` (after a
    ``rewind`` or ``switch_branch``: the memory and the next segment's start are those after that segment).
    """

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
    readout_ready = Signal(object)
    rewound = Signal(int)


class GenerationWorker(GenerationSignals):
    """Owns backbone, pipeline and scene; lives in the generation thread (see the module docstring).

    Its request methods (``load_backbone`` ... ``close``) run in the generation thread only: the
    controller posts them as :class:`~explorer.worker.messages.Request` objects; never call them from another thread.
    """

    def __init__(self, mailbox: SegmentMailbox) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._closing = threading.Event()
        self._backbone: Backbone | None = None
        self._branch: MemoryBranch | None = None
        self._sky: SemanticSkySegmenter | None = None  # of the settings' sky_model, loaded with the first scene
        self._config: PipelineConfig | None = None
        self._settings = GenerationSettings()
        self._pipe: MiragePipeline | None = None
        self._inputs: SceneInputs | None = None
        self._renderer: SceneRenderer | None = None  # the bundled scene's exact depth, created in this thread
        self._poses_by_frame: dict[int, np.ndarray] = {}
        self._last_pose: torch.Tensor | None = None
        self._reopen: Callable[[], None] | None = None  # opens the current scene again (after a model change)
        self._recorder: SessionRecorder | None = None
        self._history: BranchingHistory[MemoryCheckpoint | None] = BranchingHistory()  # memory after each segment
        self._camera_path: dict | None = None  # the planned camera path, saved with recordings

    # ---- dispatch -------------------------------------------------------------------------

    @Slot(object)
    def handle(self, request: Request) -> None:
        """Run one request from the controller (skipped once closing); errors become ``failed``."""
        if self._closing.is_set():
            return
        self._guarded(request.handler, request.doing, *request.args)
        self._maybe_idle()

    @Slot()
    def wake(self) -> None:
        """A segment was queued: run what the mailbox holds (if it was not taken already)."""
        if self._closing.is_set():
            return
        job = self._mailbox.take()
        if job is not None:
            try:
                self._guarded(
                    self._run_segment, f"Generating segment {self._pipe.segments_done if self._pipe else 0}", job
                )
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

    def _warn(self, message: str) -> None:
        self.status.emit(f"WARNING: {message}")

    def _maybe_idle(self) -> None:
        if not self._mailbox.busy and not self._closing.is_set():
            self.idle.emit()

    # ---- requests --------------------------------------------------------------------------

    def load_backbone(
        self, backbone_config: BackboneConfig, pipeline_config: PipelineConfig, settings: GenerationSettings | None
    ) -> None:
        """Load (or replace) the model and its memory weights; a scene that was open is reopened with it."""
        self._backbone = self._pipe = self._branch = self._sky = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._settings = settings or GenerationSettings()
        height, width = self._settings.size(backbone_config.backend)
        backbone, self._branch = load_generation_stack(
            backbone_config,
            self._settings.memory_weights,
            (height, width),
            mode=pipeline_config.mode,
            on_status=self.status.emit,
        )
        self._backbone, self._config = backbone, pipeline_config
        self.backbone_ready.emit(backbone.describe())
        self.status.emit(f"Model ready: {backbone_config.backend}, {width}x{height}, {pipeline_config.steps} steps")
        if self._reopen is not None:  # a new model: reopen the scene that was open
            self.status.emit("Reopening the scene with the new model…")
            self._reopen()

    def _require_backbone(self) -> Backbone:
        if self._backbone is None:
            raise ValueError("no model is loaded yet: load a backbone first (Settings > Model)")
        return self._backbone

    def _require_pipe(self) -> MiragePipeline:
        if self._pipe is None:
            raise ValueError("no scene is open: open a photo or the bundled scene first")
        return self._pipe

    def _scene_renderer(self) -> SceneRenderer:
        """The renderer of the bundled scene's exact depth, created in this thread on first use."""
        if self._renderer is None:
            self._renderer = SceneRenderer()
        return self._renderer

    def open_image(self, path: str, depth_path: str | None = None) -> None:
        """Start a scene from a photo (depth from ``depth_path``, the depth model, or the flat prior)."""
        backbone = self._require_backbone()
        height, width = self._settings.size(backbone.config.backend)
        self.status.emit(f"Opening {path} at {width}x{height}…")
        inputs = photo_inputs(
            path,
            height,
            width,
            backbone.device,
            depth_path=depth_path,
            depth_model=self._settings.depth_model,
            warn=self._warn,
        )
        self._start_scene(inputs, partial(self.open_image, path, depth_path))

    def open_bundled(self) -> None:
        """Start the bundled sample scene (exact depth for every frame)."""
        backbone = self._require_backbone()
        height, width = self._settings.size(backbone.config.backend)
        self.status.emit(f"Opening the bundled sample scene at {width}x{height} (exact depth)…")
        self._start_scene(bundled_scene(height, width, self._scene_renderer()), self.open_bundled)

    def _start_scene(self, inputs: SceneInputs, reopen: Callable[[], None]) -> None:
        """Build a fresh memory and pipeline from ``inputs``; ``reopen`` opens the same scene again."""
        backbone = self._require_backbone()
        self.status.emit("Building the memory from the first frame…")
        memory = make_memory(self._config.memory_kind, self._config.memory, backbone.device, backbone.vae)
        pipe = self._new_pipeline(memory)
        pipe.start(inputs.image, inputs.depth, inputs.K, prompt=self._settings.prompt)  # a failure keeps the open scene
        self._pipe, self._inputs, self._reopen = pipe, inputs, reopen
        start = torch.eye(4, dtype=torch.float64)
        self._poses_by_frame = {0: start.numpy()}
        self._last_pose = start
        self._restart_history()
        stats = pipe.memory.stats()
        self.scene_ready.emit(
            SceneInfo(
                image=inputs.image.copy(),
                K=inputs.K.numpy().copy(),
                start_w2c=start.numpy().copy(),
                depth=inputs.depth.numpy().copy(),
                source=inputs.source,
                depth_source=inputs.depth_source.name,
                k_source=inputs.k_source,
                prior_depth=inputs.depth_source.name.startswith("prior"),
                segments_done=0,
                points=stats.points,
                bytes=stats.bytes,
                latent_stride=self._stride(),
            )
        )
        self._emit_snapshot("scene")
        self.status.emit(f"Scene ready: {inputs.source}; memory {stats.points} points")

    def _new_pipeline(self, memory: SpatialMemory) -> MiragePipeline:
        """A pipeline on the loaded model with ``memory``, and the sky segmenter of the settings (loaded once)."""
        backbone = self._require_backbone()
        if self._settings.sky_model and self._sky is None:
            self.status.emit(f"Loading the sky segmentation model {self._settings.sky_model}…")
            self._sky = SemanticSkySegmenter(self._settings.sky_model, device=backbone.device)
        return MiragePipeline(backbone, self._config, self._branch, memory, self._sky)

    def continue_session(self, folder: str) -> None:
        """Resume a recorded session: its memory, last frame, segment count and frame size."""
        backbone = self._require_backbone()
        session = load_session(folder)
        height, width = session.frames.shape[1:3]
        expected = self._settings.size(backbone.config.backend)
        if (height, width) != expected:
            self._settings = replace(self._settings, height=height, width=width)
            self.status.emit(f"Using the session's frame size {width}x{height}")
        inputs = session_inputs(session, self._scene_renderer, backbone.device, self._settings.depth_model, self._warn)
        memory = session_memory(session, self._config, backbone)
        pipe = self._new_pipeline(memory)
        pipe.resume(session.last_frame, session.K, session.prompt, memory, session.segments_done)
        self._pipe, self._inputs, self._reopen = pipe, inputs, partial(self.continue_session, folder)
        self._poses_by_frame = session.poses_by_frame()
        last = torch.from_numpy(session.w2c[-1][-1].copy())
        self._last_pose = last
        self._restart_history()
        stats = pipe.memory.stats()
        self.scene_ready.emit(
            SceneInfo(
                image=session.last_frame.copy(),
                K=session.K.copy(),
                start_w2c=last.numpy().copy(),
                depth=None,
                source=f"session:{folder}",
                depth_source=inputs.depth_source.name,
                k_source="session",
                prior_depth=inputs.depth_source.name.startswith("prior"),
                segments_done=session.segments_done,
                points=stats.points,
                bytes=stats.bytes,
                latent_stride=self._stride(),
            )
        )
        self._emit_snapshot("loaded")
        self.status.emit(f"Continuing {folder} after {session.segments_done} segments; memory {stats.points} points")

    def load_memory(self, path: str) -> None:
        """Replace the open scene's memory by a saved one."""
        pipe = self._require_pipe()
        pipe.load_memory(load_memory(path, self._config.memory_kind, pipe.backbone.vae), source=path)
        self._restart_history()
        self._emit_snapshot("loaded")
        self.status.emit(f"Loaded memory {path}: {pipe.memory.stats().points} points")

    def save_memory(self, path: str) -> None:
        """Write the open scene's memory to ``path``."""
        pipe = self._require_pipe()
        pipe.memory.save(path)
        self.status.emit(f"Memory saved to {path}: {pipe.memory.stats().points} points")

    def _run_segment(self, job: SegmentJob) -> None:
        """Generate the segment of ``job`` (from ``wake``; a cancel leaves the memory as it was)."""
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
            result = pipe.run_segment(
                poses,
                self._inputs.depth_source,
                on_step=lambda s, i, n: self.step_progress.emit(s, i, n),
                should_cancel=should_cancel,
            )
        except GenerationCancelled:
            self.cancelled.emit(index)
            self.status.emit(f"Segment {index + 1} cancelled; the memory is unchanged")
            return
        result.action = job.action  # what made the segment (for session recording)
        written = result.frame_ids[::4][1:]
        for frame_id, pose in zip(written, result.w2c[::4][1:], strict=True):
            self._poses_by_frame[int(frame_id)] = pose.numpy().copy()
        self._last_pose = result.w2c[-1].clone()
        self._history.append(self._checkpoint())
        trim_checkpoints(self._history)
        if self._recorder is not None:
            try:
                self._recorder.add_segment(result, job.action, memory=pipe.memory)
            except Exception as exc:  # noqa: BLE001 - the segment itself is fine; only the recording stops
                recorder, self._recorder = self._recorder, None
                recorder.abort()
                kept = (
                    f"The folder keeps the {recorder.segments} segment(s) recorded before."
                    if recorder.segments
                    else "The folder is unchanged."
                )
                self.failed.emit(
                    "Recording stopped", f"Adding segment {index + 1} to the recording failed: {exc}\n\n{kept}"
                )
        self._emit_readout(result)
        self.segment_ready.emit(result)
        self._emit_snapshot("segment")
        self.status.emit(
            f"Segment {index + 1} done in {result.timings['total']:.1f} s; memory {result.memory_points} points"
        )

    def _emit_readout(self, result) -> None:
        """Send the segment's decoded memory readout and its visibility (``readout_ready``)."""
        if result.readout is not None:
            self.readout_ready.emit(decode_readout(self._require_backbone().vae, result))

    # ---- rewind and branches ---------------------------------------------------------------

    def _checkpoint(self) -> MemoryCheckpoint:
        pipe = self._require_pipe()
        return MemoryCheckpoint.take(
            pipe.memory, pipe.last_frame, self._last_pose, pipe.segments_done, self._poses_by_frame
        )

    def _restart_history(self) -> None:
        """A new line of segments from the pipeline's current state (scene opened, session resumed, memory loaded)."""
        self._history = BranchingHistory(self._require_pipe().segments_done, self._checkpoint())

    @property
    def history(self) -> BranchingHistory[MemoryCheckpoint]:
        """The per-segment memory checkpoints and kept branches (read it in the generation thread only)."""
        return self._history

    def rewind(self, segments_done: int, keep_as: str | None) -> None:
        """Continue after segment ``segments_done`` with the memory exactly as it was then; the later
        segments' checkpoints are kept as branch ``keep_as`` (or dropped when None)."""
        self._no_recording("rewind")
        checkpoint = self._kept(segments_done)
        self._history.rewind(segments_done, keep_as)
        self._restore(checkpoint)

    def switch_branch(self, name: str, keep_as: str | None) -> None:
        """Continue at the tip of branch ``name``; the segments after its fork become branch ``keep_as``."""
        self._no_recording("switch branches")
        if name not in self._history.branches:
            raise ValueError(f"no branch named {name!r}")
        self._kept(self._history.branches[name].fork)  # the fork must still be on this line
        self._history.switch(name, keep_as)
        self._restore(self._history.at(self._history.end))

    def _kept(self, segments_done: int) -> MemoryCheckpoint:
        """The checkpoint after ``segments_done`` segments; a ``ValueError`` when it is not (or no longer) kept."""
        checkpoint = self._history.at(segments_done)  # raises outside the history
        if checkpoint is None:
            raise ValueError(
                f"the memory after segment {segments_done} is no longer kept: checkpoints are limited to "
                f"{CHECKPOINT_BUDGET_BYTES / 2**20:.0f} MiB of host memory, the oldest are dropped first"
            )
        return checkpoint

    def _no_recording(self, what: str) -> None:
        if self._recorder is not None:
            raise ValueError(f"cannot {what} while recording to {self._recorder.folder}: stop the recording first")

    def _restore(self, checkpoint: MemoryCheckpoint) -> None:
        pipe = self._require_pipe()
        memory = checkpoint.restore(pipe.backbone.device)
        pipe.resume(checkpoint.last_frame, pipe.K, self._settings.prompt, memory, checkpoint.segments_done)
        self._last_pose = checkpoint.last_pose.clone()
        self._poses_by_frame = dict(checkpoint.poses_by_frame)
        self.rewound.emit(checkpoint.segments_done)
        self._emit_snapshot("rewound")
        self.status.emit(
            f"Continuing after segment {checkpoint.segments_done}; memory {pipe.memory.stats().points} points"
        )

    def set_camera_path(self, camera_path: dict | None) -> None:
        """The planned camera path (:meth:`explorer.camera_path.CameraPath.to_dict`), saved with recordings."""
        self._camera_path = camera_path
        if self._recorder is not None:
            self._recorder.camera_path = camera_path

    def start_recording(self, folder: str, fps: float) -> None:
        """Record every following segment into a session folder."""
        pipe = self._require_pipe()
        if self._recorder is not None:
            raise ValueError(f"already recording to {self._recorder.folder}; stop that recording first")
        recorder = SessionRecorder(folder, fps)
        recorder.camera_path = self._camera_path
        height, width = pipe.frame_hw
        recorder.start(
            width=width,
            height=height,
            K=pipe.K,
            start_w2c=self._last_pose,
            source=self._inputs.source,
            prompt=self._settings.prompt,
            seed=pipe.config.seed,
            model=pipe.describe(),
            first_segment=pipe.segments_done,
            settings={
                "backbone": asdict(self._backbone.config),
                "pipeline": asdict(pipe.config),
                "generation": asdict(self._settings),
            },
        )
        self._recorder = recorder
        self.status.emit(f"Recording to {folder}")

    def stop_recording(self, branches: list[tuple] = ()) -> None:
        """Finish the recording, with the kept ``branches`` saved into it (:meth:`_save_branches`);
        ``recording_saved(folder)`` follows (only a status when nothing was recorded)."""
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            raise ValueError("not recording")
        if not recorder.segments:  # news, not an error: nothing to save
            recorder.abort()
            self.status.emit(
                f"Recording stopped: nothing was recorded (no segment was generated); {recorder.folder} is unchanged"
            )
            return
        folder = recorder.finish()
        self.recording_saved.emit(str(folder))
        self.status.emit(f"Recording saved to {folder} ({recorder.segments} segments)")
        self._save_branches(recorder, branches)  # a failure here leaves the recording as saved

    def _save_branches(self, recorder: SessionRecorder, branches: list[tuple]) -> None:
        """Save kept branches into the finished ``recorder``'s folder (``branches/<slug>/``, see
        :meth:`explorer.session.SessionRecorder.save_branch`), each with the memory of its checkpoints.

        Args:
            branches: ``(name, fork, frames, w2c, infos)`` per branch: per segment ``[T, H, W, 3]`` uint8
                frames and ``[T, 4, 4]`` w2c (the shared first frame included), and a dict of its ``action``,
                ``depth_source`` and ``depth_residual`` (:meth:`ui.rewind.RewindFlow.branch_payload`).
        """
        for name, fork, frames, w2c, infos in branches:
            branch = self._history.branches.get(name)
            if branch is None or branch.fork != fork or len(branch.items) != len(frames):
                raise ValueError(f"no branch {name!r} of {len(frames)} segment(s) after segment {fork} is kept")
            segments = [
                BranchSegment(
                    fork + k,
                    np.asarray(f),
                    np.asarray(p),
                    info.get("action", ""),
                    checkpoint.memory,
                    info.get("depth_source", ""),
                    info.get("depth_residual"),
                )
                for k, (f, p, info, checkpoint) in enumerate(zip(frames, w2c, infos, branch.items, strict=True))
            ]
            saved = recorder.save_branch(name, fork, segments)
            self.status.emit(f"Branch {name!r} saved to {saved}")

    def update_generation(self, changes: dict, prompt: str | None) -> None:
        """New steps / seed / inpaint fraction / prompt for the next segments (and scenes opened later)."""
        if self._config is None:
            raise ValueError("load a model first")
        self._config = replace(self._config, **changes)
        if prompt is not None:
            self._settings = replace(self._settings, prompt=prompt)
        if self._pipe is not None:
            self._pipe.update_config(prompt=prompt, **changes)
        self.status.emit("Generation settings updated; they apply from the next segment")

    def snapshot(self) -> None:
        """Emit ``memory_changed`` with the current memory (reason ``"requested"``)."""
        self._emit_snapshot("requested")

    def _emit_snapshot(self, reason: str) -> None:
        pipe = self._require_pipe()
        self.memory_changed.emit(
            snapshot_memory(pipe.memory, reason, pipe.segments_done, self._poses_by_frame, pipe.K, self._stride())
        )

    def _stride(self) -> int:
        return point_stride(self._config.memory_kind, self._require_backbone().vae)

    @Slot()
    def close(self) -> None:
        """Cancel what runs, release every resource and end the thread (the controller's ``shutdown``)."""
        self._closing.set()
        try:
            if self._recorder is not None:  # every recorded segment is already in its folder
                self._recorder.abort()
                self._recorder = None
            if self._renderer is not None:
                self._renderer.close()
        finally:
            self._renderer = None
            self._pipe = self._backbone = self._branch = self._sky = self._inputs = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            QThread.currentThread().quit()


#: Signals the worker emits and the controller re-emits in the GUI thread.
SIGNAL_NAMES = tuple(name for name, value in vars(GenerationSignals).items() if isinstance(value, Signal))
