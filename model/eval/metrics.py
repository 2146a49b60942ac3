"""Consistency metrics for generated videos (numpy + OpenCV; no Qt, no learned models).

Conventions (the camera model is :mod:`model.geometry.camera`'s: OpenCV axes, ``w2c`` poses, ``K`` in pixels
with pixel centres at ``+0.5``, z-depth in metres):

* Images are ``[H, W, 3]`` uint8 RGB (``[H, W]`` uint8 grey is accepted where noted). Errors are
  in grey levels (0-255), PSNR in dB with a peak of 255, angles in degrees, flow in pixels.
* Poses may be numpy arrays or torch tensors; they are used as float64.
* A metric that cannot be computed (no revisited pose, too few feature matches, no covered pixel)
  returns NaN plus a count or a reason, never an exception; bad *input* (wrong shapes or dtypes)
  raises ``ValueError``.

What is here:

* :func:`psnr`, :func:`ssim` (:func:`ssim_map`): full-reference image quality, optionally masked.
* :func:`mirrored_pairs`, :func:`closed_loop_metrics`: closed-loop consistency (paper §5.2's
  PSNR_C / SSIM_C: the frame at the return pose against the start frame) plus the mean over every
  pair of frames taken at the same pose, with the pairs found from the poses.
* :func:`warp_with_depth`, :func:`reprojection_error`: known-pose reprojection with a depth map.
* :func:`flow_fb_consistency`: forward-backward optical-flow consistency (OpenCV DIS flow).
* :func:`relative_pose_error`: camera error from ORB matches + essential matrix vs the commanded pose.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from model.geometry.camera import invert_pose, project_points, unproject_depth
from model.geometry.rotations import rotation_angle

#: Peak value of uint8 images, grey levels.
DATA_RANGE = 255.0
#: Per-pair PSNRs of identical images (inf) are clipped to this before averaging, dB.
MAX_PSNR_DB = 100.0
#: SSIM constants (Wang et al. 2004): Gaussian window sigma 1.5 px truncated to 11x11, and
#: ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with ``K1 = 0.01``, ``K2 = 0.03``, ``L = 255``.
SSIM_SIGMA, SSIM_WINDOW, SSIM_K1, SSIM_K2 = 1.5, 11, 0.01, 0.03
#: ITU-R BT.601 luma weights for R, G, B (the grey image SSIM uses by default).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------------------------------------
# Image quality
# --------------------------------------------------------------------------------------------


def _image_pair(a, b, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate two uint8 images of one shape and an optional ``[H, W]`` bool mask; returns float64 copies."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"expected two [H,W,3] or [H,W] images of one shape, got {list(a.shape)} and {list(b.shape)}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape[:2]:
            raise ValueError(f"mask: expected shape {list(a.shape[:2])}, got {list(mask.shape)}")
    return a.astype(np.float64), b.astype(np.float64), mask


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(255^2 / MSE)`` in dB.

    Args:
        a, b: ``[H, W, 3]`` (or ``[H, W]``) uint8 images.
        mask: optional ``[H, W]`` bool; the MSE is taken over the masked pixels (all channels).

    Returns:
        dB; ``inf`` for identical images, NaN for an empty mask.

    Example:
        >>> a = np.zeros((4, 4, 3), np.uint8)
        >>> round(psnr(a, a + 1), 2)  # an error of 1 grey level everywhere
        48.13
    """
    a, b, mask = _image_pair(a, b, mask)
    err = (a - b) ** 2
    if mask is not None:
        if not mask.any():
            return math.nan
        err = err[mask]
    mse = float(err.mean())
    return math.inf if mse == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def _as_channels(img: np.ndarray, channels: str) -> np.ndarray:
    """``[H, W, C]`` float64: luma (C = 1) or the RGB channels (C = 3) of a float image."""
    if img.ndim == 2:
        return img[..., None]
    if channels == "luma":
        return (img @ LUMA_WEIGHTS)[..., None]
    if channels == "rgb":
        return img
    raise ValueError(f"channels must be 'luma' or 'rgb', got {channels!r}")


def _blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)


