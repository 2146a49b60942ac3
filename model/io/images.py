"""Loading the user's photo robustly, and writing PNGs atomically.

:func:`load_photo` turns any image file PIL can decode into an RGB uint8 array of exactly the
requested size, the way the rest of the project expects it:

1. open the file lazily and reject absurd sizes (decompression bombs) and tiny images from the header;
2. decode the whole file (``img.load()``), so a truncated file fails here with a clear error
   (``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default, False);
3. read the focal length from EXIF, then honour the EXIF orientation (``ImageOps.exif_transpose``);
4. convert to 8-bit RGB (see :func:`to_rgb8` for grayscale, alpha, palette, 16-bit, CMYK, float);
5. centre-crop to the target aspect ratio and resize with Lanczos (antialiased, so it also acts as an
   area filter when shrinking) in one step, with a fractional crop box so the pixels stay square.

Nothing is dropped silently: using the first frame of an animation and cutting off more than
:data:`CROP_NOTICE_FRACTION` of a side are listed in :attr:`Photo.notices`; a photo more elongated
than :data:`MAX_ASPECT` is refused. All errors are :class:`ImageLoadError` (a ``ValueError``),
``"<file>: <what>: <reason>"``.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.io.atomic import atomic_path

#: Shortest accepted side, in pixels, of the photo as stored: below this there is not even one
#: latent cell (16 px) of detail per two cells of the output, so the result would be pure blur.
MIN_SIDE_PX = 32
#: Largest accepted photo, in pixels (150 megapixels; PIL itself refuses ~179 MP as a decompression
#: bomb). Decoding needs ~3 bytes per pixel, so this caps the decode at ~0.5 GB.
MAX_PIXELS = 150_000_000
#: Longest accepted ratio of a photo's longer side to its shorter side. Portrait and landscape photos
#: (4:3, 3:2, 16:9, ultra-wide 21:9 and their portrait forms) pass; beyond 3:1 the centre crop to a
#: 16:9 frame keeps under 59 % of a wide panorama and under 19 % of a tall strip, so such a photo is
#: refused with the reason instead of being mangled.
MAX_ASPECT = 3.0
#: A centre crop that removes more than this share of the photo's width or height is reported in
#: :attr:`Photo.notices` (below it the crop is a trim nobody notices, e.g. a 16:9 photo in a 1280x704 frame).
CROP_NOTICE_FRACTION = 0.05
#: Diagonal of a 36 x 24 mm frame: a "35 mm equivalent" focal length refers to it.
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)

_EXIF_IFD = 0x8769
_TAG_FOCAL_LENGTH = 0x920A
_TAG_FOCAL_35MM = 0xA405
_TAG_PIXEL_X_DIMENSION = 0xA002
_TAG_FOCAL_PLANE_X_RES = 0xA20E
_TAG_FOCAL_PLANE_UNIT = 0xA210
_FOCAL_PLANE_UNIT_MM = {1: 25.4, 2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # 1 = "no unit", read as inch like 2
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class ImageLoadError(ValueError):
    """A photo could not be loaded; the message names the file and what is wrong."""


class ImageSize:
    """``height`` and ``width`` in pixels of an ``image`` ``[H, W, ...]`` attribute (for dataclasses holding one)."""

    image: np.ndarray

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class Photo(ImageSize):
    """A photo prepared for the pipeline.

    Attributes:
        path: the file it came from.
        image: ``[H, W, 3]`` uint8 RGB at exactly the requested size.
        original_size: ``(height, width)`` in pixels of the stored image after EXIF orientation.
        crop_box: ``(x0, y0, x1, y1)`` in pixels of the oriented original: the centred region with the
            target aspect ratio that was resized to ``image`` (fractional, so pixels stay square).
        exif_focal_35mm: EXIF ``FocalLengthIn35mmFilm`` in mm, None when absent or zero.
        exif_focal_px: focal length from EXIF in pixels of ``image`` (crop and resize applied), from the
            35 mm equivalent (relative to the frame diagonal) or else from ``FocalLength`` with the
            focal-plane resolution; None when EXIF does not determine it.
        notices: what loading did that the user should be told, each ``"<file>: <what happened>"``:
            only the first frame of an animation used, a centre crop that cuts off a visible share.
    """

    path: Path
    image: np.ndarray
    original_size: tuple[int, int]
    crop_box: tuple[float, float, float, float]
    exif_focal_35mm: float | None
    exif_focal_px: float | None
    notices: tuple[str, ...] = ()


def center_crop_box(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """The largest centred box of ``src_hw`` with the aspect ratio of ``dst_hw``.

    Args:
        src_hw: ``(H, W)`` of the source image in pixels.
        dst_hw: ``(h, w)`` of the target; only its aspect ratio matters.

    Returns:
        ``(x0, y0, x1, y1)`` in source pixels (continuous coordinates, fractional in general).

    Example:
        >>> center_crop_box((300, 400), (100, 100))
        (50.0, 0.0, 350.0, 300.0)
    """
    src_h, src_w = src_hw
    dst_h, dst_w = dst_hw
    if min(src_h, src_w, dst_h, dst_w) <= 0:
        raise ValueError(f"sizes must be positive, got source {src_hw} and target {dst_hw}")
    if src_w * dst_h > dst_w * src_h:  # source is wider: crop the sides
        box_w = src_h * dst_w / dst_h
        x0 = (src_w - box_w) / 2.0
        return (x0, 0.0, x0 + box_w, float(src_h))
    box_h = src_w * dst_h / dst_w
    y0 = (src_h - box_h) / 2.0
    return (0.0, y0, float(src_w), y0 + box_h)


def crop_resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H0, W0, 3]`` uint8 -> ``[height, width, 3]`` uint8: the centre crop to the target's aspect
    ratio (:func:`center_crop_box`) resized with Lanczos in one step (antialiased, fractional box, so
    the pixels stay square); returned as is when it already has that size."""
    if rgb.shape[:2] == (height, width):
        return rgb
    box = center_crop_box(rgb.shape[:2], (height, width))
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS, box=box), dtype=np.uint8)


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to ``[H, W, 3]`` uint8 RGB.

    * 16-bit (``I;16*``) images are scaled by ``255 / 65535`` (rounded), not clipped. 32-bit ``I``
      images are read the same way when all values lie in ``[0, 65535]`` (16-bit PNG/TIFF), and
      min-max normalised otherwise. Float ``F`` images are used as they are when all values lie in
      ``[0, 1]`` and min-max normalised otherwise; NaN becomes black. All of these are grayscale.
    * Images with alpha (``RGBA``, ``LA``, ``PA``, palette or RGB with a transparent colour) are
      composited on black: ``rgb * alpha / 255``. Fully transparent pixels are black whatever colour
      they store, so hidden data never leaks into the scene.
    * Everything else (``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` ...) goes through PIL's
      ``convert("RGB")``.
    """
    if img.mode in _HIGH_DEPTH_MODES:
        gray = _high_depth_to_unit(np.asarray(img), img.mode)
        gray8 = np.rint(gray * 255.0).astype(np.uint8)
        return np.repeat(gray8[..., None], 3, axis=-1)
    if img.has_transparency_data:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        return np.rint(rgba[..., :3] * (rgba[..., 3:] / 255.0)).astype(np.uint8)
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy, not a view of PIL's buffer


def _high_depth_to_unit(values: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16-bit / 32-bit / float single-channel array ``[H, W]`` to float64 in ``[0, 1]``."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if mode.startswith("I;16") or (mode == "I" and values.min() >= 0 and values.max() <= 65535):
        return values / 65535.0
    if mode == "F" and values.min() >= 0 and values.max() <= 1.0:
        return values
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def _exif_focal(img: Image.Image) -> tuple[float | None, float | None]:
    """Focal length from EXIF: ``(focal_35mm_mm, focal_px)`` for the stored (unrotated) image.

    ``focal_px`` comes from the 35 mm equivalent scaled by the image diagonal, or else from
    ``FocalLength`` (mm) times the focal-plane resolution (pixels per mm of the sensor), rescaled when
    ``PixelXDimension`` says EXIF describes an image of another width. Broken EXIF gives ``None``.
    """
    try:
        ifd = img.getexif().get_ifd(_EXIF_IFD)
    except Exception:  # malformed EXIF must not make a good photo unreadable
        return None, None
    f35 = _positive_float(ifd.get(_TAG_FOCAL_35MM))
    if f35 is not None:
        return f35, f35 / FULL_FRAME_DIAGONAL_MM * math.hypot(img.width, img.height)
    focal_mm = _positive_float(ifd.get(_TAG_FOCAL_LENGTH))
    x_res = _positive_float(ifd.get(_TAG_FOCAL_PLANE_X_RES))
    unit_mm = _FOCAL_PLANE_UNIT_MM.get(ifd.get(_TAG_FOCAL_PLANE_UNIT, 2))
    if focal_mm is None or x_res is None or unit_mm is None:
        return None, None
    focal_px = focal_mm * x_res / unit_mm
    exif_width = _positive_float(ifd.get(_TAG_PIXEL_X_DIMENSION))
    if exif_width is not None:
        focal_px *= img.width / exif_width
    return None, focal_px


def _positive_float(value) -> float | None:
    """``float(value)`` when it is a finite positive number (EXIF rationals included), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _open_checked(path: Path, min_side: int) -> Image.Image:
    """Open ``path`` lazily and check its size from the header; the caller closes the image."""
    if not path.exists():
        raise ImageLoadError(f"{path}: file not found")
    if not path.is_file():
        raise ImageLoadError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():  # our own MAX_PIXELS check below replaces PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: image is too large (limit {MAX_PIXELS:,} pixels): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path}: not an image, or a format PIL cannot read") from exc
    except OSError as exc:
        raise ImageLoadError(f"{path}: cannot read the file: {exc}") from exc
    width, height = img.size
    if width * height > MAX_PIXELS:
        img.close()
        raise ImageLoadError(
            f"{path}: image is too large ({width}x{height} = {width * height:,} pixels, limit {MAX_PIXELS:,})"
        )
    if min(width, height) < min_side:
        img.close()
        raise ImageLoadError(
            f"{path}: image is too small ({width}x{height}); the shorter side must be at least {min_side} px"
        )
    return img


def _decode_oriented(path: Path, min_side: int = 1) -> tuple[np.ndarray, float | None, float | None, int]:
    """Fully decode ``path``'s first frame: EXIF-oriented ``[H, W, 3]`` uint8 RGB, the EXIF focal
    lengths (35 mm, pixels) and how many frames the file holds (> 1 for animations, MPO, multi-page TIFF)."""
    with _open_checked(path, min_side) as img:
        try:
            n_frames = int(getattr(img, "n_frames", 1))  # seeks through the file and back to frame 0
            img.load()  # full decode: a truncated file fails here
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageLoadError(f"{path}: image data is truncated or corrupt: {exc}") from exc
        focal_35mm, focal_px = _exif_focal(img)
        return to_rgb8(ImageOps.exif_transpose(img)), focal_35mm, focal_px, n_frames


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load an image at its own size as ``[H, W, 3]`` uint8 RGB (EXIF-oriented; any PIL mode).

    Raises:
        ImageLoadError: naming the file, as :func:`load_photo`.
    """
    return _decode_oriented(Path(path))[0]


def load_photo(path: str | os.PathLike, height: int, width: int) -> Photo:
    """Load a photo as ``[height, width, 3]`` uint8 RGB: EXIF-oriented, centre-cropped, resized.

    Args:
        path: image file (anything PIL decodes: JPEG, PNG, TIFF, WebP, ...; first frame of animations).
        height, width: output size in pixels.

    Returns:
        :class:`Photo` with the image, the crop box, the EXIF focal length (in output pixels) and
        the notices (first frame of an animation used, a visible share cropped away).

    Raises:
        ImageLoadError: naming the file, when it is missing, not an image, truncated or corrupt,
            smaller than :data:`MIN_SIDE_PX` on its shorter side, larger than :data:`MAX_PIXELS`, or
            more elongated than :data:`MAX_ASPECT` (after EXIF orientation).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"output size must be positive, got {width}x{height}")
    path = Path(path)
    rgb, focal_35mm, focal_px, n_frames = _decode_oriented(path, MIN_SIDE_PX)
    src_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
    box = center_crop_box(src_hw, (height, width))
    kept = (box[2] - box[0]) * (box[3] - box[1]) / (src_hw[0] * src_hw[1])
    aspect = max(src_hw) / min(src_hw)
    if aspect > MAX_ASPECT:
        raise ImageLoadError(
            f"{path}: aspect ratio: {src_hw[1]}x{src_hw[0]} is {aspect:.2f}:1, beyond the {MAX_ASPECT:g}:1 limit "
            f"(the centre crop to the {width}x{height} frame would keep only {kept:.0%} of it); crop the photo to the "
            "part you want first"
        )
    notices = []
    if n_frames > 1:
        notices.append(f"{path}: the file holds {n_frames} frames: using frame 1 of {n_frames}")
    if 1.0 - kept > CROP_NOTICE_FRACTION:
        cut, sides = ("width", "left and right") if box[0] > 0 else ("height", "top and bottom")
        notices.append(
            f"{path}: the {src_hw[1]}x{src_hw[0]} photo is centre-cropped to the {width}x{height} frame's aspect: "
            f"{1.0 - kept:.0%} of its {cut} is cut off, half at the {sides.replace(' and ', ', half at the ')}"
        )
    scale = width / (box[2] - box[0])
    return Photo(
        path=path,
        image=crop_resize(rgb, height, width),
        original_size=src_hw,
        crop_box=box,
        exif_focal_35mm=focal_35mm,
        exif_focal_px=None if focal_px is None else focal_px * scale,
        notices=tuple(notices),
    )


def save_png(path: str | os.PathLike, image) -> None:
    """Write an image as PNG atomically (temporary name in the same folder, then rename).

    Args:
        path: target file; its folder is created when missing.
        image: ``[H, W, 3]`` RGB, ``[H, W, 4]`` RGBA or ``[H, W]`` gray, uint8; or ``[H, W]`` uint16
            (e.g. depth in millimetres). NumPy arrays or CPU tensors.
    """
    array = np.asarray(image)
    ok_uint8 = array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4)))
    ok_uint16 = array.dtype == np.uint16 and array.ndim == 2
    if not (ok_uint8 or ok_uint16) or min(array.shape[:2]) == 0:
        raise ValueError(
            f"{path}: expected uint8 [H,W], [H,W,3], [H,W,4] or uint16 [H,W], got {array.dtype} {list(array.shape)}"
        )
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
