"""The pixel-space baseline: an RGB point cloud rasterised and VAE-encoded at every readout.

This is the memory of Spatia / Gen3C / VMem-style world models (Mirage paper, Eq. 1-2):
``M_rgb = {(p_i, c_i)}`` with one point per *pixel* of the written frames, read out as
``z_t = E(Rasterise(M_rgb; E_t, K_t))``. It exists to measure what the latent memory
(:class:`model.memory.latent.LatentSpatialMemory`) saves. Both are a :class:`model.memory.base.SpatialMemory`
and share everything but lifting and readout (:class:`model.memory.base.PointMemory`), so
:class:`model.generation.pipeline.MiragePipeline` runs with either (``PipelineConfig.memory_kind``,
:func:`model.baselines.kinds.make_memory`).

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
  is :func:`model.geometry.camera.gl_projection`, the project's one OpenCV-to-GL conversion.
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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import moderngl
import numpy as np
import torch
import torch.nn.functional as F

from model.generation.vae import VideoVAE
from model.geometry.camera import gl_projection, invert_pose, scale_intrinsics, unproject_depth, validate_intrinsics
from model.io.frames import frames_to_tensor
from model.memory.base import Layout, MemoryConfig, PointMemory, Readout, WriteBatch, check_cameras
from model.memory.latent import TensorRows, deduplicate, seen_at_depth
from model.render.offscreen_gl import OffscreenGL

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

    def render(
        self, positions, colors, sizes, w2c, K, height: int, width: int, near: float, key: object = None
    ) -> RenderedViews:
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
                self._program["u_proj"].write(
                    gl_projection(K[f], width, height, near, FAR_M).T.astype(np.float32).tobytes()
                )
                self._program["u_focal"].value = float(max(K[f, 0, 0], K[f, 1, 1]))
                self._vao.render(moderngl.POINTS, vertices=self._count)
                # GL rows start at the bottom
                rgb[f] = np.frombuffer(fbo.read(components=3, attachment=0), np.uint8).reshape(height, width, 3)[::-1]
                depth[f] = np.frombuffer(fbo.read(components=1, attachment=1, dtype="f4"), np.float32).reshape(
                    height, width
                )[::-1]
                ids = np.frombuffer(fbo.read(components=1, attachment=2, dtype="i4"), np.int32).reshape(height, width)[
                    ::-1
                ]
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
        layout = [
            (self._buffers[0], "3f", "in_pos"),
            (self._buffers[1], "3f1", "in_col"),
            (self._buffers[2], "f2", "in_size"),
        ]
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


@dataclass
class _Timings:
    """Seconds of the last readout's two stages (the benchmark reports the split)."""

    rasterise: float = 0.0
    encode: float = 0.0


