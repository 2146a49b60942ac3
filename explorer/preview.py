"""Instant preview of the latent memory at any camera: z-buffered point splats, offscreen (moderngl EGL).

While the model is busy, the explorer shows what the memory already knows at the current camera:
every memory point is drawn as a square splat with its display colour, nearest point wins (depth
test). Nothing is filled in: where no point lands the preview shows a **dark checker** (8 px
squares of grey 22 and 38, :func:`hole_pattern`), so holes read as holes and are never confused
with dark content.

Splat size (the latent cell footprint): a memory point summarises one latent cell, i.e. a square
of ``stride`` pixels of the frame it was written from, so its world size is
``footprint_m = stride * z_write / f_write`` metres (``z_write`` its depth in the writing camera,
``f_write`` that camera's focal length in pixels, see :func:`cell_footprints`). At the preview camera
it covers ``f_preview * footprint_m / z`` pixels; splats are drawn :data:`SPLAT_OVERLAP` times that
(slanted surfaces and rounding leave no cracks), at least 1 px and at most :data:`MAX_POINT_PX`.
Points without a known footprint (``footprint_m`` <= 0 or not given) get the angular size of one
latent cell, ``f_preview * cell_angle_rad`` pixels (``cell_angle_rad = stride / f_generation``).

**The preview shows what the model is given.** For the latent memory (points with footprint axes,
:mod:`model.memory.footprint`) the preview covers exactly the cells its readout fills at the
preview camera: the same z-buffer (:func:`model.memory.latent.zbuffer_project`) on the latent grid
of that camera (cells of ``cell_angle_rad``). A hole in the readout is a hole in the preview; in a
filled cell the splats are drawn, and pixels they miss take the colour of the point the readout
shows there (the model is given that point's latent for the whole cell).
:attr:`MemoryPreviewRenderer.last_readout` keeps that grid's coverage.

Software GL (Mesa llvmpipe on CPU machines) spends most of a frame on vertex processing, which is
single-threaded there, so each render draws only the points inside the view frustum (culled on the
CPU, drawn through an index buffer), and at most ``max_draw_points`` of them: beyond that every
``k``-th visible point is drawn with splats ``sqrt(k)`` times larger (a level of detail that keeps
the preview inside its latency budget; ``max_draw_points=None`` draws everything).
``benchmarks/preview.py`` measures it.

The GL projection is :func:`model.geometry.camera.gl_projection` (the project's one OpenCV -> OpenGL
conversion). Several GL contexts may live in one process (the scene renderer, Qt): every GL call
runs inside ``with self._ctx:``. A renderer is not thread-safe; use it from one thread at a time.
"""

from __future__ import annotations

import moderngl
import numpy as np
import torch

from model.geometry.camera import FAR_M, NEAR_M, gl_projection, scale_intrinsics, validate_intrinsics, validate_poses
from model.memory.base import MemoryConfig
from model.memory.latent import zbuffer_project
from model.render.offscreen_gl import OffscreenGL

#: Splats are drawn this many times their projected cell footprint.
SPLAT_OVERLAP = 1.25
#: Largest splat in pixels (very close points would otherwise cover the whole view).
MAX_POINT_PX = 64.0
#: Default level-of-detail cap on the points drawn per preview frame (see the module docstring).
DEFAULT_MAX_DRAW_POINTS = 150_000
#: Hole checker: square size in pixels and the two grey levels.
CHECKER_PX = 8
CHECKER_GREYS = (22, 38)

_VERTEX_SHADER = """
#version 330
uniform mat4 u_w2c;
uniform mat4 u_proj;
uniform float u_focal;
uniform float u_cell_angle;
uniform float u_overlap;
uniform float u_max_px;
uniform float u_lod;
in vec3 in_pos;
in vec3 in_colour;
in float in_footprint;
out vec3 v_colour;
void main() {
    vec4 cam = u_w2c * vec4(in_pos, 1.0);
    gl_Position = u_proj * cam;
    float size = in_footprint > 0.0 ? u_focal * in_footprint / max(cam.z, 1e-6) : u_focal * u_cell_angle;
    gl_PointSize = clamp(u_overlap * u_lod * size, 1.0, u_max_px);
    v_colour = in_colour;
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_colour;
out vec4 f_colour;
void main() {
    f_colour = vec4(v_colour, 1.0);
}
"""


