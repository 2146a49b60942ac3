"""Procedural ground-truth rooms: exact RGB and metric z-depth from any camera, rendered offscreen.

A :class:`ProceduralScene` is a seeded room (floor, four walls, a ceiling or an open sky) with
furniture made of axis-aligned boxes (tables, shelves, cubes) and optionally one box that slides
on the floor as a smooth function of time. A :class:`SceneRenderer` draws it with moderngl on a
headless EGL context (Mesa llvmpipe on CPU machines) and returns ``(rgb, depth)``.

World frame: the start camera's frame (OpenCV axes, as everywhere, see :mod:`model.camera`).
:meth:`ProceduralScene.start_w2c` is the identity: the start camera stands at the origin looking
along +z at the far wall; world up is -y, so the floor is the plane ``y = eye_height`` and the
ceiling ``y = eye_height - room height``. The room leaves space for the standard camera paths of
:mod:`model.trajectories` from the start pose (orbit of radius 2 m up to 75 degrees, yaw pan, look
around, forward or backward dolly of 1 m).

Appearance is view-independent so that the same surface point has the same colour in every view:
colours are smooth functions of the surface point's position (soft checkers, stripes or tiles
times a low-frequency brightness wave, all seeded), shaded with a fixed directional light plus
ambient (Lambertian). Sky pixels (``open_sky``) have depth ``+inf`` and a colour that depends on the
viewing direction only. No antialiasing: GL samples every pixel at its centre ``(u + 0.5, v + 0.5)``.

Regenerate the bundled sample scene with::

    python -m model.scenes write-sample resources/sample_scene
"""

from __future__ import annotations

import argparse
import colorsys
import math
import sys
from dataclasses import asdict, dataclass

import moderngl
import numpy as np
import torch

from model.camera import gl_projection, intrinsics_from_fov, invert_pose, validate_intrinsics, validate_poses
from model.offscreen_gl import OffscreenGL
from model.trajectories import forward_dolly, look_around, orbit, yaw_pan

#: Vertical field of view of the bundled sample scene, degrees.
SAMPLE_FOV_Y_DEG = 55.0
#: Size of the bundled sample scene, pixels (width, height).
SAMPLE_SIZE = (1280, 704)
# Unit vector from surfaces towards the light (world axes, up is -y), and the shading weights.
_LIGHT_DIR = np.array([0.35, -1.0, -0.45]) / np.linalg.norm([0.35, -1.0, -0.45])
_AMBIENT, _DIFFUSE = 0.55, 0.45
# Camera clearance the furniture keeps from the standard camera paths, metres.
_PATH_CLEARANCE_M = 0.5
# Pattern kinds understood by the fragment shader.
_CHECKER, _STRIPES, _TILES = 0, 1, 2
# Floats per vertex: rest position 3, normal 3, colour a 3, colour b 3, pattern 4.
_VERTEX_FLOATS = 16
# Half size of the sky box drawn around the camera for open skies, metres (inside model.camera.FAR_M).
_SKY_BOX_HALF_M = 100.0


@dataclass(frozen=True)
class SceneConfig:
    """Parameters of a procedural room. Equal configs give identical scenes."""

    seed: int = 0  # seeds colours, patterns, the furniture layout and the moving object's path
    room_size: tuple[float, float, float] = (7.0, 8.0, 2.8)  # interior width (x), length (z), height (y), metres
    num_objects: int = 8  # furniture pieces (tables, shelves, cubes) standing on the floor
    moving_object: bool = False  # add one box sliding on the floor; the rest of the scene is unchanged
    open_sky: bool = False  # no ceiling: sky (depth +inf) above the walls
    texture_scale: float = 1.0  # multiplies every pattern period (base periods 0.25-0.8 m)
    eye_height: float = 1.5  # start camera height above the floor, metres
    back_clearance: float = 1.5  # distance from the start camera to the wall behind it, metres

    def __post_init__(self) -> None:
        object.__setattr__(self, "room_size", tuple(float(v) for v in self.room_size))
        if len(self.room_size) != 3 or not all(math.isfinite(v) and v > 0 for v in self.room_size):
            raise ValueError(f"room_size must be three positive lengths in metres, got {self.room_size}")
        if self.num_objects < 0:
            raise ValueError(f"num_objects must be >= 0, got {self.num_objects}")
        if not (math.isfinite(self.texture_scale) and self.texture_scale > 0):
            raise ValueError(f"texture_scale must be positive, got {self.texture_scale}")
        if not 0.2 < self.eye_height < self.room_size[2] - 0.2:
            raise ValueError(f"eye_height {self.eye_height} m must lie inside the room height {self.room_size[2]} m")
        if not 0.0 < self.back_clearance < self.room_size[1]:
            raise ValueError(f"back_clearance {self.back_clearance} m must lie inside the room length {self.room_size[1]} m")


