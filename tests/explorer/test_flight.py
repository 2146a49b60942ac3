"""FlightPath thresholds and resampling; step segments: exact endpoints, monotone progress, frame count."""

import math

import numpy as np
import pytest
import torch

from explorer.flight import FlightPath, SegmentThreshold, resample_path, step_segment
from explorer.fly_camera import Action, FlyCamera
from model.geometry.camera import invert_pose, look_at
from model.geometry.rotations import rotation_angle


def centres(w2c):
    return invert_pose(w2c)[:, :3, 3].numpy()


def angle_between(rot_a, rot_b) -> float:
    """Radians of the rotation from ``rot_a`` to ``rot_b`` (``[3, 3]``, numpy or torch)."""
    return float(rotation_angle(torch.as_tensor(rot_a).mT @ torch.as_tensor(rot_b)))


def fly(path, cam, seconds, dt=0.05, t0=0.0):
    t = t0
    for _ in range(round(seconds / dt)):
        t += dt
        if cam.tick(dt):
            path.record(t, cam.w2c)
    return t


def test_ready_after_translation_threshold():
    cam = FlyCamera(np.eye(4), speed_mps=1.0)
    path = FlightPath(cam.w2c)
    cam.tick(0)
    cam.press(Action.FORWARD)
    fly(path, cam, 0.35)
    assert not path.ready()
    fly(path, cam, 0.1, t0=0.35)
    assert path.ready()
    assert path.motion()[0] == pytest.approx(0.45)


def test_ready_after_rotation_threshold():
    cam = FlyCamera(np.eye(4), sensitivity_deg_per_px=1.0)
    path = FlightPath(cam.w2c)
    for i in range(14):
        cam.look(1, 0)
        path.record(i * 0.1, cam.w2c)
    assert not path.ready()
    cam.look(1, 0)
    path.record(2.0, cam.w2c)
    assert path.ready() and path.motion()[1] == pytest.approx(15.0)
    assert path.ready(SegmentThreshold(translation_m=1.0, rotation_deg=14.0))
    assert not path.ready(SegmentThreshold(translation_m=1.0, rotation_deg=30.0))


def test_take_segment_exact_endpoints_monotone_and_chained():
    start = look_at([0, 0, 0], [0.2, 0, 1])
    cam = FlyCamera(start, speed_mps=1.0, sensitivity_deg_per_px=0.5)
    path = FlightPath(start)
    cam.press(Action.FORWARD)
    t = fly(path, cam, 0.3)
    cam.release(Action.FORWARD)
    t = fly(path, cam, 1.0, t0=t)  # a pause: must not become frozen frames
    for _ in range(10):
        cam.look(2, 0)
        t += 0.05
        path.record(t, cam.w2c)
    end = cam.w2c
    seg = path.take_segment(33)
    assert seg.shape == (33, 4, 4) and seg.dtype == torch.float64
    # Exact by construction: the endpoints are copies of the given poses (nothing recomputed), and
    # ``cam.w2c`` of an unchanged camera is the same float64 formula on the same inputs.
    assert torch.equal(seg[0], start) and torch.equal(seg[-1], end)
    # progress: distance from the start never decreases, then yaw never decreases
    dist = np.linalg.norm(centres(seg) - centres(seg)[0], axis=1)
    assert np.all(np.diff(dist) >= -1e-12)
    yaws = [
        math.degrees(angle_between(invert_pose(seg[0])[:3, :3].numpy(), invert_pose(p)[:3, :3].numpy())) for p in seg
    ]
    assert np.all(np.diff(yaws) >= -1e-9)
    assert (
        np.count_nonzero(np.all(np.isclose(np.diff(centres(seg), axis=0), 0), axis=1) & np.isclose(np.diff(yaws), 0))
        == 0
    ), "no frozen frames"
    # chained: the next segment starts exactly where this one ended (copies, exact by construction)
    assert torch.equal(path.anchor_w2c, end) and len(path) == 1
    cam.press(Action.RIGHT)
    fly(path, cam, 0.5, t0=t)
    seg2 = path.take_segment()
    assert torch.equal(seg2[0], seg[-1]) and torch.equal(seg2[-1], cam.w2c)


def test_segment_endpoints_are_the_given_poses_not_a_round_trip():
    """A pose whose w2c -> c2w -> w2c round trip is off (a rotation orthonormal only to ~1e-6, as
    read from a float32 file) still ends its segment bit for bit: the endpoints are copies."""
    tilt = 1e-6  # inside validate_poses' tolerance, far outside float64 round-off
    start = torch.eye(4, dtype=torch.float64)
    start[:3, :3] += tilt * torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    start[:3, 3] = torch.tensor([0.3, -0.2, 1.5], dtype=torch.float64)
    end = start.clone()
    end[:3, 3] += torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    assert not torch.equal(invert_pose(invert_pose(end)), end), "precondition: the round trip changes the pose"
    path = FlightPath(start)
    path.record(1.0, end)
    end[0, 3] = 99.0  # the path keeps its own copy
    seg = path.take_segment(5)
    assert torch.equal(seg[0], start) and seg[-1, 0, 3] == 0.3 + 0.5  # the same float64 sum as above
    nxt = path.take_segment(5)  # no motion since: every frame is the anchor, i.e. the last end
    assert torch.equal(nxt, seg[-1].expand(5, 4, 4))
    merged = resample_path(torch.stack([start, seg[-1]]), 9)
    assert torch.equal(merged[0], start) and torch.equal(merged[-1], seg[-1])