def ssim_map(a: np.ndarray, b: np.ndarray, channels: str = "luma") -> np.ndarray:
    """Per-pixel SSIM with a Gaussian window (Wang et al. 2004), computed with ``cv2.GaussianBlur``.

    ``SSIM = (2 mu_a mu_b + C1)(2 cov_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))`` with
    local means, variances and covariance from an 11x11 Gaussian window of sigma 1.5 px (mirror
    borders), ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``, on unrounded grey levels.

    Args:
        a, b: ``[H, W, 3]`` or ``[H, W]`` uint8 images.
        channels: ``"luma"`` (BT.601 luma of RGB; default) or ``"rgb"`` (mean of the per-channel maps).

    Returns:
        ``[H, W]`` float64, in ``[-1, 1]``; 1 where the images agree exactly.
    """
    fa, fb, _ = _image_pair(a, b, None)
    x, y = _as_channels(fa, channels), _as_channels(fb, channels)
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    maps = []
    for k in range(x.shape[2]):
        xk, yk = np.ascontiguousarray(x[..., k]), np.ascontiguousarray(y[..., k])
        mu_x, mu_y = _blur(xk), _blur(yk)
        var_x = _blur(xk * xk) - mu_x**2
        var_y = _blur(yk * yk) - mu_y**2
        cov = _blur(xk * yk) - mu_x * mu_y
        maps.append(((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)))
    return np.mean(maps, axis=0)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, channels: str = "luma") -> float:
    """Mean structural similarity of two images (see :func:`ssim_map` for the constants).

    Args:
        a, b: ``[H, W, 3]`` or ``[H, W]`` uint8 images.
        mask: optional ``[H, W]`` bool; the SSIM map is averaged over these pixels only (the windows
            still see the whole image).
        channels: ``"luma"`` (default) or ``"rgb"``.

    Returns:
        Mean SSIM (1.0 for identical images); NaN for an empty mask.

    Example:
        >>> a, b = np.full((16, 16), 100, np.uint8), np.full((16, 16), 110, np.uint8)
        >>> round(ssim(a, b), 5)  # flat images: (2*100*110 + C1) / (100^2 + 110^2 + C1)
        0.99548
    """
    _, _, mask = _image_pair(a, b, mask)
    m = ssim_map(a, b, channels)
    if mask is not None:
        if not mask.any():
            return math.nan
        m = m[mask]
    return float(m.mean())


def mean_psnr(values) -> float:
    """Mean of per-image PSNRs in dB, with ``inf`` (identical images) clipped to :data:`MAX_PSNR_DB`; NaN if empty."""
    values = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    return float(np.minimum(values, MAX_PSNR_DB).mean()) if len(values) else math.nan


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


# --------------------------------------------------------------------------------------------
# Poses and closed loops
# --------------------------------------------------------------------------------------------


def _poses(w2c) -> np.ndarray:
    """``[N, 4, 4]`` float64 numpy poses from numpy or torch input."""
    w2c = np.asarray(w2c.detach().cpu().numpy() if isinstance(w2c, torch.Tensor) else w2c, dtype=np.float64)
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
        raise ValueError(f"w2c: expected [N,4,4] poses, got shape {list(w2c.shape)}")
    return w2c


def _angle_deg(rot: np.ndarray) -> np.ndarray:
    """Angle of rotations ``[..., 3, 3]`` in degrees, shape ``[...]``
    (:func:`model.geometry.rotations.rotation_angle`).
    """
    return np.degrees(rotation_angle(torch.from_numpy(np.asarray(rot, dtype=np.float64))).numpy())


