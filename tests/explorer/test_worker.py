"""GenerationController / GenerationWorker with pytest-qt: progress, cancel, errors, recording, shutdown.

No widgets: the worker needs QtCore only. pytest-xvfb provides a display in the full test run; run
alone without one, the offscreen platform is used (set before the QApplication exists).
"""

import os
from pathlib import Path

if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from explorer.camera_path import CameraPath  # noqa: E402
from explorer.flight import step_segment  # noqa: E402
from explorer.session import load_session  # noqa: E402
from explorer.worker import (  # noqa: E402
    GenerationController,
    GenerationSettings,
    MemorySnapshot,
    SceneInfo,
    SegmentJob,
    SegmentMailbox,
    describe_error,
)
from model.generation.backbone import BackboneConfig  # noqa: E402
from model.generation.pipeline import PipelineConfig  # noqa: E402
from model.io.folders import ModelFolderError  # noqa: E402

H, W = 64, 128
LONG = 180_000  # ms; generous for a loaded 2-core CI machine
TINY = BackboneConfig(backend="tiny", device="cpu")
PIPE = PipelineConfig(steps=2, inpaint_fraction=1.0)
SMALL = GenerationSettings(height=H, width=W, prompt="a room")


@pytest.fixture(scope="module")
def controller(qapp):
    c = GenerationController()
    c.tiny_loaded = False
    yield c
    assert c.shutdown(), "the generation thread joins"
    assert not c.running


@pytest.fixture
def ready(controller, qtbot):
    """The controller with the tiny backbone loaded and the bundled scene open."""
    if not controller.tiny_loaded:
        with qtbot.waitSignal(controller.backbone_ready, timeout=LONG):
            controller.load_backbone(TINY, PIPE, SMALL)
        controller.tiny_loaded = True
    with qtbot.waitSignal(controller.scene_ready, timeout=LONG) as scene:
        controller.open_bundled()
    controller.scene = scene.args[0]
    qtbot.waitUntil(lambda: not controller.busy, timeout=LONG)
    return controller


def snapshot(controller, qtbot) -> MemorySnapshot:
    with qtbot.waitSignal(
        controller.memory_changed, timeout=LONG, check_params_cb=lambda s: s.reason == "requested"
    ) as blocker:
        controller.request_memory_snapshot()
    return blocker.args[0]


def test_scene_ready_carries_image_intrinsics_and_pose(ready):
    scene = ready.scene
    assert isinstance(scene, SceneInfo)
    assert scene.image.shape == (H, W, 3) and scene.image.dtype == np.uint8
    assert scene.K.shape == (3, 3) and np.allclose(scene.start_w2c, np.eye(4))
    assert scene.source == "bundled" and scene.depth_source.startswith("exact") and not scene.prior_depth
    assert scene.points > 0 and scene.latent_stride == 4


def test_progress_signals_and_segment_arrive(ready, qtbot):
    steps, snaps, results = [], [], []
    ready.step_progress.connect(lambda s, i, n: steps.append((s, i, n)))
    ready.memory_changed.connect(snaps.append)
    ready.segment_ready.connect(results.append)
    # wait for the segment itself: an ``idle`` from opening the scene may still be queued
    with qtbot.waitSignal(ready.segment_ready, timeout=LONG):  # step_progress signals arrive before it, in order
        assert ready.queue_segment(step_segment("step_forward", torch.eye(4)), action="step_forward") == "queued"
    assert len(results) == 1
    result = results[0]
    assert result.index == 0 and result.frames.shape == (33, H, W, 3) and result.action == "step_forward"
    assert steps == [(0, 1, 2), (0, 2, 2)]
    qtbot.waitUntil(lambda: any(s.reason == "segment" for s in snaps), timeout=LONG)
    snap = [s for s in snaps if s.reason == "segment"][-1]
    assert (
        snap.points == result.memory_points
        and snap.positions.shape == (snap.points, 3)
        and snap.colors.dtype == np.uint8
    )
    assert snap.segments_done == 1 and (snap.footprint_m > 0).all(), "every point's writing pose is known"
    assert snap.features.shape == (snap.points, 48) and snap.features.dtype == np.float16, (
        "latent features for the PCA colours"
    )
    ready.step_progress.disconnect()
    ready.memory_changed.disconnect()
    ready.segment_ready.disconnect()


