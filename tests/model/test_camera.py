"""Tests of the camera model (intrinsics, poses, projection, the GL projection) and camera file formats."""

import json
import math

import numpy as np
import pytest
import torch

from model.geometry.camera import (
    Trajectory,
    gl_projection,
    intrinsics_from_fov,
    invert_pose,
    look_at,
    pixel_centers,
    project_points,
    scale_intrinsics,
    unproject_depth,
    validate_poses,
)
from model.geometry.trajectories import look_around, orbit
from model.io.cameras import read_camera_path_json, read_re10k, write_camera_path_json, write_re10k


def test_pixel_centres_and_latent_intrinsics_map_cells_onto_pixel_patches():
    K = intrinsics_from_fov(60.0, 1280, 704)
    K_lat = scale_intrinsics(K, (704, 1280), (44, 80))
    assert K_lat[0, 0] == pytest.approx(K[0, 0] / 16) and K_lat[1, 2] == pytest.approx(22.0)
    # the centre of latent cell (u, v) back-projects onto the centre of its 16x16 pixel patch
    point = unproject_depth(torch.full((44, 80), 3.0, dtype=torch.float64), K_lat, torch.eye(4, dtype=torch.float64))[
        5, 7
    ]
    uv, z = project_points(point[None], torch.eye(4, dtype=torch.float64)[None], K)
    assert uv[0, 0].tolist() == pytest.approx([7 * 16 + 8, 5 * 16 + 8])
    assert pixel_centers(2, 3)[1, 2].tolist() == [2.5, 1.5]  # exact: integer + 0.5


def test_unproject_then_project_round_trip_at_a_random_pose():
    g = torch.Generator().manual_seed(0)
    K = intrinsics_from_fov(50.0, 64, 48)
    w2c = look_at([0.3, -0.2, -1.0], [0.0, 0.1, 2.0])
    depth = 1.0 + 3.0 * torch.rand(48, 64, generator=g, dtype=torch.float64)
    points = unproject_depth(depth, K, invert_pose(w2c)).reshape(-1, 3)
    uv, z = project_points(points, w2c[None], K)
    assert torch.allclose(uv[0], pixel_centers(48, 64, dtype=torch.float64).reshape(-1, 2), atol=1e-9)
    assert torch.allclose(z[0], depth.reshape(-1), atol=1e-9)


def test_look_at_uses_opencv_axes():
    w2c = look_at([0.0, 0.0, 0.0], [1.0, 0.0, 0.0])  # looking along +x, world up is -y
    c2w = invert_pose(w2c)
    assert torch.allclose(c2w[:3, 2], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # z forward
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))  # y down
    with pytest.raises(ValueError, match="parallel"):
        look_at([0, 0, 0], [0, -1, 0])


def test_gl_projection_maps_camera_points_to_pixel_coordinates():
    K = np.array([[500.0, 0.0, 300.5], [0.0, 450.0, 170.25], [0.0, 0.0, 1.0]])
    width, height = 640, 352
    points = np.array([[0.1, -0.2, 1.0], [-1.0, 0.5, 3.0], [0.0, 0.0, 0.05], [2.0, 1.0, 150.0]])
    clip = np.concatenate([points, np.ones((4, 1))], axis=1) @ gl_projection(K, width, height).T
    ndc = clip[:, :3] / clip[:, 3:]
    u_gl = (ndc[:, 0] + 1.0) * width / 2.0
    v_gl = (1.0 - ndc[:, 1]) * height / 2.0  # rows counted from the top after the flip
    pixels = points @ K.T
    np.testing.assert_allclose(u_gl, pixels[:, 0] / pixels[:, 2], atol=1e-9)
    np.testing.assert_allclose(v_gl, pixels[:, 1] / pixels[:, 2], atol=1e-9)
    assert np.all((ndc[:, 2] > -1.0 - 1e-9) & (ndc[:, 2] < 1.0))


