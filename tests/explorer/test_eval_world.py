"""``main.py eval-world``: a tiny grid end to end, its refusals, and the visible / holes split."""

import json
import math

import cv2
import numpy as np
import pytest
import torch

import main
from explorer.eval_world import systems
from explorer.eval_world.coverage import reference_coverage
from explorer.eval_world.report import goal_lines, sheet_frame_ids
from explorer.eval_world.run import TrajectoryDepth
from explorer.generate import TRAJECTORIES, build_trajectory
from model.eval.scenes import ProceduralScene, SceneConfig
from model.generation.backbone import BackboneConfig, load_backbone
from model.generation.memory_branch import DEFAULT_READOUT, MemoryBranch, MemoryBranchConfig
from model.generation.mini import SIZE_KEYS, save_mini
from model.geometry.camera import intrinsics_from_fov, invert_pose
from model.geometry.trajectories import yaw_pan

FAST = ["--height", "64", "--width", "128", "--steps", "1", "--segments", "1"]


@pytest.fixture(scope="module")
def random_mini(tmp_path_factory):
    """A mini model folder with random weights (the tiny transformer, a fresh branch whose output is a
    correction of the readout, as stage mini trains it), as training writes one."""
    folder = tmp_path_factory.mktemp("mini")
    config = BackboneConfig(backend="tiny", device="cpu")
    backbone = load_backbone(config)
    branch = MemoryBranch(backbone.transformer, MemoryBranchConfig(layers=(0, 2), prediction="readout_x0"))
    branch.readout = DEFAULT_READOUT
    sizes = {key: getattr(config, key) for key in SIZE_KEYS}
    save_mini(folder, backbone.transformer, branch, backbone.text_encoder, sizes, {"size": [64, 128]})
    return folder


