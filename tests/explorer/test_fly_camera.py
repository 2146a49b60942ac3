"""FlyCamera: exact pose deltas per key, modifiers, mouse look, clamping; KeyBindings persistence."""

import math

import numpy as np
import pytest
import torch

from explorer.fly_camera import FAST_FACTOR, SLOW_FACTOR, Action, FlyCamera, KeyBindings
from model.geometry.camera import invert_pose, look_at, rigid
from model.geometry.rotations import rot_z


def centre(cam):
    return invert_pose(cam.w2c)[:3, 3].numpy()


@pytest.mark.parametrize(
    "action, delta",
    [
        (Action.FORWARD, [0, 0, 1]),
        (Action.BACK, [0, 0, -1]),
        (Action.LEFT, [-1, 0, 0]),
        (Action.RIGHT, [1, 0, 0]),
        (Action.DOWN, [0, 1, 0]),  # world up is -y
        (Action.UP, [0, -1, 0]),
    ],
)
def test_each_key_moves_one_metre_per_second_from_identity(action, delta):
    cam = FlyCamera(np.eye(4), speed_mps=1.0)
    cam.press(action)
    assert cam.tick(1.0)
    assert np.allclose(centre(cam), delta, atol=1e-12)
    assert np.allclose(cam.w2c[:3, :3].numpy(), np.eye(3)), "moving never rotates"
    assert cam.w2c.dtype == torch.float64 and cam.w2c.shape == (4, 4)


def test_modifiers_scale_speed_and_release_stops():
    cam = FlyCamera(np.eye(4), speed_mps=2.0)
    cam.press("forward")
    cam.press(Action.FAST)
    cam.tick(0.5)
    assert np.allclose(centre(cam), [0, 0, 2.0 * FAST_FACTOR * 0.5])
    cam.release(Action.FAST)
    cam.press(Action.SLOW)
    cam.tick(1.0)
    assert np.allclose(centre(cam), [0, 0, 4.0 + 2.0 * SLOW_FACTOR])
    cam.press(Action.FAST)
    assert cam.speed_factor == pytest.approx(FAST_FACTOR * SLOW_FACTOR)
    cam.release(Action.FORWARD)
    before = centre(cam)
    assert not cam.tick(1.0), "no held motion key: no motion"
    assert np.array_equal(centre(cam), before)  # exact: unchanged state, the same formula on the same inputs


def test_diagonals_are_normalised_and_opposites_cancel():
    cam = FlyCamera(np.eye(4))
    cam.press(Action.FORWARD)
    cam.press(Action.RIGHT)
    cam.tick(1.0)
    assert np.allclose(centre(cam), [math.sqrt(0.5), 0, math.sqrt(0.5)])
    cam.press(Action.LEFT)
    cam.press(Action.BACK)
    before = centre(cam)
    assert not cam.tick(1.0)
    assert np.array_equal(centre(cam), before)  # exact: opposite keys sum to exactly 0, the state is unchanged


def test_clear_held_stops_everything():
    cam = FlyCamera(np.eye(4))
    for a in (Action.FORWARD, Action.UP, Action.FAST):
        cam.press(a)
    cam.clear_held()
    assert cam.held == frozenset()
    cam.tick(1.0)
    assert np.allclose(centre(cam), 0)


def test_look_yaw_turns_about_world_up_and_forward_follows_heading():
    cam = FlyCamera(np.eye(4), sensitivity_deg_per_px=0.15)
    cam.look(600, 0)  # 90 degrees to the right
    assert cam.yaw_deg == pytest.approx(90.0)
    c2w = invert_pose(cam.w2c).numpy()
    assert np.allclose(c2w[:3, 2], [1, 0, 0], atol=1e-12), "optical axis now points along +x (right)"
    assert np.allclose(c2w[:3, 1], [0, 1, 0], atol=1e-12), "camera y stays world down"
    cam.press(Action.FORWARD)
    assert cam.tick(1.0)
    assert np.allclose(centre(cam), [1, 0, 0], atol=1e-12)


