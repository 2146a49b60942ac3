"""Consistency metrics on known cases: exact renders of procedural rooms, shifted images, noise."""

import itertools
import math

import numpy as np
import pytest
import torch

from explorer.generate import build_trajectory
from model.eval import metrics
from model.eval.scenes import ProceduralScene, SceneConfig
from model.geometry.camera import intrinsics_from_fov
from model.geometry.trajectories import closed_loop, forward_dolly, orbit, yaw_pan

W, H = 320, 176
K = intrinsics_from_fov(55.0, W, H)


@pytest.fixture(scope="module")
def scene():
    return ProceduralScene(SceneConfig(seed=3))


@pytest.fixture(scope="module")
def start_view(renderer, scene):
    return renderer.render(scene, torch.eye(4, dtype=torch.float64), K, W, H)


def noisy(image, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0.0, sigma, image.shape), 0, 255).astype(np.uint8)


# ---- PSNR / SSIM ------------------------------------------------------------------------------


def test_psnr_known_values_and_mask(start_view):
    image = start_view[0]
    assert metrics.psnr(image, image) == math.inf
    flat = np.full((8, 8, 3), 100, np.uint8)
    assert metrics.psnr(flat, flat + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)
    worse = image.copy()
    worse[:, : W // 2] = 0
    mask = np.zeros((H, W), bool)
    mask[:, W // 2 :] = True
    assert metrics.psnr(image, worse, mask) == math.inf, "the damage lies outside the mask"
    assert metrics.psnr(image, worse) < 20
    assert math.isnan(metrics.psnr(image, worse, np.zeros((H, W), bool)))


def test_ssim_hand_checked_value_identity_and_monotone_noise(start_view):
    a, b = np.full((16, 16), 100, np.uint8), np.full((16, 16), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert metrics.ssim(a, b) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), abs=1e-9)
    image = start_view[0]
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(image, image, channels="rgb") == pytest.approx(1.0, abs=1e-12)
    scores = [metrics.ssim(image, noisy(image, s)) for s in (2, 5, 10, 20, 40)]
    psnrs = [metrics.psnr(image, noisy(image, s)) for s in (2, 5, 10, 20, 40)]
    assert all(x > y for x, y in itertools.pairwise(scores)), scores
    assert all(x > y for x, y in itertools.pairwise(psnrs)), psnrs
    assert scores[0] > 0.95 and scores[-1] < 0.5


def test_image_metrics_reject_bad_inputs(start_view):
    image = start_view[0]
    with pytest.raises(ValueError, match="uint8"):
        metrics.psnr(image.astype(np.float32), image)
    with pytest.raises(ValueError, match="one shape"):
        metrics.ssim(image, image[:-1])
    with pytest.raises(ValueError, match="mask"):
        metrics.ssim(image, image, mask=np.ones((2, 2), bool))


# ---- closed loops -------------------------------------------------------------------------------


def test_mirrored_pairs_are_found_from_the_poses():
    loop = closed_loop(yaw_pan(5, 30.0))  # 10 frames, i <-> 9 - i, the turn repeated
    assert metrics.mirrored_pairs(loop).tolist() == [[i, 9 - i] for i in range(5)]
    generated = build_trajectory("closed-orbit", 33, torch.eye(4, dtype=torch.float64), 2.0)  # turn not repeated
    assert metrics.mirrored_pairs(generated).tolist() == [[i, 32 - i] for i in range(16)]
    # a loop that starts later in the video (a lead-in of 3 frames) is found where it is
    lead_in = torch.cat([forward_dolly(4, -0.3)[:3].flip(0), closed_loop(orbit(6, 2.0, 30.0))])
    pairs = metrics.mirrored_pairs(lead_in)
    assert pairs.tolist() == [[3 + i, 14 - i] for i in range(6)]
    assert len(metrics.mirrored_pairs(forward_dolly(8, 1.0))) == 0, "a path with no revisit has no pairs"
    moved = loop.clone()
    moved[9, 0, 3] += 0.01  # 1 cm off: no longer the start pose
    assert [0, 9] not in metrics.mirrored_pairs(moved).tolist()


def test_closed_loop_metrics_on_exact_renders_and_a_broken_return(renderer, scene):
    w2c = build_trajectory("closed-orbit", 9, torch.eye(4, dtype=torch.float64), 2.0)
    frames, _ = renderer.render_trajectory(scene, w2c, K, W, H)
    exact = metrics.closed_loop_metrics(frames, w2c)
    assert exact["pairs"] == 4 and exact["return_frame"] == 8
    assert exact["psnr_c"] == math.inf and exact["ssim_c"] == pytest.approx(1.0)
    assert exact["pair_psnr"] == metrics.MAX_PSNR_DB and exact["pair_ssim"] == pytest.approx(1.0)
    broken = frames.copy()
    broken[8] = noisy(frames[8], 30)
    result = metrics.closed_loop_metrics(broken, w2c)
    assert result["psnr_c"] < 20 and result["ssim_c"] < 0.6
    assert result["pair_psnr"] < metrics.MAX_PSNR_DB and result["per_pair"][0] == {
        "i": 0,
        "j": 8,
        "psnr": result["psnr_c"],
        "ssim": result["ssim_c"],
    }
    open_path = metrics.closed_loop_metrics(frames[:4], w2c[:4])
    assert open_path["pairs"] == 0 and open_path["return_frame"] is None and math.isnan(open_path["psnr_c"])


# ---- reprojection ---------------------------------------------------------------------------------


def test_reprojection_with_exact_depth_agrees_and_a_wrong_pose_does_not(renderer, scene, start_view):
    image, depth = start_view
    path = orbit(5, 2.0, 12.0)
    other, other_depth = renderer.render(scene, path[4], K, W, H)
    same = metrics.reprojection_error(image, image, depth, K, path[0], path[0])
    # exact: the self-warp lands within float64 rounding (~1e-11 px) of each pixel centre, which cv2.remap's
    # 1/32 px fixed-point maps round to the pixel itself
    assert same["mae"] == 0.0 and same["coverage"] == 1.0
    exact = metrics.reprojection_error(image, other, other_depth, K, path[0], path[4], depth_src=depth)
    assert exact["coverage"] > 0.6 and exact["mae"] < 3.0, exact
    wrong_pose = path[4].clone()
    wrong_pose[0, 3] += 0.15
    off = metrics.reprojection_error(image, other, other_depth, K, path[0], wrong_pose, depth_src=depth)
    assert off["mae"] > 3 * exact["mae"], (off, exact)
    no_depth = metrics.reprojection_error(image, other, np.full((H, W), np.inf), K, path[0], path[4])
    assert no_depth["coverage"] == 0.0 and math.isnan(no_depth["mae"])


def test_occlusion_test_drops_points_hidden_in_the_source(start_view):
    image, depth = start_view
    warped, covered = metrics.warp_with_depth(
        image, depth, K, torch.eye(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64), depth_src=depth * 1.5
    )
    assert not covered.any(), "every point is 'behind' a nearer source surface"
    assert (warped == 0).all()


# ---- optical flow ---------------------------------------------------------------------------------


def test_flow_of_a_pure_translation_is_consistent_and_noise_is_not(start_view):
    image = start_view[0]
    a, b = image[:, :-8], image[:, 8:]  # the content moves 8 px to the left
    flow = metrics.dense_flow(a, b)
    assert np.median(flow[..., 0]) == pytest.approx(-8.0, abs=0.1) and abs(np.median(flow[..., 1])) < 0.1
    shifted = metrics.flow_fb_consistency(a, b)
    assert shifted["inconsistent_fraction"] < 0.02 and shifted["mean_fb_error_px"] < 0.2 and shifted["warp_mae"] < 2.0
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 256, image.shape, dtype=np.uint8) for _ in range(2)]
    random_pair = metrics.flow_fb_consistency(*noise)
    assert random_pair["inconsistent_fraction"] > 0.5 and random_pair["warp_mae"] > 30


