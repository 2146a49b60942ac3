"""The offscreen renderer of procedural rooms: exact RGB and metric z-depth (moderngl, EGL)."""

from __future__ import annotations

import math

import moderngl
import numpy as np
import torch

from model.eval.scenes.world import (
    AMBIENT,
    DIFFUSE,
    LIGHT_DIR,
    SKY_BOX_HALF_M,
    SKY_MATERIAL,
    Box,
    ProceduralScene,
    box_vertices,
)
from model.geometry.camera import gl_projection, invert_pose, validate_intrinsics, validate_poses
from model.render.offscreen_gl import OffscreenGL

# --------------------------------------------------------------------------------------------
# Rendering (moderngl, EGL)
# --------------------------------------------------------------------------------------------

_VERTEX_SHADER = """
#version 330
uniform mat4 u_w2c;
uniform mat4 u_proj;
uniform vec3 u_offset;  // moving box: its displacement; sky box: the camera centre
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_col_a;
in vec3 in_col_b;
in vec4 in_pattern;
out vec3 v_rest;
out vec3 v_cam;
flat out vec3 v_normal;
flat out vec3 v_col_a;
flat out vec3 v_col_b;
flat out vec4 v_pattern;
void main() {
    vec4 cam = u_w2c * vec4(in_pos + u_offset, 1.0);
    v_rest = in_pos;  // textures follow the object: they are functions of the rest position
    v_cam = cam.xyz;
    v_normal = in_normal;
    v_col_a = in_col_a;
    v_col_b = in_col_b;
    v_pattern = in_pattern;
    gl_Position = u_proj * cam;
}
"""

_FRAGMENT_SHADER = """
#version 330
const float PI = 3.14159265358979;
const float SHARPNESS = 4.0;  // soft pattern edges: a few centimetres wide, never pixel noise
uniform vec4 u_waves[4];
uniform vec3 u_light;
uniform float u_ambient;
uniform float u_diffuse;
uniform bool u_sky;
in vec3 v_rest;
in vec3 v_cam;
flat in vec3 v_normal;
flat in vec3 v_col_a;
flat in vec3 v_col_b;
flat in vec4 v_pattern;
layout(location = 0) out vec4 f_colour;
layout(location = 1) out float f_depth;

// In-plane coordinates of an axis-aligned face.
vec2 face_coords(vec3 p, vec3 n) {
    vec3 a = abs(n);
    if (a.x >= a.y && a.x >= a.z) return p.zy;
    if (a.y >= a.z) return p.xz;
    return p.xy;
}

// Blend weight of colour b: x = kind, y = period (m), z = angle (rad).
float pattern(vec2 uv, vec4 pat) {
    float c = cos(pat.z), s = sin(pat.z);
    vec2 r = mat2(c, s, -s, c) * uv / pat.y;
    int kind = int(pat.x + 0.5);
    if (kind == 0) return 0.5 + 0.5 * tanh(SHARPNESS * sin(PI * r.x) * sin(PI * r.y));
    if (kind == 1) return 0.5 + 0.5 * tanh(SHARPNESS * sin(PI * r.x));
    vec2 d = abs(fract(r) - 0.5);  // 0 at a tile centre, 0.5 on the grout lines
    return smoothstep(0.36, 0.47, max(d.x, d.y));
}

// Sky colour in a world direction: horizon-to-zenith gradient with soft bands (up is -y).
vec3 sky(vec3 direction) {
    vec3 d = normalize(direction);
    float elevation = -d.y;
    float bands = 1.0 + 0.06 * sin(3.0 * atan(d.x, d.z) + 9.0 * elevation);
    vec3 horizon = vec3(0.86, 0.90, 0.95), zenith = vec3(0.32, 0.52, 0.88);
    return clamp(mix(horizon, zenith, clamp(elevation / 0.7, 0.0, 1.0)) * bands, 0.0, 1.0);
}

void main() {
    if (u_sky) {  // the sky box is centred on the camera: v_rest is the viewing direction
        f_colour = vec4(sky(v_rest), 1.0);
        f_depth = 0.0;  // read back as +inf
        return;
    }
    float wave = 0.0;
    for (int i = 0; i < 4; ++i) wave += 0.25 * sin(dot(u_waves[i].xyz, v_rest) + u_waves[i].w);
    vec3 albedo = mix(v_col_a, v_col_b, pattern(face_coords(v_rest, v_normal), v_pattern)) * (1.0 + v_pattern.w * wave);
    float shade = u_ambient + u_diffuse * max(dot(v_normal, u_light), 0.0);
    f_colour = vec4(clamp(albedo * shade, 0.0, 1.0), 1.0);
    f_depth = v_cam.z;  // exact metric z-depth, not the non-linear depth buffer
}
"""


