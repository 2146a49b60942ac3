"""Tests of model/io/images.py: robust photo loading, EXIF, crop/resize, errors, atomic PNG writes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from model.generation.depth import resolve_intrinsics
from model.io import images as image_io
from model.io.images import ImageLoadError, center_crop_box, crop_resize, load_photo, save_png


def _ramp_rgb(height: int, width: int) -> np.ndarray:
    """Distinct colours: red grows with the column, green with the row."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, width).round().astype(np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, height).round().astype(np.uint8)[:, None]
    img[..., 2] = 77
    return img


def test_rgb_png_same_size_is_returned_unchanged(tmp_path):
    rgb = _ramp_rgb(48, 64)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    photo = load_photo(tmp_path / "a.png", 48, 64)
    assert photo.image.dtype == np.uint8 and photo.image.shape == (48, 64, 3)
    assert np.array_equal(photo.image, rgb)  # exact: uint8 pixels through a lossless PNG, no resampling
    assert photo.original_size == (48, 64) and photo.crop_box == (0.0, 0.0, 64.0, 48.0)
    assert photo.exif_focal_px is None and photo.exif_focal_35mm is None


def test_centre_crop_keeps_the_middle_and_resizes_exactly(tmp_path):
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, :50] = (255, 0, 0)  # left quarter red: cropped away by a square crop
    rgb[:, 50:150] = (0, 255, 0)
    rgb[:, 150:] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    photo = load_photo(tmp_path / "wide.png", 40, 40)
    assert photo.crop_box == (50.0, 0.0, 150.0, 100.0)
    assert photo.image.shape == (40, 40, 3)
    # Lanczos taps reach past the box edge into the real neighbours (no clamping at the crop), so
    # only the outermost columns pick up a little red/blue
    assert np.abs(photo.image[:, 2:-2].astype(int) - (0, 255, 0)).max() <= 2
    assert photo.image[:, [0, -1], 1].min() > 200 and photo.image[:, [0, -1], 0::2].max() < 40
    assert np.array_equal(crop_resize(rgb, 40, 40), photo.image), "frames (training clips) are cropped like photos"
    assert crop_resize(rgb, 100, 200) is rgb


def test_center_crop_box_tall_source_and_fractional_box():
    assert center_crop_box((400, 100), (50, 100)) == (0.0, 175.0, 100.0, 225.0)
    x0, y0, x1, y1 = center_crop_box((100, 101), (1, 1))
    assert (x1 - x0) == pytest.approx(y1 - y0) and x0 == pytest.approx(0.5)


def test_grayscale(tmp_path):
    gray = np.tile(np.linspace(0, 255, 64).round().astype(np.uint8), (48, 1))
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    img = load_photo(tmp_path / "g.png", 48, 64).image
    assert np.array_equal(img[..., 0], gray) and np.array_equal(img[..., 1], gray) and np.array_equal(img[..., 2], gray)


def test_rgba_composited_on_black(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, :20, 3] = 255  # opaque left half
    rgba[:, 20:, 3] = 0  # transparent right half: its stored colour must not show
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    img = load_photo(tmp_path / "a.png", 40, 40).image
    assert tuple(img[5, 5]) == (200, 100, 50)
    assert tuple(img[5, 35]) == (0, 0, 0)


def test_la_half_alpha(tmp_path):
    la = np.zeros((40, 40, 2), np.uint8)
    la[..., 0], la[..., 1] = 200, 128
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    img = load_photo(tmp_path / "la.png", 40, 40).image
    assert abs(int(img[0, 0, 0]) - 100) <= 1 and img[0, 0, 0] == img[0, 0, 2]


def test_16bit_png_spread_over_8_bits_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64).round().astype(np.uint16)
    Image.fromarray(np.tile(values, (40, 1))).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I")  # the file really is 16-bit
    img = load_photo(tmp_path / "g16.png", 40, 64).image
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert np.array_equal(img[0, :, 0], expected)  # exact: no v / 257 here lies within 0.002 of a rounding edge
    assert img[0, 0, 0] == 0 and img[0, -1, 0] == 255 and 120 < img[0, 32, 0] < 135  # spread, not clipped at 255


