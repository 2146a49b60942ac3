"""``main.py eval`` and ``main.py export-worldscore`` on a tiny ``generate`` run, and their errors."""

import json
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

import main
from explorer.evaluate import evaluate_run, format_table, load_run, worldscore_c2w
from explorer.session import SessionRecorder
from model.geometry.camera import invert_pose, scale_intrinsics
from model.io.cameras import read_re10k
from model.io.rgbd import SAMPLE_SCENE_DIR, RGBDView, load_rgbd_folder, write_rgbd_folder
from model.io.video import read_mp4_frames
from model.memory.latent import LatentSpatialMemory
from tests.cli_args import TINY_FAST

FAST = [*TINY_FAST, "--trajectory", "closed-orbit"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A folder holding one generate run (33 frames out and back on the bundled scene)."""
    folder = tmp_path_factory.mktemp("run")
    assert main.main(["generate", "--out", str(folder / "run.mp4"), *FAST]) == 0
    return folder


def copy_run(run_dir, dest):
    dest.mkdir()
    for path in run_dir.glob("run.*"):
        if not path.name.endswith("metrics.json"):
            shutil.copy(path, dest / path.name)
    return dest


def test_eval_writes_strict_json_and_prints_a_table(run_dir, tmp_path, capsys):
    folder = copy_run(run_dir, tmp_path / "copy")
    assert main.main(["eval", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "closed_loop.psnr_c" in out and "ground_truth.psnr" in out and "run.metrics.json" in out
    text = (folder / "run.metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert metrics["frames"] == 33
    assert metrics["closed_loop"]["pairs"] == 16 and metrics["closed_loop"]["return_frame"] == 32
    assert metrics["ground_truth_source"].startswith("bundled") and metrics["ground_truth"]["frames"] == 32
    assert 0.0 < metrics["reprojection"]["from_start"]["coverage"] <= 1.0
    assert metrics["camera"]["pairs"] == 8 and metrics["flow"]["pairs"] == 32
    # the .mp4 path names the same run and gives the same numbers
    assert main.main(["eval", str(folder / "run.mp4")]) == 0
    assert json.loads((folder / "run.metrics.json").read_text()) == metrics


def test_export_worldscore_layout_and_cameras(run_dir, tmp_path, capsys):
    out = tmp_path / "ws"
    assert main.main(["export-worldscore", str(run_dir / "run.mp4"), str(out)]) == 0
    frames = read_mp4_frames(run_dir / "run.mp4")
    names = sorted(p.name for p in (out / "frames").iterdir())
    assert names == [f"{i:03d}.png" for i in range(33)]
    png = cv2.cvtColor(cv2.imread(str(out / "frames" / "017.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(png, frames[17])  # exact: PNG is lossless uint8
    assert np.array_equal(cv2.imread(str(out / "input_image.png")), cv2.imread(str(out / "frames" / "000.png")))
    data = json.loads((out / "camera_data.json").read_text())
    c2w = np.array(data["cameras_interp"])
    assert c2w.shape == (33, 4, 4) and len(data["cameras"]) == 2
    assert np.allclose(c2w[0], np.diag([-1.0, 1.0, -1.0, 1.0])), "WorldScore's first camera"
    cameras = read_re10k(run_dir / "run.cameras.txt")
    assert data["focal_length"] == pytest.approx(float(cameras.K(128, 64)[0, 0, 0]))
    # undo the documented conversion: back to our OpenCV world-to-camera poses
    back = np.diag([-1.0, -1.0, 1.0, 1.0]) @ c2w @ np.diag([1.0, -1.0, -1.0, 1.0])
    assert np.allclose(np.linalg.inv(back), cameras.w2c.numpy(), atol=1e-9)
    # a camera moving right in our world (x+) moves right in WorldScore's world (x points left there)
    c2w_right = torch.eye(4, dtype=torch.float64)[None].clone()
    c2w_right[0, 0, 3] = 0.5
    assert np.allclose(worldscore_c2w(invert_pose(c2w_right))[0][:3, 3], [-0.5, 0.0, 0.0])
    # an earlier export may be replaced
    assert main.main(["export-worldscore", str(run_dir), str(out)]) == 0


def test_errors_are_clear_and_write_nothing(run_dir, tmp_path, capsys):
    no_cameras = copy_run(run_dir, tmp_path / "no-cameras")
    (no_cameras / "run.cameras.txt").unlink()
    short = copy_run(run_dir, tmp_path / "short")
    lines = (short / "run.cameras.txt").read_text().splitlines()
    (short / "run.cameras.txt").write_text("\n".join(lines[:-1]) + "\n")
    two = copy_run(run_dir, tmp_path / "two")
    shutil.copy(two / "run.mp4", two / "other.mp4")
    bad_json = copy_run(run_dir, tmp_path / "bad-json")
    (bad_json / "run.json").write_text("{not json")
    cases = [
        (no_cameras, "run.cameras.txt"),
        (short, "32 cameras, but run.mp4 has 33 frames"),
        (two, "exactly one"),
        (bad_json, "run.json"),
        (tmp_path / "missing.mp4", "missing.mp4"),
    ]
    for path, expected in cases:
        assert main.main(["eval", str(path)]) != 0, path
        assert expected in capsys.readouterr().err
        assert not list(tmp_path.glob("**/*.metrics.json")), f"{path}: eval left a metrics file"
        out = tmp_path / f"ws-{path.name}"
        assert main.main(["export-worldscore", str(path), str(out)]) != 0
        assert expected in capsys.readouterr().err
        assert not out.exists(), f"{path}: export left {out}"


def test_export_refuses_a_foreign_folder(run_dir, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main.main(["export-worldscore", str(run_dir), str(foreign)]) != 0
    assert "not an earlier WorldScore export" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_runs_from_a_photo_get_no_ground_truth_metrics(run_dir):
    run = load_run(run_dir)
    run.report["settings"]["image"] = "photo.jpg"  # as if generated from a user's photo
    metrics = evaluate_run(run)
    assert (
        metrics["reprojection"] is None and metrics["ground_truth"] is None and metrics["ground_truth_source"] is None
    )
    assert "bundled sample scene" in metrics["ground_truth_reason"]
    assert metrics["closed_loop"]["pairs"] == 16, "pose-only metrics still apply"
    assert "reprojection" not in format_table(metrics)


def session_from_run(run_dir, folder):
    """An explorer session folder holding the generate run's 33 frames and poses as one segment."""
    run = load_run(run_dir)
    height, width = run.frames.shape[1:3]
    recorder = SessionRecorder(folder, fps=run.fps)
    recorder.start(width=width, height=height, K=run.K, start_w2c=run.w2c[0], source="bundled")
    segment = SimpleNamespace(
        index=0,
        frames=run.frames,
        w2c=run.w2c,
        frame_ids=[0, len(run.frames) - 1],
        timings={"total": 1.0},
        memory_points=1,
        memory_bytes=1,
    )
    recorder.add_segment(
        segment, action="orbit", memory=LatentSpatialMemory.from_points(torch.zeros(1, 3), torch.zeros(1, 48))
    )
    return recorder.finish()


def test_eval_and_export_accept_an_explorer_session_folder(run_dir, tmp_path, capsys):
    folder = session_from_run(run_dir, tmp_path / "session")
    for name in (folder, folder / "video.mp4"):
        assert main.main(["eval", str(name)]) == 0, capsys.readouterr().err
        metrics = json.loads((folder / "video.metrics.json").read_text())
        assert metrics["frames"] == 33 and metrics["closed_loop"]["pairs"] == 16
        assert metrics["ground_truth_source"].startswith("bundled"), (
            "a session recorded on the bundled scene has exact ground truth"
        )
    assert main.main(["export-worldscore", str(folder), str(tmp_path / "ws")]) == 0
    data = json.loads((tmp_path / "ws" / "camera_data.json").read_text())
    assert (
        len(data["cameras_interp"]) == 33 and len(data["cameras"]) == 2 and data["source"] == str(folder / "video.mp4")
    )
    capsys.readouterr()


def small_scene(folder):
    """The bundled scene's view at 128x64 (a walkthrough of it takes a second, not ten)."""
    view = load_rgbd_folder(SAMPLE_SCENE_DIR)
    image = cv2.resize(view.image, (128, 64), interpolation=cv2.INTER_AREA)
    depth = cv2.resize(view.depth, (128, 64), interpolation=cv2.INTER_NEAREST)
    K = scale_intrinsics(torch.from_numpy(view.K), (view.height, view.width), (64, 128)).numpy()
    write_rgbd_folder(folder, RGBDView(image, depth, K, view.w2c))
    return folder


def test_eval_and_export_accept_a_walkthrough_folder(tmp_path, capsys):
    walk = tmp_path / "walk"
    assert (
        main.main(["walkthrough", "--out", str(walk), "--frames", "3", "--scene", str(small_scene(tmp_path / "scene"))])
        == 0
    )
    for name in (walk, walk / "preview.mp4"):
        assert main.main(["eval", str(name), "--stride", "1"]) == 0, capsys.readouterr().err
        metrics = json.loads((walk / "preview.metrics.json").read_text())
        assert metrics["frames"] == 6 and metrics["closed_loop"]["pairs"] == 3 and metrics["camera"]["pairs"] == 5
    assert main.main(["export-worldscore", str(walk), str(tmp_path / "ws")]) == 0
    data = json.loads((tmp_path / "ws" / "camera_data.json").read_text())
    assert len(data["cameras_interp"]) == 6 and len(data["cameras"]) == 2
    run = load_run(walk)
    assert run.kind == "walkthrough" and run.fps == 16.0 and not run.on_bundled_scene, (
        "another scene: no exact ground truth"
    )
    run.report["settings"]["scene_dir"] = str(SAMPLE_SCENE_DIR)
    assert run.on_bundled_scene, "a walkthrough of the bundled scene gets exact ground truth"
    capsys.readouterr()


def test_what_eval_accepts_is_said_exactly(run_dir, tmp_path, capsys):
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(run_dir / "run.mp4", half / "video.mp4")
    assert main.main(["eval", str(half)]) == 2
    assert capsys.readouterr().err == (
        f"error: {half / 'video.json'}: missing; expected a generate run (OUT.mp4 + OUT.json + OUT.cameras.txt, or a "
        "folder "
        "holding exactly one), an explorer session folder (video.mp4 + session.json + cameras.txt) or a walkthrough "
        "folder "
        "(preview.mp4 + session.json + cameras.txt)\n"
    )
    (half / "session.json").write_text(json.dumps({"kind": "something else"}))
    assert main.main(["eval", str(half)]) == 2
    assert capsys.readouterr().err == (
        f"error: {half / 'session.json'}: format: neither an explorer session ('mirage-explorer-session') nor a "
        "walkthrough (kind 'walkthrough')\n"
    )
    assert not list(half.glob("*.metrics.json"))