class SceneRenderer(OffscreenGL):
    """Offscreen renderer owning one moderngl EGL context. Reusable; not thread-safe.

    Use as a context manager or call :meth:`close`.

    Example:
        >>> with SceneRenderer() as renderer:  # doctest: +SKIP
        ...     scene = ProceduralScene(SceneConfig(seed=3))
        ...     K = intrinsics_from_fov(55.0, 640, 352).numpy()
        ...     rgb, depth = renderer.render(scene, scene.start_w2c(), K, 640, 352)
    """

    COLOR_ATTACHMENTS = ((4, "f1"), (1, "f4"))  # RGB, camera-space z in metres

    def __init__(self) -> None:
        super().__init__()
        with self._ctx:
            self._program = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
            self._program["u_light"].value = tuple(LIGHT_DIR)
            self._program["u_ambient"].value = AMBIENT
            self._program["u_diffuse"].value = DIFFUSE
            sky = Box(np.full(3, -SKY_BOX_HALF_M), np.full(3, SKY_BOX_HALF_M), SKY_MATERIAL, "sky")
            self._sky_vbo, self._sky_vao = self._vertex_array(box_vertices(sky, inward=True))
        self._scene: ProceduralScene | None = None
        self._vaos: list[tuple[moderngl.VertexArray, moderngl.Buffer, bool]] = []

    def _release_gl(self) -> None:
        self._release_scene()
        self._sky_vao.release()
        self._sky_vbo.release()
        self._program.release()

    def render(self, scene: ProceduralScene, w2c, K, width: int, height: int, t: float = 0.0):
        """Render one view.

        Args:
            scene: the room.
            w2c: ``[4, 4]`` world-to-camera pose (numpy or torch).
            K: ``[3, 3]`` intrinsics in pixels of the ``width x height`` image (numpy or torch).
            width, height: image size in pixels.
            t: time in seconds (moves the moving box, if any).

        Returns:
            rgb: ``[height, width, 3]`` uint8.
            depth: ``[height, width]`` float32 z-depth in metres, ``+inf`` where the sky is seen.
        """
        if self._ctx is None:
            raise ValueError("SceneRenderer is closed")
        w2c = validate_poses(torch.as_tensor(w2c, dtype=torch.float64), "w2c")
        K = validate_intrinsics(torch.as_tensor(K, dtype=torch.float64), "K")
        if w2c.shape != (4, 4) or K.shape != (3, 3):
            raise ValueError(f"render: expected w2c [4,4] and K [3,3], got {list(w2c.shape)} and {list(K.shape)}")
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"render: image size must be positive, got {width}x{height}")
        if not math.isfinite(t):
            raise ValueError(f"render: t must be finite, got {t}")
        camera_centre = invert_pose(w2c)[:3, 3].numpy()
        with self._ctx:  # make this context current: another renderer may exist in the process
            return self._draw(scene, w2c.numpy(), K.numpy(), camera_centre, int(width), int(height), float(t))

    def render_trajectory(
        self, scene: ProceduralScene, w2c, K, width: int, height: int, fps: float = 16.0, t0: float = 0.0
    ):
        """Render frames ``i = 0..T-1`` at times ``t0 + i / fps`` seconds.

        Args:
            w2c: ``[T, 4, 4]`` poses. K: ``[3, 3]`` or ``[T, 3, 3]`` intrinsics in pixels.

        Returns:
            rgb ``[T, height, width, 3]`` uint8 and depth ``[T, height, width]`` float32 metres (+inf: sky).
        """
        w2c = torch.as_tensor(w2c, dtype=torch.float64)
        K = torch.as_tensor(K, dtype=torch.float64)
        if w2c.ndim != 3 or len(w2c) == 0 or K.shape not in ((3, 3), (len(w2c), 3, 3)):
            raise ValueError(
                f"render_trajectory: expected w2c [T,4,4] and K [3,3] or [T,3,3], got {list(w2c.shape)}, "
                f"{list(K.shape)}"
            )
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"render_trajectory: fps must be positive, got {fps}")
        K = K.expand(len(w2c), 3, 3)
        frames = [self.render(scene, w2c[i], K[i], width, height, t0 + i / fps) for i in range(len(w2c))]
        return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])

    def _draw(
        self, scene: ProceduralScene, w2c: np.ndarray, K: np.ndarray, camera_centre: np.ndarray, width, height, t
    ):
        """Rasterise the scene (and the sky box for an open sky); returns rgb and depth (+inf: sky or nothing)."""
        fbo = self._framebuffer(width, height)
        self._upload(scene)
        fbo.use()
        fbo.clear(
            0.0, 0.0, 0.0, 0.0, depth=1.0
        )  # depth attachment 0 = nothing drawn (surfaces have z >= model.geometry.camera.NEAR_M)
        self._ctx.enable(moderngl.DEPTH_TEST)
        self._ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        self._program["u_w2c"].write(w2c.T.astype(np.float32).tobytes())  # GL matrices are column-major
        self._program["u_proj"].write(gl_projection(K, width, height).T.astype(np.float32).tobytes())
        self._program["u_waves"].write(scene.waves.astype(np.float32).tobytes())
        self._program["u_sky"].value = False
        for vao, _, moving in self._vaos:
            self._program["u_offset"].value = tuple(scene.moving_offset(t)) if moving else (0.0, 0.0, 0.0)
            vao.render(moderngl.TRIANGLES)
        if scene.config.open_sky:
            self._program["u_sky"].value = True
            self._program["u_offset"].value = tuple(camera_centre)
            self._sky_vao.render(moderngl.TRIANGLES)
        rgb = np.frombuffer(fbo.read(components=3, attachment=0), np.uint8).reshape(height, width, 3)
        depth = np.frombuffer(fbo.read(components=1, attachment=1, dtype="f4"), np.float32).reshape(height, width)
        rgb, depth = rgb[::-1].copy(), depth[::-1].copy()  # GL rows start at the bottom
        depth[depth <= 0] = np.inf
        return rgb, depth

    def _upload(self, scene: ProceduralScene) -> None:
        """Upload the scene's vertices (cached for the last scene rendered)."""
        if scene is self._scene:
            return
        self._release_scene()
        for vertices, moving in ((scene.static_vertices, False), (scene.moving_vertices, True)):
            if len(vertices):
                vbo, vao = self._vertex_array(vertices)
                self._vaos.append((vao, vbo, moving))
        self._scene = scene

    def _vertex_array(self, vertices: np.ndarray) -> tuple[moderngl.Buffer, moderngl.VertexArray]:
        """Upload ``[N, 16]`` float32 vertices (see :class:`ProceduralScene`) for the shader program."""
        vbo = self._ctx.buffer(np.ascontiguousarray(vertices, dtype=np.float32).tobytes())
        attributes = ("in_pos", "in_normal", "in_col_a", "in_col_b", "in_pattern")
        return vbo, self._ctx.vertex_array(self._program, [(vbo, "3f 3f 3f 3f 4f", *attributes)])

    def _release_scene(self) -> None:
        for vao, vbo, _ in self._vaos:
            vao.release()
            vbo.release()
        self._vaos = []
        self._scene = None