def test_32bit_int_and_float_tiff(tmp_path):
    ints = np.tile(np.array([0, 1000, 2000, 4000], np.int32), (40, 10))  # 32-bit "I" holding 16-bit values
    Image.fromarray(ints, mode="I").save(tmp_path / "i.tif")
    img = load_photo(tmp_path / "i.tif", 40, 40).image
    assert img[0, 3, 0] == round(4000 / 257)
    floats = np.tile(np.array([-2.0, 0.0, 2.0, 6.0], np.float32), (40, 10))  # outside [0, 1]: min-max
    Image.fromarray(floats, mode="F").save(tmp_path / "f.tif")
    img = load_photo(tmp_path / "f.tif", 40, 40).image
    assert (img[0, 0, 0], img[0, 1, 0], img[0, 3, 0]) == (0, 64, 255)


def test_cmyk_jpeg(tmp_path):
    rgb = np.zeros((48, 48, 3), np.uint8)
    rgb[:, :24] = (220, 30, 30)
    rgb[:, 24:] = (30, 30, 220)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as check:
        assert check.mode == "CMYK"
    img = load_photo(tmp_path / "c.jpg", 48, 48).image.astype(int)
    assert np.abs(img[24, 5] - (220, 30, 30)).max() < 25
    assert np.abs(img[24, 42] - (30, 30, 220)).max() < 25


def test_palette_with_and_without_transparency(tmp_path):
    rgb = _ramp_rgb(40, 40)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    img = load_photo(tmp_path / "p.png", 40, 40).image
    assert np.array_equal(img, np.asarray(pal.convert("RGB")))
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])
    pal.save(tmp_path / "pt.png", transparency=int(np.asarray(pal)[0, 0]))
    img = load_photo(tmp_path / "pt.png", 40, 40).image
    assert tuple(img[0, 0]) == (0, 0, 0)  # the transparent palette entry is composited on black


def test_exif_orientation_6_is_rotated(tmp_path):
    stored = np.zeros((40, 80, 3), np.uint8)  # landscape as stored: left half white
    stored[:, :40] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=95)
    photo = load_photo(tmp_path / "o.jpg", 80, 40)
    assert photo.original_size == (80, 40)  # portrait after orientation
    img = photo.image.astype(int)
    # 90 degrees clockwise: the stored left half becomes the top half
    assert img[10, 20].min() > 200 and img[70, 20].max() < 50


def test_exif_focal_35mm_to_pixels_and_intrinsics(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26
    Image.fromarray(_ramp_rgb(300, 400)).save(tmp_path / "f.jpg", exif=exif)
    photo = load_photo(tmp_path / "f.jpg", 100, 200)
    assert photo.exif_focal_35mm == 26.0
    full_px = 26.0 / image_io.FULL_FRAME_DIAGONAL_MM * 500.0  # diagonal of 400x300 is 500 px
    assert photo.crop_box == (0.0, 50.0, 400.0, 250.0)
    assert photo.exif_focal_px == pytest.approx(full_px * 200 / 400)
    K, source = resolve_intrinsics(200, 100, exif_focal_px=photo.exif_focal_px)
    assert source == "exif"
    assert float(K[0, 0]) == pytest.approx(photo.exif_focal_px) and float(K[1, 1]) == pytest.approx(photo.exif_focal_px)
    assert (float(K[0, 2]), float(K[1, 2])) == (100.0, 50.0)


def test_exif_focal_length_with_focal_plane_resolution(tmp_path):
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x920A] = 4.0  # mm
    ifd[0xA20E] = 250.0  # pixels per unit
    ifd[0xA210] = 4  # unit = mm
    ifd[0xA002] = 800  # EXIF describes an image twice as wide as the stored one
    Image.fromarray(_ramp_rgb(300, 400)).save(tmp_path / "f.jpg", exif=exif)
    photo = load_photo(tmp_path / "f.jpg", 150, 200)
    assert photo.exif_focal_35mm is None
    assert photo.exif_focal_px == pytest.approx(4.0 * 250.0 * (400 / 800) * (200 / 400))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file_is_an_error_naming_it(tmp_path, suffix):
    noise = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    full = tmp_path / f"full{suffix}"
    Image.fromarray(noise).save(full)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match=f"cut{suffix}.*truncated"):
        load_photo(cut, 64, 64)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_random_bytes_missing_file_and_folder(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ImageLoadError, match="junk.jpg.*not an image"):
        load_photo(junk, 64, 64)
    with pytest.raises(ImageLoadError, match="nope.png.*not found"):
        load_photo(tmp_path / "nope.png", 64, 64)
    with pytest.raises(ImageLoadError, match="not a file"):
        load_photo(tmp_path, 64, 64)
    assert issubclass(ImageLoadError, ValueError)