# ---- camera error -----------------------------------------------------------------------------------


def test_orb_recovers_a_known_relative_pose(renderer, scene, start_view):
    image = start_view[0]
    path = orbit(9, 2.0, 20.0)
    other, _ = renderer.render(scene, path[8], K, W, H)
    result = metrics.relative_pose_error(image, other, K, path[0], path[8])
    assert result["status"] == "ok" and result["inliers"] >= 20
    assert result["rotation_error_deg"] < 2.0 and result["translation_error_deg"] < 15.0, result
    pan = yaw_pan(2, 15.0)
    turned, _ = renderer.render(scene, pan[1], K, W, H)
    rotation_only = metrics.relative_pose_error(image, turned, K, pan[0], pan[1])
    assert rotation_only["status"] == "pure rotation" and rotation_only["rotation_error_deg"] < 1.0
    assert math.isnan(rotation_only["translation_error_deg"])
    # the commanded pose is what is checked: claiming the other direction must show a large error
    claimed = metrics.relative_pose_error(image, turned, K, pan[0], yaw_pan(2, -15.0)[1])
    assert claimed["rotation_error_deg"] > 25.0


def test_camera_error_is_nan_with_a_count_when_there_is_nothing_to_match():
    blank = np.full((H, W, 3), 128, np.uint8)
    result = metrics.relative_pose_error(blank, blank, K, torch.eye(4), orbit(2, 2.0, 10.0)[1])
    assert result["status"] == "too few matches" and result["matches"] == 0
    assert math.isnan(result["rotation_error_deg"]) and math.isnan(result["translation_error_deg"])


# ---- a whole video -----------------------------------------------------------------------------------


def test_video_metrics_on_an_exact_closed_loop(renderer, scene):
    half = orbit(5, 2.0, 16.0)  # small steps: ORB on these periodic textures gets unreliable beyond ~20 degrees
    w2c = torch.cat([half, half.flip(0)[1:]])
    frames, depth = renderer.render_trajectory(scene, w2c, K, W, H)
    result = metrics.video_metrics(frames, w2c, K, stride=4, depth=depth, reference=frames)
    assert result["frames"] == 9 and result["closed_loop"]["psnr_c"] == math.inf
    assert result["ground_truth"] == {"frames": 8, "psnr": metrics.MAX_PSNR_DB, "ssim": pytest.approx(1.0)}
    assert result["reprojection"]["stride"]["pairs"] == 2 and result["reprojection"]["stride"]["mae"] < 3.0
    assert result["camera"]["pairs"] == 2 and result["camera"]["rotation_error_deg"] < 2.5
    assert result["flow"]["pairs"] == 8 and result["flow"]["inconsistent_fraction"] < 0.2
    with pytest.raises(ValueError, match="depth"):
        metrics.video_metrics(frames, w2c, K, depth=depth[:, :-1])
    with pytest.raises(ValueError, match="poses"):
        metrics.video_metrics(frames[:-1], w2c, K)
