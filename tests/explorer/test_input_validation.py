"""``main.py generate``'s input files: every refusal is exit 2 with one line ``error: <file>: <field
or line>: <reason>``, no traceback, nothing written, and no backbone built; inputs that are used only
in part say so (``warning:`` / ``note:`` lines)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import explorer.generate
import main
from model.geometry.camera import Trajectory, intrinsics_from_fov
from model.geometry.trajectories import orbit
from model.io.cameras import write_camera_path_json, write_re10k
from model.memory.latent import LatentSpatialMemory
from tests.cli_args import TINY_FAST as FAST

N_FRAMES = 33  # one segment


@pytest.fixture
def no_backbone(monkeypatch):
    """Fail the test if the backbone is built: every refusal below must come before it."""
    built = []

    def load_generation_stack(*args, **kwargs):
        built.append(args)
        raise AssertionError("the backbone was built before the input files were checked")

    monkeypatch.setattr(explorer.generate, "load_generation_stack", load_generation_stack)
    return built


def refuse(tmp_path, capsys, extra: list[str]) -> str:
    """Run ``generate`` with ``extra``; assert exit 2, one stderr line, nothing written; return that line."""
    out_dir = tmp_path / "out"
    code = main.main(["generate", "--out", str(out_dir / "run.mp4"), *FAST, *extra])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert not out_dir.exists(), "a refused run wrote something"
    return lines[0]


def camera_path_file(tmp_path, mutate=None):
    """A valid 40-frame camera-path JSON file, changed by ``mutate(data)``."""
    path = tmp_path / "path.json"
    write_camera_path_json(path, Trajectory(orbit(40, 2.0, 30.0), intrinsics_from_fov(60.0, 128, 64), 128, 64))
    if mutate is not None:
        data = json.loads(path.read_text())
        mutate(data)
        path.write_text(json.dumps(data))
    return path


def mirror_frame_3(data):
    for row in range(3):
        data["camera_path"][3]["camera_to_world"][4 * row] *= -1


def drop_intrinsics_negative_width(data):
    del data["intrinsics"]
    data["render_width"] = -128


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["intrinsics"].pop("fx"), "intrinsics.fx: missing (intrinsics needs fx, fy, cx and cy in pixels)"),
        (
            lambda d: d.update(intrinsics="50mm"),
            "intrinsics: expected an object {fx, fy, cx, cy} in pixels, got a string ('50mm')",
        ),
        (drop_intrinsics_negative_width, "render_width: must be positive, got -128"),
        (mirror_frame_3, "camera_path[3].camera_to_world: not a rotation (det -1.000)"),
    ],
)
def test_bad_camera_path_json_names_file_field_and_index(tmp_path, capsys, no_backbone, mutate, message):
    path = camera_path_file(tmp_path, mutate)
    assert refuse(tmp_path, capsys, ["--trajectory", str(path)]) == f"error: {path}: {message}"


def test_bad_realestate10k_file_names_file_line_and_column(tmp_path, capsys, no_backbone):
    path = tmp_path / "cams.txt"
    write_re10k(path, orbit(40, 2.0, 30.0), intrinsics_from_fov(60.0, 128, 64), 128, 64)
    lines = path.read_text().splitlines()
    lines[8] = " ".join(lines[8].split()[:-1] + ["nan"])
    path.write_text("\n".join(lines) + "\n")
    assert (
        refuse(tmp_path, capsys, ["--trajectory", str(path)]) == f"error: {path}: line 9: column 19: NaN or Inf value"
    )


def test_a_trajectory_file_with_too_few_poses(tmp_path, capsys, no_backbone):
    path = tmp_path / "short.txt"
    write_re10k(path, orbit(10, 2.0, 30.0), intrinsics_from_fov(60.0, 128, 64), 128, 64)
    message = refuse(tmp_path, capsys, ["--trajectory", str(path)])
    assert message == f"error: {path}: poses: 10 poses, but {N_FRAMES} are needed for the requested segments"


def test_a_memory_for_another_latent_is_refused_naming_the_file(tmp_path, capsys, no_backbone):
    path = tmp_path / "mem16.safetensors"
    LatentSpatialMemory.from_points(torch.rand(20, 3), torch.rand(20, 16)).save(path)
    message = refuse(tmp_path, capsys, ["--load-memory", str(path)])
    assert message == f"error: {path}: channels: memory holds 16-channel features, the backbone's latent has 48"


def test_a_missing_or_corrupt_memory_file_is_named(tmp_path, capsys, no_backbone):
    missing = tmp_path / "missing.safetensors"
    assert refuse(tmp_path, capsys, ["--load-memory", str(missing)]) == f"error: {missing}: file not found"
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert refuse(tmp_path, capsys, ["--load-memory", str(corrupt)]).startswith(
        f"error: {corrupt}: not a readable safetensors file: "
    )


def save_photo(path, width, height, frames=1):
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)) for _ in range(frames)]
    images[0].save(path, save_all=frames > 1, append_images=images[1:])
    return path


def test_a_bad_image_is_refused_before_the_backbone_is_built(tmp_path, capsys, no_backbone):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all" * 10)
    assert (
        refuse(tmp_path, capsys, ["--image", str(garbage)])
        == f"error: {garbage}: not an image, or a format PIL cannot read"
    )
    assert no_backbone == []


def test_a_photo_beyond_3_to_1_is_refused_with_the_reason(tmp_path, capsys, no_backbone):
    strip = save_photo(tmp_path / "strip.png", 400, 100)
    assert refuse(tmp_path, capsys, ["--image", str(strip)]) == (
        f"error: {strip}: aspect ratio: 400x100 is 4.00:1, beyond the 3:1 limit (the centre crop to the 128x64 frame "
        "would keep only 50% of it); crop the photo to the part you want first"
    )


def test_bad_depth_inputs_are_refused_before_the_backbone(tmp_path, capsys, no_backbone):
    photo = save_photo(tmp_path / "photo.png", 96, 48)
    depth = tmp_path / "depth.tiff"
    depth.write_bytes(b"II*\x00")
    message = refuse(tmp_path, capsys, ["--image", str(photo), "--depth", str(depth)])
    assert message.startswith(f"error: {depth}: ")
    model = tmp_path / "no-depth-model"
    message = refuse(tmp_path, capsys, ["--image", str(photo), "--depth-model", str(model)])
    assert message == f"error: {model}: depth model folder not found"
    message = refuse(tmp_path, capsys, ["--sky-model", str(model)])
    assert message == f"error: {model}: sky segmentation model folder not found"
    message = refuse(tmp_path, capsys, ["--depth", str(depth)])
    assert message == f"error: --depth {depth}: given without --image (the bundled sample scene has exact depth)"


def test_partly_used_inputs_say_what_is_used(tmp_path, capsys):
    """An animated portrait GIF (frame 1 of 3, centre-cropped) and a 1,000-pose camera file (33 used)."""
    gif = save_photo(tmp_path / "anim.gif", 48, 96, frames=3)
    cams = tmp_path / "long.txt"
    write_re10k(cams, orbit(1000, 2.0, 30.0), intrinsics_from_fov(60.0, 128, 64), 128, 64)
    out = tmp_path / "run.mp4"
    code = main.main(["generate", "--out", str(out), *FAST, "--image", str(gif), "--trajectory", str(cams)])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = err.splitlines()
    assert f"warning: {gif}: the file holds 3 frames: using frame 1 of 3" in lines
    assert (
        f"warning: {gif}: the 48x96 photo is centre-cropped to the 128x64 frame's aspect: "
        "75% of its height is cut off, half at the top, half at the bottom"
    ) in lines
    assert f"note: {cams}: using the first {N_FRAMES} of 1000 poses" in lines
    assert lines.index(f"note: {cams}: using the first {N_FRAMES} of 1000 poses") < next(
        i for i, line in enumerate(lines) if "tiny models" in line
    ), "inputs are checked before the backbone is built"
    assert out.is_file()