def test_validate_poses_rejects_nan_and_non_rotations():
    good = orbit(3)
    assert validate_poses(good) is not None
    bad = good.clone()
    bad[1, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        validate_poses(bad)
    mirrored = good.clone()
    mirrored[2, :3, 0] *= -1  # det -1
    with pytest.raises(ValueError, match=r"^w2c: frame 2: not a rotation \(det -1.000\)$"):
        validate_poses(mirrored)
    with pytest.raises(ValueError, match="shape"):
        validate_poses(torch.eye(3))


def test_re10k_round_trip(tmp_path):
    K = intrinsics_from_fov(55.0, 640, 352)
    K[0, 2] = 330.0
    path = orbit(5, 2.0, 30.0)
    file = tmp_path / "cams.txt"
    write_re10k(file, path, K, 640, 352, fps=16.0, url="https://example.org/v")
    cams = read_re10k(file)
    assert cams.url == "https://example.org/v"
    assert torch.allclose(cams.w2c, path, atol=1e-12)
    assert torch.allclose(cams.K(640, 352)[0], K, atol=1e-9)
    assert cams.timestamps_us.tolist() == [0, 62500, 125000, 187500, 250000]
    traj = cams.trajectory(640, 352)
    assert traj.fps == pytest.approx(16.0) and len(traj) == 5


def write_lines(tmp_path, name, lines):
    file = tmp_path / name
    file.write_text("".join(line + "\n" for line in lines))
    return file


GOOD_LINE = "0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"


@pytest.mark.parametrize(
    "lines, message",
    [
        (["url", GOOD_LINE, "33 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1"], "line 3: expected 19 columns, got 18"),
        (["url", GOOD_LINE.replace("0.9", "nan")], "line 2: column 3: NaN or Inf value"),
        (["url", GOOD_LINE.replace("0.9", "inf")], "line 2: column 3: NaN or Inf value"),
        (["url", GOOD_LINE.replace("0.9", "abc")], "line 2: column 3: not a number ('abc')"),
        (
            ["url", GOOD_LINE.replace(" 0.9 ", " -0.9 ")],
            "line 2: focal lengths fx, fy (columns 2-3) must be positive, got 0.5, -0.9",
        ),
        (["url", "0 0.5 0.9 0.5 0.5 0 0 2 0 0 0 0 1 0 0 0 0 1 0"], "line 2: not a rotation (det 2.000)"),
        (["url", "0 0.5 0.9 0.5 0.5 0 0 -1 0 0 0 0 1 0 0 0 0 1 0"], "line 2: not a rotation (det -1.000)"),
        (
            ["url", "0 0.5 0.9 0.5 0.5 0 0 1 1 0 0 0 1 0 0 0 0 1 0"],
            "line 2: not a rotation (R^T R differs from I by 1)",
        ),
        (["url"], "no camera frames after the URL line"),
        ([], "empty file (expected a URL line and one line per frame)"),
    ],
)
def test_re10k_malformed_files_name_file_and_line(tmp_path, lines, message):
    file = write_lines(tmp_path, "bad.txt", lines)
    with pytest.raises(ValueError) as info:
        read_re10k(file)
    assert str(info.value) == f"{file}: {message}"


def test_re10k_missing_file(tmp_path):
    with pytest.raises(ValueError, match="nope.txt"):
        read_re10k(tmp_path / "nope.txt")


def test_camera_path_json_round_trip(tmp_path):
    K = intrinsics_from_fov(60.0, 320, 176)
    traj = Trajectory(look_around(7, 20.0, 5.0), K, 320, 176, fps=12.0)
    file = tmp_path / "path.json"
    write_camera_path_json(file, traj)
    back = read_camera_path_json(file)
    assert torch.allclose(back.w2c, traj.w2c, atol=1e-12)
    assert torch.allclose(back.K, K) and back.fps == 12.0 and (back.width, back.height) == (320, 176)


def test_camera_path_json_reads_nerfstudio_opengl_files(tmp_path):
    # nerfstudio: OpenGL camera axes (y up, looking down -z); this camera looks along world +x
    c2w_gl = [[0, 0, -1, 0.5], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    data = {
        "render_width": 64,
        "render_height": 32,
        "fps": 24,
        "camera_path": [{"camera_to_world": sum(c2w_gl, []), "fov": 45.0, "aspect": 2.0}],
    }
    file = tmp_path / "ns.json"
    file.write_text(json.dumps(data))
    traj = read_camera_path_json(file)
    c2w = traj.c2w[0]
    assert torch.allclose(c2w[:3, 2], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # OpenCV z forward = GL -z
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))  # OpenCV y down = GL -y
    assert traj.fov_y_deg == pytest.approx(45.0)


ORBIT_FILE_FRAMES = 5


def malformed_camera_path(tmp_path, mutate):
    """A valid camera-path file of a 5-frame orbit, changed by ``mutate(data)``."""
    traj = Trajectory(orbit(ORBIT_FILE_FRAMES), intrinsics_from_fov(60.0, 64, 32), 64, 32)
    file = tmp_path / "path.json"
    write_camera_path_json(file, traj)
    data = json.loads(file.read_text())
    mutate(data)
    file.write_text(json.dumps(data))
    return file


def mirror(data, i):
    """Flip the x axis of frame ``i``'s matrix (det -1)."""
    for row in range(3):
        data["camera_path"][i]["camera_to_world"][4 * row] *= -1


def without_intrinsics(data):
    del data["intrinsics"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(camera_path=[]), "camera_path: no frames"),
        (lambda d: d.pop("camera_path"), "camera_path: missing (expected a list of frames)"),
        (lambda d: d.update(camera_path={"0": 1}), "camera_path: expected a list of frames, got an object"),
        (
            lambda d: d["camera_path"].__setitem__(2, [1, 2]),
            "camera_path[2]: expected an object with camera_to_world, got a list",
        ),
        (
            lambda d: d["camera_path"][4].pop("camera_to_world"),
            "camera_path[4].camera_to_world: missing (expected 16 numbers (row-major 4x4) or 12 (3x4))",
        ),
        (
            lambda d: d["camera_path"][1].update(camera_to_world=[1.0] * 15),
            "camera_path[1].camera_to_world: expected 16 numbers (row-major 4x4) or 12 (3x4), got 15",
        ),
        (
            lambda d: d["camera_path"][1]["camera_to_world"].__setitem__(3, float("nan")),
            "camera_path[1].camera_to_world: NaN or Inf value",
        ),
        (
            lambda d: d["camera_path"][2]["camera_to_world"].__setitem__(12, 1.0),
            "camera_path[2].camera_to_world: bottom row must be [0, 0, 0, 1], got [1, 0, 0, 1]",
        ),
        (lambda d: mirror(d, 3), "camera_path[3].camera_to_world: not a rotation (det -1.000)"),
        (
            lambda d: d["camera_path"][0]["camera_to_world"].__setitem__(0, 3.0),
            "camera_path[0].camera_to_world: not a rotation (det 3.000)",
        ),
        (lambda d: d.pop("render_width"), "render_width: missing (expected the image size in pixels)"),
        (lambda d: d.update(render_width=-64), "render_width: must be positive, got -64"),
        (lambda d: d.update(render_height=31.5), "render_height: expected a whole number of pixels, got 31.5"),
        (lambda d: d.update(render_height="32"), "render_height: expected a number, got a string ('32')"),
        (lambda d: d.update(fps=0), "fps: must be positive, got 0"),
        (
            lambda d: d.update(camera_convention="blender"),
            "camera_convention: must be 'opencv' or 'opengl', got 'blender'",
        ),
        (lambda d: d["intrinsics"].pop("fx"), "intrinsics.fx: missing (intrinsics needs fx, fy, cx and cy in pixels)"),
        (
            lambda d: d.update(intrinsics="fx=50"),
            "intrinsics: expected an object {fx, fy, cx, cy} in pixels, got a string ('fx=50')",
        ),
        (lambda d: d["intrinsics"].update(fy=-3.0), "intrinsics.fy: must be positive, got -3"),
        (lambda d: d["intrinsics"].update(cx=None), "intrinsics.cx: expected a number, got null"),
        (
            lambda d: (without_intrinsics(d), d["camera_path"][0].pop("fov")),
            "camera_path[0].fov: missing (needed when the file has no intrinsics object)",
        ),
        (
            lambda d: (without_intrinsics(d), d["camera_path"][0].update(fov=180)),
            "camera_path[0].fov: must be a vertical field of view in (0, 180) degrees, got 180",
        ),
    ],
)
def test_camera_path_json_malformed_names_file_field_and_index(tmp_path, mutate, message):
    file = malformed_camera_path(tmp_path, mutate)
    with pytest.raises(ValueError) as info:
        read_camera_path_json(file)
    assert str(info.value) == f"{file}: {message}"