def test_cancel_mid_segment_keeps_the_memory_and_the_thread(ready, qtbot):
    before = snapshot(ready, qtbot)
    seen = []

    def cancel_after_first_step(segment, step, steps):  # runs in the worker thread (direct connection)
        seen.append(step)
        if step == 1:
            ready.cancel()

    ready.worker.step_progress.connect(cancel_after_first_step, Qt.DirectConnection)
    try:
        with qtbot.waitSignal(ready.cancelled, timeout=LONG) as blocker:
            ready.queue_segment(step_segment("turn_left", torch.eye(4)))
    finally:
        ready.worker.step_progress.disconnect(cancel_after_first_step)
    assert blocker.args == [0] and seen == [1], "the cancel took effect at the next step"
    after = snapshot(ready, qtbot)
    assert (after.points, after.bytes, after.segments_done) == (before.points, before.bytes, before.segments_done)
    for name in ("positions", "colors", "segments", "frames"):
        assert np.array_equal(getattr(after, name), getattr(before, name)), name  # exact: untouched memory, copied out
    with qtbot.waitSignal(ready.segment_ready, timeout=LONG) as blocker:
        ready.queue_segment(step_segment("turn_left", torch.eye(4)))
    assert blocker.args[0].index == 0, "the cancelled segment is generated again under the same number"


def test_bad_image_fails_with_the_file_name_and_the_worker_goes_on(ready, qtbot, tmp_path):
    bad = tmp_path / "holiday_photo.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with qtbot.waitSignal(ready.failed, timeout=LONG) as blocker:
        ready.open_image(bad)
    title, message = blocker.args
    assert title == "Cannot open image" and "holiday_photo.jpg" in message and "Fix:" in message
    with qtbot.waitSignal(ready.failed, timeout=LONG) as blocker:
        ready.open_image(tmp_path / "missing.png")
    assert "missing.png" in blocker.args[1] and "not found" in blocker.args[1]
    with qtbot.waitSignal(ready.scene_ready, timeout=LONG):
        ready.open_bundled()