def test_pitch_is_clamped_and_ground_motion_ignores_pitch():
    cam = FlyCamera(np.eye(4), sensitivity_deg_per_px=1.0)
    cam.look(0, -200)  # mouse up 200 px -> look up, clamped at 85 degrees
    assert cam.pitch_deg == pytest.approx(85.0)
    c2w = invert_pose(cam.w2c).numpy()
    assert c2w[1, 2] < 0, "optical axis points up (-y)"
    cam.look(0, 400)
    assert cam.pitch_deg == pytest.approx(-85.0)
    cam.press(Action.FORWARD)
    cam.tick(1.0)
    assert np.allclose(centre(cam), [0, 0, 1], atol=1e-12), "forward stays on the ground plane"


def test_tick_reports_mouse_look_once():
    cam = FlyCamera(np.eye(4))
    assert cam.tick(0.1), "a fresh camera reports its first pose"
    assert not cam.tick(0.1)
    cam.look(3, 0)
    assert cam.tick(0.1) and not cam.tick(0.1)


def test_arbitrary_start_pose_is_reproduced_and_reset_returns_to_it():
    start = look_at([0.3, -0.2, -1.0], [1.0, 0.1, 2.0])
    cam = FlyCamera(start)
    assert torch.equal(cam.w2c, start)  # exact: an unmoved camera returns a copy of the pose it was given
    cam.look(10, 5)
    cam.press(Action.FORWARD)
    cam.tick(0.3)
    assert not torch.allclose(cam.w2c, start)
    cam.press(Action.RESET)
    assert torch.equal(cam.w2c, start)
    cam.look(1, 0)
    cam.look(-1, 0)
    assert torch.allclose(cam.w2c, start, atol=1e-12), "decomposition into yaw/pitch/roll is exact"


def test_rolled_start_keeps_roll_while_looking():
    start = invert_pose(rigid(rot_z(0.2), torch.zeros(3)))
    cam = FlyCamera(start)
    cam.look(100, 0)
    cam.look(-100, 0)
    assert torch.allclose(cam.w2c, start, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="speed"):
        FlyCamera(np.eye(4), speed_mps=0)
    with pytest.raises(ValueError, match="4,4"):
        FlyCamera(np.eye(4)[None].repeat(2, 0))
    with pytest.raises(ValueError):
        FlyCamera(np.eye(4)).press("jump")
    with pytest.raises(ValueError, match="dt_s"):
        FlyCamera(np.eye(4)).tick(-1)


def test_key_bindings_defaults_round_trip_and_validation():
    kb = KeyBindings()
    assert kb.action_for("w") is Action.FORWARD and kb.action_for("Shift") is Action.FAST
    assert kb.action_for("ctrl") is Action.SLOW and kb.action_for("Esc") is Action.PAUSE
    assert kb.action_for("Space") is Action.GENERATE_NOW and kb.action_for("U") is Action.RESET
    steps = {
        a: kb.key_for(a) for a in ("step_forward", "step_back", "turn_left", "turn_right", "orbit_left", "orbit_right")
    }
    assert steps == {
        "step_forward": "I",
        "step_back": "K",
        "turn_left": "J",
        "turn_right": "L",
        "orbit_left": "N",
        "orbit_right": "M",
    }
    assert kb.action_for("F12") is None
    assert KeyBindings.from_dict(kb.to_dict()) == kb
    remapped = KeyBindings.from_dict({"forward": "Up", "back": "Down"})
    assert remapped.action_for("up") is Action.FORWARD and remapped.left == "A"
    with pytest.raises(ValueError, match="both"):
        KeyBindings.from_dict({"forward": "S"})
    with pytest.raises(ValueError, match="unknown actions"):
        KeyBindings.from_dict({"jump": "J"})
    assert {a.value for a in Action} == set(kb.to_dict())