#: Configuration of the bundled sample scene.
SAMPLE_CONFIG = SceneConfig(seed=7, moving_object=True, open_sky=True)


@dataclass(frozen=True)
class Material:
    """A procedural surface appearance.

    Attributes:
        colour_a, colour_b: ``[3]`` RGB in [0, 1], the two colours the pattern blends.
        kind: pattern, 0 soft checker, 1 soft stripes, 2 tiles (colour_a) with grout (colour_b).
        period: pattern period in metres.
        angle: pattern rotation within the surface plane, radians.
        wave: amplitude of the low-frequency brightness wave (0 = none).
    """

    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    kind: int
    period: float
    angle: float
    wave: float

    def row(self) -> np.ndarray:
        """``[10]`` float32: colour a, colour b, (kind, period, angle, wave), the per-vertex layout."""
        return np.array([*self.colour_a, *self.colour_b, self.kind, self.period, self.angle, self.wave], np.float32)


# The sky box's shader ignores its material.
_SKY_MATERIAL = Material((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), _CHECKER, 1.0, 0.0, 0.0)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box.

    Attributes:
        lo, hi: ``[3]`` float64 opposite corners in world metres (``lo < hi`` on every axis).
        material: its appearance.
        kind: what it belongs to: ``"table"``, ``"shelf"``, ``"cube"``, ``"moving"`` (or ``"sky"``).
    """

    lo: np.ndarray
    hi: np.ndarray
    material: Material
    kind: str


class ProceduralScene:
    """A seeded room: geometry and appearance as numpy arrays (no GL, no Qt).

    Attributes:
        config: the :class:`SceneConfig` it was built from.
        room_lo, room_hi: ``[3]`` float64 interior bounds in metres; ``room_hi[1]`` is the floor,
            ``room_lo[1]`` the ceiling (up is -y), ``room_hi[2]`` the far wall the start camera faces.
        room_materials: appearance of ``"floor"``, ``"ceiling"``, ``"wall_x0"``, ``"wall_x1"``,
            ``"wall_z0"`` (behind the start camera) and ``"wall_z1"`` (the far wall).
        boxes: static furniture boxes.
        moving: the moving box at its rest position (offset by :meth:`moving_offset`), or None.
        waves: ``[4, 4]`` float32 brightness waves, rows ``(k_x, k_y, k_z, phase)`` in rad/m and rad.
        static_vertices: ``[N, 16]`` float32 triangle-list vertices of the room and the furniture.
        moving_vertices: ``[M, 16]`` float32 vertices of the moving box at rest (``M = 0`` without).

    Example:
        >>> scene = ProceduralScene(SceneConfig(seed=1, num_objects=4))
        >>> bool(scene.is_free(np.zeros((1, 3)))[0])
        True
    """

    def __init__(self, config: SceneConfig = SceneConfig()) -> None:
        self.config = config
        rng = np.random.default_rng(config.seed)
        width, length, height = config.room_size
        self.room_lo = np.array([-width / 2, config.eye_height - height, -config.back_clearance])
        self.room_hi = np.array([width / 2, config.eye_height, length - config.back_clearance])
        path = standard_path_centres()
        if not self._inside(path, margin=0.3).all():
            raise ValueError(f"room {config.room_size} m is too small for the standard camera paths (orbit 2 m, dolly 1 m)")
        self.waves = _random_waves(rng)
        self.room_materials = _room_materials(rng, config.texture_scale)
        moving, self._motion = _moving_box(rng, self.room_lo, self.room_hi, config.texture_scale)
        swept = _swept_footprint(moving, self._motion)
        path_xz = path[:, [0, 2]]
        if config.moving_object and not (self._inside_xz(*swept) and _rect_free(*swept, [], path_xz)):
            raise ValueError(f"room {config.room_size} m is too small for the moving object beside the camera paths")
        self.moving = moving if config.moving_object else None
        self.boxes = _place_furniture(rng, config, self.room_lo, self.room_hi, keep_out=[swept], path_xz=path_xz)
        self.static_vertices = self._static_vertices()
        no_vertices = np.zeros((0, _VERTEX_FLOATS), np.float32)
        self.moving_vertices = _box_vertices(self.moving, inward=False) if self.moving is not None else no_vertices

    def start_w2c(self) -> np.ndarray:
        """``[4, 4]`` float64 start pose: the identity (eye height above the floor, looking along +z)."""
        return np.eye(4)

    def moving_offset(self, t: float) -> np.ndarray:
        """``[3]`` float64 displacement in metres of the moving box at time ``t`` seconds.

        ``x(t) = amplitude * sin(2 pi t / period)`` along world x: zero at ``t = 0``, smooth in ``t``.
        """
        amplitude, period = self._motion
        return np.array([amplitude * math.sin(2.0 * math.pi * t / period), 0.0, 0.0])

    def is_free(self, points: np.ndarray, margin: float = 0.3) -> np.ndarray:
        """Whether camera centres are inside the room and outside all static furniture.

        Args:
            points: ``[N, 3]`` world positions in metres.
            margin: required distance from walls, floor, ceiling and furniture, metres.

        Returns:
            ``[N]`` bool. The moving box is not considered.
        """
        points = np.asarray(points, dtype=np.float64)
        free = self._inside(points, margin)
        for box in self.boxes:
            free &= ~np.all((points > box.lo - margin) & (points < box.hi + margin), axis=1)
        return free

    def _inside(self, points: np.ndarray, margin: float) -> np.ndarray:
        return np.all((points > self.room_lo + margin) & (points < self.room_hi - margin), axis=1)

    def _inside_xz(self, lo_xz: np.ndarray, hi_xz: np.ndarray) -> bool:
        return bool(np.all(lo_xz > self.room_lo[[0, 2]]) and np.all(hi_xz < self.room_hi[[0, 2]]))

    def _static_vertices(self) -> np.ndarray:
        skip = {"ceiling"} if self.config.open_sky else set()
        faces = [f for f in _box_faces(self.room_lo, self.room_hi, inward=True) if f[0] not in skip]
        room = [_quad_vertices(c, n, self.room_materials[name]) for name, c, n in faces]
        furniture = [_box_vertices(box, inward=False) for box in self.boxes]
        return np.concatenate(room + furniture).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Scene generation (pure numpy)
# --------------------------------------------------------------------------------------------


def standard_path_centres() -> np.ndarray:
    """``[N, 3]`` camera centres (metres) of the standard paths from the identity start pose.

    Orbits of radius 2 m up to +-75 degrees, forward and backward dollies of 1 m (yaw pans and
    look-arounds stay at the origin). Scenes keep furniture clear of these positions.
    """
    paths = [orbit(16, 2.0, 75.0), orbit(16, 2.0, -75.0), forward_dolly(8, 1.0), forward_dolly(8, -1.0)]
    paths += [yaw_pan(2), look_around(2)]
    return invert_pose(torch.cat(paths))[:, :3, 3].numpy()


def _random_waves(rng: np.random.Generator) -> np.ndarray:
    """Four plane waves with wavelengths 1-4 m: rows ``(k_x, k_y, k_z, phase)``."""
    directions = rng.normal(size=(4, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    k = directions * (2.0 * np.pi / rng.uniform(1.0, 4.0, size=(4, 1)))
    return np.concatenate([k, rng.uniform(0.0, 2.0 * np.pi, size=(4, 1))], axis=1).astype(np.float32)


def _random_material(rng: np.random.Generator, scale: float, kind: int | None = None, period=(0.25, 0.8)) -> Material:
    """A material with a seeded hue, a contrasting second colour and a soft pattern."""
    hue, sat, val = rng.uniform(0.0, 1.0), rng.uniform(0.2, 0.6), rng.uniform(0.5, 0.85)
    colour_a = colorsys.hsv_to_rgb(hue, sat, val)
    colour_b = colorsys.hsv_to_rgb((hue + rng.uniform(-0.12, 0.12)) % 1.0, sat, val * rng.uniform(0.45, 0.7))
    return Material(
        colour_a=tuple(float(c) for c in colour_a),
        colour_b=tuple(float(c) for c in colour_b),
        kind=int(rng.choice([_CHECKER, _STRIPES, _TILES])) if kind is None else kind,
        period=float(rng.uniform(*period) * scale),
        angle=float(rng.choice([0.0, 0.5 * np.pi, rng.uniform(0.0, np.pi)])),
        wave=float(rng.uniform(0.1, 0.25)),
    )


def _room_materials(rng: np.random.Generator, scale: float) -> dict[str, Material]:
    return {
        "floor": _random_material(rng, scale, kind=int(rng.choice([_CHECKER, _TILES])), period=(0.5, 0.8)),
        "ceiling": _random_material(rng, scale, kind=_TILES, period=(0.6, 0.9)),
        **{name: _random_material(rng, scale) for name in ("wall_x0", "wall_x1", "wall_z0", "wall_z1")},
    }


def _floor_box(x0: float, z0: float, size: tuple[float, float, float], floor_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Corners of a box of ``size = (sx, sy, sz)`` metres standing on the floor with its min corner at (x0, z0)."""
    lo = np.array([x0, floor_y - size[1], z0])
    return lo, lo + np.asarray(size)