def test_take_segment_interpolates_between_samples():
    path = FlightPath(np.eye(4))
    target = look_at([1.0, 0, 0], [1.0, 0, 1.0])  # 1 m to the right, same orientation
    path.record(1.0, target)
    seg = path.take_segment(5)
    assert np.allclose(centres(seg)[:, 0], [0, 0.25, 0.5, 0.75, 1.0])
    turn = FlightPath(np.eye(4))
    turned = look_at([0, 0, 0], [1.0, 0, 1.0])  # 45 degrees right
    turn.record(1.0, turned)
    seg = turn.take_segment(3)
    mid = invert_pose(seg[1])[:3, :3].numpy()
    assert math.degrees(angle_between(np.eye(3), mid)) == pytest.approx(22.5)


def test_take_segment_without_motion_repeats_the_anchor():
    path = FlightPath(np.eye(4))
    path.record(1.0, np.eye(4))
    seg = path.take_segment(33)
    assert torch.equal(seg, torch.eye(4, dtype=torch.float64).expand(33, 4, 4))  # exact: copies of the anchor


def test_rebase_keeps_samples_and_starts_from_the_given_pose():
    cam = FlyCamera(np.eye(4))
    path = FlightPath(cam.w2c)
    cam.press(Action.FORWARD)
    fly(path, cam, 0.5)
    taken = path.take_segment()
    fly(path, cam, 0.5, t0=0.5)
    path.rebase(taken[0])  # the segment was cancelled: generation still ends at its start
    seg = path.take_segment()
    # exact: the endpoints are copies of the rebased and the last recorded pose (the camera has not moved since)
    assert torch.equal(seg[0], taken[0]) and torch.equal(seg[-1], cam.w2c)
    assert centres(seg)[-1][2] == pytest.approx(1.0)


def test_record_rejects_time_going_back():
    path = FlightPath(np.eye(4), start_time_s=5.0)
    with pytest.raises(ValueError, match="earlier"):
        path.record(4.0, np.eye(4))


def test_resample_path_merges_two_segments():
    a = step_segment("step_forward", np.eye(4))
    b = step_segment("turn_right", a[-1])
    merged = resample_path(torch.cat([a, b[1:]]), 33)
    assert merged.shape == (33, 4, 4)
    # exact by construction: resample_path copies the path's first and last poses
    assert torch.equal(merged[0], a[0]) and torch.equal(merged[-1], b[-1])


@pytest.mark.parametrize(
    "action", ["step_forward", "step_back", "turn_left", "turn_right", "orbit_left", "orbit_right"]
)
def test_step_segments_exact_endpoints_and_monotone(action):
    start = look_at([0.5, -0.1, 0.2], [1.0, 0.3, 3.0])  # pitched down a little, turned right
    seg = step_segment(action, start, n_frames=33, distance_m=0.5, turn_deg=20, orbit_deg=20, orbit_radius_m=2)
    assert seg.shape == (33, 4, 4) and torch.equal(seg[0], start)  # exact: frame 0 is a copy of the start pose
    c = centres(seg)
    c2w0 = invert_pose(start).numpy()
    yaw0 = math.atan2(c2w0[0, 2], c2w0[2, 2])
    forward = np.array([math.sin(yaw0), 0, math.cos(yaw0)])
    assert np.allclose(c[:, 1], c[0, 1]), "steps stay at the same height"
    angles = [math.degrees(angle_between(c2w0[:3, :3], invert_pose(p)[:3, :3].numpy())) for p in seg]
    if action.startswith("step"):
        sign = 1 if action == "step_forward" else -1
        assert np.allclose(c[-1] - c[0], sign * 0.5 * forward, atol=1e-12)
        assert np.allclose(angles, 0, atol=1e-6)
        assert np.all(np.diff((c - c[0]) @ forward * sign) > 0)
    else:
        assert angles[-1] == pytest.approx(20.0)
        assert np.all(np.diff(angles) > 0), "monotone progress"
        c2w_end = invert_pose(seg[-1]).numpy()
        yaw_end = math.atan2(c2w_end[0, 2], c2w_end[2, 2])
        turned_right = math.remainder(yaw_end - yaw0, 2 * math.pi) > 0
        assert turned_right == (action in ("turn_right", "orbit_left"))
        if action.startswith("turn"):
            assert np.allclose(c, c[0], atol=1e-12)
        else:
            pivot = c[0] + 2.0 * forward
            radii = np.linalg.norm(c - pivot, axis=1)
            assert np.allclose(radii, 2.0), "orbit keeps its radius"
            right = np.array([math.cos(yaw0), 0, -math.sin(yaw0)])
            moved_left = (c[-1] - c[0]) @ right < 0
            assert moved_left == (action == "orbit_left")
            look = c2w_end[:3, 2]
            to_pivot = (pivot - c[-1]) / np.linalg.norm(pivot - c[-1])
            assert np.allclose(
                look[[0, 2]] / np.linalg.norm(look[[0, 2]]), to_pivot[[0, 2]] / np.linalg.norm(to_pivot[[0, 2]])
            )


def test_step_segment_rejects_non_step_actions():
    with pytest.raises(ValueError, match="not a step action"):
        step_segment(Action.FORWARD, np.eye(4))
    with pytest.raises(ValueError, match="n_frames"):
        step_segment(Action.STEP_FORWARD, np.eye(4), n_frames=1)