def test_tiny_image_is_an_error(tmp_path):
    Image.fromarray(_ramp_rgb(image_io.MIN_SIDE_PX - 1, 200)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageLoadError, match="tiny.png.*too small"):
        load_photo(tmp_path / "tiny.png", 64, 64)
    Image.fromarray(_ramp_rgb(image_io.MIN_SIDE_PX, 3 * image_io.MIN_SIDE_PX)).save(tmp_path / "ok.png")
    assert load_photo(tmp_path / "ok.png", 64, 64).image.shape == (64, 64, 3)


def test_animated_gif_says_it_uses_the_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)) for i in range(5)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    photo = load_photo(tmp_path / "anim.gif", 48, 64)
    assert photo.notices == (f"{tmp_path / 'anim.gif'}: the file holds 5 frames: using frame 1 of 5",)
    assert photo.image.max() == 0, "frame 1 is the black one"
    frames[0].save(tmp_path / "still.gif")
    assert load_photo(tmp_path / "still.gif", 48, 64).notices == ()


@pytest.mark.parametrize(
    "size, notice",
    [
        (
            (640, 480),
            "the 640x480 photo is centre-cropped to the 320x176 frame's aspect: 27% of its height is cut off, half at "
            "the top, half at the bottom",
        ),
        (
            (480, 640),
            "the 480x640 photo is centre-cropped to the 320x176 frame's aspect: 59% of its height is cut off, half at "
            "the top, half at the bottom",
        ),
        (
            (900, 300),
            "the 900x300 photo is centre-cropped to the 320x176 frame's aspect: 39% of its width is cut off, half at "
            "the left, half at the right",
        ),
    ],
)
def test_a_visible_centre_crop_is_reported(tmp_path, size, notice):
    Image.fromarray(_ramp_rgb(size[1], size[0])).save(tmp_path / "photo.png")
    photo = load_photo(tmp_path / "photo.png", 176, 320)
    assert photo.notices == (f"{tmp_path / 'photo.png'}: {notice}",)


def test_a_trim_below_the_notice_fraction_is_not_reported(tmp_path):
    Image.fromarray(_ramp_rgb(360, 640)).save(tmp_path / "hd.png")  # 16:9 into 1280x704: 2 % of the height
    assert load_photo(tmp_path / "hd.png", 704, 1280).notices == ()


@pytest.mark.parametrize("size, kept", [((1000, 250), "45%"), ((100, 310), "18%")])
def test_photos_beyond_3_to_1_are_refused_with_the_reason(tmp_path, size, kept):
    Image.fromarray(_ramp_rgb(size[1], size[0])).save(tmp_path / "strip.png")
    with pytest.raises(ImageLoadError) as info:
        load_photo(tmp_path / "strip.png", 176, 320)
    aspect = max(size) / min(size)
    assert str(info.value) == (
        f"{tmp_path / 'strip.png'}: aspect ratio: {size[0]}x{size[1]} is {aspect:.2f}:1, beyond the 3:1 limit "
        f"(the centre crop to the 320x176 frame would keep only {kept} of it); crop the photo to the part you want "
        "first"
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (8-bit gray) with a token IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels: PIL's own bomb check fires
    with pytest.raises(ImageLoadError, match="bomb.png.*too large"):
        load_photo(bomb, 64, 64)
    monkeypatch.setattr(image_io, "MAX_PIXELS", 1000)  # our own limit, below PIL's
    Image.fromarray(_ramp_rgb(40, 40)).save(tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match="big.png.*too large"):
        load_photo(tmp_path / "big.png", 32, 32)


def test_save_png_round_trip_and_atomicity(tmp_path):
    rgb = _ramp_rgb(20, 30)
    save_png(tmp_path / "sub" / "out.png", rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "out.png")), rgb)
    depth_mm = np.arange(600, dtype=np.uint16).reshape(20, 30) * 100
    save_png(tmp_path / "d.png", depth_mm)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), depth_mm)
    with pytest.raises(ValueError, match="bad.png"):
        save_png(tmp_path / "bad.png", rgb.astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "sub"]  # nothing half-written left behind
