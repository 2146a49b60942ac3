"""Session recording and replay: round trip, embedded metadata, per-segment commits, strict validation, resume."""

import json
import shutil

import numpy as np
import pytest
import torch

from explorer.flight import step_segment
from explorer.scene_inputs import PRIOR_DEPTH_WARNING, bundled_scene, session_inputs
from explorer.session import (
    BranchSegment,
    SessionError,
    SessionRecorder,
    export_camera_path,
    load_session,
    saved_branches,
    session_memory,
)
from model.generation.backbone import BackboneConfig, load_backbone
from model.generation.depth import PriorDepthWarning
from model.generation.pipeline import MiragePipeline, PipelineConfig
from model.io.cameras import read_camera_path_json, read_re10k
from model.io.video import read_mp4_metadata
from model.memory.latent import LatentSpatialMemory

H, W = 64, 128


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(BackboneConfig(backend="tiny", device="cpu"))


@pytest.fixture(scope="module")
def generated(backbone, renderer):
    """Two segments of the bundled scene: (pipeline, inputs, results with rendered frames)."""
    inputs = bundled_scene(H, W, renderer)
    pipe = MiragePipeline(backbone, PipelineConfig(steps=1, seed=2, inpaint_fraction=1.0))
    pipe.start(inputs.image, inputs.depth, inputs.K, prompt="a room")
    first = pipe.run_segment(step_segment("step_forward", torch.eye(4)), inputs.depth_source)
    first.action = "step_forward"
    second = pipe.run_segment(step_segment("turn_left", first.w2c[-1]), inputs.depth_source)
    # The tiny backbone's random weights paint noise into unseen cells, which H.264 cannot keep at this
    # size; the recording is what is under test, so the frames are what an ideal model would draw.
    scene = inputs.depth_source.scene
    for r in (first, second):
        r.frames = renderer.render_trajectory(scene, r.w2c, inputs.K, W, H)[0]
    second.frames[0] = first.frames[-1]
    return pipe, inputs, [first, second]


class BrokenMemory:
    """The pipeline's memory, except that saving it fails like a full disk."""

    def __init__(self, memory):
        self.memory = memory

    def stats(self):
        return self.memory.stats()

    def save(self, path):
        raise OSError(28, "No space left on device", str(path))


def record(folder, generated, fail_memory=False):
    pipe, inputs, results = generated
    recorder = SessionRecorder(folder, fps=12.0)
    recorder.start(
        width=W,
        height=H,
        K=inputs.K,
        start_w2c=torch.eye(4),
        source="bundled",
        prompt="a room",
        seed=2,
        settings={"pipeline": {"steps": 1}},
        model=pipe.describe(),
    )
    recorder.add_segment(results[0], memory=pipe.memory)
    recorder.add_segment(
        results[1], action="turn_left", memory=BrokenMemory(pipe.memory) if fail_memory else pipe.memory
    )
    return recorder.finish()


def test_record_then_reopen_gives_the_same_frames_memory_and_poses(tmp_path, generated):
    pipe, inputs, results = generated
    folder = record(tmp_path / "s1", generated)
    assert sorted(p.name for p in folder.iterdir()) == [
        "cameras.txt",
        "last_frame.png",
        "memory.safetensors",
        "session.json",
        "video.mp4",
    ]
    session = load_session(folder)
    expected = np.concatenate([results[0].frames, results[1].frames[1:]])
    assert session.frames.shape == expected.shape == (65, H, W, 3)
    assert np.abs(session.frames.astype(int) - expected.astype(int)).mean() < 3, "H.264 is lossy but close"
    assert np.array_equal(session.last_frame, results[1].frames[-1]), "last_frame.png is exact"  # lossless uint8
    # tolerance: session.json stores c2w, inverted back on load (a rounding round trip)
    assert np.allclose(session.w2c[0], results[0].w2c.numpy(), atol=1e-12) and np.allclose(
        session.w2c[1], results[1].w2c.numpy(), atol=1e-12
    )
    assert np.allclose(session.all_w2c()[32], results[1].w2c[0].numpy(), atol=1e-12)
    assert np.allclose(session.K, inputs.K.numpy()) and np.allclose(session.start_w2c, np.eye(4))
    assert session.actions == ["step_forward", "turn_left"] and session.segments_done == 2
    assert session.source == "bundled" and session.prompt == "a room" and session.seed == 2 and session.fps == 12.0
    memory = session_memory(session)  # exact: the safetensors file holds copies of the tensors
    for name in ("positions", "features", "colors", "segments", "frames", "rejected_positions", "rejected_labels"):
        a, b = getattr(memory, name), getattr(pipe.memory, name)
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8)), (
            name
        )  # bitwise (NaN too)
    data = json.loads((folder / "session.json").read_text())
    assert read_mp4_metadata(folder / "video.mp4") == data, "the same JSON rides in the MP4 comment"
    assert data["segments"][1]["timings_s"]["total"] > 0 and data["memory"]["points"] == pipe.memory.stats().points
    assert len(data["segments"][0]["c2w"]) == 33 and len(data["segments"][0]["c2w"][0]) == 16
    cams = read_re10k(folder / "cameras.txt")
    assert len(cams.w2c) == 65 and torch.allclose(cams.w2c, torch.from_numpy(session.all_w2c()), atol=1e-9)
    export_camera_path(tmp_path / "path.json", session)
    traj = read_camera_path_json(tmp_path / "path.json")
    assert (
        len(traj) == 65
        and traj.fps == 12.0
        and torch.allclose(traj.w2c, torch.from_numpy(session.all_w2c()), atol=1e-9)
    )