class RGBPointCloudMemory(PointMemory):
    """A pixel-resolution RGB point cloud read out by rasterisation + VAE encoding.

    Args:
        config: de-duplication and near-plane settings (shared with the latent memory; see the
            module docstring for what applies).
        device: where the point tensors and the readout live.
        vae: the backbone's :class:`~model.generation.vae.VideoVAE`; required by :meth:`readout`.

    Example:
        >>> from model.geometry.camera import intrinsics_from_fov
        >>> from model.generation.patch_vae import PatchVAE
        >>> mem = RGBPointCloudMemory(vae=PatchVAE())
        >>> K = intrinsics_from_fov(60.0, 64, 32)
        >>> image = torch.randint(0, 255, (32, 64, 3), dtype=torch.uint8)
        >>> mem.initialize(torch.zeros(48, 8, 16), torch.full((32, 64), 3.0), K, torch.eye(4), image=image)
        >>> out = mem.readout(torch.eye(4)[None], K, 8, 16, image_hw=(32, 64))
        >>> out.latent.shape, bool(out.visible.all()), len(mem)
        (torch.Size([1, 48, 8, 16]), True, 2048)
    """

    kind = "rgb"
    FORMAT_NAME = "mirage-rgb-memory"
    Points = _RGBPoints
    COUNTERS = ("next_segment", "rejected")
    FINITE = ("positions", "sizes")
    FRAMES_REQUIRED = True
    features = None  # the cloud stores colours, not latent features

    def __init__(
        self, config: MemoryConfig | None = None, device: str | torch.device = "cpu", vae: VideoVAE | None = None
    ) -> None:
        self.vae = vae
        self.last_readout = _Timings()
        super().__init__(config, device)

    @property
    def channels(self) -> int | None:
        """Latent channels of a readout (the VAE's), None without a VAE."""
        return None if self.vae is None else int(self.vae.latent_channels)

    # ---- state ---------------------------------------------------------------------------

    @classmethod
    def _layout(cls, config: MemoryConfig, counters: Mapping[str, int]) -> Layout:
        return {
            "positions": (torch.float32, ("N", 3)),
            "colors": (torch.uint8, ("N", 3)),
            "sizes": (torch.float16, ("N",)),
            "segments": (torch.int32, ("N",)),
            "frames": (torch.int32, ("N",)),
        }

    def _reset(self) -> None:
        self.rejected = 0
        super()._reset()

    def _set_state(self, values: Mapping[str, object]) -> None:
        super()._set_state(values)
        self._version = next(_versions)  # a new identity for the rasteriser's upload cache

    @property
    def rejected_positions(self) -> torch.Tensor:
        """``[0, 3]``: rejected pixels are counted (``rejected``), not kept (see the module docstring)."""
        return torch.zeros(0, 3, dtype=torch.float32, device=self.device)

    @property
    def rejected_labels(self) -> torch.Tensor:
        """``[0]`` uint8: rejected pixels are counted, not kept."""
        return torch.zeros(0, dtype=torch.uint8, device=self.device)

    def render(self, w2c: torch.Tensor, K: torch.Tensor, height: int, width: int) -> RenderedViews:
        """Rasterise the cloud into ``F`` views at pixel resolution.

        Args:
            w2c: ``[F, 4, 4]`` (or ``[4, 4]``) poses. K: ``[3, 3]`` or ``[F, 3, 3]`` pixels of ``height x width``.

        Returns:
            :class:`RenderedViews` (on the CPU).
        """
        w2c, K = check_cameras(w2c, K)
        if height <= 0 or width <= 0:
            raise ValueError(f"render size must be positive, got {width}x{height}")
        return self._render(self._points(), w2c, K, height, width, key=(self._version,))

    def _render(self, points: _RGBPoints, w2c, K, height: int, width: int, key=None) -> RenderedViews:
        return shared_rasterizer_render(
            points.positions, points.colors, points.sizes, w2c, K, height, width, self.config.near, key=key
        )

    # ---- writing -------------------------------------------------------------------------

    def _write(self, batch: WriteBatch) -> dict[str, object]:
        """Lift every kept pixel with valid depth to a point of its colour and footprint, then merge."""
        depth, K = batch.depth, batch.K
        n_frames, H, W = depth.shape
        # 1. lift every pixel centre with its depth
        valid = torch.isfinite(depth) & (depth > 0)
        write = valid & batch.keep_at(H, W)
        depth = torch.where(valid, depth, torch.inf)
        w2c64 = batch.w2c.to(torch.float64)
        points = unproject_depth(
            torch.where(valid, depth, 1.0).to(torch.float64), K.to(torch.float64), invert_pose(w2c64)
        ).to(torch.float32)
        focal = torch.minimum(K[..., 0, 0], K[..., 1, 1]).to(torch.float32).expand(n_frames)
        sizes = torch.where(valid, depth, 0.0) / focal[:, None, None]
        if self.config.dedup == "voxel":
            sizes = sizes.clamp(min=self.config.voxel_size)
        pixels = _RGBPoints(
            points,
            batch.frames,
            sizes.to(torch.float16),
            torch.full((n_frames, H, W), self.next_segment, dtype=torch.int32, device=self.device),
            batch.frame_ids[:, None, None].expand(n_frames, H, W).to(torch.int32),
        )
        # 2. de-duplicate within the write and against the memory
        K_frames = K.expand(n_frames, 3, 3)
        store = deduplicate(self._points(), pixels, write, depth, w2c64, K_frames, self.config, self._known)
        return {**store._asdict(), "rejected": int((~write).sum())}

    def _known(
        self, store: _RGBPoints, depth: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:data:`model.memory.latent.KnownCells` at pixel resolution: the memory rasterised at this camera
        covers a pixel at a depth within ``view_tolerance`` (relative)."""
        H, W = depth.shape
        seen = self._render(store, w2c[None], K, H, W)
        index, seen_depth = seen.index[0].to(self.device), seen.depth[0].to(self.device)
        return torch.isfinite(depth) & seen_at_depth(index, seen_depth, depth, self.config.view_tolerance), index

    # ---- reading -------------------------------------------------------------------------

    def readout(
        self,
        w2c: torch.Tensor,
        K: torch.Tensor,
        h: int,
        w: int,
        image_hw: tuple[int, int] | None = None,
        mapping: bool = False,
    ) -> Readout:
        """Rasterise the cloud at each target camera at full resolution and VAE-encode every frame.

        Args:
            w2c: ``[F, 4, 4]`` (or ``[4, 4]``) poses.
            K: ``[3, 3]`` or ``[F, 3, 3]`` intrinsics in pixels of ``image_hw = (H, W)``, or of the
                ``h x w`` grid when ``image_hw`` is None (then ``H, W = h, w`` times the VAE stride).
            h, w: latent grid; must be the VAE's grid of an ``H x W`` image.
            mapping: ignored: a per-pixel rasterisation has no cell mapping (``Readout.mapping`` None).

        Returns:
            :class:`~model.memory.base.Readout`: ``latent [F, C, h, w]`` (encoded renders, zero where not
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
        latent = torch.cat([self.vae.encode(frames_to_tensor(frame, self.vae.device)) for frame in views.rgb]).to(
            self.device
        )
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

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu", vae: VideoVAE | None = None
    ) -> RGBPointCloudMemory:
        """Read a cloud written by :meth:`save` (see :meth:`PointMemory.load`); it reads out through ``vae``."""
        memory = super().load(path, device)
        memory.vae = vae
        return memory
