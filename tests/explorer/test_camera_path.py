"""The camera-path editor's model: keyframe editing, the smooth path, segments, files and sessions."""

import json

import numpy as np
import pytest
import torch

from explorer.camera_path import CameraPath, catmull_rom
from explorer.flight import SEGMENT_FRAMES
from model.geometry.camera import intrinsics_from_fov, invert_pose, look_at


def pose(eye, target=(0.0, 0.0, 4.0)) -> np.ndarray:
    """w2c of a camera at ``eye`` looking at ``target``."""
    eye, target = torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64)
    return invert_pose(look_at(eye, target)).numpy()


@pytest.fixture
def path() -> CameraPath:
    p = CameraPath(fps=8.0)
    p.add(pose((0.0, 0.0, 0.0)))
    p.add(pose((1.0, 0.0, 0.5)))  # 2 s later
    p.add(pose((1.5, -0.3, 1.5)), 5.0)
    return p


def test_the_path_passes_through_every_keyframe_and_is_smooth(path):
    w2c = path.sample()
    assert w2c.shape == (5 * 8 + 1, 4, 4)
    for key in path.keyframes:
        frame = round(key.time_s * path.fps)
        assert np.array_equal(w2c[frame].numpy(), key.w2c), "keyframe times give the keyframes exactly"
    centres = invert_pose(w2c)[:, :3, 3]
    steps = centres[1:] - centres[:-1]
    turn = torch.nn.functional.cosine_similarity(steps[1:], steps[:-1], dim=-1)
    assert float(turn.min()) > 0.9, "no kinks: consecutive steps point the same way, keyframes included"
    rot = invert_pose(w2c)[:, :3, :3]
    assert torch.allclose(rot @ rot.mT, torch.eye(3, dtype=torch.float64).expand_as(rot), atol=1e-9)


def test_catmull_rom_on_a_line_is_the_line():
    points = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]], dtype=torch.float64)
    knots = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    out = catmull_rom(points, knots, torch.linspace(0, 2, 9, dtype=torch.float64))
    assert torch.allclose(out[:, 1:], torch.zeros(9, 2, dtype=torch.float64))
    assert torch.all(out[1:, 0] > out[:-1, 0]), "monotone along the line"


def test_editing_reorders_deletes_and_retimes(path):
    first, second = path.keyframes[0].w2c, path.keyframes[1].w2c
    path.move(0, 1)
    assert np.array_equal(path.keyframes[0].w2c, second) and np.array_equal(path.keyframes[1].w2c, first)
    assert [k.time_s for k in path.keyframes] == [0.0, 2.0, 5.0], "times stay in their slots"
    path.retime(1, 3.0)
    assert path.keyframes[1].time_s == 3.0
    with pytest.raises(ValueError, match="strictly between"):
        path.retime(1, 6.0)
    path.delete(0)
    assert len(path) == 2 and path.duration_s == 2.0
    with pytest.raises(IndexError, match="keyframe 5"):
        path.delete(5)


def test_segments_share_endpoints_and_start_at_the_camera(path):
    elsewhere = pose((-0.5, 0.0, -0.5))
    segments = path.segments(start_w2c=elsewhere)
    total = round((path.duration_s + 2.0) * path.fps)  # the start pose comes 2 s before the first keyframe
    assert len(segments) == -(-total // (SEGMENT_FRAMES - 1))
    assert all(s.shape == (SEGMENT_FRAMES, 4, 4) for s in segments)
    assert np.array_equal(segments[0][0].numpy(), elsewhere)
    assert np.array_equal(segments[-1][-1].numpy(), path.keyframes[-1].w2c)
    for a, b in zip(segments, segments[1:], strict=False):
        assert torch.equal(a[-1], b[0])
    on_path = path.segments(start_w2c=path.keyframes[0].w2c)
    assert np.array_equal(on_path[0][0].numpy(), path.keyframes[0].w2c), "no extra keyframe at the first one"


@pytest.mark.parametrize("name", ["path.json", "path.txt"])
def test_files_round_trip(tmp_path, path, name):
    K = intrinsics_from_fov(60.0, 128, 64)
    path.export(tmp_path / name, K, 128, 64)
    back = CameraPath.from_file(tmp_path / name)
    assert back.fps == pytest.approx(path.fps, rel=1e-6)
    assert len(back) == len(path.sample()), "every sampled pose becomes a keyframe"
    assert torch.allclose(back.sample(), path.sample(), atol=1e-6)


def test_sessions_store_keyframes(path):
    back = CameraPath.from_dict(json.loads(json.dumps(path.to_dict())))
    assert [k.time_s for k in back.keyframes] == [k.time_s for k in path.keyframes]
    assert all(np.allclose(a.w2c, b.w2c, atol=1e-12) for a, b in zip(back.keyframes, path.keyframes, strict=True))
    bad = path.to_dict()
    bad["keyframes"][1]["c2w"] = [1.0] * 16
    with pytest.raises(ValueError, match=r"camera_path: keyframes\[1\]"):
        CameraPath.from_dict(bad)


def test_bad_files_are_named(tmp_path):
    (tmp_path / "p.json").write_text('{"camera_path": []}')
    with pytest.raises(ValueError, match="p.json"):
        CameraPath.from_file(tmp_path / "p.json")