def hole_pattern(height: int, width: int) -> np.ndarray:
    """``[height, width, 3]`` uint8 dark checker shown where the memory has nothing."""
    rows = (np.arange(height) // CHECKER_PX)[:, None]
    cols = (np.arange(width) // CHECKER_PX)[None, :]
    grey = np.where((rows + cols) % 2 == 0, CHECKER_GREYS[0], CHECKER_GREYS[1]).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def cell_footprints(
    positions, frames, poses_by_frame: dict[int, np.ndarray], focal_px: float, stride_px: int
) -> np.ndarray:
    """World size in metres of each point's latent cell, from the camera that wrote it.

    Args:
        positions: ``[N, 3]`` world metres. frames: ``[N]`` global frame id of the writing frame.
        poses_by_frame: frame id -> ``[4, 4]`` w2c of the writing camera.
        focal_px: focal length (pixels) of the generated frames. stride_px: pixels per latent cell.

    Returns:
        ``[N]`` float32 ``stride * z_write / focal``; 0 where the writing pose is unknown.
    """
    positions = np.asarray(positions, dtype=np.float64)
    frames = np.asarray(frames)
    out = np.zeros(len(positions), np.float32)
    for frame_id in np.unique(frames):
        pose = poses_by_frame.get(int(frame_id))
        if pose is None:
            continue
        pose = np.asarray(pose, dtype=np.float64)
        sel = frames == frame_id
        z = positions[sel] @ pose[2, :3] + pose[2, 3]
        out[sel] = np.maximum(stride_px * z / focal_px, 0.0)
    return out


class MemoryPreviewRenderer(OffscreenGL):
    """Offscreen point-splat renderer owning one moderngl EGL context.

    Args:
        cell_angle_rad: angular size of one latent cell (``stride / f`` of the generated frames),
            the splat size of points without a footprint.
        max_draw_points: level-of-detail cap on the points drawn per frame (None: no cap).

    Example:
        >>> with MemoryPreviewRenderer() as preview:  # doctest: +SKIP
        ...     preview.set_points(memory.positions.numpy(), memory.colors.numpy())
        ...     rgb = preview.render(camera.w2c, K, 640, 352)
    """

    def __init__(
        self, cell_angle_rad: float = 16.0 / 1100.0, max_draw_points: int | None = DEFAULT_MAX_DRAW_POINTS
    ) -> None:
        if not cell_angle_rad > 0:
            raise ValueError(f"cell_angle_rad must be positive, got {cell_angle_rad}")
        if max_draw_points is not None and max_draw_points < 1:
            raise ValueError(f"max_draw_points must be >= 1 or None, got {max_draw_points}")
        self.cell_angle_rad = float(cell_angle_rad)
        self.max_draw_points = max_draw_points
        self._positions = np.zeros((3, 0), np.float32)
        self._ibo: moderngl.Buffer | None = None
        #: Points drawn by the last render (after culling and level of detail).
        self.last_drawn = 0
        super().__init__()
        with self._ctx:
            self._program = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self._vbo: moderngl.Buffer | None = None
        self._vao: moderngl.VertexArray | None = None
        self._count = 0
        self._holes: dict[tuple[int, int], np.ndarray] = {}
        #: ``[H, W]`` bool of the last render: True where some point was drawn.
        self.last_coverage: np.ndarray | None = None
        #: ``[h, w]`` bool of the last render: the latent grid's cells the memory's readout fills
        #: (None without footprint axes).
        self.last_readout: np.ndarray | None = None
        self._points_t: torch.Tensor | None = None  # [N, 3] float32 positions for the readout's z-buffer
        self._axes: torch.Tensor | None = None  # [N, 2, 3] float32 footprint half-axes
        self._colors = np.zeros((0, 3), np.uint8)

    @property
    def point_count(self) -> int:
        return self._count

    def _release_gl(self) -> None:
        self._release_points()
        self._program.release()

    def set_points(self, positions, colors, footprint_m=None, axes=None) -> None:
        """Upload the memory's points (call again whenever the memory changes).

        Args:
            positions: ``[N, 3]`` world metres (numpy or torch). colors: ``[N, 3]`` uint8 RGB.
            footprint_m: optional ``[N]`` (or scalar) world size of each point's latent cell in metres
                (:func:`cell_footprints`); <= 0 or None: one latent cell's angular size.
            axes: optional ``[N, 2, 3]`` footprint half-axes of a latent memory's points (metres):
                the preview then shows only what the memory's readout fills (see the module docstring).
        """
        self._check_open()
        positions = np.ascontiguousarray(_numpy(positions), dtype=np.float32)
        colors = _numpy(colors)
        n = len(positions)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise ValueError(f"positions: expected [N,3], got {list(positions.shape)}")
        if colors.shape != (n, 3) or colors.dtype != np.uint8:
            raise ValueError(f"colors: expected uint8 [{n},3], got {colors.dtype} {list(colors.shape)}")
        if not np.isfinite(positions).all():
            raise ValueError("positions contain NaN or Inf")
        if axes is not None:
            axes = torch.as_tensor(_numpy(axes), dtype=torch.float32)
            if axes.shape != (n, 2, 3) or not torch.isfinite(axes).all():
                raise ValueError(f"axes: expected finite [{n},2,3], got {list(axes.shape)}")
        footprint = (
            np.zeros(n, np.float32)
            if footprint_m is None
            else np.broadcast_to(np.asarray(_numpy(footprint_m), np.float32), (n,))
        )
        data = np.empty((n, 7), np.float32)
        data[:, :3] = positions
        data[:, 3:6] = colors.astype(np.float32) / 255.0
        data[:, 6] = footprint
        with self._ctx:
            self._release_points()
            self._count = n
            self._positions = np.ascontiguousarray(positions.T)
            if n:
                self._vbo = self._ctx.buffer(data.tobytes())
                self._ibo = self._ctx.buffer(reserve=4 * n)
                self._vao = self._ctx.vertex_array(
                    self._program,
                    [(self._vbo, "3f 3f 1f", "in_pos", "in_colour", "in_footprint")],
                    index_buffer=self._ibo,
                    index_element_size=4,
                )
        self._points_t = None if axes is None else torch.from_numpy(positions.copy())
        self._axes, self._colors = axes, colors

    def render(self, w2c, K, width: int, height: int) -> np.ndarray:
        """The memory seen from ``w2c`` ``[4, 4]`` with pixel intrinsics ``K`` ``[3, 3]`` of a ``width x height`` image.

        Returns:
            ``[height, width, 3]`` uint8 RGB; holes show :func:`hole_pattern`. :attr:`last_coverage`
            holds where points were drawn.
        """
        self._check_open()
        w2c = validate_poses(torch.as_tensor(w2c, dtype=torch.float64), "w2c")
        K = validate_intrinsics(torch.as_tensor(K, dtype=torch.float64), "K")
        if w2c.shape != (4, 4) or K.shape != (3, 3):
            raise ValueError(f"render: expected w2c [4,4] and K [3,3], got {list(w2c.shape)} and {list(K.shape)}")
        width, height = int(width), int(height)
        if width <= 0 or height <= 0:
            raise ValueError(f"render: image size must be positive, got {width}x{height}")
        K_np = K.numpy()
        drawn, lod = self._visible(w2c.numpy(), K_np, width, height)
        self.last_drawn = len(drawn)
        with self._ctx:  # make this context current: other GL contexts may exist in the process
            fbo = self._framebuffer(width, height)
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            if len(drawn):
                self._ibo.write(drawn)
                self._ctx.enable(moderngl.DEPTH_TEST | moderngl.PROGRAM_POINT_SIZE)
                self._ctx.disable(moderngl.BLEND | moderngl.CULL_FACE)
                self._program["u_w2c"].write(w2c.numpy().T.astype(np.float32).tobytes())  # column-major
                self._program["u_proj"].write(
                    gl_projection(K_np, width, height, NEAR_M, FAR_M).T.astype(np.float32).tobytes()
                )
                self._program["u_focal"].value = float(0.5 * (K_np[0, 0] + K_np[1, 1]))
                self._program["u_cell_angle"].value = self.cell_angle_rad
                self._program["u_overlap"].value = SPLAT_OVERLAP
                self._program["u_max_px"].value = MAX_POINT_PX
                self._program["u_lod"].value = lod
                self._vao.render(moderngl.POINTS, vertices=len(drawn))
            rgba = np.frombuffer(fbo.read(components=4, attachment=0), np.uint8).reshape(height, width, 4)[::-1]
        covered = rgba[:, :, 3] > 0
        colours = rgba[:, :, :3]
        self.last_readout = None
        if self._axes is not None:  # exactly the readout's cells: splats inside, the cell's point elsewhere
            index = self._readout_index(w2c, K, width, height)
            self.last_readout = index >= 0
            h, w = index.shape
            per_pixel = index[(np.arange(height) * h // height)[:, None], (np.arange(width) * w // width)[None, :]]
            filled = per_pixel >= 0
            colours = np.where((filled & ~covered)[:, :, None], self._colors[per_pixel.clip(min=0)], colours)
            covered = filled
        holes = self._hole_image(height, width)
        out = np.where(covered[:, :, None], colours, holes)
        self.last_coverage = covered
        return out

    def readout_grid(self, K: torch.Tensor, width: int, height: int) -> tuple[int, int]:
        """The latent grid ``(h, w)`` of a ``width x height`` preview: cells of ``cell_angle_rad``."""
        cell_px = float(0.5 * (K[0, 0] + K[1, 1])) * self.cell_angle_rad
        return max(1, round(height / cell_px)), max(1, round(width / cell_px))

    def _readout_index(self, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int) -> np.ndarray:
        """``[h, w]`` int64: the point the memory's readout shows in each cell at this camera, -1 where
        none (:meth:`readout_grid`)."""
        h, w = self.readout_grid(K, width, height)
        K_grid = scale_intrinsics(K, (height, width), (h, w))
        index, _ = zbuffer_project(
            self._points_t, w2c[None], K_grid, h, w, MemoryConfig().near, MemoryConfig().depth_bin, axes=self._axes
        )
        return index[0].numpy()

    def _visible(self, w2c: np.ndarray, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float]:
        """Indices (uint32) of the points to draw and the splat scale of the level of detail."""
        if not self._count:
            return np.zeros(0, np.uint32), 1.0
        x, y, z = self._positions  # [3, N] contiguous rows: a few vector ops, no BLAS threads
        r = w2c.astype(np.float32)
        cz = r[2, 0] * x + r[2, 1] * y + r[2, 2] * z + r[2, 3]
        cu = (r[0, 0] * x + r[0, 1] * y + r[0, 2] * z + r[0, 3]) * np.float32(K[0, 0]) + np.float32(K[0, 2]) * cz
        cv = (r[1, 0] * x + r[1, 1] * y + r[1, 2] * z + r[1, 3]) * np.float32(K[1, 1]) + np.float32(K[1, 2]) * cz
        margin = np.float32(MAX_POINT_PX / 2)  # a splat centred just outside can still reach in
        inside = (cz > NEAR_M) & (cz < FAR_M)
        inside &= (cu > -margin * cz) & (cu < (width + margin) * cz)
        inside &= (cv > -margin * cz) & (cv < (height + margin) * cz)
        index = np.flatnonzero(inside).astype(np.uint32)
        if self.max_draw_points is not None and len(index) > self.max_draw_points:
            k = -(-len(index) // self.max_draw_points)
            return np.ascontiguousarray(index[::k]), float(np.sqrt(k))
        return index, 1.0

    def _hole_image(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._holes:
            self._holes = {key: hole_pattern(height, width)}
        return self._holes[key]

    def _release_points(self) -> None:
        if self._vao is not None:
            self._vao.release()
            self._vbo.release()
            self._ibo.release()
        self._vao = self._vbo = self._ibo = None
        self._positions = np.zeros((3, 0), np.float32)
        self._points_t = self._axes = None
        self._count = 0

    def _check_open(self) -> None:
        if self._ctx is None:
            raise ValueError("MemoryPreviewRenderer is closed")


def _numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)