def pose_distances(w2c) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise differences of ``N`` poses ``[N, 4, 4]``.

    Returns:
        rot_deg: ``[N, N]`` angle of the relative rotation, degrees.
        dist_m: ``[N, N]`` distance between camera centres, metres.
    """
    w2c = _poses(w2c)
    rot = w2c[:, :3, :3]
    centres = -np.einsum("nji,nj->ni", rot, w2c[:, :3, 3])  # c = -R^T t
    rel = np.einsum("aij,bkj->abik", rot, rot)  # R_a R_b^T
    return _angle_deg(rel), np.linalg.norm(centres[:, None] - centres[None], axis=-1)


def mirrored_pairs(w2c, rot_tol_deg: float = 0.1, trans_tol_m: float = 1e-3) -> np.ndarray:
    """Pairs of frames taken at the same pose on an out-and-back path, found from the poses.

    Two frames match when their relative rotation is below ``rot_tol_deg`` and their camera centres
    are closer than ``trans_tol_m``. On a path that goes out and comes back, matching frames mirror
    each other about the turn: ``i + j = s`` for one ``s`` (``s = 2T - 1`` for
    :func:`model.geometry.camera.closed_loop` of ``T`` poses, ``s = N - 1`` for the out-and-back path
    without a repeated turn that ``generate --trajectory closed-orbit`` writes). The ``s`` shared
    by the most matches wins (ties: the largest ``s``, the widest loop); nothing is assumed about
    where the turn is.

    Args:
        w2c: ``[N, 4, 4]`` poses.
        rot_tol_deg, trans_tol_m: match tolerances, degrees and metres.

    Returns:
        ``[P, 2]`` int64 pairs ``(i, j)``, ``i < j``, ``i + j = s``, sorted by ``i`` (``P = 0`` when no
        pose is revisited).

    Example:
        >>> from model.geometry.trajectories import closed_loop, yaw_pan
        >>> mirrored_pairs(closed_loop(yaw_pan(3, 30.0))).tolist()
        [[0, 5], [1, 4], [2, 3]]
    """
    rot_deg, dist = pose_distances(w2c)
    n = len(rot_deg)
    match = np.triu((rot_deg < rot_tol_deg) & (dist < trans_tol_m), k=1)
    i, j = np.nonzero(match)
    if len(i) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    counts = np.bincount(i + j, minlength=2 * n)
    s = int(np.flatnonzero(counts == counts.max()).max())
    keep = (i + j) == s
    return np.stack([i[keep], j[keep]], axis=1).astype(np.int64)


def closed_loop_metrics(
    frames: np.ndarray, w2c, rot_tol_deg: float = 0.1, trans_tol_m: float = 1e-3, channels: str = "luma"
) -> dict:
    """Closed-loop consistency of a video whose camera returns along its own path.

    * ``psnr_c`` / ``ssim_c``: the last frame at the start pose against frame 0 (the paper's
      PSNR_C / SSIM_C, §5.2). NaN when no later frame is at the start pose.
    * ``pair_psnr`` / ``pair_ssim``: means over all mirrored pairs (:func:`mirrored_pairs`), each
      pair compared on all pixels; per-pair PSNRs of identical frames are clipped to
      :data:`MAX_PSNR_DB` before averaging.

    Args:
        frames: ``[N, H, W, 3]`` uint8. w2c: ``[N, 4, 4]`` poses of the frames.
        rot_tol_deg, trans_tol_m: pose-match tolerances (degrees, metres).
        channels: SSIM on ``"luma"`` or ``"rgb"``.

    Returns:
        dict with ``pairs`` (count), ``return_frame`` (index or None), ``psnr_c``, ``ssim_c``,
        ``pair_psnr``, ``pair_ssim`` and ``per_pair`` (list of ``{i, j, psnr, ssim}``).
    """
    frames = np.asarray(frames)
    w2c = _poses(w2c)
    if frames.ndim != 4 or len(frames) != len(w2c):
        raise ValueError(f"frames: expected [N,H,W,3] with N = {len(w2c)} poses, got shape {list(frames.shape)}")
    pairs = mirrored_pairs(w2c, rot_tol_deg, trans_tol_m)
    per_pair = [
        {
            "i": int(i),
            "j": int(j),
            "psnr": psnr(frames[i], frames[j]),
            "ssim": ssim(frames[i], frames[j], channels=channels),
        }
        for i, j in pairs
    ]
    rot_deg, dist = pose_distances(w2c)
    at_start = np.flatnonzero((rot_deg[0, 1:] < rot_tol_deg) & (dist[0, 1:] < trans_tol_m)) + 1
    ret = int(at_start.max()) if len(at_start) else None
    return {
        "pairs": len(per_pair),
        "return_frame": ret,
        "psnr_c": psnr(frames[0], frames[ret]) if ret is not None else math.nan,
        "ssim_c": ssim(frames[0], frames[ret], channels=channels) if ret is not None else math.nan,
        "pair_psnr": mean_psnr([p["psnr"] for p in per_pair]),
        "pair_ssim": _nanmean([p["ssim"] for p in per_pair]),
        "per_pair": per_pair,
    }


# --------------------------------------------------------------------------------------------
# Known-pose reprojection
# --------------------------------------------------------------------------------------------


def warp_with_depth(
    src: np.ndarray,
    depth_dst: np.ndarray,
    K,
    w2c_src,
    w2c_dst,
    depth_src: np.ndarray | None = None,
    occlusion_rel_tol: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Backward-warp image ``src`` into the view ``dst`` with the destination's depth and known poses.

    Every destination pixel centre with a valid depth is lifted to the world
    (:func:`model.geometry.camera.unproject_depth`), projected into the source camera
    (:func:`model.geometry.camera.project_points`) and the source is sampled there bilinearly. A pixel is
    covered when its depth is valid, the point lies in front of the source camera and projects
    inside the source image, and (with ``depth_src``) the source depth there agrees with the
    point's source z-depth within ``occlusion_rel_tol`` (relative): otherwise the point is hidden
    in the source view.

    Args:
        src: ``[H, W, 3]`` uint8 source image.
        depth_dst: ``[H, W]`` z-depth of the destination view, metres (non-finite or ``<= 0``: invalid).
        K: ``[3, 3]`` pixel intrinsics shared by both views.
        w2c_src, w2c_dst: ``[4, 4]`` poses.
        depth_src: optional ``[H, W]`` source depth for the occlusion test, metres.
        occlusion_rel_tol: relative depth tolerance of the occlusion test.

    Returns:
        warped: ``[H, W, 3]`` float32 source colours seen from ``dst`` (0 where not covered).
        covered: ``[H, W]`` bool.
    """
    src = np.asarray(src)
    height, width = src.shape[:2]
    depth_dst = np.asarray(depth_dst, dtype=np.float64)
    if depth_dst.shape != (height, width):
        raise ValueError(f"depth_dst: expected [{height},{width}], got {list(depth_dst.shape)}")
    K_t = torch.as_tensor(np.asarray(K, dtype=np.float64))
    w2c_src_t = torch.as_tensor(_poses(np.asarray(w2c_src, dtype=np.float64)[None])[0])
    w2c_dst_t = torch.as_tensor(_poses(np.asarray(w2c_dst, dtype=np.float64)[None])[0])
    valid = np.isfinite(depth_dst) & (depth_dst > 0)
    points = unproject_depth(torch.from_numpy(np.where(valid, depth_dst, 1.0)), K_t, invert_pose(w2c_dst_t))
    uv, z = project_points(points.reshape(-1, 3), w2c_src_t[None], K_t)
    uv, z = uv[0].reshape(height, width, 2).numpy(), z[0].reshape(height, width).numpy()
    u, v = uv[..., 0], uv[..., 1]
    covered = valid & (z > 1e-6) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    map_x, map_y = np.where(covered, u - 0.5, -1).astype(np.float32), np.where(covered, v - 0.5, -1).astype(np.float32)
    if depth_src is not None:
        d_src = np.asarray(depth_src, dtype=np.float32)
        seen = cv2.remap(d_src, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        covered &= np.isfinite(seen) & (np.abs(seen - z) <= occlusion_rel_tol * np.abs(z))
    warped = cv2.remap(src.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped[~covered] = 0.0
    return warped, covered


def reprojection_error(
    src: np.ndarray, dst: np.ndarray, depth_dst: np.ndarray, K, w2c_src, w2c_dst, depth_src: np.ndarray | None = None
) -> dict:
    """Photometric error of ``dst`` against ``src`` warped into ``dst``'s view (:func:`warp_with_depth`).

    Measures whether two frames agree with one 3D scene at their known poses: with exact depth an
    ideal renderer gives ~0 error (up to bilinear resampling), a generator that drifts or forgets
    gives more.

    Args:
        src, dst: ``[H, W, 3]`` uint8. depth_dst: ``[H, W]`` metres. K: ``[3, 3]`` pixels.
        w2c_src, w2c_dst: ``[4, 4]``. depth_src: optional ``[H, W]`` metres (occlusion test).

    Returns:
        dict: ``mae`` (mean absolute error over covered pixels and channels, grey levels),
        ``psnr`` (dB over covered pixels), ``coverage`` (covered fraction of ``dst``'s pixels).
        ``mae``/``psnr`` are NaN when nothing is covered.
    """
    warped, covered = warp_with_depth(src, depth_dst, K, w2c_src, w2c_dst, depth_src)
    dst = np.asarray(dst)
    if dst.shape != warped.shape or dst.dtype != np.uint8:
        raise ValueError(f"dst: expected uint8 {list(warped.shape)}, got {dst.dtype} {list(dst.shape)}")
    if not covered.any():
        return {"mae": math.nan, "psnr": math.nan, "coverage": 0.0}
    diff = warped[covered] - dst[covered].astype(np.float32)
    mse = float((diff.astype(np.float64) ** 2).mean())
    return {
        "mae": float(np.abs(diff).mean()),
        "psnr": math.inf if mse == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / mse),
        "coverage": float(covered.mean()),
    }


# --------------------------------------------------------------------------------------------
# Optical flow
# --------------------------------------------------------------------------------------------


def _grey(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 [H,W,3] or [H,W] image, got {img.dtype} {list(img.shape)}")
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def dense_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense optical flow from ``a`` to ``b`` with OpenCV's DIS (preset MEDIUM) on grey images.

    Returns:
        ``[H, W, 2]`` float32 ``(du, dv)`` in pixels: ``a(p)`` reappears at ``b(p + flow(p))``.
    """
    ga, gb = _grey(a), _grey(b)
    if ga.shape != gb.shape:
        raise ValueError(f"flow: images differ in size, {list(ga.shape)} vs {list(gb.shape)}")
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(ga, gb, None)


def flow_fb_consistency(a: np.ndarray, b: np.ndarray, threshold_px: float = 1.0) -> dict:
    """Forward-backward consistency of the optical flow between two frames.

    For each pixel ``p`` of ``a`` with forward flow ``f(p)`` landing at ``q = p + f(p)`` inside
    ``b``, the round-trip error is ``|f(p) + g(q)|`` where ``g`` is the backward flow (``b -> a``)
    sampled bilinearly at ``q``. Consistent motion (a static scene seen by a moving camera, or
    rigid objects) gives round trips near 0; flicker, hallucinated or vanishing content does not.

    Flicker with no structure gives near-zero flow both ways, which round-trips perfectly; the
    flow-compensated photometric error ``warp_mae = mean |a(p) - b(q)|`` (grey levels) exposes it.

    Args:
        a, b: ``[H, W, 3]`` (or ``[H, W]``) uint8 frames.
        threshold_px: a round trip longer than this counts as inconsistent, pixels.

    Returns:
        dict: ``inconsistent_fraction`` (of the pixels whose flow stays in the image),
        ``mean_fb_error_px``, ``warp_mae`` (grey levels) and ``in_view_fraction`` (pixels whose
        flow stays in the image).
    """
    forward, backward = dense_flow(a, b), dense_flow(b, a)
    height, width = forward.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    qx, qy = grid_x + forward[..., 0], grid_y + forward[..., 1]
    inside = (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
    back = cv2.remap(backward, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    err = np.linalg.norm(forward + back, axis=-1)[inside]
    if len(err) == 0:
        return {
            "inconsistent_fraction": math.nan,
            "mean_fb_error_px": math.nan,
            "warp_mae": math.nan,
            "in_view_fraction": 0.0,
        }
    warped = cv2.remap(_grey(b).astype(np.float32), qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return {
        "inconsistent_fraction": float((err > threshold_px).mean()),
        "mean_fb_error_px": float(err.mean()),
        "warp_mae": float(np.abs(warped - _grey(a).astype(np.float32))[inside].mean()),
        "in_view_fraction": float(inside.mean()),
    }


# --------------------------------------------------------------------------------------------
# Camera error from feature matches
# --------------------------------------------------------------------------------------------

#: Fewest ratio-test matches for which the essential matrix is estimated.
MIN_MATCHES = 15
#: Relative translations shorter than this (metres) have no direction: the translation error is NaN.
MIN_BASELINE_M = 1e-6


def _angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def relative_pose_error(
    a: np.ndarray, b: np.ndarray, K, w2c_a, w2c_b, min_matches: int = MIN_MATCHES, ransac_px: float = 0.5
) -> dict:
    """Camera error between two frames: the relative pose seen in the pixels vs the commanded one.

    ORB features (up to 2000, 8 levels of scale 1.2, FAST threshold 10, 15 px patches: small frames
    and soft procedural textures need the low thresholds) on grey images, brute-force Hamming
    matching with Lowe's ratio test (0.8), ``cv2.findEssentialMat`` (MAGSAC++, threshold
    ``ransac_px`` pixels, confidence 0.999; deterministic) and ``cv2.recoverPose`` give ``R, t``
    with ``x_b = R x_a + t`` (unit-length ``t``). The commanded relative pose is ``w2c_b inv(w2c_a)``.
    Periodic textures (checkers, stripes) produce wrong matches; MAGSAC++ with a tight threshold
    was the most robust choice on the procedural rooms (rotation errors ~0.2 deg median, ~1 deg
    worst over 32 pairs of 10-20 deg).

    Args:
        a, b: ``[H, W, 3]`` uint8 frames. K: ``[3, 3]`` pixel intrinsics. w2c_a, w2c_b: ``[4, 4]``.
        min_matches: fewer ratio-test matches than this gives NaN errors (never an exception).
        ransac_px: RANSAC inlier threshold, pixels.

    Returns:
        dict: ``rotation_error_deg`` (angle of ``R_est R_cmd^T``), ``translation_error_deg`` (angle
        between the estimated and commanded translation directions; NaN for a pure rotation),
        ``matches``, ``inliers`` and ``status`` (``"ok"``, ``"too few matches"``, ``"no pose"`` or
        ``"pure rotation"``).
    """
    ga, gb = _grey(a), _grey(b)
    K = np.asarray(K.numpy() if isinstance(K, torch.Tensor) else K, dtype=np.float64)
    rel = _poses(np.stack([np.asarray(w2c_b, dtype=np.float64), np.asarray(w2c_a, dtype=np.float64)]))
    rel = rel[0] @ np.linalg.inv(rel[1])
    result = {
        "rotation_error_deg": math.nan,
        "translation_error_deg": math.nan,
        "matches": 0,
        "inliers": 0,
        "status": "too few matches",
    }
    orb = cv2.ORB_create(nfeatures=2000, scaleFactor=1.2, nlevels=8, edgeThreshold=15, patchSize=15, fastThreshold=10)
    kp_a, des_a = orb.detectAndCompute(ga, None)
    kp_b, des_b = orb.detectAndCompute(gb, None)
    if des_a is None or des_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return result
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_a, des_b, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    result["matches"] = len(good)
    if len(good) < max(min_matches, 5):
        return result
    pts_a = np.float64([kp_a[m.queryIdx].pt for m in good])
    pts_b = np.float64([kp_b[m.trainIdx].pt for m in good])
    # OpenCV keypoints use pixel-corner-at-0 coordinates (centre of pixel 0 at 0.0); K has centres at +0.5.
    pts_a, pts_b = pts_a + 0.5, pts_b + 0.5
    E, inlier_mask = cv2.findEssentialMat(pts_a, pts_b, K, method=cv2.USAC_MAGSAC, prob=0.999, threshold=ransac_px)
    if E is None or E.shape[0] < 3:
        result["status"] = "no pose"
        return result
    inliers, R, t, _ = cv2.recoverPose(E[:3], pts_a, pts_b, K, mask=inlier_mask)  # several solutions: the best first
    result["inliers"] = int(inliers)
    result["rotation_error_deg"] = float(_angle_deg(R @ rel[:3, :3].T))
    if np.linalg.norm(rel[:3, 3]) < MIN_BASELINE_M:
        result["status"] = "pure rotation"
    else:
        result["translation_error_deg"] = _angle_between_deg(t.reshape(3), rel[:3, 3])
        result["status"] = "ok"
    return result


# --------------------------------------------------------------------------------------------
# A whole video
# --------------------------------------------------------------------------------------------


def _mean_of(rows: list[dict], key: str) -> float:
    return _nanmean([row[key] for row in rows])


def video_metrics(
    frames: np.ndarray, w2c, K, stride: int = 4, depth: np.ndarray | None = None, reference: np.ndarray | None = None
) -> dict:
    """Every consistency metric of this module on one video with known poses.

    * ``closed_loop``: :func:`closed_loop_metrics` (without the per-pair list).
    * ``flow``: :func:`flow_fb_consistency` of consecutive frames, averaged.
    * ``camera``: :func:`relative_pose_error` of frames ``(i, i + stride)``, ``i = 0, stride, ...``;
      means over the pairs where it could be computed, with the counts.
    * ``reprojection`` (only with ``depth``): :func:`reprojection_error` of the same stride pairs
      (frame ``i`` warped into ``i + stride``) and ``from_start`` (frame 0 warped into every
      ``stride``-th frame: is the input photo's content still where the geometry says it is?),
      both with the occlusion test.
    * ``ground_truth`` (only with ``reference``): PSNR / SSIM of frames ``1..N-1`` against the exact
      images at their poses, on all pixels (frame 0 is the input image itself).

    Args:
        frames: ``[N, H, W, 3]`` uint8. w2c: ``[N, 4, 4]``. K: ``[3, 3]`` pixels.
        stride: frame step of the camera and reprojection pairs (4 = one latent frame).
        depth: optional ``[N, H, W]`` z-depth of every frame's view, metres (e.g. exact scene depth).
        reference: optional ``[N, H, W, 3]`` uint8 ground-truth images.

    Returns:
        A JSON-serialisable dict of the groups above (NaN where a metric could not be computed).
    """
    frames = np.asarray(frames)
    w2c = _poses(w2c)
    n = len(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or n != len(w2c):
        raise ValueError(
            f"frames: expected uint8 [N,H,W,3] with N = {len(w2c)} poses, got {frames.dtype} {list(frames.shape)}"
        )
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    K = np.asarray(K.numpy() if isinstance(K, torch.Tensor) else K, dtype=np.float64)
    loop = closed_loop_metrics(frames, w2c)
    loop.pop("per_pair")
    flows = [flow_fb_consistency(frames[i], frames[i + 1]) for i in range(n - 1)]
    pairs = [(i, i + stride) for i in range(0, n - stride, stride)]
    cams = [relative_pose_error(frames[i], frames[j], K, w2c[i], w2c[j]) for i, j in pairs]
    out = {
        "frames": n,
        "closed_loop": loop,
        "flow": {
            "pairs": len(flows),
            "inconsistent_fraction": _mean_of(flows, "inconsistent_fraction"),
            "mean_fb_error_px": _mean_of(flows, "mean_fb_error_px"),
            "warp_mae": _mean_of(flows, "warp_mae"),
        },
        "camera": {
            "stride": stride,
            "pairs": len(cams),
            "estimated": sum(c["status"] in ("ok", "pure rotation") for c in cams),
            "rotation_error_deg": _mean_of(cams, "rotation_error_deg"),
            "translation_error_deg": _mean_of(cams, "translation_error_deg"),
            "translation_pairs": sum(c["status"] == "ok" for c in cams),
        },
    }
    if depth is not None:
        depth = np.asarray(depth)
        if depth.shape != frames.shape[:3]:
            raise ValueError(f"depth: expected {list(frames.shape[:3])}, got {list(depth.shape)}")
        local = [reprojection_error(frames[i], frames[j], depth[j], K, w2c[i], w2c[j], depth[i]) for i, j in pairs]
        start = [
            reprojection_error(frames[0], frames[j], depth[j], K, w2c[0], w2c[j], depth[0])
            for j in range(stride, n, stride)
        ]
        out["reprojection"] = {
            key: {
                "pairs": len(rows),
                "mae": _mean_of(rows, "mae"),
                "psnr": mean_psnr([r["psnr"] for r in rows]),
                "coverage": _mean_of(rows, "coverage"),
            }
            for key, rows in (("stride", local), ("from_start", start))
        }
    if reference is not None:
        reference = np.asarray(reference)
        if reference.shape != frames.shape:
            raise ValueError(f"reference: expected {list(frames.shape)}, got {list(reference.shape)}")
        out["ground_truth"] = {
            "frames": n - 1,
            "psnr": mean_psnr([psnr(frames[i], reference[i]) for i in range(1, n)]),
            "ssim": _nanmean([ssim(frames[i], reference[i]) for i in range(1, n)]),
        }
    return out