def _moving_box(rng: np.random.Generator, room_lo, room_hi, scale: float) -> tuple[Box, tuple[float, float]]:
    """The moving cube at rest and its ``(amplitude m, period s)``.

    Drawn from ``rng`` even when the config has no moving object, so the rest of the layout does
    not depend on that flag.
    """
    side = rng.uniform(0.4, 0.6)
    centre_x = rng.uniform(-0.6, 0.6)
    z0 = room_hi[2] - rng.uniform(1.6, 2.4)
    lo, hi = _floor_box(centre_x - side / 2, z0, (side, side, side), room_hi[1])
    motion = (float(rng.uniform(0.7, 1.1)), float(rng.uniform(3.0, 5.0)))
    return Box(lo, hi, _random_material(rng, scale, kind=_CHECKER, period=(0.15, 0.25)), "moving"), motion


def _swept_footprint(box: Box, motion: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Floor rectangle ``(lo_xz [2], hi_xz [2])`` the moving box covers over time."""
    amplitude = motion[0]
    return box.lo[[0, 2]] - [amplitude, 0.0], box.hi[[0, 2]] + [amplitude, 0.0]


def _place_furniture(rng: np.random.Generator, config: SceneConfig, room_lo, room_hi, keep_out, path_xz) -> list[Box]:
    """Rejection-sample ``config.num_objects`` pieces on the floor, clear of each other, of the
    ``keep_out`` floor rectangles ``(lo_xz, hi_xz)`` and of the camera centres ``path_xz [N, 2]``.

    Raises:
        ValueError: if a piece finds no free spot in 200 attempts.
    """
    taken = list(keep_out)
    boxes: list[Box] = []
    for index in range(config.num_objects):
        kind = str(rng.choice(["table", "shelf", "cube"]))
        material = _random_material(rng, config.texture_scale)
        for _ in range(200):
            lo_xz, hi_xz, parts = _FURNITURE[kind](rng, room_lo, room_hi)
            if _rect_free(lo_xz, hi_xz, taken, path_xz):
                taken.append((lo_xz, hi_xz))
                boxes += [Box(lo, hi, material, kind) for lo, hi in parts]
                break
        else:
            raise ValueError(
                f"seed {config.seed}: no room for furniture piece {index + 1} of {config.num_objects}; "
                "use fewer objects or a bigger room"
            )
    return boxes


def _rect_free(lo_xz, hi_xz, taken, path_xz: np.ndarray) -> bool:
    """Whether a floor rectangle keeps 0.1 m from taken rectangles and the path clearance from camera centres."""
    for t_lo, t_hi in taken:
        if np.all(lo_xz < t_hi + 0.1) and np.all(hi_xz > t_lo - 0.1):
            return False
    near = np.all((path_xz > lo_xz - _PATH_CLEARANCE_M) & (path_xz < hi_xz + _PATH_CLEARANCE_M), axis=1)
    return not near.any()


def _random_spot(rng: np.random.Generator, room_lo, room_hi, sx: float, sz: float) -> tuple[float, float]:
    """Min corner (x0, z0) of an ``sx x sz`` footprint anywhere on the floor, 0.05 m from the walls."""
    x0 = rng.uniform(room_lo[0] + 0.05, room_hi[0] - 0.05 - sx)
    z0 = rng.uniform(room_lo[2] + 0.05, room_hi[2] - 0.05 - sz)
    return x0, z0


def _table(rng, room_lo, room_hi):
    """A table: a 5 cm top on four 6 cm legs. Returns (footprint lo [2], hi [2], [(lo, hi), ...])."""
    sx, sz, height = rng.uniform(0.8, 1.4), rng.uniform(0.6, 0.9), rng.uniform(0.7, 0.78)
    x0, z0 = _random_spot(rng, room_lo, room_hi, sx, sz)
    floor = room_hi[1]
    parts = [_floor_box(x0, z0, (sx, 0.05, sz), floor - height + 0.05)]
    for lx in (x0 + 0.04, x0 + sx - 0.1):
        for lz in (z0 + 0.04, z0 + sz - 0.1):
            parts.append(_floor_box(lx, lz, (0.06, height - 0.05, 0.06), floor))
    return np.array([x0, z0]), np.array([x0 + sx, z0 + sz]), parts


def _shelf(rng, room_lo, room_hi):
    """A shelf against a seeded wall: back panel, two sides, 3-5 boards. Returns like :func:`_table`."""
    width, depth, height = rng.uniform(0.8, 1.4), 0.35, rng.uniform(1.4, 2.0)
    wall = int(rng.integers(0, 4))  # 0: x min, 1: x max, 2: z min, 3: z max
    along_x = wall >= 2
    sx, sz = (width, depth) if along_x else (depth, width)
    x0, z0 = _random_spot(rng, room_lo, room_hi, sx, sz)
    gap = 0.01
    if wall == 0:
        x0 = room_lo[0] + gap
    elif wall == 1:
        x0 = room_hi[0] - gap - sx
    elif wall == 2:
        z0 = room_lo[2] + gap
    else:
        z0 = room_hi[2] - gap - sz
    parts = _shelf_parts(np.array([x0, z0]), np.array([sx, sz]), height, wall, int(rng.integers(3, 6)), room_hi[1])
    return np.array([x0, z0]), np.array([x0 + sx, z0 + sz]), parts


def _shelf_parts(lo_xz, size_xz, height: float, wall: int, n_boards: int, floor: float):
    """Boxes of a shelf whose footprint is ``lo_xz + [0, size_xz]`` with its back against ``wall``."""
    along = 0 if wall >= 2 else 1  # footprint axis (0: x, 1: z) running along the wall
    across = 1 - along
    back_at_min = wall in (0, 2)
    panel, side = 0.02, 0.03

    def part(a0: float, a1: float, c0: float, c1: float, y_top: float, y_bottom: float):
        lo, hi = np.zeros(2), np.zeros(2)
        lo[along], hi[along] = lo_xz[along] + a0, lo_xz[along] + a1
        lo[across], hi[across] = lo_xz[across] + c0, lo_xz[across] + c1
        return np.array([lo[0], floor - y_top, lo[1]]), np.array([hi[0], floor - y_bottom, hi[1]])

    length, depth = size_xz[along], size_xz[across]
    back = (0.0, panel) if back_at_min else (depth - panel, depth)
    front = (panel, depth) if back_at_min else (0.0, depth - panel)
    parts = [part(0.0, length, *back, height, 0.0)]  # back panel
    parts += [part(0.0, side, *front, height, 0.0), part(length - side, length, *front, height, 0.0)]  # sides
    for level in np.linspace(0.05, height - 0.03, n_boards):
        parts.append(part(side, length - side, *front, level + 0.03, level))
    return parts


def _cube(rng, room_lo, room_hi):
    """A cube of 0.3-0.7 m, half of the time with a smaller cube on top. Returns like :func:`_table`."""
    side = rng.uniform(0.3, 0.7)
    x0, z0 = _random_spot(rng, room_lo, room_hi, side, side)
    floor = room_hi[1]
    parts = [_floor_box(x0, z0, (side, side, side), floor)]
    if rng.uniform() < 0.5:
        top = side * rng.uniform(0.4, 0.7)
        top_x0, top_z0 = x0 + rng.uniform(0.0, side - top), z0 + rng.uniform(0.0, side - top)
        parts.append(_floor_box(top_x0, top_z0, (top, top, top), floor - side))
    return np.array([x0, z0]), np.array([x0 + side, z0 + side]), parts


_FURNITURE = {"table": _table, "shelf": _shelf, "cube": _cube}


def _box_faces(lo: np.ndarray, hi: np.ndarray, inward: bool) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The six faces of a box as ``(name, corners [4, 3], unit normal [3])``, normals out (or in).

    Names follow the room: ``wall_x0/x1`` (x min/max), ``ceiling`` (y min), ``floor`` (y max),
    ``wall_z0/z1`` (z min/max).
    """
    names = {
        (0, 0): "wall_x0", (0, 1): "wall_x1", (1, 0): "ceiling", (1, 1): "floor", (2, 0): "wall_z0", (2, 1): "wall_z1"
    }
    faces = []
    for axis in range(3):
        b, c = [a for a in range(3) if a != axis]
        for side, plane in enumerate((lo[axis], hi[axis])):
            corners = np.empty((4, 3))
            corners[:, axis] = plane
            corners[:, b] = [lo[b], hi[b], hi[b], lo[b]]
            corners[:, c] = [lo[c], lo[c], hi[c], hi[c]]
            normal = np.zeros(3)
            normal[axis] = (1.0 if side else -1.0) * (-1.0 if inward else 1.0)
            faces.append((names[axis, side], corners, normal))
    return faces


def _quad_vertices(corners: np.ndarray, normal: np.ndarray, material: Material) -> np.ndarray:
    """Two triangles ``[6, 16]`` float32 for a quad with ``corners [4, 3]`` in order around it."""
    attrs = np.concatenate([normal, material.row()])
    return np.concatenate([corners[[0, 1, 2, 0, 2, 3]], np.tile(attrs, (6, 1))], axis=1).astype(np.float32)


def _box_vertices(box: Box, inward: bool) -> np.ndarray:
    return np.concatenate([_quad_vertices(c, n, box.material) for _, c, n in _box_faces(box.lo, box.hi, inward)])


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
            self._program["u_light"].value = tuple(_LIGHT_DIR)
            self._program["u_ambient"].value = _AMBIENT
            self._program["u_diffuse"].value = _DIFFUSE
            sky = Box(np.full(3, -_SKY_BOX_HALF_M), np.full(3, _SKY_BOX_HALF_M), _SKY_MATERIAL, "sky")
            self._sky_vbo, self._sky_vao = self._vertex_array(_box_vertices(sky, inward=True))
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

    def render_trajectory(self, scene: ProceduralScene, w2c, K, width: int, height: int, fps: float = 16.0, t0: float = 0.0):
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
                f"render_trajectory: expected w2c [T,4,4] and K [3,3] or [T,3,3], got {list(w2c.shape)}, {list(K.shape)}"
            )
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"render_trajectory: fps must be positive, got {fps}")
        K = K.expand(len(w2c), 3, 3)
        frames = [self.render(scene, w2c[i], K[i], width, height, t0 + i / fps) for i in range(len(w2c))]
        return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])

    def _draw(self, scene: ProceduralScene, w2c: np.ndarray, K: np.ndarray, camera_centre: np.ndarray, width, height, t):
        """Rasterise the scene (and the sky box for an open sky); returns rgb and depth (+inf: sky or nothing)."""
        fbo = self._framebuffer(width, height)
        self._upload(scene)
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)  # depth attachment 0 = nothing drawn (surfaces have z >= model.camera.NEAR_M)
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