def test_camera_path_json_without_intrinsics_uses_fov_and_a_negative_width_is_not_a_fov_error(tmp_path):
    back = read_camera_path_json(malformed_camera_path(tmp_path, without_intrinsics))
    assert back.fov_y_deg == pytest.approx(60.0)
    file = malformed_camera_path(tmp_path, lambda d: (without_intrinsics(d), d.update(render_width=-64)))
    with pytest.raises(ValueError, match=r"path.json: render_width: must be positive"):
        read_camera_path_json(file)


def test_camera_path_json_unreadable(tmp_path):
    file = tmp_path / "broken.json"
    file.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken.json: cannot read camera-path JSON"):
        read_camera_path_json(file)
    file.write_text("[1, 2]")
    with pytest.raises(ValueError) as info:
        read_camera_path_json(file)
    assert str(info.value) == f"{file}: expected a JSON object, got a list"


def test_trajectory_validation():
    K = intrinsics_from_fov(60.0, 64, 32)
    with pytest.raises(ValueError, match="no frames"):
        Trajectory(torch.zeros(0, 4, 4), K, 64, 32)
    with pytest.raises(ValueError, match="fps"):
        Trajectory(orbit(2), K, 64, 32, fps=0.0)
    with pytest.raises(ValueError, match="fov"):
        intrinsics_from_fov(180.0, 64, 32)
