"""Background generation for the desktop explorer: a QObject worker in a QThread (QtCore only).

Modules: :mod:`~explorer.worker.messages` (settings, requests, scene info, memory snapshots, segment
jobs), :mod:`~explorer.worker.mailbox` (the latest-value segment mailbox),
:mod:`~explorer.worker.errors` (error descriptions for the UI), :mod:`~explorer.worker.worker` (the
worker and its signals) and :mod:`~explorer.worker.controller` (the GUI-thread facade). The public
names are importable from ``explorer.worker``.

Qt's worker-object pattern: :class:`GenerationWorker` owns the backbone, the
:class:`~model.generation.pipeline.MiragePipeline` and the scene, lives in its own ``QThread`` and is driven
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
  **latest-value mailbox** (:mod:`~explorer.worker.mailbox`): at most one request waits beyond the
  running one, and a newer one replaces it or, when it continues it, is merged with it;
* :meth:`~GenerationController.cancel`: sets the running request's ``threading.Event``, polled by
  the pipeline between denoising steps (takes effect within one step; long blocking calls such as
  model loading or VAE decoding are not interruptible) and drops the waiting request. What was
  generated is kept; a cancelled segment leaves the memory exactly as it was;
* :meth:`~GenerationController.load_memory`, :meth:`~GenerationController.request_memory_snapshot`,
  :meth:`~GenerationController.shutdown` (cancels, closes the worker's resources, joins the thread).

Signals (on both classes): those of :class:`GenerationSignals`, named in :data:`SIGNAL_NAMES`.

Recording (:meth:`~GenerationController.start_recording` / :meth:`~GenerationController.stop_recording`)
happens in the worker thread, in order with the segments, so the saved memory always matches the
recorded frames.

There is no per-step image preview: the pipeline's step callback exposes no latents (only
``(segment, step, steps)``), and a useful preview of Wan2.2's 48-channel latent needs fitted
latent->RGB factors or a tiny decoder; the UI shows the instant memory preview
(:mod:`explorer.preview`) while a segment runs instead.

Errors never end the thread: each request runs under a handler that turns exceptions into
``failed(title, message)`` whose message says how to fix it (:func:`~explorer.worker.errors.describe_error`).
"""

from explorer.worker.controller import GenerationController
from explorer.worker.errors import describe_error
from explorer.worker.mailbox import SegmentMailbox
from explorer.worker.messages import (
    GenerationSettings,
    MemorySnapshot,
    Request,
    SceneInfo,
    SegmentJob,
    SegmentReadout,
    snapshot_memory,
)
from explorer.worker.worker import SIGNAL_NAMES, GenerationSignals, GenerationWorker

__all__ = [
    "SIGNAL_NAMES",
    "GenerationController",
    "GenerationSettings",
    "GenerationSignals",
    "GenerationWorker",
    "MemorySnapshot",
    "Request",
    "SceneInfo",
    "SegmentJob",
    "SegmentMailbox",
    "SegmentReadout",
    "describe_error",
    "snapshot_memory",
]