def test_a_failed_or_aborted_recording_keeps_what_was_committed(tmp_path, generated):
    """Each segment is committed: a failed write keeps the segments before it, and nothing is half-written."""
    pipe, inputs, results = generated
    folder = record(tmp_path / "s", generated)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    recorder = SessionRecorder(folder)
    recorder.start(width=W, height=H, K=inputs.K, start_w2c=torch.eye(4), source="bundled")
    with pytest.raises(OSError, match=r"s/memory\.safetensors: No space left on device"):
        recorder.add_segment(results[0], memory=BrokenMemory(pipe.memory))
    assert not recorder.recording, "a failed segment ends the recording"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, (
        "nothing committed: the previous recording is intact"
    )
    with pytest.raises(OSError, match="No space left"):
        record(folder, generated, fail_memory=True)
    session = load_session(folder)
    assert session.segments_done == 1 and len(session.frames) == 33, (
        "the first segment was committed, the failed second one not"
    )
    recorder = SessionRecorder(folder)
    recorder.start(width=W, height=H, K=inputs.K, start_w2c=torch.eye(4), source="bundled")
    recorder.abort()
    assert load_session(folder).segments_done == 1, "an abort before any segment leaves the folder as it was"
    assert [p.name for p in tmp_path.iterdir()] == ["s"], "no temporary folders left behind"
    empty = SessionRecorder(tmp_path / "empty")
    empty.start(width=W, height=H, K=inputs.K, start_w2c=torch.eye(4), source="bundled")
    with pytest.raises(ValueError, match="no segments"):
        empty.finish()
    assert not (tmp_path / "empty").exists()


def test_branches_and_depth_stats_are_saved_with_the_session(tmp_path, generated):
    pipe, inputs, results = generated
    recorder = SessionRecorder(tmp_path / "s", fps=12.0)
    recorder.start(width=W, height=H, K=inputs.K, start_w2c=torch.eye(4), source="bundled")
    recorder.add_segment(results[0], memory=pipe.memory)
    with pytest.raises(RuntimeError, match="finished recording"):
        recorder.save_branch("branch 1", 1, [])
    folder = recorder.finish()
    data = json.loads((folder / "session.json").read_text())
    assert results[0].depth_source and data["segments"][0]["depth_source"] == results[0].depth_source
    assert data["segments"][0]["depth_residual"] == results[0].depth_residual
    assert load_session(folder).branches == [], "a session without branches"
    second = results[1]
    branch = recorder.save_branch(
        "branch 1", 1, [BranchSegment(1, second.frames, second.w2c.numpy(), "turn_left", pipe.memory, "exact", 0.25)]
    )
    assert branch == folder / "branches" / "branch-1"
    [saved] = load_session(folder).branches
    assert (saved.name, saved.fork, saved.segments, saved.end, saved.folder) == ("branch 1", 1, 1, 2, branch)
    session = load_session(branch)
    assert session.branch_name == "branch 1" and session.first_segment == 1 and session.segments_done == 2
    assert len(session.frames) == 33 and np.array_equal(session.last_frame, second.frames[-1])
    assert np.allclose(session.w2c[0], second.w2c.numpy(), atol=1e-12) and session.actions == ["turn_left"]
    assert np.allclose(session.start_w2c, second.w2c[0].numpy(), atol=1e-12)
    segment = session.data["segments"][0]
    assert segment["frame_ids"] == [32, 64] and segment["depth_residual"] == 0.25
    assert torch.equal(session_memory(session).positions, pipe.memory.positions), "the branch tip's memory"
    for segment in data["segments"]:  # a session written before the depth stats were recorded
        del segment["depth_source"], segment["depth_residual"]
    (folder / "session.json").write_text(json.dumps(data))
    assert load_session(folder).segments_done == 1
    (branch / "session.json").write_text("{}")
    with pytest.raises(SessionError, match=r"branch-1/session\.json: invalid saved branch"):
        saved_branches(folder)