def test_photo_without_depth_model_warns_loudly(ready, qtbot, tmp_path):
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((90, 160, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    messages = []
    ready.status.connect(messages.append)
    with qtbot.waitSignal(ready.scene_ready, timeout=LONG) as blocker:
        ready.open_image(tmp_path / "p.png")
    ready.status.disconnect()
    scene = blocker.args[0]
    assert scene.prior_depth and scene.image.shape == (H, W, 3) and scene.source.endswith("p.png")
    assert any(m.startswith("WARNING") and "depth" in m for m in messages)


def test_the_status_line_says_what_opening_a_photo_dropped(ready, qtbot, tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.full((90, 120, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    messages = []
    ready.status.connect(messages.append)
    with qtbot.waitSignal(ready.scene_ready, timeout=LONG):
        ready.open_image(tmp_path / "anim.gif")
    ready.status.disconnect()
    assert f"WARNING: {tmp_path / 'anim.gif'}: the file holds 3 frames: using frame 1 of 3" in messages
    assert (
        f"WARNING: {tmp_path / 'anim.gif'}: the 120x90 photo is centre-cropped to the {W}x{H} frame's aspect: "
        "33% of its height is cut off, half at the top, half at the bottom"
    ) in messages


def test_a_memory_for_another_latent_names_its_file(ready, qtbot, tmp_path):
    from model.memory.latent import LatentSpatialMemory

    path = tmp_path / "mem16.safetensors"
    LatentSpatialMemory.from_points(torch.rand(5, 3), torch.rand(5, 16)).save(path)
    with qtbot.waitSignal(ready.failed, timeout=LONG) as blocker:
        ready.load_memory(path)
    assert f"{path}: channels: memory holds 16-channel features, the backbone's latent has 48" in blocker.args[1]


def test_save_memory_writes_the_workers_memory_and_says_where(ready, qtbot, tmp_path):
    from model.memory.latent import LatentSpatialMemory

    path = tmp_path / "saved.safetensors"
    shown = snapshot(ready, qtbot)
    with qtbot.waitSignal(ready.status, timeout=LONG, check_params_cb=lambda m: m.startswith("Memory saved")) as said:
        ready.save_memory(path)
    assert str(path) in said.args[0]
    saved = LatentSpatialMemory.load(path)
    assert len(saved) == len(shown.positions) > 0
    assert torch.equal(saved.positions, torch.from_numpy(shown.positions))


def test_record_through_the_controller_then_continue_the_session(ready, qtbot, tmp_path):
    folder = tmp_path / "session"
    planned = CameraPath(fps=8.0)
    planned.add(np.eye(4))
    planned.add(step_segment("turn_left", torch.eye(4))[-1].numpy(), 3.0)
    ready.set_camera_path(planned.to_dict())
    ready.start_recording(folder, fps=8.0)
    first = step_segment("step_forward", torch.eye(4))
    with qtbot.waitSignal(ready.segment_ready, timeout=LONG):
        ready.queue_segment(first, action="step_forward")
    with qtbot.waitSignal(ready.recording_saved, timeout=LONG) as blocker:
        ready.stop_recording()
    assert blocker.args == [str(folder)]
    session = load_session(folder)
    assert session.frames.shape == (33, H, W, 3) and session.actions == ["step_forward"] and session.fps == 8.0
    assert session.source == "bundled" and session.settings["generation"]["height"] == H
    saved = session.camera_path  # the planned path travels with the session
    assert [k.time_s for k in saved.keyframes] == [0.0, 3.0]
    assert np.allclose(saved.keyframes[1].w2c, planned.keyframes[1].w2c)
    ready.set_camera_path(None)
    with qtbot.waitSignal(ready.scene_ready, timeout=LONG) as blocker:
        ready.continue_session(folder)
    scene = blocker.args[0]
    assert (
        scene.segments_done == 1
        and scene.source == f"session:{folder}"
        and np.array_equal(scene.image, session.last_frame)
    )  # exact: the same PNG (lossless uint8)
    assert np.allclose(scene.start_w2c, first[-1].numpy())
    with qtbot.waitSignal(ready.segment_ready, timeout=LONG) as blocker:
        ready.queue_segment(step_segment("turn_right", first[-1]))
    assert blocker.args[0].index == 1 and blocker.args[0].frame_ids[0] == 32


def test_segment_before_any_scene_and_bad_poses_fail_cleanly(ready, qtbot):
    with pytest.raises(ValueError, match="33,4,4"):
        ready.queue_segment(torch.eye(4)[None].repeat(5, 1, 1))
    bad = step_segment("step_forward", torch.eye(4))
    bad[3, 0, 0] = float("nan")
    with qtbot.waitSignal(ready.failed, timeout=LONG) as blocker:
        ready.queue_segment(bad)
    assert blocker.args[0] == "Invalid input" and "NaN" in blocker.args[1]


def test_missing_weights_name_the_folder_and_a_model_loads_afterwards(controller, qtbot, tmp_path):
    with qtbot.waitSignal(controller.failed, timeout=LONG) as blocker:
        controller.load_backbone(BackboneConfig(backend="wan", model_dir=str(tmp_path / "Wan2.2")), PipelineConfig())
    title, message = blocker.args
    assert title == "Model weights not found" and "Wan2.2" in message and "model_index.json" in message
    with qtbot.waitSignal(controller.backbone_ready, timeout=LONG):
        controller.load_backbone(TINY, PIPE, SMALL)


def test_the_sky_model_of_the_settings_keeps_its_sky_out_of_the_memory(
    controller, qtbot, tmp_path, save_tiny_segformer
):
    save_tiny_segformer(tmp_path / "sky", {0: "building", 1: "sky"}, always=1)  # everything is sky
    with qtbot.waitSignal(controller.backbone_ready, timeout=LONG):
        controller.load_backbone(TINY, PIPE, replace(SMALL, sky_model=str(tmp_path / "sky")))
    controller.tiny_loaded = False  # the next test loads the plain settings again
    with qtbot.waitSignal(controller.scene_ready, timeout=LONG) as scene:
        controller.open_bundled()
    with qtbot.waitSignal(controller.segment_ready, timeout=LONG) as segment:
        controller.queue_segment(step_segment("step_forward", torch.eye(4)))
    assert segment.args[0].memory_points == scene.args[0].points, "all generated frames were sky: nothing was written"
    with qtbot.waitSignal(controller.failed, timeout=LONG) as blocker:
        controller.load_backbone(TINY, PIPE, replace(SMALL, sky_model=str(tmp_path / "none")))
        controller.open_bundled()
    title, message = blocker.args
    assert title == "Sky segmentation model not usable"
    assert f"{tmp_path / 'none'}: sky segmentation model folder not found" in message


def test_shutdown_joins_and_refuses_new_requests(qapp):
    c = GenerationController()
    assert c.running
    assert c.shutdown(30_000) and not c.running
    assert c.shutdown(), "twice is fine"
    with pytest.raises(RuntimeError, match="shut down"):
        c.open_bundled()


def test_mailbox_merges_continuing_requests_and_replaces_others():
    box = SegmentMailbox()
    a = step_segment("step_forward", torch.eye(4))
    b = step_segment("turn_right", a[-1])
    assert box.put(SegmentJob(a, "step_forward")) == "queued"
    assert box.put(SegmentJob(b, "turn_right")) == "merged"
    job = box.take()
    assert job.action == "step_forward+turn_right" and len(job.poses) == 33
    assert torch.equal(job.poses[0], a[0]) and torch.equal(
        job.poses[-1], b[-1]
    )  # exact: resample_path copies both ends
    assert box.busy and box.take() is None
    assert box.put(SegmentJob(a)) == "queued"
    assert box.put(SegmentJob(step_segment("orbit_left", torch.eye(4) * 1.0))) == "replaced"
    assert box.cancel_all() and job.cancel.is_set()
    assert box.busy and box.take() is None, "the waiting job was dropped; the running one runs until it notices"
    box.done()
    assert not box.busy


def test_error_messages_say_how_to_fix():
    title, message = describe_error(
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "Generating segment 3"
    )
    assert title == "Out of GPU memory" and "lower the resolution or start with --offload group" in message
    title, message = describe_error(RuntimeError("boom"), "Generating segment 3")
    assert title == "Generation error" and "boom" in message
    folder_error = ModelFolderError(Path("/models/da2"), "depth model", ["config.json missing"])
    title, message = describe_error(folder_error, "Opening photo")
    assert title == "Depth model not usable" and "/models/da2 is not a usable depth model folder" in message


def test_readouts_come_with_each_segment_and_rewind_restores_the_memory_exactly(ready, qtbot):
    """Three segments, rewind to after the first (keeping the rest as a branch), a new second segment,
    then back to the branch: each time the memory equals the copy taken when that segment finished."""
    worker = ready.worker
    after: dict[int, object] = {}  # segments done -> (memory copy, last frame), taken in the worker thread

    def keep_copy(result):  # in the worker thread, as the segment is done
        after[result.index + 1] = (worker._pipe.memory.clone(), result.frames[-1].copy(), result)  # noqa: SLF001

    readouts = []
    worker.segment_ready.connect(keep_copy, Qt.DirectConnection)
    worker.readout_ready.connect(readouts.append, Qt.DirectConnection)  # only this test's segments
    try:
        pose = torch.eye(4, dtype=torch.float64)
        for done, action in enumerate(("step_forward", "turn_left", "step_forward"), start=1):
            poses = step_segment(action, pose)
            ready.queue_segment(poses, action=action)
            qtbot.waitUntil(lambda done=done: done in after and not ready.busy, timeout=LONG)
            pose = poses[-1]
    finally:
        worker.segment_ready.disconnect(keep_copy)
        worker.readout_ready.disconnect(readouts.append)
    assert [r.index for r in readouts] == [0, 1, 2]
    readout, result = readouts[1], after[2][2]
    assert readout.frames.shape == (9, H, W, 3) and readout.visible.shape == (9, H // 4, W // 4)
    assert list(readout.frame_ids) == list(range(32, 65, 4)) and readout.latent_frame_of(45) == 3
    # inpaint fraction 1.0 and the exact patch VAE: where the memory had cells, the model's key frames
    # are the decoded readout; elsewhere the model invented something else
    seen = np.repeat(np.repeat(readout.visible[1:], 4, axis=1), 4, axis=2)
    generated = result.frames[::4][1:].astype(np.int16)
    diff = np.abs(generated - readout.frames[1:].astype(np.int16)).max(axis=-1)
    assert 0.05 < seen.mean() < 1.0 and diff[seen].mean() < 1.0 and diff[~seen].mean() > 5.0

    def memory_equals(reference) -> None:
        memory = worker._pipe.memory  # noqa: SLF001 (read after the worker went idle)
        assert len(memory) == len(reference) > 0
        for name, tensor in reference._state().items():  # noqa: SLF001
            # exact (copies, no arithmetic); rejected cells without a position are NaN in both
            torch.testing.assert_close(getattr(memory, name), tensor, rtol=0, atol=0, equal_nan=True, msg=name)

    with qtbot.waitSignal(ready.rewound, timeout=LONG) as blocker:
        ready.rewind(1, keep_as="first try")
    qtbot.waitUntil(lambda: not ready.busy, timeout=LONG)
    assert blocker.args == [1] and worker.history.end == 1 and worker.history.branches["first try"].end == 3
    memory_equals(after[1][0])
    assert np.array_equal(worker._pipe.last_frame, after[1][1])  # noqa: SLF001
    with qtbot.waitSignal(ready.segment_ready, timeout=LONG) as blocker:
        ready.queue_segment(step_segment("turn_right", after[1][2].w2c[-1]))
    assert blocker.args[0].index == 1 and blocker.args[0].frame_ids[0] == 32, "numbered after the rewind point"
    with qtbot.waitSignal(ready.rewound, timeout=LONG) as blocker:
        ready.switch_branch("first try", keep_as="second try")
    qtbot.waitUntil(lambda: not ready.busy, timeout=LONG)
    assert blocker.args == [3] and set(worker.history.branches) == {"second try"}
    memory_equals(after[3][0])
    with qtbot.waitSignal(ready.failed, timeout=LONG) as blocker:
        ready.rewind(7)
    assert "cannot go to 7 segments done" in blocker.args[1]
