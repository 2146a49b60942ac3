"""The pixel-space baseline: an RGB point cloud rasterised and VAE-encoded at every readout.

This is the memory of Spatia / Gen3C / VMem-style world models (Mirage paper, Eq. 1-2):
``M_rgb = {(p_i, c_i)}`` with one point per *pixel* of the written frames, read out as
``z_t = E(Rasterise(M_rgb; E_t, K_t))``. It exists to measure what the latent memory
(:class:`model.memory.LatentSpatialMemory`) saves; it has the same interface (``initialize``,
``readout``, ``update``, ``stats``, ``save``, ``load``, ``clone``, ``to``), so
:class:`model.pipeline.MiragePipeline` runs with either (``PipelineConfig.memory_kind``).

Layout: a moderngl point rasteriser (:class:`PointRasterizer`, one shared EGL context per process)
under one stateful object (:class:`RGBPointCloudMemory`).

Design decisions:

* **Points.** Every written pixel with valid depth and inside a kept latent cell becomes one point:
  the pixel centre ``(u + 0.5, v + 0.5)`` back-projected with the frame's depth (position fp32,
  metres), its decoded colour (uint8 RGB), its splat size (fp16, metres: the pixel's footprint
  ``z / min(fx, fy)`` at the depth it was seen) and provenance (segment, frame; int32). 25 bytes per
  point; :meth:`RGBPointCloudMemory.stats` counts all of them, as the latent memory counts its own.
  Keep masks arrive per latent cell and are expanded to the cell's pixel patch. The update needs the
  decoded frames (pixels); the ``latents`` argument only gives the latent grid (interface parity).
* **Rasterisation.** Every point is drawn as a screen-aligned square splat (``GL_POINTS``), z-buffered
  by the GL depth test: the nearest point wins, and equal depths keep the earlier-drawn, i.e. lower,
  index. The splat's edge in pixels is ``ceil(size_m * max(fx, fy) / z)`` (clamped to
  ``1 .. MAX_SPLAT_PX``): the point's pixel footprint projected into the target view, so a surface
  seen from closer than it was captured stays closed, and a point read at its own view covers
  exactly its own pixel (the readout at the source view reproduces the source image). Projection
  is :func:`model.scenes.gl_projection`, the project's one OpenCV-to-GL conversion.
* **Readout** (the cost this memory exists to show): rasterise each target frame at FULL image
  resolution, then VAE-encode each rendered frame **as a single image** (``vae.encode`` of a
  1-frame video): the pipeline uses one readout latent frame per target pose (latent frame ``k`` <->
  RGB frame ``4k``), and a causal Wan VAE encodes a lone frame into exactly one latent frame. This
  is the cheaper of the two honest choices (rendering and encoding the whole 33-frame segment as a
  video costs about four times the rasterisation and more encoder work), so it favours the
  baseline. Uncovered pixels are black before encoding. A latent cell is *visible* when at least
  ``VISIBLE_COVERAGE`` of its pixel patch is covered; the readout latent is zero elsewhere, as in
  the latent memory. ``Readout.depth`` / ``index`` are the nearest covered pixel's depth and point.
* **De-duplication** (``config.dedup``, the latent memory's options at pixel resolution):

  - ``"view"`` (default): frames are written one by one; a pixel is already known when the memory
    rasterised at the writing camera covers it at a depth that agrees within ``view_tolerance``
    (relative) plus the pixel's own depth spread (grazing surfaces); a 1-pixel uncovered gap
    between known pixels is a sampling hole, not unseen space. A revisit therefore adds only what
    the memory could not show.
  - ``"voxel"``: one point per ``voxel_size`` voxel; the point's splat size is raised to the voxel
    edge so the sparser cloud still renders closed.

  ``keep_observation`` ``"first"`` keeps a known place's first observation; ``"newest"`` replaces it.
  ``config.feature_dtype`` does not apply (colours are uint8).
* **Rejected pixels** are counted (``stats().rejected``), not stored: a per-pixel record would
  dwarf the cloud itself.
* **Devices.** Tensors live on ``device``; rasterisation runs on the EGL device (Mesa llvmpipe on
  CPU machines, the GPU's EGL driver where present), so points go to the rasteriser's buffers when
  they change and rendered frames come back to ``device`` for the VAE.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import moderngl
import numpy as np
import torch
import torch.nn.functional as F

from model.camera import invert_pose, scale_intrinsics, unproject_depth, validate_intrinsics, validate_poses
from model.frames import frames_to_tensor
from model.memory import (
    MemoryConfig,
    MemoryStats,
    Readout,
    TensorRows,
    cell_mask,
    merge_unseen,
    merge_voxels,
    read_memory_file,
    seen_at_depth,
    voxel_keys,
    write_memory_file,
)
from model.offscreen_gl import OffscreenGL
from model.patch_vae import VideoVAE
from model.scenes import gl_projection

FORMAT_NAME = "mirage-rgb-memory"
FORMAT_VERSION = 1
#: A latent cell is visible when at least this share of its pixels is covered by splats.
VISIBLE_COVERAGE = 0.5
#: Largest splat edge in pixels (points very close to the camera are clamped).
MAX_SPLAT_PX = 64
#: Far clipping distance of the rasteriser, metres.
FAR_M = 1000.0

_VERTEX_SHADER = """
#version 330
uniform mat4 u_w2c;
uniform mat4 u_proj;
uniform float u_focal;     // max(fx, fy) of the target view, pixels
uniform float u_max_size;  // pixels
in vec3 in_pos;
in vec3 in_col;
in float in_size;          // metres
out vec3 v_col;
out float v_z;
flat out int v_index;
void main() {
    vec4 cam = u_w2c * vec4(in_pos, 1.0);
    v_col = in_col;
    v_z = cam.z;
    v_index = gl_VertexID;
    gl_Position = u_proj * cam;
    gl_PointSize = clamp(ceil(in_size * u_focal / max(cam.z, 1e-6) - 0.01), 1.0, u_max_size);
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_col;
in float v_z;
flat in int v_index;
layout(location = 0) out vec4 f_colour;
layout(location = 1) out float f_depth;
layout(location = 2) out int f_index;
void main() {
    f_colour = vec4(v_col, 1.0);
    f_depth = v_z;  // metric z-depth; 0 (the clear value) marks uncovered pixels
    f_index = v_index;
}
"""

_versions = itertools.count(1)


class RenderedViews(NamedTuple):
    """Rasterised views of a point cloud.

    Attributes:
        rgb: ``[F, H, W, 3]`` uint8, black where uncovered.
        depth: ``[F, H, W]`` float32 z-depth in metres of the winning point, 0 where uncovered.
        index: ``[F, H, W]`` int64 winning point index, -1 where uncovered.
    """

    rgb: torch.Tensor
    depth: torch.Tensor
    index: torch.Tensor


class PointRasterizer(OffscreenGL):
    """Z-buffered square-splat rasteriser of coloured points on a headless moderngl EGL context.

    Not thread-safe by itself: use :func:`shared_rasterizer_render`, which holds a lock. Points are
    uploaded only when ``key`` changes.
    """

    COLOR_ATTACHMENTS = ((4, "f1"), (1, "f4"), (1, "i4"))  # RGB, z-depth in metres, point index

    def __init__(self) -> None:
        super().__init__()
        with self._ctx:
            self._program = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self._buffers: list[moderngl.Buffer] = []
        self._vao: moderngl.VertexArray | None = None
        self._count = 0
        self._key: object = None

    def render(self, positions, colors, sizes, w2c, K, height: int, width: int, near: float, key: object = None) -> RenderedViews:
        """Rasterise points into ``F`` views.

        Args:
            positions: ``[N, 3]`` float32 world metres. colors: ``[N, 3]`` uint8. sizes: ``[N]``
                float16 splat size in metres (see the module docstring).
            w2c: ``[F, 4, 4]`` poses. K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics in pixels.
            height, width: image size in pixels.
            near: metres; nearer points are clipped.
            key: the point set's identity; equal keys skip the upload (None always uploads).

        Returns:
            :class:`RenderedViews` on the CPU.
        """
        n_frames = w2c.shape[0]
        K = K.expand(n_frames, 3, 3).cpu().numpy()
        w2c = w2c.cpu().numpy()
        rgb = np.zeros((n_frames, height, width, 3), np.uint8)
        depth = np.zeros((n_frames, height, width), np.float32)
        index = np.full((n_frames, height, width), -1, np.int64)
        with self._ctx:  # make this context current: other contexts live in the process
            self._upload(positions, colors, sizes, key)
            if self._count == 0:
                return RenderedViews(torch.from_numpy(rgb), torch.from_numpy(depth), torch.from_numpy(index))
            fbo = self._framebuffer(width, height)
            fbo.use()
            self._ctx.enable(moderngl.DEPTH_TEST | moderngl.PROGRAM_POINT_SIZE)
            self._ctx.disable(moderngl.BLEND | moderngl.CULL_FACE)
            self._program["u_max_size"].value = float(MAX_SPLAT_PX)
            for f in range(n_frames):
                fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                self._program["u_w2c"].write(w2c[f].T.astype(np.float32).tobytes())  # GL is column-major
                self._program["u_proj"].write(gl_projection(K[f], width, height, near, FAR_M).T.astype(np.float32).tobytes())
                self._program["u_focal"].value = float(max(K[f, 0, 0], K[f, 1, 1]))
                self._vao.render(moderngl.POINTS, vertices=self._count)
                # GL rows start at the bottom
                rgb[f] = np.frombuffer(fbo.read(components=3, attachment=0), np.uint8).reshape(height, width, 3)[::-1]
                depth[f] = np.frombuffer(fbo.read(components=1, attachment=1, dtype="f4"), np.float32).reshape(height, width)[::-1]
                ids = np.frombuffer(fbo.read(components=1, attachment=2, dtype="i4"), np.int32).reshape(height, width)[::-1]
                index[f] = np.where(depth[f] > 0, ids, -1)
        return RenderedViews(torch.from_numpy(rgb), torch.from_numpy(depth), torch.from_numpy(index))

    def _upload(self, positions, colors, sizes, key) -> None:
        if key is not None and key == self._key:
            return
        self._release_points()
        self._count = int(positions.shape[0])
        self._key = key
        if self._count == 0:
            return
        arrays = (
            positions.detach().cpu().numpy().astype(np.float32, copy=False),
            colors.detach().cpu().numpy().astype(np.uint8, copy=False),
            sizes.detach().cpu().numpy().astype(np.float16, copy=False),
        )
        self._buffers = [self._ctx.buffer(np.ascontiguousarray(a).tobytes()) for a in arrays]
        layout = [(self._buffers[0], "3f", "in_pos"), (self._buffers[1], "3f1", "in_col"), (self._buffers[2], "f2", "in_size")]
        self._vao = self._ctx.vertex_array(self._program, layout)

    def _release_points(self) -> None:
        if self._vao is not None:
            self._vao.release()
            self._vao = None
        for buffer in self._buffers:
            buffer.release()
        self._buffers, self._count, self._key = [], 0, None

    def _release_gl(self) -> None:
        self._release_points()
        self._program.release()


_shared: PointRasterizer | None = None
_shared_lock = threading.Lock()


def shared_rasterizer_render(*args, **kwargs) -> RenderedViews:
    """:meth:`PointRasterizer.render` on the process's one shared rasteriser (created on first use), under a lock."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PointRasterizer()
        return _shared.render(*args, **kwargs)


class _RGBPoints(namedtuple("_RGBPoints", "positions colors sizes segments frames"), TensorRows):
    """Per-point fields, stored (``[N, ...]``) or per pixel (``[T, H, W, ...]``): positions float32
    metres ``[..., 3]``, colors uint8 RGB ``[..., 3]``, sizes float16 splat size in metres, segments
    and frames int32."""

    __slots__ = ()


_TENSOR_NAMES = _RGBPoints._fields
_DTYPES = {"positions": torch.float32, "colors": torch.uint8, "sizes": torch.float16, "segments": torch.int32, "frames": torch.int32}


@dataclass
class _Timings:
    """Seconds of the last readout's two stages (the benchmark reports the split)."""

    rasterise: float = 0.0
    encode: float = 0.0


class RGBPointCloudMemory:
    """A pixel-resolution RGB point cloud read out by rasterisation + VAE encoding.

    Args:
        config: de-duplication and near-plane settings (shared with the latent memory; see the
            module docstring for what applies).
        device: where the point tensors and the readout live.
        vae: the backbone's :class:`~model.patch_vae.VideoVAE`; required by :meth:`readout`.

    Example:
        >>> from model.camera import intrinsics_from_fov
        >>> from model.patch_vae import PatchVAE
        >>> mem = RGBPointCloudMemory(vae=PatchVAE())
        >>> K = intrinsics_from_fov(60.0, 64, 32)
        >>> image = torch.randint(0, 255, (32, 64, 3), dtype=torch.uint8)
        >>> mem.initialize(torch.zeros(48, 8, 16), torch.full((32, 64), 3.0), K, torch.eye(4), image=image)
        >>> out = mem.readout(torch.eye(4)[None], K, 8, 16, image_hw=(32, 64))
        >>> out.latent.shape, bool(out.visible.all()), len(mem)
        (torch.Size([1, 48, 8, 16]), True, 2048)
    """

    def __init__(self, config: MemoryConfig | None = None, device: str | torch.device = "cpu", vae: VideoVAE | None = None) -> None:
        self.config = config or MemoryConfig()
        self.device = torch.device(device)
        self.vae = vae
        self.next_segment = 0
        self.rejected = 0
        self.last_readout = _Timings()
        self._set_points(self._empty())

    @property
    def channels(self) -> int | None:
        """Latent channels of a readout (the VAE's), None without a VAE."""
        return None if self.vae is None else int(self.vae.latent_channels)

    # ---- state ---------------------------------------------------------------------------

    def _empty(self) -> _RGBPoints:
        dev = self.device
        return _RGBPoints(
            torch.zeros(0, 3, dtype=torch.float32, device=dev),
            torch.zeros(0, 3, dtype=torch.uint8, device=dev),
            torch.zeros(0, dtype=torch.float16, device=dev),
            torch.zeros(0, dtype=torch.int32, device=dev),
            torch.zeros(0, dtype=torch.int32, device=dev),
        )

    def _points(self) -> _RGBPoints:
        return _RGBPoints(*(getattr(self, name) for name in _TENSOR_NAMES))

    def _set_points(self, points: _RGBPoints) -> None:
        for name, tensor in zip(_TENSOR_NAMES, points):
            setattr(self, name, tensor)
        self._version = next(_versions)  # a new identity for the rasteriser's upload cache

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def stats(self) -> MemoryStats:
        """Points stored, bytes of every per-point tensor (position, colour, splat size, provenance), rejected pixels of the last write."""
        return MemoryStats(len(self), sum(t.numel() * t.element_size() for t in self._points()), self.rejected)

    def clone(self) -> RGBPointCloudMemory:
        """A deep copy (same config, device and VAE)."""
        other = RGBPointCloudMemory(self.config, self.device, self.vae)
        other.next_segment, other.rejected = self.next_segment, self.rejected
        other._set_points(_RGBPoints(*(t.clone() for t in self._points())))
        return other

    def to(self, device: str | torch.device) -> RGBPointCloudMemory:
        """Move every tensor to ``device`` (in place) and return self."""
        self.device = torch.device(device)
        self._set_points(_RGBPoints(*(t.to(self.device) for t in self._points())))
        return self

    def render(self, w2c: torch.Tensor, K: torch.Tensor, height: int, width: int) -> RenderedViews:
        """Rasterise the cloud into ``F`` views at pixel resolution.

        Args:
            w2c: ``[F, 4, 4]`` (or ``[4, 4]``) poses. K: ``[3, 3]`` or ``[F, 3, 3]`` pixels of ``height x width``.

        Returns:
            :class:`RenderedViews` (on the CPU).
        """
        w2c = validate_poses(torch.as_tensor(w2c), "w2c")
        w2c = w2c[None] if w2c.ndim == 2 else w2c
        K = validate_intrinsics(torch.as_tensor(K), "K")
        if K.ndim == 3 and K.shape[0] != w2c.shape[0]:
            raise ValueError(f"K: expected [3,3] or [{w2c.shape[0]},3,3], got shape {list(K.shape)}")
        if height <= 0 or width <= 0:
            raise ValueError(f"render size must be positive, got {width}x{height}")
        return self._render(self._points(), w2c, K, height, width, key=(self._version,))

    def _render(self, points: _RGBPoints, w2c, K, height: int, width: int, key=None) -> RenderedViews:
        return shared_rasterizer_render(points.positions, points.colors, points.sizes, w2c, K, height, width, self.config.near, key=key)

    # ---- writing -------------------------------------------------------------------------

    def initialize(
        self,
        latent: torch.Tensor,
        depth: torch.Tensor,
        K: torch.Tensor,
        w2c: torch.Tensor,
        keep: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
    ) -> None:
        """Reset the memory and lift every pixel of the first frame with depth.

        Args:
            latent: ``[C, h, w]`` latent of the first frame (only its grid is used: ``keep`` may be per cell).
            depth: ``[H, W]`` z-depth in metres (invalid: non-finite or ``<= 0``).
            K: ``[3, 3]`` intrinsics in pixels of the ``H x W`` image.
            w2c: ``[4, 4]`` pose of the first frame.
            keep: optional ``[h, w]`` or ``[H, W]`` bool; pixels outside it are dropped.
            image: ``[H, W, 3]`` uint8 first frame (required: it is what the memory stores).
        """
        latent = torch.as_tensor(latent)
        if latent.ndim != 3:
            raise ValueError(f"latent: expected [C,h,w], got shape {list(latent.shape)}")
        depth = torch.as_tensor(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth: expected [H,W], got shape {list(depth.shape)}")
        if image is None:
            raise ValueError("image: the RGB memory stores pixels; pass the first frame [H,W,3] uint8")
        self.next_segment = 0
        self.rejected = 0
        self._set_points(self._empty())
        self.update(
            latent[None],
            depth[None],
            torch.as_tensor(w2c)[None] if torch.as_tensor(w2c).ndim == 2 else w2c,
            K,
            keep=None if keep is None else torch.as_tensor(keep)[None],
            frames=torch.as_tensor(image)[None],
        )

    def update(
        self,
        latents: torch.Tensor,
        depth: torch.Tensor,
        w2c: torch.Tensor,
        K: torch.Tensor,
        keep: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        frames: torch.Tensor | None = None,
        frame_ids: torch.Tensor | list[int] | None = None,
    ) -> MemoryStats:
        """Write ``T`` decoded frames into the cloud, one point per kept pixel with valid depth.

        All-or-nothing: every check happens before the state changes.

        Args:
            latents: ``[T, C, h, w]`` latent frames; only their grid ``h x w`` is used (for ``keep``).
            depth: ``[T, H, W]`` z-depth in metres of ``frames``.
            w2c: ``[T, 4, 4]`` poses. K: ``[3, 3]`` or ``[T, 3, 3]`` intrinsics in pixels of ``H x W``.
            keep: ``[T, h, w]`` (or ``[T, H, W]``) bool, True for static, non-sky cells. None keeps all.
            labels: ``[T, h, w]`` uint8 cell labels; checked but not stored (the RGB memory only
                counts rejected pixels, see the module docstring).
            frames: ``[T, H, W, 3]`` uint8 decoded frames (required: the colours of the points).
            frame_ids: ``[T]`` frame numbers stored as provenance (default ``0..T-1``).

        Returns:
            The stats after the write.
        """
        depth, w2c, K, keep, frames, frame_ids = self._check_write(latents, depth, w2c, K, keep, labels, frames, frame_ids)
        n_frames, H, W = depth.shape
        # 1. lift every pixel centre with its depth
        valid = torch.isfinite(depth) & (depth > 0)
        write = valid & keep
        depth = torch.where(valid, depth, torch.inf)
        w2c64 = w2c.to(torch.float64)
        points = unproject_depth(torch.where(valid, depth, 1.0).to(torch.float64), K.to(torch.float64), invert_pose(w2c64)).to(torch.float32)
        focal = torch.minimum(K[..., 0, 0], K[..., 1, 1]).to(torch.float32).expand(n_frames)
        sizes = torch.where(valid, depth, 0.0) / focal[:, None, None]
        if self.config.dedup == "voxel":
            sizes = sizes.clamp(min=self.config.voxel_size)
        pixels = _RGBPoints(
            points,
            frames,
            sizes.to(torch.float16),
            torch.full((n_frames, H, W), self.next_segment, dtype=torch.int32, device=self.device),
            frame_ids[:, None, None].expand(n_frames, H, W).to(torch.int32),
        )
        # 2. de-duplicate within the write and against the memory
        store = self._points()
        if self.config.dedup == "voxel":
            keys, in_range = voxel_keys(points[write], self.config.voxel_size)
            store = merge_voxels(store, pixels.select(write).select(in_range), keys[in_range], self.config.voxel_size, self.config.keep_observation == "newest")
        else:
            K_frames = K.expand(n_frames, 3, 3)
            for t in range(n_frames):
                store = self._merge_view(store, pixels.frame(t), write[t], depth[t], w2c64[t], K_frames[t])
        # 3. commit (nothing above touched the stored tensors)
        self._set_points(store)
        self.rejected = int((~write).sum())
        self.next_segment += 1
        return self.stats()

    def _check_write(self, latents, depth, w2c, K, keep, labels, frames, frame_ids):
        dev = self.device
        latents = torch.as_tensor(latents)
        if latents.ndim != 4:
            raise ValueError(f"latents: expected [T,C,h,w], got shape {list(latents.shape)}")
        n_frames, _, h, w = latents.shape
        if frames is None:
            raise ValueError("frames: the RGB memory stores pixels; pass the decoded frames [T,H,W,3] uint8")
        frames = torch.as_tensor(frames).to(dev)
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[0] != n_frames or frames.shape[-1] != 3:
            raise ValueError(f"frames: expected uint8 [{n_frames},H,W,3], got {frames.dtype} {list(frames.shape)}")
        H, W = frames.shape[1:3]
        depth = torch.as_tensor(depth).to(dev, torch.float32)
        if depth.shape != (n_frames, H, W):
            raise ValueError(f"depth: expected [{n_frames},{H},{W}] (the frames' size), got shape {list(depth.shape)}")
        if H < h or W < w:
            raise ValueError(f"frames: {H}x{W} pixels is smaller than the latent grid {h}x{w}")
        w2c = validate_poses(torch.as_tensor(w2c), "w2c").to(dev)
        if w2c.ndim == 2:
            w2c = w2c[None]
        if w2c.shape[0] != n_frames:
            raise ValueError(f"w2c: expected {n_frames} poses, got {w2c.shape[0]}")
        K = validate_intrinsics(torch.as_tensor(K), "K").to(dev)
        if K.ndim == 3 and K.shape[0] != n_frames:
            raise ValueError(f"K: expected [3,3] or [{n_frames},3,3], got shape {list(K.shape)}")
        if keep is None:
            keep = torch.ones(n_frames, H, W, dtype=torch.bool, device=dev)
        else:
            keep = torch.as_tensor(keep).to(dev)
            if keep.ndim != 3 or keep.shape[0] != n_frames or keep.shape[1:] not in (torch.Size([h, w]), torch.Size([H, W])):
                raise ValueError(f"keep: expected [{n_frames},{h},{w}] or [{n_frames},{H},{W}], got shape {list(keep.shape)}")
            keep = cell_mask(keep, H, W) if keep.shape[1:] == (h, w) else keep.to(torch.bool)
        if labels is not None and torch.as_tensor(labels).shape != (n_frames, h, w):
            raise ValueError(f"labels: expected [{n_frames},{h},{w}], got shape {list(torch.as_tensor(labels).shape)}")
        frame_ids = torch.arange(n_frames, device=dev) if frame_ids is None else torch.as_tensor(frame_ids, device=dev)
        if frame_ids.shape != (n_frames,):
            raise ValueError(f"frame_ids: expected {n_frames} values, got shape {list(frame_ids.shape)}")
        return depth, w2c, K, keep, frames, frame_ids

    def _merge_view(self, store: _RGBPoints, new: _RGBPoints, write: torch.Tensor, depth: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> _RGBPoints:
        """View de-duplication of one frame at pixel resolution (:func:`model.memory.merge_unseen`): a
        pixel is known when the memory, rasterised at this camera, covers it at a depth within
        ``view_tolerance`` (relative).

        Args:
            new: the frame's pixels (``[H, W, ...]`` fields). write: ``[H, W]`` pixels to write.
            depth: ``[H, W]`` their depth (+inf invalid). w2c: ``[4, 4]``. K: ``[3, 3]`` pixels.
        """
        if not len(store.positions):
            return store.cat(new.select(write))
        H, W = write.shape
        seen = self._render(store, w2c[None], K, H, W)
        index, seen_depth = seen.index[0].to(self.device), seen.depth[0].to(self.device)
        known = torch.isfinite(depth) & seen_at_depth(index, seen_depth, depth, self.config.view_tolerance)
        return merge_unseen(store, new, write, known, index, self.config.keep_observation == "newest")

    # ---- reading -------------------------------------------------------------------------

    def readout(
        self, w2c: torch.Tensor, K: torch.Tensor, h: int, w: int, image_hw: tuple[int, int] | None = None
    ) -> Readout:
        """Rasterise the cloud at each target camera at full resolution and VAE-encode every frame.

        Args:
            w2c: ``[F, 4, 4]`` (or ``[4, 4]``) poses.
            K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics in pixels of ``image_hw = (H, W)``, or of the
                ``h x w`` grid when ``image_hw`` is None (then ``H, W = h, w`` times the VAE stride).
            h, w: latent grid; must be the VAE's grid of an ``H x W`` image.

        Returns:
            :class:`~model.memory.Readout`: ``latent [F, C, h, w]`` (encoded renders, zero where not
            visible), ``visible [F, h, w]`` (at least ``VISIBLE_COVERAGE`` of the cell's pixels
            covered), ``depth`` / ``index [F, h, w]`` of the nearest covered pixel (0 / -1 where not visible).
        """
        if self.vae is None:
            raise ValueError("RGBPointCloudMemory.readout needs the backbone's VAE (pass vae=...)")
        stride = int(self.vae.spatial_stride)
        if h <= 0 or w <= 0:
            raise ValueError(f"readout grid must be positive, got {h}x{w}")
        K = validate_intrinsics(torch.as_tensor(K), "K")
        if image_hw is None:
            image_hw = (h * stride, w * stride)
            K = scale_intrinsics(K, (h, w), image_hw)
        H, W = image_hw
        if (H, W) != (h * stride, w * stride):
            raise ValueError(f"image_hw {H}x{W} is not the VAE's image of a {h}x{w} latent grid (stride {stride})")
        # 1. rasterise every target view at full resolution
        start = time.perf_counter()
        views = self.render(w2c, K, H, W)
        rasterised = time.perf_counter()
        # 2. VAE-encode each rendered frame as a single image: one latent frame per target pose
        latent = torch.cat([self.vae.encode(frames_to_tensor(frame, self.vae.device)) for frame in views.rgb]).to(self.device)
        if self.vae.device.type == "cuda":
            torch.cuda.synchronize(self.vae.device)
        self.last_readout = _Timings(rasterised - start, time.perf_counter() - rasterised)
        # 3. visibility by coverage, nearest covered pixel per cell
        n_frames = views.depth.shape[0]
        covered = views.depth > 0
        visible = F.avg_pool2d(covered[:, None].to(torch.float32), stride)[:, 0] >= VISIBLE_COVERAGE
        patches = lambda x: x.view(n_frames, h, stride, w, stride).permute(0, 1, 3, 2, 4).reshape(n_frames, h, w, -1)  # noqa: E731
        nearest = patches(torch.where(covered, views.depth, torch.inf)).argmin(-1, keepdim=True)
        depth = torch.where(visible, patches(views.depth).gather(-1, nearest)[..., 0], 0.0)
        index = torch.where(visible, patches(views.index).gather(-1, nearest)[..., 0], -1)
        visible = visible.to(self.device)
        latent = latent * visible[:, None].to(latent.dtype)
        return Readout(latent.contiguous(), visible, depth.to(self.device), index.to(self.device))

    # ---- persistence ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the cloud to a safetensors file (atomically) with format version and config metadata."""
        tensors = dict(zip(_TENSOR_NAMES, self._points()))
        write_memory_file(path, tensors, FORMAT_NAME, FORMAT_VERSION, self.config, next_segment=self.next_segment, rejected=self.rejected)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu", vae: VideoVAE | None = None) -> RGBPointCloudMemory:
        """Read a cloud written by :meth:`save`, validating format, version, names, dtypes and shapes.

        Raises:
            ValueError: naming the file and what is wrong.
        """
        path = Path(path)
        tensors, config, values = read_memory_file(path, FORMAT_NAME, FORMAT_VERSION, ("next_segment", "rejected"))
        next_segment, rejected = values["next_segment"], values["rejected"]
        if sorted(tensors) != sorted(_TENSOR_NAMES):
            raise ValueError(f"{path}: tensor names {sorted(tensors)} differ from the format {sorted(_TENSOR_NAMES)}")
        n = tensors["positions"].shape[0]
        for name, dtype in _DTYPES.items():
            shape = (n, 3) if name in ("positions", "colors") else (n,)
            if tensors[name].dtype != dtype or tuple(tensors[name].shape) != shape:
                raise ValueError(f"{path}: tensor '{name}' is {tensors[name].dtype} {list(tensors[name].shape)}, expected {dtype} {list(shape)}")
        if not torch.isfinite(tensors["positions"]).all() or not torch.isfinite(tensors["sizes"]).all():
            raise ValueError(f"{path}: positions or splat sizes contain NaN or Inf")
        memory = cls(config, device, vae)
        memory.next_segment, memory.rejected = next_segment, rejected
        memory._set_points(_RGBPoints(*(tensors[name].to(memory.device) for name in _TENSOR_NAMES)))
        return memory