def test_all_systems_on_a_tiny_grid_write_summary_table_and_contact_sheet(tmp_path, capsys, random_mini):
    out = tmp_path / "bench"
    argv = ["eval-world", "--seeds", "5001", "--trajectories", "closed-orbit", "--model", str(random_mini)]
    assert main.main([*argv, "--out", str(out), *FAST]) == 0
    assert "readout-inpaint" in capsys.readouterr().out
    summary = json.loads(
        (out / "summary.json").read_text(), parse_constant=lambda name: pytest.fail(f"non-strict JSON {name}")
    )
    assert summary["seeds"] == [5001] and summary["trajectories"] == ["closed-orbit"]
    assert list(summary["systems"]) == ["mini", "mini-nomem", "mini-rgb", "readout-inpaint", "tiny"]
    for name, means in summary["systems"].items():
        for key in ("psnr", "ssim", "psnr_visible", "psnr_holes", "psnr_c", "s_per_frame"):
            assert math.isfinite(means[key]), (name, key)
        assert 0.0 < means["visible_fraction"] < 1.0  # the orbit sees new space: both sets are scored
        assert means["closed_loop_runs"] == 1 and means["s_per_frame"] > 0
    systems = summary["systems"]
    assert systems["mini-nomem"]["memory_visible_fraction"] == 0.0  # its branch never sees a visible cell
    assert systems["mini-nomem"]["cache_mib_per_segment"] == 0.0
    assert systems["mini"]["memory_visible_fraction"] > 0.3 and systems["mini-rgb"]["memory_visible_fraction"] > 0.3
    # all five score on the same pixels
    assert len({round(m["visible_fraction"], 9) for m in systems.values()}) == 1
    # the readout is exact where it is visible and Telea fills the rest: it must beat random weights on holes
    assert systems["readout-inpaint"]["psnr_holes"] > systems["tiny"]["psnr_holes"] + 3.0
    table = (out / "table.md").read_text()
    assert "| readout-inpaint |" in table and "PSNR holes" in table and "Issue 12 goals" in table
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    columns = len(sheet_frame_ids(33))
    assert sheet.shape[0] == 6 * (128 + 2) and sheet.shape[1] == columns * (256 + 2)  # ground truth + 5, x2


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds", "1,x"], "--seeds"),
        (["--seeds", "1,,2"], "--seeds"),
        (["--seeds", "3,3"], "--seeds"),
        (["--seeds", "1", "--systems", "tiny,gpt"], "--systems: 'gpt'"),
        (["--seeds", "1", "--trajectories", "zigzag"], "--trajectories: 'zigzag'"),
        (["--seeds", "1", "--segments", "0"], "--segments"),
        (["--seeds", "1", "--inpaint-fraction", "1.5"], "--inpaint-fraction"),
        (["--seeds", "1", "--systems", "tiny", "--height", "60"], "multiples of 8"),
    ],
)
def test_bad_arguments_exit_2_with_one_error_line_and_write_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "bench"
    assert main.main(["eval-world", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not out.exists() or not any(out.iterdir())


def test_the_mini_systems_are_refused_without_the_mini_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(systems, "MINI_FOLDER", tmp_path / "no-model")
    for name in ("mini", "mini-nomem", "mini-rgb"):
        assert main.main(["eval-world", "--out", str(tmp_path / "o"), "--seeds", "1", "--systems", name]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no-model" in err[0] and "need no model: readout-inpaint, tiny" in err[0]


def test_coverage_of_a_pan_is_the_part_of_each_view_the_start_view_saw(renderer):
    """Turning in place, nothing is written but the start view (segment 0): a frame's cell is covered where
    its ray falls inside the start camera's image (the readout splats a point over its cell's footprint,
    so the edge may spread by up to two cells), and nowhere else."""
    width, height, n, stride = 128, 64, 33, 4
    K = intrinsics_from_fov(55.0, width, height)
    w2c = yaw_pan(n, 45.0)
    frames, depth = renderer.render_trajectory(ProceduralScene(SceneConfig(seed=3)), w2c, K, width, height)
    covered = reference_coverage(frames, depth, w2c, K)
    assert covered.shape == (n, height, width) and covered[0].all()
    v, u = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
    centres = np.stack([(u + 0.5) * stride, (v + 0.5) * stride, np.ones((height // stride, width // stride))], -1)
    rays = centres @ np.linalg.inv(K.numpy()).T  # directions of the cell centres in camera i
    for i in (8, 20, 32):
        in_start = (rays @ (w2c[0] @ invert_pose(w2c[i]))[:3, :3].numpy().T) @ K.numpy().T  # in camera 0, pixels
        x, y = in_start[..., 0] / in_start[..., 2], in_start[..., 1] / in_start[..., 2]
        expected = (in_start[..., 2] > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
        near_edge = cv2.dilate(expected.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        got = covered[i, stride // 2 :: stride, stride // 2 :: stride]  # one pixel per cell
        assert 0.2 < expected.mean() < 0.95  # both sets present: a flipped or shifted split would fail
        assert not (got & ~near_edge).any(), i  # nothing covered the start view did not see
        assert (got & expected).sum() >= 0.9 * expected.sum(), i  # what it saw is covered
    # turning right, the covered part is on the left of the frame
    assert covered[32][:, : width // 4].all() and not covered[32][:, -width // 4 :].any()


def test_generate_builds_every_trajectory_from_the_start_pose_and_the_closed_ones_return():
    start = torch.eye(4, dtype=torch.float64)
    for name in TRAJECTORIES:
        path = build_trajectory(name, 97, start, 2.5)
        assert path.shape == (97, 4, 4) and torch.allclose(path[0], start), name
        returns = torch.allclose(path[-1], start, atol=1e-9)
        assert returns == (name in ("closed-orbit", "look-around")), name


def test_the_write_back_depth_of_an_out_and_back_path_is_each_visits_own():
    w2c = build_trajectory("closed-orbit", 9, torch.eye(4, dtype=torch.float64), 2.0)  # frame i at the pose of 8 - i
    depth = np.arange(9, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)  # frame i: depth i
    source = TrajectoryDepth(depth, w2c)
    assert source(None, w2c[[2, 4]], None)[:, 0, 0].tolist() == [2.0, 4.0]
    assert source(None, w2c[[6, 8]], None)[:, 0, 0].tolist() == [6.0, 8.0]  # poses of frames 2 and 0, later
    with pytest.raises(ValueError, match="after frame 8"):
        source(None, w2c[[1]], None)


def test_the_goal_lines_say_what_is_met_and_by_how_much_the_rest_is_missed():
    def means(psnr, holes, visible, psnr_c, s_per_frame=0.1):
        return {"psnr": psnr, "ssim": 0.5, "psnr_visible": visible, "psnr_holes": holes, "ssim_visible": 0.6,
                "ssim_holes": 0.4, "psnr_c": psnr_c, "s_per_frame": s_per_frame}  # fmt: skip

    systems = {
        "mini": means(25.0, 22.0, 29.0, 24.0, s_per_frame=0.5),
        "mini-nomem": means(20.0, 23.0, 21.0, 15.0),
        "readout-inpaint": means(26.0, 21.0, 24.0, 30.0),
    }
    text = "\n".join(goal_lines(systems))
    assert "whole-frame PSNR: **missed** by 1.00 dB (best other: `readout-inpaint`)" in text
    assert "hole PSNR: **missed** by 1.00 dB (best other: `mini-nomem`)" in text
    assert "`mini-nomem` on every quality metric: **missed** on ssim, psnr_holes, ssim_visible, ssim_holes" in text
    assert "visible-region PSNR >= 28 dB: met (by 1.00 dB)" in text
    assert "PSNR_C >= 25 dB: **missed** by 1.00 dB" in text
    assert "16.00 s, **missed** by 1.00 s" in text
    assert goal_lines({"tiny": systems["mini-nomem"]}) == []