def test_corrupt_or_incomplete_sessions_raise_clear_errors(tmp_path, generated):
    good = record(tmp_path / "good", generated)

    def variant(name, change):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        change(folder)
        return folder

    with pytest.raises(SessionError, match=r"session\.json: cannot read session JSON"):
        load_session(variant("badjson", lambda f: (f / "session.json").write_text("{not json")))
    with pytest.raises(SessionError, match=r"video\.mp4: missing"):
        load_session(variant("novideo", lambda f: (f / "video.mp4").unlink()))
    with pytest.raises(SessionError, match=r"session\.json: missing"):
        load_session(variant("nojson", lambda f: (f / "session.json").unlink()))
    with pytest.raises(SessionError, match=r"memory\.safetensors: missing"):
        load_session(variant("nomem", lambda f: (f / "memory.safetensors").unlink()))

    def edit(key, value):
        def change(folder):
            data = json.loads((folder / "session.json").read_text())
            if callable(value):
                value(data)
            else:
                data[key] = value
            (folder / "session.json").write_text(json.dumps(data))

        return change

    with pytest.raises(SessionError, match="unsupported session version"):
        load_session(variant("v2", edit("version", 2)))
    with pytest.raises(SessionError, match="not a Mirage Explorer session"):
        load_session(variant("fmt", edit("format", "other")))
    with pytest.raises(SessionError, match="missing key 'K'"):
        load_session(variant("noK", edit("K", lambda d: d.pop("K"))))
    with pytest.raises(SessionError, match=r"segments\[1\]"):
        load_session(
            variant("nan", edit("segments", lambda d: d["segments"][1]["c2w"][3].__setitem__(0, float("nan"))))
        )
    with pytest.raises(SessionError, match="65 frames"):
        load_session(variant("short", edit("segments", lambda d: d["segments"].append(d["segments"][1]))))
    with pytest.raises(SessionError, match=r"video\.mp4: cannot decode"):
        load_session(variant("badvideo", lambda f: (f / "video.mp4").write_bytes(b"not a video")))
    with pytest.raises(SessionError, match="not a session folder"):
        load_session(tmp_path / "nowhere")
    assert load_session(good).camera_path is None, "sessions without a planned path still load"
    bad_path = {"fps": 16.0, "keyframes": [{"time_s": 0.0, "c2w": [2.0] * 16}]}
    with pytest.raises(SessionError, match=r"session\.json: invalid session: camera_path: keyframes\[0\]"):
        load_session(variant("badpath", edit("camera_path", bad_path)))


def test_continue_from_a_replayed_session_equals_continuing_in_process(tmp_path, generated, backbone, renderer):
    pipe, inputs, results = generated
    folder = record(tmp_path / "s", generated)
    session = load_session(folder)
    resumed = MiragePipeline(backbone, PipelineConfig(steps=1, seed=2, inpaint_fraction=1.0))
    resumed.resume(session.last_frame, session.K, session.prompt, session_memory(session), session.segments_done)
    # the same state straight from memory (tests/model/test_pipeline.py shows resume == an unbroken run)
    unbroken = MiragePipeline(backbone, PipelineConfig(steps=1, seed=2, inpaint_fraction=1.0))
    unbroken.resume(results[1].frames[-1], inputs.K, "a room", pipe.memory.clone(), 2)
    poses = step_segment("orbit_left", results[1].w2c[-1])
    a = resumed.run_segment(poses, inputs.depth_source)
    b = unbroken.run_segment(poses, inputs.depth_source)
    assert a.index == b.index == 2
    # exact: both start from bit-identical state (PNG frame, JSON K, memory file) and run the same code with
    # the same seed in this process
    assert np.array_equal(a.frames, b.frames) and torch.equal(a.latents, b.latents)
    assert torch.equal(resumed.memory.positions, unbroken.memory.positions)
    assert isinstance(session_memory(session), LatentSpatialMemory)


def test_session_inputs_reopen_the_scene_or_fall_back_to_the_prior_depth(tmp_path, generated, renderer):
    session = load_session(record(tmp_path / "s", generated))
    bundled = session_inputs(session, lambda: renderer)
    assert bundled.depth_source.name.startswith("exact") and bundled.image.shape == (H, W, 3)
    assert torch.equal(bundled.K, torch.from_numpy(session.K)), "K is the session's"
    session.data["source"] = {"kind": "image", "path": str(tmp_path / "gone.jpg")}
    warned = []
    with pytest.warns(PriorDepthWarning):
        gone = session_inputs(session, lambda: pytest.fail("no renderer for a photo"), warn=warned.append)
    assert warned == [f"{tmp_path / 'gone.jpg'} not found; {PRIOR_DEPTH_WARNING}"]
    assert gone.depth_source.name.startswith("prior") and gone.k_source == "session"
    assert gone.source == str(tmp_path / "gone.jpg") and np.array_equal(gone.image, session.last_frame)
    assert torch.isinf(gone.depth).all() and gone.depth.shape == (H, W)
    assert torch.equal(gone.K, torch.from_numpy(session.K))
