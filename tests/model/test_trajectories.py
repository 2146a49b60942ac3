"""Camera paths: the standard builders, interpolation between poses, resampling of a path."""

import math

import pytest
import torch

from model.geometry.camera import intrinsics_from_fov, invert_pose, look_at, project_points, rigid
from model.geometry.rotations import rot_y, rotation_angle
from model.geometry.trajectories import (
    closed_loop,
    closed_orbit,
    forward_dolly,
    interpolate_c2w,
    look_around,
    orbit,
    out_and_back,
    resample_c2w,
    yaw_pan,
)

TOL = 1e-12  # a handful of float64 operations


def camera_centres(w2c):
    return invert_pose(w2c)[:, :3, 3]


def test_orbit_keeps_its_target_centred_and_distance_constant():
    path = orbit(9, radius=2.0, degrees=90.0)
    target = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    uv, z = project_points(target, path, intrinsics_from_fov(60.0, 64, 64))
    assert torch.allclose(uv, torch.full_like(uv, 32.0), atol=1e-9)
    assert torch.allclose(z, torch.full_like(z, 2.0), atol=1e-9)
    assert torch.allclose(path[0], torch.eye(4, dtype=torch.float64))
    assert camera_centres(path)[-1, 0] == pytest.approx(-2.0)  # positive degrees move the camera left


def test_builders_rotate_and_move_as_documented():
    pan = yaw_pan(5, 90.0)
    assert torch.allclose(camera_centres(pan), torch.zeros(5, 3, dtype=torch.float64))
    turned_right = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(invert_pose(pan)[-1, :3, 2], turned_right, atol=1e-12)
    dolly = forward_dolly(3, 1.5)
    assert torch.allclose(camera_centres(dolly)[:, 2], torch.tensor([0.0, 0.75, 1.5], dtype=torch.float64))
    look = look_around(17, yaw_deg=30.0, pitch_deg=10.0)
    assert torch.allclose(look[0], look[-1], atol=1e-12)
    forward = invert_pose(look)[:, :3, 2]
    assert math.degrees(math.atan2(float(forward[4, 0]), float(forward[4, 2]))) == pytest.approx(30.0, abs=1e-6)
    start = look_at([1.0, 0.0, 0.0], [1.0, 0.0, 5.0])
    moved = forward_dolly(2, 1.0, start_w2c=start)
    assert camera_centres(moved)[-1].tolist() == pytest.approx([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="n_frames"):
        orbit(0)


def test_closed_loop_mirrors_the_path():
    path = orbit(6, 2.0, 45.0)
    loop = closed_loop(path)
    assert len(loop) == 12
    for i in range(12):
        assert torch.equal(loop[i], loop[11 - i])  # exact: the return half is a flipped copy
    with pytest.raises(ValueError):
        closed_loop(torch.zeros(0, 4, 4))


def test_interpolate_c2w_moves_the_centre_on_the_line_and_turns_on_the_shortest_arc():
    a = invert_pose(look_at([0.0, 0.0, 0.0], [0.2, -0.1, 1.0]))
    b = invert_pose(look_at([1.0, -0.5, 2.0], [3.0, 0.4, 1.0]))
    theta = rotation_angle(a[:3, :3].mT @ b[:3, :3])
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    poses = interpolate_c2w(a, b, t)
    assert poses.shape == (4, 4, 4)
    assert torch.allclose(poses[:, :3, 3], (1 - t)[:, None] * a[:3, 3] + t[:, None] * b[:3, 3], atol=TOL)
    assert torch.allclose(rotation_angle(a[:3, :3].mT @ poses[:, :3, :3]), t * theta, atol=TOL)
    assert torch.allclose(poses[0], a, atol=TOL) and torch.allclose(poses[-1], b, atol=TOL)
    assert torch.equal(poses[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(4, 4))


def test_resample_c2w_is_uniform_in_the_parameter_across_pieces():
    # three poses at parameters 0, 1, 3: centre x and yaw (in tenths of a radian) both equal the parameter
    knots = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    c2w = rigid(rot_y(0.1 * knots), torch.stack([knots, torch.zeros(3), torch.zeros(3)], -1))
    poses = resample_c2w(c2w, knots, 7)
    s = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    assert torch.allclose(poses[:, 0, 3], s, atol=TOL)
    assert torch.allclose(poses[:, :3, :3], rot_y(0.1 * s), atol=TOL)


def test_resample_c2w_repeats_a_single_pose_or_a_path_without_range():
    # exact by construction: the first pose is copied, nothing is computed
    pose = invert_pose(look_at([0.3, 0.0, 0.0], [0.0, 0.0, 2.0]))
    assert torch.equal(resample_c2w(pose[None], torch.zeros(1), 4), pose.expand(4, 4, 4))
    two = torch.stack([pose, rigid(torch.eye(3, dtype=torch.float64), torch.ones(3))])
    assert torch.equal(resample_c2w(two, torch.zeros(2), 3), pose.expand(3, 4, 4))


def test_closed_orbit_goes_out_and_back_without_repeating_the_turn():
    path = closed_orbit(33, 2.0, 40.0)
    assert path.shape == (33, 4, 4)
    assert torch.equal(path[:17], orbit(17, 2.0, 40.0))  # out: the orbit itself
    for i in range(33):
        assert torch.equal(path[i], path[32 - i])  # back: the same poses mirrored, the turn (16) once
    assert torch.allclose(path[-1], torch.eye(4, dtype=torch.float64))
    assert torch.equal(out_and_back(yaw_pan(3, 30.0)), yaw_pan(3, 30.0)[[0, 1, 2, 1, 0]])
