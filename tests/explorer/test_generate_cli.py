"""``main.py generate`` and ``main.py walkthrough`` end to end (tiny backend, CPU), and their errors."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import main
from model.io.cameras import read_re10k
from model.io.video import read_mp4_frames, read_mp4_metadata
from tests.cli_args import TINY_FAST as FAST


def run(argv, capsys):
    code = main.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_on_the_bundled_scene_writes_video_json_and_cameras(tmp_path, capsys):
    out = tmp_path / "run.mp4"
    code, stdout, _ = run(
        [
            "generate",
            "--out",
            str(out),
            "--trajectory",
            "closed-orbit",
            "--save-memory",
            str(tmp_path / "mem.safetensors"),
            *FAST,
        ],
        capsys,
    )
    assert code == 0, stdout
    frames = read_mp4_frames(out)
    assert frames.shape == (33, 64, 128, 3)
    assert read_mp4_metadata(out)["seed"] == 0
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["seed"] == 0 and report["depth_source"].startswith("exact")
    assert report["segments"][0]["timings_s"]["total"] > 0 and report["memory"]["points"] > 0
    cams = read_re10k(tmp_path / "run.cameras.txt")
    assert len(cams.w2c) == 33 and np.allclose(cams.w2c[0].numpy(), np.eye(4))
    assert np.allclose(cams.w2c[-1].numpy(), np.eye(4)), "closed-orbit returns to the start pose"
    assert (tmp_path / "mem.safetensors").stat().st_size > 0


def test_generate_keeps_the_sky_of_a_sky_model_out_of_the_memory(tmp_path, capsys, save_tiny_segformer):
    save_tiny_segformer(tmp_path / "sky", {0: "building", 1: "sky"}, always=1)  # everything is sky
    code, stdout, _ = run(["generate", "--out", str(tmp_path / "plain.mp4"), *FAST], capsys)
    assert code == 0, stdout
    code, stdout, _ = run(
        ["generate", "--out", str(tmp_path / "sky.mp4"), "--sky-model", str(tmp_path / "sky"), *FAST], capsys
    )
    assert code == 0, stdout
    plain, sky = (json.loads((tmp_path / name).read_text()) for name in ("plain.json", "sky.json"))
    assert sky["settings"]["sky_model"] == str(tmp_path / "sky")
    assert sky["memory"]["points"] < plain["memory"]["points"], "all generated frames were sky: none was written"


def test_a_photo_without_a_depth_model_explored_forward_keeps_its_memory_bounded(tmp_path, capsys):
    """Issue 11 goal: <= 25 % of the photo's points added per segment (the prior is never written)."""
    photo = Path(main.__file__).parent / "resources" / "sample_scene" / "image.png"
    out = tmp_path / "photo.mp4"
    argv = ["generate", "--image", str(photo), "--trajectory", "forward", "--out", str(out), *FAST[:-2]]
    code, _, err = run([*argv, "--segments", "3"], capsys)
    assert code == 0, err
    report = json.loads(out.with_suffix(".json").read_text())
    initial = report["memory"]["initial_points"]
    assert initial == (64 // 4) * (128 // 4), "every cell of the photo has prior depth"
    sizes = [initial] + [segment["memory_points"] for segment in report["segments"]]
    assert max(b - a for a, b in zip(sizes, sizes[1:], strict=False)) <= 0.25 * initial, sizes
    segment = report["segments"][-1]
    assert segment["depth_source"] == "prior" and segment["depth_residual"] is None
    assert sum(segment["cells"].values()) == 8 * (64 // 4) * (128 // 4), "every written frame's cells, by label"
    assert segment["cells"]["unanchored"] + segment["cells"]["static"] == 8 * (64 // 4) * (128 // 4)


def save_image(path, mode):
    rng = np.random.default_rng(0)
    rgb = (rng.random((48, 96, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(rgb)
    if mode == "L":
        img = img.convert("L")
    elif mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "I;16":
        img = Image.fromarray((rng.random((48, 96)) * 65535).astype(np.uint16))
    elif mode == "CMYK":
        img = img.convert("CMYK")
    img.save(path)
    return path


@pytest.mark.parametrize("mode, suffix", [("L", ".png"), ("RGBA", ".png"), ("I;16", ".png"), ("CMYK", ".jpg")])
def test_generate_accepts_grayscale_rgba_16bit_and_cmyk_photos(tmp_path, capsys, mode, suffix):
    image = save_image(tmp_path / f"photo{suffix}", mode)
    out = tmp_path / "out" / "run.mp4"
    code, _, err = run(["generate", "--image", str(image), "--out", str(out), *FAST], capsys)
    assert code == 0, err
    assert "flat prior" in err, "running without a depth model must say so"
    assert read_mp4_frames(out).shape == (33, 64, 128, 3)


def bad_inputs(tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all" * 10)
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((64, 96, 3)) * 255).astype(np.uint8)).save(buf, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    line = "{t} 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 {z}"
    short = tmp_path / "short.txt"
    short.write_text("url\n" + "\n".join(line.format(t=i, z=0.01 * i) for i in range(10)) + "\n")
    nan = tmp_path / "nan.txt"
    nan.write_text("url\n" + "\n".join(line.format(t=i, z="nan" if i == 7 else 0.01 * i) for i in range(40)) + "\n")
    empty_model = tmp_path / "wan-model"
    empty_model.mkdir()
    return [
        (["--image", str(garbage)], "garbage.jpg"),
        (["--image", str(truncated)], "truncated.jpg"),
        (["--image", str(tiny)], "tiny.png"),
        (["--image", str(tmp_path / "missing.png")], "missing.png"),
        (["--trajectory", str(short)], "short.txt"),
        (["--trajectory", str(nan)], "nan.txt: line 9"),
        (["--trajectory", "spiral"], "spiral"),
        (["--backend", "wan", "--model", str(empty_model)], "wan-model"),
        (["--mode", "branch"], "memory-weights"),
        (["--height", "60"], "multiple"),
    ]


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, capsys):
    for extra, expected in bad_inputs(tmp_path):
        out_dir = tmp_path / f"out-{expected.replace(':', '_')}"
        code, _, err = run(["generate", "--out", str(out_dir / "run.mp4"), *FAST, *extra], capsys)
        assert code != 0, extra
        assert expected in err, f"{extra}: {err}"
        assert not out_dir.exists() or not any(out_dir.iterdir()), f"{extra} left files behind"


def test_walkthrough_writes_preview_and_session(tmp_path, capsys):
    code, stdout, _ = run(["walkthrough", "--out", str(tmp_path / "w"), "--frames", "5"], capsys)
    assert code == 0
    frames = read_mp4_frames(tmp_path / "w" / "preview.mp4")
    assert frames.shape == (10, 704, 1280, 3)
    session = json.loads((tmp_path / "w" / "session.json").read_text())
    assert session["frames"] == 10 and session["memory"]["points"] > 0
    assert session["visible_fraction"][0] > 0.6, "the start view sees the memory built from it"
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() < 2.0, "a closed loop ends where it began"
    assert len(read_re10k(tmp_path / "w" / "cameras.txt").w2c) == 10


def test_no_subcommand_opens_the_gui_with_its_options(capsys, monkeypatch):
    import ui.app

    launched = []
    monkeypatch.setattr(ui.app, "run", lambda args: launched.append(args) or 0)
    code, _, _ = run(["--backend", "tiny", "--steps", "2"], capsys)
    assert code == 0 and len(launched) == 1
    assert launched[0].command is None and launched[0].gui_backend == "tiny" and launched[0].gui_steps == 2
    help_text = main.build_parser().format_help()
    assert "--backend" in help_text and "--model" in help_text and "desktop GUI" in help_text


def test_gui_without_a_display_says_so_and_exits_3(capsys, monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    code, _, err = run([], capsys)
    assert code == 3 and "no display" in err and "walkthrough" in err
