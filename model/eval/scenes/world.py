"""Procedural rooms: seeded geometry and view-independent materials (see the package docstring)."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from model.geometry.camera import invert_pose
from model.geometry.trajectories import forward_dolly, look_around, orbit, yaw_pan

#: Vertical field of view of the bundled sample scene, degrees.
SAMPLE_FOV_Y_DEG = 55.0
#: Size of the bundled sample scene, pixels (width, height).
SAMPLE_SIZE = (1280, 704)
# Unit vector from surfaces towards the light (world axes, up is -y), and the shading weights.
LIGHT_DIR = np.array([0.35, -1.0, -0.45]) / np.linalg.norm([0.35, -1.0, -0.45])
AMBIENT, DIFFUSE = 0.55, 0.45
# Camera clearance the furniture keeps from the standard camera paths, metres.
_PATH_CLEARANCE_M = 0.5
# Pattern kinds understood by the fragment shader.
_CHECKER, _STRIPES, _TILES = 0, 1, 2
# Floats per vertex: rest position 3, normal 3, colour a 3, colour b 3, pattern 4.
_VERTEX_FLOATS = 16
# Half size of the sky box drawn around the camera for open skies, metres (inside model.geometry.camera.FAR_M).
SKY_BOX_HALF_M = 100.0


#: Kinds of second space a room can open onto (:attr:`SceneConfig.annex`).
ANNEXES = ("none", "room", "corridor")
#: Walls that can hold the doorway to the annex (the wall behind the start camera cannot).
ANNEX_WALLS = ("wall_x0", "wall_x1", "wall_z1")
# Thickness of the wall a doorway passes through, metres.
_WALL_THICKNESS_M = 0.15


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
    # a second space joined through a doorway: "none", "room" (a furnished room) or "corridor" (long, narrow)
    annex: str = "none"
    # the wall of the main room that holds the doorway: "wall_x0", "wall_x1" (sides) or "wall_z1" (the far wall)
    annex_wall: str = "wall_z1"

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
            raise ValueError(
                f"back_clearance {self.back_clearance} m must lie inside the room length {self.room_size[1]} m"
            )
        if self.annex not in ANNEXES:
            raise ValueError(f"annex must be one of {ANNEXES}, got {self.annex!r}")
        if self.annex_wall not in ANNEX_WALLS:
            raise ValueError(f"annex_wall must be one of {ANNEX_WALLS}, got {self.annex_wall!r}")


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
SKY_MATERIAL = Material((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), _CHECKER, 1.0, 0.0, 0.0)


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
        self.annex: Annex | None = None
        path = standard_path_centres()
        if not self._inside(path, margin=0.3).all():
            raise ValueError(
                f"room {config.room_size} m is too small for the standard camera paths (orbit 2 m, dolly 1 m)"
            )
        self.waves = _random_waves(rng)
        self.room_materials = _room_materials(rng, config.texture_scale)
        moving, self._motion = _moving_box(rng, self.room_lo, self.room_hi, config.texture_scale)
        swept = _swept_footprint(moving, self._motion)
        path_xz = path[:, [0, 2]]
        if config.moving_object and not (self._inside_xz(*swept) and _rect_free(*swept, [], path_xz)):
            raise ValueError(f"room {config.room_size} m is too small for the moving object beside the camera paths")
        self.moving = moving if config.moving_object else None
        # the annex draws from its own RNG, so rooms without one are exactly what they were before annexes existed
        self.annex = None if config.annex == "none" else _make_annex(config, self.room_lo, self.room_hi)
        keep_out = [swept] + ([self.annex.approach] if self.annex is not None else [])
        self.boxes = _place_furniture(rng, config, self.room_lo, self.room_hi, keep_out=keep_out, path_xz=path_xz)
        if self.annex is not None:
            self.boxes += self.annex.furniture
        self.static_vertices = self._static_vertices()
        no_vertices = np.zeros((0, _VERTEX_FLOATS), np.float32)
        self.moving_vertices = box_vertices(self.moving, inward=False) if self.moving is not None else no_vertices

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
        inside = np.all((points > self.room_lo + margin) & (points < self.room_hi - margin), axis=1)
        if self.annex is not None:
            for lo, hi in self.annex.spaces:
                inside |= np.all((points > lo + margin) & (points < hi - margin), axis=1)
        return inside

    def _inside_xz(self, lo_xz: np.ndarray, hi_xz: np.ndarray) -> bool:
        return bool(np.all(lo_xz > self.room_lo[[0, 2]]) and np.all(hi_xz < self.room_hi[[0, 2]]))

    def _static_vertices(self) -> np.ndarray:
        skip = {"ceiling"} if self.config.open_sky else set()
        door = self.annex.door if self.annex is not None else None
        room = _room_shell(self.room_lo, self.room_hi, self.room_materials, skip, door, self.config.annex_wall)
        if self.annex is not None:
            room += self.annex.shell(skip, self.room_materials[self.config.annex_wall], self.room_materials["floor"])
        furniture = [box_vertices(box, inward=False) for box in self.boxes]
        return np.concatenate(room + furniture).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Annexes: a second room or a corridor behind a doorway
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Doorway:
    """An opening in an axis-aligned wall.

    Attributes:
        axis: the wall's normal axis (0: x, 2: z). plane: the wall's coordinate on it, metres.
        side: +1 when the annex lies towards +axis from the wall, -1 towards -axis.
        along: the horizontal axis running along the wall (2 or 0). lo, hi: the opening along it, metres.
        top: y of the opening's top (up is -y); its bottom is the floor.
    """

    axis: int
    plane: float
    side: float
    along: int
    lo: float
    hi: float
    top: float


@dataclass(frozen=True)
class Annex:
    """A second space beyond a doorway of the main room (see :func:`_make_annex`).

    Attributes:
        door: the doorway. lo, hi: ``[3]`` interior bounds of the annex, metres.
        materials: its floor, ceiling and wall appearances (names as the main room's).
        furniture: boxes standing in it. approach: the floor rectangle ``(lo_xz, hi_xz)`` in front of
            the doorway in the main room that furniture leaves free.
        spaces: ``(lo, hi)`` boxes a camera may stand in besides the main room (the annex and the
            passage through the wall, the latter extended 1 m into both spaces).
    """

    door: Doorway
    lo: np.ndarray
    hi: np.ndarray
    materials: dict[str, Material]
    furniture: list[Box]
    approach: tuple[np.ndarray, np.ndarray]
    spaces: tuple[tuple[np.ndarray, np.ndarray], ...]

    def shell(self, skip: set[str], wall: Material, floor: Material) -> list[np.ndarray]:
        """Vertices of the annex's inward faces (the doorway cut into the face towards the main
        room; names in ``skip`` left out) and of the passage through the wall (``wall`` and ``floor``
        materials of the main room)."""
        d = self.door
        near_name = _face_name(d.axis, 0 if d.side > 0 else 1)
        door = Doorway(d.axis, d.plane + d.side * _WALL_THICKNESS_M, d.side, d.along, d.lo, d.hi, d.top)
        quads = _room_shell(self.lo, self.hi, self.materials, skip, door, near_name)
        a, n = d.along, d.axis
        inner, outer = d.plane, d.plane + d.side * _WALL_THICKNESS_M
        floor_y = self.hi[1]
        quads.append(_rect(a, d.lo, n, inner, outer, 1, d.top, floor_y, +1.0, wall))  # jamb at lo faces +along
        quads.append(_rect(a, d.hi, n, inner, outer, 1, d.top, floor_y, -1.0, wall))
        quads.append(_rect(1, d.top, a, d.lo, d.hi, n, inner, outer, +1.0, wall))  # lintel soffit faces down (+y)
        quads.append(_rect(1, floor_y, a, d.lo, d.hi, n, inner, outer, -1.0, floor))  # threshold faces up
        return quads


def _face_name(axis: int, side: int) -> str:
    """Name of the room face on ``axis`` at its min (``side`` 0) or max (1) bound, as in :func:`_box_faces`."""
    return {(0, 0): "wall_x0", (0, 1): "wall_x1", (1, 0): "ceiling", (1, 1): "floor"}.get((axis, side), f"wall_z{side}")


def _rect(axis: int, plane: float, a: int, a0: float, a1: float, b: int, b0: float, b1: float, sign: float, material):
    """Two triangles ``[6, 16]`` of the rectangle ``axis = plane``, ``a`` in ``[a0, a1]``, ``b`` in
    ``[b0, b1]``, normal ``sign`` along ``axis``."""
    corners = np.empty((4, 3))
    corners[:, axis] = plane
    corners[:, a] = [a0, a1, a1, a0]
    corners[:, b] = [b0, b0, b1, b1]
    normal = np.zeros(3)
    normal[axis] = sign
    return _quad_vertices(corners, normal, material)


def _room_shell(lo, hi, materials, skip: set[str], door: Doorway | None, door_face: str) -> list[np.ndarray]:
    """Vertices of a box room's inward faces; the face ``door_face`` gets the ``door`` opening
    (three panels: either side of it and above it)."""
    quads = []
    for name, corners, normal in _box_faces(lo, hi, inward=True):
        if name in skip:
            continue
        if door is None or name != door_face:
            quads.append(_quad_vertices(corners, normal, materials[name]))
            continue
        n, a, sign = door.axis, door.along, float(normal[door.axis])
        plane = lo[n] if name.endswith("0") else hi[n]
        for a0, a1, y0, y1 in ((lo[a], door.lo, lo[1], hi[1]), (door.hi, hi[a], lo[1], hi[1])):
            quads.append(_rect(n, plane, a, a0, a1, 1, y0, y1, sign, materials[name]))
        quads.append(_rect(n, plane, a, door.lo, door.hi, 1, lo[1], door.top, sign, materials[name]))
    return quads


def _make_annex(config: SceneConfig, room_lo: np.ndarray, room_hi: np.ndarray) -> Annex:
    """The annex of ``config`` (seeded by ``[seed, 3]``): a doorway of 0.9-1.6 m x 2.0-2.3 m in
    ``config.annex_wall`` at least 0.3 m from the corners, the wall 0.15 m thick, and beyond it a
    room of 3-5.5 x 3-5 m with 1-3 furniture pieces, or a corridor 1.4-2 m wide and 4-7 m long."""
    rng = np.random.default_rng([config.seed, 3])
    axis, side = (2, 1) if config.annex_wall == "wall_z1" else (0, int(config.annex_wall[-1]))
    along = 2 if axis == 0 else 0
    corridor = config.annex == "corridor"
    floor_y, ceiling_y = room_hi[1], room_lo[1]
    door_w = rng.uniform(0.9, 1.3) if corridor else rng.uniform(1.0, 1.6)
    door_h = min(rng.uniform(2.0, 2.3), floor_y - ceiling_y - 0.15)
    wall_lo, wall_hi = room_lo[along] + 0.3 + door_w / 2, room_hi[along] - 0.3 - door_w / 2
    centre = rng.uniform(wall_lo, wall_hi)
    width = rng.uniform(1.4, 2.0) if corridor else rng.uniform(3.0, 5.5)
    depth = rng.uniform(4.0, 7.0) if corridor else rng.uniform(3.0, 5.0)
    height = max(rng.uniform(2.3, 2.7) if corridor else rng.uniform(2.5, 3.2), door_h + 0.1)
    plane = room_hi[axis] if side else room_lo[axis]
    sign = 1.0 if side else -1.0
    door = Doorway(axis, float(plane), sign, along, centre - door_w / 2, centre + door_w / 2, floor_y - door_h)
    lo, hi = np.zeros(3), np.zeros(3)
    near, far = plane + sign * _WALL_THICKNESS_M, plane + sign * (_WALL_THICKNESS_M + depth)
    lo[axis], hi[axis] = min(near, far), max(near, far)
    lo[along], hi[along] = centre - width / 2, centre + width / 2
    lo[1], hi[1] = floor_y - height, floor_y
    materials = _room_materials(rng, config.texture_scale)
    passage_lo, passage_hi = np.zeros(3), np.zeros(3)
    passage_lo[axis], passage_hi[axis] = min(plane - sign, near + sign), max(plane - sign, near + sign)
    passage_lo[along], passage_hi[along] = door.lo, door.hi
    passage_lo[1], passage_hi[1] = door.top, floor_y
    approach = _floor_rect(axis, plane, -sign, 1.0, along, door.lo - 0.2, door.hi + 0.2)
    annex_approach = _floor_rect(axis, near, sign, 1.0, along, door.lo - 0.2, door.hi + 0.2)
    furniture: list[Box] = []
    if not corridor:
        taken = [annex_approach]
        for _ in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(["table", "shelf", "cube"]))
            material = _random_material(rng, config.texture_scale)
            for _ in range(50):
                lo_xz, hi_xz, parts = _FURNITURE[kind](rng, lo, hi)
                if _rect_free(lo_xz, hi_xz, taken, np.zeros((0, 2))):
                    taken.append((lo_xz, hi_xz))
                    furniture += [Box(p_lo, p_hi, material, kind) for p_lo, p_hi in parts]
                    break
    return Annex(door, lo, hi, materials, furniture, approach, ((lo, hi), (passage_lo, passage_hi)))


def _floor_rect(axis: int, plane: float, sign: float, depth: float, along: int, a0: float, a1: float):
    """Floor rectangle ``(lo_xz [2], hi_xz [2])`` reaching ``depth`` metres from ``plane`` towards
    ``sign`` along ``axis`` and spanning ``[a0, a1]`` along ``along``."""
    lo, hi = np.zeros(3), np.zeros(3)
    lo[axis], hi[axis] = min(plane, plane + sign * depth), max(plane, plane + sign * depth)
    lo[along], hi[along] = a0, a1
    return lo[[0, 2]], hi[[0, 2]]


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
        (0, 0): "wall_x0",
        (0, 1): "wall_x1",
        (1, 0): "ceiling",
        (1, 1): "floor",
        (2, 0): "wall_z0",
        (2, 1): "wall_z1",
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


def box_vertices(box: Box, inward: bool) -> np.ndarray:
    return np.concatenate([_quad_vertices(c, n, box.material) for _, c, n in _box_faces(box.lo, box.hi, inward)])


# --------------------------------------------------------------------------------------------
# Varied worlds for training and evaluation
# --------------------------------------------------------------------------------------------

#: Scene seeds from here up are held out from training (model cards record what a model trained on).
HELD_OUT_SEED = 5000


def world_config(seed: int) -> SceneConfig:
    """A varied, valid world for ``seed`` (seeded by ``[seed, 2]``; the room itself by ``seed``).

    Rooms of 5-9 x 5.5-10 x 2.5-3.6 m; 30 % a single room, 40 % with a second room and 30 % with a
    corridor behind a doorway in a side or the far wall; 25 % open-sky courtyards; half with a moving
    box; 2-9 furniture pieces; pattern scale 0.7-1.6; eye height 1.3-1.7 m. A draw whose furniture
    does not fit is retried with fewer pieces.
    """
    rng = np.random.default_rng([seed, 2])
    height = float(rng.uniform(2.5, 3.6))
    config = SceneConfig(
        seed=seed,
        room_size=(float(rng.uniform(5.0, 9.0)), float(rng.uniform(5.5, 10.0)), height),
        num_objects=int(rng.integers(2, 10)),
        moving_object=bool(rng.random() < 0.5),
        open_sky=bool(rng.random() < 0.25),
        texture_scale=float(rng.uniform(0.7, 1.6)),
        eye_height=float(min(rng.uniform(1.3, 1.7), height - 0.4)),
        back_clearance=float(rng.uniform(1.4, 2.0)),
        annex=str(rng.choice(ANNEXES, p=[0.3, 0.4, 0.3])),
        annex_wall=str(rng.choice(ANNEX_WALLS)),
    )
    for num_objects in range(config.num_objects, -1, -1):
        candidate = replace(config, num_objects=num_objects)
        try:
            ProceduralScene(candidate)
        except ValueError:
            continue
        return candidate
    return replace(config, num_objects=0, moving_object=False)
