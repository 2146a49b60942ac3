"""The GUI-thread facade of the generation thread: :class:`GenerationController`.

It creates the thread and the :class:`~explorer.worker.worker.GenerationWorker`, posts every request
to it as a :class:`~explorer.worker.messages.Request` (a bound request method of the worker and its
arguments, run in the generation thread), queues segments in the
:class:`~explorer.worker.mailbox.SegmentMailbox`, and re-emits every worker signal in the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PySide6.QtCore import QObject, QThread, Signal

from explorer.worker.mailbox import SegmentMailbox
from explorer.worker.messages import GenerationSettings, Request, SegmentJob
from explorer.worker.worker import SIGNAL_NAMES, GenerationSignals, GenerationWorker
from model.generation.backbone import BackboneConfig
from model.generation.pipeline import PipelineConfig


class GenerationController(GenerationSignals):
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
    _close = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._mailbox = SegmentMailbox()
        self._thread = QThread()
        self._thread.setObjectName("mirage-generation")
        self._worker = GenerationWorker(self._mailbox)
        self._worker.moveToThread(self._thread)
        self._request.connect(self._worker.handle)  # queued: the worker lives in the other thread
        self._wake.connect(self._worker.wake)
        self._close.connect(self._worker.close)  # queued after every request posted before it
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

    def load_backbone(
        self,
        backbone_config: BackboneConfig,
        pipeline_config: PipelineConfig,
        settings: GenerationSettings | None = None,
    ) -> None:
        """Load (or replace) the model; an open scene is reopened with it."""
        self._pipeline_config = pipeline_config
        self._post("Loading the model", self._worker.load_backbone, backbone_config, pipeline_config, settings)

    def open_image(self, path: str | Path, depth_path: str | None = None) -> None:
        """Start a scene from a photo (at the model size; depth from ``depth_path``, the depth model, or the prior)."""
        self._post(f"Opening {path}", self._worker.open_image, str(path), depth_path)

    def open_bundled(self) -> None:
        """Start the bundled sample scene (exact depth for every frame)."""
        self._post("Opening the bundled scene", self._worker.open_bundled)

    def continue_session(self, folder: str | Path) -> None:
        """Resume a recorded session (:mod:`explorer.session`): its memory, last frame and segment count."""
        self._post(f"Continuing session {folder}", self._worker.continue_session, str(folder))

    def load_memory(self, path: str | Path) -> None:
        """Replace the open scene's memory by a saved one (``.safetensors``)."""
        self._post(f"Loading memory {path}", self._worker.load_memory, str(path))

    def save_memory(self, path: str | Path) -> None:
        """Write the open scene's memory to ``path`` (``.safetensors``, atomically); a status says where."""
        self._post(f"Saving the memory to {path}", self._worker.save_memory, str(path))

    def start_recording(self, folder: str | Path, fps: float = 16.0) -> None:
        """Record every following segment into a session folder (:mod:`explorer.session`)."""
        self._post(f"Recording to {folder}", self._worker.start_recording, str(folder), float(fps))

    def stop_recording(self, branches: list[tuple] = ()) -> None:
        """Finish the recording (after the segments already queued); ``recording_saved(folder)`` follows,
        or only a status when no segment was recorded (nothing is saved, the folder is left alone).

        Args:
            branches: kept branches to save into the recording, ``(name, fork, frames, w2c, infos)`` each
                (:meth:`ui.rewind.RewindFlow.branch_payload`; names as in the worker's history).
        """
        self._post("Saving the recording", self._worker.stop_recording, list(branches))

    def update_generation(self, prompt: str | None = None, **changes) -> None:
        """Change ``steps``, ``seed``, ``inpaint_fraction`` (and the prompt) from the next segment on, no reload."""
        self._post("Changing the generation settings", self._worker.update_generation, dict(changes), prompt)

    def request_memory_snapshot(self) -> None:
        """Ask for a ``memory_changed`` with the current memory."""
        self._post("Reading the memory", self._worker.snapshot)

    def rewind(self, segments_done: int, keep_as: str | None = None) -> None:
        """Continue after segment ``segments_done`` with the memory as it was then (``rewound`` follows); the
        later segments become branch ``keep_as`` or are dropped. Refused while recording."""
        self._post(f"Rewinding to segment {segments_done}", self._worker.rewind, int(segments_done), keep_as)

    def switch_branch(self, name: str, keep_as: str | None = None) -> None:
        """Continue at the tip of a kept branch (``rewound`` follows); the current later segments become ``keep_as``."""
        self._post(f"Switching to branch {name}", self._worker.switch_branch, str(name), keep_as)

    def set_camera_path(self, camera_path: dict | None) -> None:
        """The planned camera path (``CameraPath.to_dict()``) that recordings save with the session."""
        self._post("Saving the camera path", self._worker.set_camera_path, camera_path)

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
        self._close.emit()
        return bool(self._thread.wait(timeout_ms))

    def _post(self, doing: str, handler: Callable[..., None], *args) -> None:
        """Queue ``handler(*args)`` (a request method of the worker) for the generation thread."""
        if not self._thread.isRunning():
            raise RuntimeError("the generation thread has been shut down")
        self._request.emit(Request(handler, args, doing))
