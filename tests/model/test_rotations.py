"""Rotations: sign conventions, yaw/pitch/roll, angles, axis-angle exp/log and interpolation.

Results are float64 and compared with tolerances: 1e-12 where a few float64 operations separate
the two sides (round-off is ~1e-16 per operation), looser where a formula is ill-conditioned, as
stated at each test.
"""

import math

import pytest
import torch

from model.geometry.rotations import (
    axis_angle_to_matrix,
    interpolate_rotation,
    matrix_to_axis_angle,
    rot_x,
    rot_y,
    rot_z,
    rotation_angle,
    yaw_pitch_roll,
)

TOL = 1e-12  # a handful of float64 operations


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    """``[n, 3, 3]`` rotations from random unit quaternions (orthonormal to round-off)."""
    q = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def unit(v) -> torch.Tensor:
    v = torch.as_tensor(v, dtype=torch.float64)
    return v / v.norm()


def test_elementary_rotations_are_proper_and_follow_the_camera_signs():
    angle = math.radians(30.0)
    c, s = math.cos(angle), math.sin(angle)
    forward, right = unit([0.0, 0.0, 1.0]), unit([1.0, 0.0, 0.0])
    # as c2w: positive yaw turns the optical axis to the right (+x), positive pitch up (-y)
    assert torch.allclose(rot_y(angle) @ forward, unit([s, 0.0, c]), atol=TOL)
    assert torch.allclose(rot_x(angle) @ forward, unit([0.0, -s, c]), atol=TOL)
    assert torch.allclose(rot_z(angle) @ right, unit([c, s, 0.0]), atol=TOL)
    for rot in (rot_x, rot_y, rot_z):
        batch = rot(torch.linspace(-3.0, 3.0, 7, dtype=torch.float64))
        assert batch.shape == (7, 3, 3) and batch.dtype == torch.float64
        assert torch.allclose(batch @ batch.mT, torch.eye(3, dtype=torch.float64).expand(7, 3, 3), atol=TOL)
        assert torch.allclose(torch.linalg.det(batch), torch.ones(7, dtype=torch.float64), atol=TOL)
        assert rot(0.25).shape == (3, 3) and torch.allclose(rot(0.25), rot(torch.tensor([0.25]))[0], atol=TOL)


def test_yaw_pitch_roll_recomposes_any_rotation():
    for rot in random_rotations(50):
        yaw, pitch, roll = yaw_pitch_roll(rot)
        assert abs(pitch) <= math.pi / 2
        assert torch.allclose(rot_y(yaw) @ rot_x(pitch) @ rot_z(roll), rot, atol=TOL)
    # looking straight down (pitch -90 degrees): yaw and roll are not unique, roll is reported as 0;
    # the pitch comes from asin near +-1, whose error grows like sqrt(round-off), hence 1e-7
    straight_down = rot_y(0.7) @ rot_x(-math.pi / 2) @ rot_z(0.3)
    yaw, pitch, roll = yaw_pitch_roll(straight_down)
    assert roll == 0.0 and pitch == pytest.approx(-math.pi / 2)
    assert torch.allclose(rot_y(yaw) @ rot_x(pitch), straight_down, atol=1e-7)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 0.3, math.pi / 2, 2.5, math.pi - 1e-6, math.pi])
def test_rotation_angle_is_accurate_from_zero_to_pi(angle):
    axis = unit([0.3, -0.5, 0.8])
    rot = axis_angle_to_matrix(axis * angle)
    # relative accuracy even for 1e-9 rad (acos of the trace would return 0 there)
    assert rotation_angle(rot).item() == pytest.approx(angle, rel=1e-9, abs=1e-15)


def test_rotation_angle_between_two_rotations_and_batches():
    a, b = rot_y(math.radians(10.0)), rot_y(math.radians(35.0))
    assert math.degrees(rotation_angle(a.mT @ b).item()) == pytest.approx(25.0, abs=1e-9)
    rots = random_rotations(8)
    assert rotation_angle(rots).shape == (8,)
    assert torch.all((rotation_angle(rots) >= 0) & (rotation_angle(rots) <= math.pi))


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-6, 0.3, math.pi / 2, 2.5, math.pi - 1e-7])
def test_axis_angle_log_inverts_exp(angle):
    axis_angle = unit([-0.2, 0.9, 0.4]) * angle
    rot = axis_angle_to_matrix(axis_angle)
    assert torch.allclose(rot @ rot.mT, torch.eye(3, dtype=torch.float64), atol=TOL)
    # near pi the axis is read from the symmetric part, accurate to round-off over (1 - cos) ~ 2
    assert torch.allclose(matrix_to_axis_angle(rot), axis_angle, atol=TOL)


def test_axis_angle_at_exactly_pi_and_for_random_rotations():
    half_turn = rot_z(math.pi)
    log = matrix_to_axis_angle(half_turn)
    assert torch.allclose(log.abs(), unit([0.0, 0.0, 1.0]) * math.pi, atol=TOL)  # either sign is the same rotation
    rots = random_rotations(200, seed=1)
    assert torch.allclose(axis_angle_to_matrix(matrix_to_axis_angle(rots)), rots, atol=1e-11)


def test_interpolation_follows_the_shortest_arc():
    """A rotation at angle ``t theta`` from ``R_a`` and ``(1 - t) theta`` from ``R_b`` lies on the
    shortest arc (for ``theta < pi`` it is unique), which is what quaternion slerp produces."""
    a, b = random_rotations(2, seed=3)
    theta = rotation_angle(a.mT @ b)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    mid = interpolate_rotation(a, b, t)
    assert mid.shape == (5, 3, 3)
    assert torch.allclose(rotation_angle(a.mT @ mid), t * theta, atol=TOL)
    assert torch.allclose(rotation_angle(mid.mT @ b), (1 - t) * theta, atol=TOL)
    assert torch.allclose(mid[0], a, atol=TOL) and torch.allclose(mid[-1], b, atol=TOL)
    # about one axis it is linear in the angle
    yaw = interpolate_rotation(rot_y(0.2), rot_y(1.4), 0.25)
    assert torch.allclose(yaw, rot_y(0.2 + 0.25 * 1.2), atol=TOL)


def test_interpolation_near_a_half_turn_and_between_equal_rotations():
    a = random_rotations(1, seed=4)[0]
    b = a @ axis_angle_to_matrix(unit([1.0, 2.0, -0.5]) * (math.pi - 1e-6))
    mid = interpolate_rotation(a, b, 0.5)
    assert rotation_angle(a.mT @ mid).item() == pytest.approx((math.pi - 1e-6) / 2, abs=1e-9)
    assert torch.allclose(interpolate_rotation(a, a, 0.3), a, atol=TOL)