# --------------------------------------------------------------------------------------------
# The bundled sample scene
# --------------------------------------------------------------------------------------------


def write_sample(out_dir, config: SceneConfig = SAMPLE_CONFIG, size=SAMPLE_SIZE, fov_y_deg=SAMPLE_FOV_Y_DEG) -> None:
    """Render the start view of ``config`` at ``size = (width, height)`` and write it as an RGB-D
    folder (``image.png``, ``depth.png`` in millimetres, ``camera.json``), each file atomically."""
    from model.rgbd_io import RGBDView, write_rgbd_folder

    width, height = size
    scene = ProceduralScene(config)
    K = intrinsics_from_fov(fov_y_deg, width, height).numpy()
    with SceneRenderer() as renderer:
        rgb, depth = renderer.render(scene, scene.start_w2c(), K, width, height, t=0.0)
    source = {"generator": "model.scenes", "config": asdict(config), "t": 0.0, "fov_y_deg": fov_y_deg}
    write_rgbd_folder(out_dir, RGBDView(image=rgb, depth=depth, K=K, w2c=scene.start_w2c(), source=source))


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.scenes", description="Procedural ground-truth scenes.")
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("write-sample", help="render the sample scene's start view into a folder")
    sample.add_argument("out_dir", help="output folder, e.g. resources/sample_scene")
    sample.add_argument("--seed", type=int, default=SAMPLE_CONFIG.seed, help="scene seed")
    sample.add_argument("--width", type=int, default=SAMPLE_SIZE[0], help="image width, pixels")
    sample.add_argument("--height", type=int, default=SAMPLE_SIZE[1], help="image height, pixels")
    sample.add_argument("--fov", type=float, default=SAMPLE_FOV_Y_DEG, help="vertical field of view, degrees")
    args = parser.parse_args(argv)
    config = SceneConfig(**{**asdict(SAMPLE_CONFIG), "seed": args.seed})
    try:
        write_sample(args.out_dir, config, (args.width, args.height), args.fov)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
