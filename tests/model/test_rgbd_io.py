"""RGB-D view folders: the bundled sample, round trips, and strict errors for malformed folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from model.io.rgbd import (
    CAMERA_FILE,
    DEPTH_NPY_FILE,
    DEPTH_PNG_FILE,
    IMAGE_FILE,
    SAMPLE_SCENE_DIR,
    RGBDView,
    load_depth_file,
    load_rgbd_folder,
    write_depth_png,
    write_rgbd_folder,
)


def small_view(height: int = 12, width: int = 20) -> RGBDView:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, size=(height, width)).astype(np.float32)
    depth[0, :3] = np.inf
    K = np.array([[30.5, 0.0, 10.25], [0.0, 31.0, 6.0], [0.0, 0.0, 1.0]])
    angle = 0.3
    w2c = np.eye(4)
    w2c[:3, :3] = [[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]]
    w2c[:3, 3] = [0.1, -0.2, 1.5]
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return RGBDView(image=image, depth=depth, K=K, w2c=w2c, source={"generator": "test"})


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "view"
    write_rgbd_folder(path, small_view())
    return path


def test_sample_scene_loads_and_matches_its_json(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the sample's location does not depend on the working directory
    view = load_rgbd_folder(SAMPLE_SCENE_DIR)
    meta = json.loads((SAMPLE_SCENE_DIR / CAMERA_FILE).read_text())
    assert view.image.shape == (meta["height"], meta["width"], 3) == (704, 1280, 3)
    assert view.image.dtype == np.uint8 and view.depth.dtype == np.float32 and view.depth.shape == (704, 1280)
    # exact: K and w2c are the JSON's numbers, copied
    np.testing.assert_array_equal(view.K, [[meta["fx"], 0, meta["cx"]], [0, meta["fy"], meta["cy"]], [0, 0, 1]])
    np.testing.assert_array_equal(view.w2c, meta["w2c"])
    raw = np.array(Image.open(SAMPLE_SCENE_DIR / DEPTH_PNG_FILE))
    np.testing.assert_array_equal(np.isinf(view.depth), raw == 0)
    np.testing.assert_allclose(view.depth[raw > 0], raw[raw > 0] * 0.001, rtol=1e-6)
    assert 0.05 < np.isinf(view.depth).mean() < 0.6  # the sample has an open sky
    assert 1.0 < view.depth[raw > 0].min() and view.depth[raw > 0].max() < 12.0
    assert view.source["generator"] == "model.eval.scenes"
    total = sum(p.stat().st_size for p in SAMPLE_SCENE_DIR.iterdir())
    assert total < 3 * 1024 * 1024


def test_folder_round_trip(folder):
    original = small_view()
    view = load_rgbd_folder(folder)
    np.testing.assert_array_equal(view.image, original.image)  # exact: PNG and JSON round trips (K, w2c) are lossless
    np.testing.assert_array_equal(np.isinf(view.depth), np.isinf(original.depth))
    finite = np.isfinite(original.depth)
    assert np.abs(view.depth[finite] - original.depth[finite]).max() <= 0.0005 + 1e-6
    np.testing.assert_array_equal(view.K, original.K)
    np.testing.assert_array_equal(view.w2c, original.w2c)
    assert view.source == {"generator": "test"}


def test_npy_depth_is_metres_with_invalid_values_as_inf(tmp_path):
    depth = np.array([[1.25, np.nan, 0.0], [-1.0, np.inf, 3.5]])
    np.save(tmp_path / "d.npy", depth)
    loaded = load_depth_file(tmp_path / "d.npy")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(
        loaded, np.array([[1.25, np.inf, np.inf], [np.inf, np.inf, 3.5]], np.float32)
    )  # copies


def test_folder_with_npy_depth_loads(folder):
    (folder / DEPTH_PNG_FILE).unlink()
    np.save(folder / DEPTH_NPY_FILE, np.full((12, 20), 2.0))
    assert np.all(load_rgbd_folder(folder).depth == 2.0)  # exact: a copied value


def test_depth_png_unit_and_range(tmp_path):
    write_depth_png(tmp_path / "d.png", np.array([[0.0004, 1.2345], [np.nan, 65.535]]))
    raw = np.array(Image.open(tmp_path / "d.png"))
    np.testing.assert_array_equal(
        raw, [[1, 1234], [0, 65535]]
    )  # tiny depths stay valid (integers: rint of an IEEE product)
    with pytest.raises(ValueError, match="does not fit"):
        write_depth_png(tmp_path / "far.png", np.array([[70.0]]))
    assert not (tmp_path / "far.png").exists()


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        (
            "pickled object array",
            lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
            "readable",
        ),
        ("3-D array", lambda p: np.save(p, np.zeros((2, 2, 2))), "2-D"),
        ("garbage", lambda p: p.write_bytes(b"not numpy"), "readable"),
    ],
)
def test_bad_npy_depth_raises(tmp_path, name, make, message):
    path = tmp_path / "depth.npy"
    make(path)
    with pytest.raises(ValueError, match=message) as info:
        load_depth_file(path)
    assert "depth.npy" in str(info.value)


def test_eight_bit_or_unknown_depth_files_raise(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "depth.png")
    with pytest.raises(ValueError, match="16-bit") as info:
        load_depth_file(tmp_path / "depth.png")
    assert "depth.png" in str(info.value)
    with pytest.raises(ValueError, match="unsupported"):
        load_depth_file(tmp_path / "depth.exr")


def edit_json(**changes):
    def apply(folder):
        data = json.loads((folder / CAMERA_FILE).read_text())
        for key, value in changes.items():
            if value is None:
                del data[key]
            else:
                data[key] = value
        (folder / CAMERA_FILE).write_text(json.dumps(data))

    return apply


def resize_png(name, size):
    def apply(folder):
        with Image.open(folder / name) as img:
            img.resize(size).save(folder / name)

    return apply


def truncate(name):
    def apply(folder):
        (folder / name).write_bytes((folder / name).read_bytes()[:60])

    return apply


MALFORMED = {
    "missing depth": (lambda f: (f / DEPTH_PNG_FILE).unlink(), DEPTH_PNG_FILE, "not found"),
    "missing image": (lambda f: (f / IMAGE_FILE).unlink(), IMAGE_FILE, "not found"),
    "missing camera": (lambda f: (f / CAMERA_FILE).unlink(), CAMERA_FILE, "not found"),
    "corrupt image": (lambda f: (f / IMAGE_FILE).write_bytes(b"\x89PNG\r\n\x1a\n broken"), IMAGE_FILE, "not an image"),
    "truncated depth": (truncate(DEPTH_PNG_FILE), DEPTH_PNG_FILE, "readable"),
    "image size mismatch": (resize_png(IMAGE_FILE, (21, 12)), IMAGE_FILE, "21x12"),
    "depth size mismatch": (resize_png(DEPTH_PNG_FILE, (20, 11)), DEPTH_PNG_FILE, "20x11"),
    "bad json": (lambda f: (f / CAMERA_FILE).write_text("{ not json"), CAMERA_FILE, "JSON"),
    "json not an object": (lambda f: (f / CAMERA_FILE).write_text("[1, 2]"), CAMERA_FILE, "object"),
    "missing fx": (edit_json(fx=None), CAMERA_FILE, "'fx'"),
    "nan cy": (edit_json(cy=float("nan")), CAMERA_FILE, "'cy'"),
    "string fy": (edit_json(fy="30"), CAMERA_FILE, "'fy'"),
    "negative fx": (edit_json(fx=-3.0), CAMERA_FILE, "positive"),
    "fractional width": (edit_json(width=20.5), CAMERA_FILE, "'width'"),
    "bad depth unit": (edit_json(depth_unit_m=0.0), CAMERA_FILE, "depth_unit_m"),
    "missing w2c": (edit_json(w2c=None), CAMERA_FILE, "'w2c'"),
    "w2c 3x4": (edit_json(w2c=np.eye(4)[:3].tolist()), CAMERA_FILE, "4x4"),
    "w2c not rigid": (edit_json(w2c=(2.0 * np.eye(4)).tolist()), CAMERA_FILE, "rotation|bottom row"),
    "source not an object": (edit_json(source=[1]), CAMERA_FILE, "source"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_folders_raise_value_error_naming_the_file(folder, case):
    corrupt, filename, message = MALFORMED[case]
    load_rgbd_folder(folder)  # valid before the edit
    corrupt(folder)
    with pytest.raises(ValueError, match=message) as info:
        load_rgbd_folder(folder)
    assert filename in str(info.value)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        load_rgbd_folder(tmp_path / "nowhere")


def test_sample_copy_with_rgba_image_still_loads(tmp_path):
    target = tmp_path / "sample"
    shutil.copytree(SAMPLE_SCENE_DIR, target)
    with Image.open(target / IMAGE_FILE) as img:
        img.convert("RGBA").save(target / IMAGE_FILE)
    np.testing.assert_array_equal(load_rgbd_folder(target).image, load_rgbd_folder(SAMPLE_SCENE_DIR).image)
