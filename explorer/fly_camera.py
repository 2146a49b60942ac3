"""Keyboard + mouse fly camera (no Qt): held keys move it, mouse deltas turn it.

Default bindings (:class:`KeyBindings`; key names are ``QKeySequence(key).toString()`` text, e.g.
``"W"``, ``"Shift"``, ``"Ctrl"``, ``"Esc"``, ``"Space"``; matching ignores case):

============  =======  ==============================================================
action        key      effect
============  =======  ==============================================================
forward       W        move ahead on the ground plane (heading = yaw; pitch ignored)
back          S        move back on the ground plane
left / right  A / D    strafe on the ground plane
down / up     Q / E    move along world up (``-y``)
fast          Shift    while held: speed x4 (:data:`FAST_FACTOR`)
slow          Ctrl     while held: speed x0.25 (:data:`SLOW_FACTOR`); with Shift: x1
pause         Esc      UI: pause / release the mouse
reset         U        UI: back to the start pose (:meth:`FlyCamera.reset`)
generate_now  Space    UI: queue a segment from the motion so far, even below the threshold
step_forward  I        steps mode: one segment 0.5 m ahead (:func:`explorer.flight.step_segment`)
step_back     K        steps mode: one segment 0.5 m back
turn_left     J        steps mode: one segment turning 20 degrees left in place
turn_right    L        steps mode: one segment turning 20 degrees right in place
orbit_left    N        steps mode: one segment orbiting 20 degrees to the left about a point 2 m ahead
orbit_right   M        steps mode: one segment orbiting 20 degrees to the right
============  =======  ==============================================================

I/K/J/L follow Matrix-Game's keyboard camera (I/K up/down, J/L yaw) and sit under the right hand
while the left hand is on WASD; N/M are the two keys below them.

Only the motion actions (forward ... up) and the two modifiers are *held* state of
:class:`FlyCamera`; the others are triggers the UI dispatches itself (``press`` ignores them, except
``reset``, which resets the camera). Motion: the held directions are summed (opposite keys cancel)
and normalised, so a diagonal is as fast as a straight line: ``speed_mps x modifier`` metres per
second. Mouse look: ``dx`` pixels to the right turn right by ``dx x sensitivity`` degrees about world
up; ``dy`` pixels down tilt down; pitch is clamped to +-85 degrees; roll of the start pose is kept.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import StrEnum

import torch

from model.geometry.camera import invert_pose, rigid, validate_poses
from model.geometry.rotations import rot_x, rot_y, rot_z, yaw_pitch_roll

#: Speed factor while ``fast`` (Shift) is held.
FAST_FACTOR = 4.0
#: Speed factor while ``slow`` (Ctrl) is held.
SLOW_FACTOR = 0.25
#: Pitch limit in degrees (looking straight up/down makes yaw meaningless).
PITCH_LIMIT_DEG = 85.0
#: World up in the world frame (the first camera's frame, OpenCV axes).
WORLD_UP = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)


class Action(StrEnum):
    """Everything a key can be bound to."""

    FORWARD = "forward"
    BACK = "back"
    LEFT = "left"
    RIGHT = "right"
    DOWN = "down"
    UP = "up"
    FAST = "fast"
    SLOW = "slow"
    PAUSE = "pause"
    RESET = "reset"
    GENERATE_NOW = "generate_now"
    STEP_FORWARD = "step_forward"
    STEP_BACK = "step_back"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    ORBIT_LEFT = "orbit_left"
    ORBIT_RIGHT = "orbit_right"


#: Held actions that move the camera.
MOTION_ACTIONS = frozenset({Action.FORWARD, Action.BACK, Action.LEFT, Action.RIGHT, Action.DOWN, Action.UP})
#: Held actions that scale the speed.
MODIFIER_ACTIONS = frozenset({Action.FAST, Action.SLOW})
#: One-shot actions of the steps mode (each one a segment, see :func:`explorer.flight.step_segment`).
STEP_ACTIONS = frozenset(
    {Action.STEP_FORWARD, Action.STEP_BACK, Action.TURN_LEFT, Action.TURN_RIGHT, Action.ORBIT_LEFT, Action.ORBIT_RIGHT}
)
#: One-shot actions the UI handles.
TRIGGER_ACTIONS = frozenset({Action.PAUSE, Action.RESET, Action.GENERATE_NOW}) | STEP_ACTIONS


@dataclass
class KeyBindings:
    """Key name per action (``QKeySequence(key).toString()`` text; case-insensitive).

    Example:
        >>> KeyBindings().action_for("w")
        <Action.FORWARD: 'forward'>
    """

    forward: str = "W"
    back: str = "S"
    left: str = "A"
    right: str = "D"
    down: str = "Q"
    up: str = "E"
    fast: str = "Shift"
    slow: str = "Ctrl"
    pause: str = "Esc"
    reset: str = "U"
    generate_now: str = "Space"
    step_forward: str = "I"
    step_back: str = "K"
    turn_left: str = "J"
    turn_right: str = "L"
    orbit_left: str = "N"
    orbit_right: str = "M"

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for f in fields(self):
            key = getattr(self, f.name)
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"key binding for {f.name!r} must be a non-empty key name, got {key!r}")
            norm = _norm(key)
            if norm in seen:
                raise ValueError(f"key {key!r} is bound to both {seen[norm]!r} and {f.name!r}")
            seen[norm] = f.name

    def action_for(self, key: str) -> Action | None:
        """The action bound to ``key`` (a key name), or None."""
        norm = _norm(key)
        for f in fields(self):
            if _norm(getattr(self, f.name)) == norm:
                return Action(f.name)
        return None

    def key_for(self, action: Action | str) -> str:
        """The key bound to ``action``."""
        return getattr(self, Action(action).value)

    def to_dict(self) -> dict[str, str]:
        """``{action name: key name}`` for settings files."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> KeyBindings:
        """Bindings from :meth:`to_dict` output; missing actions keep their defaults.

        Raises:
            ValueError: unknown action names, non-string keys, or one key bound twice.
        """
        if not isinstance(data, dict):
            raise ValueError(f"key bindings: expected an object of action -> key, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"key bindings: unknown actions {unknown} (known: {sorted(names)})")
        return cls(**data)


def _norm(key: str) -> str:
    return key.strip().lower()


class FlyCamera:
    """A camera flown with held keys and mouse deltas.

    Its pose is float64 torch, like every pose from here to the memory: :attr:`w2c` goes as it is
    into :class:`~explorer.flight.FlightPath` and the generation queue.

    Args:
        start_w2c: ``[4, 4]`` start pose (numpy or torch), OpenCV axes.
        speed_mps: base speed in metres per second.
        sensitivity_deg_per_px: mouse-look degrees per pixel of mouse motion.

    Example:
        >>> cam = FlyCamera(np.eye(4))
        >>> cam.press(Action.FORWARD); cam.tick(1.0)
        True
        >>> cam.position.tolist()
        [0.0, 0.0, 1.0]
    """

    def __init__(self, start_w2c, speed_mps: float = 1.0, sensitivity_deg_per_px: float = 0.15) -> None:
        if not (math.isfinite(speed_mps) and speed_mps > 0):
            raise ValueError(f"speed_mps must be positive, got {speed_mps}")
        if not (math.isfinite(sensitivity_deg_per_px) and sensitivity_deg_per_px > 0):
            raise ValueError(f"sensitivity_deg_per_px must be positive, got {sensitivity_deg_per_px}")
        self.speed_mps = float(speed_mps)
        self.sensitivity_deg_per_px = float(sensitivity_deg_per_px)
        self._held: set[Action] = set()
        self.set_start(start_w2c)

    # ---- pose ------------------------------------------------------------------------------

    def set_start(self, start_w2c) -> None:
        """Make ``start_w2c`` the new start pose (what :meth:`reset` returns to) and go there."""
        start = validate_poses(torch.as_tensor(start_w2c, dtype=torch.float64), "start_w2c")
        if start.shape != (4, 4):
            raise ValueError(f"start_w2c: expected [4,4], got {list(start.shape)}")
        self._start_w2c = start.clone()
        self.reset()

    def set_pose(self, w2c) -> None:
        """Jump to ``w2c`` ``[4, 4]`` (e.g. the end of a step segment) without changing the start pose."""
        w2c = validate_poses(torch.as_tensor(w2c, dtype=torch.float64), "w2c")
        c2w = invert_pose(w2c)
        self._position = c2w[:3, 3].clone()
        self._yaw, self._pitch, self._roll = yaw_pitch_roll(c2w[:3, :3])
        self._exact_w2c = w2c.clone()  # returned as is until the camera moves (no round-off at rest)
        self._changed = True

    def reset(self) -> None:
        """Back to the start pose (held keys stay held)."""
        self.set_pose(self._start_w2c)

    @property
    def start_w2c(self) -> torch.Tensor:
        return self._start_w2c.clone()

    @property
    def c2w(self) -> torch.Tensor:
        """``[4, 4]`` float64 camera-to-world."""
        if self._exact_w2c is not None:
            return invert_pose(self._exact_w2c)
        return rigid(rot_y(self._yaw) @ rot_x(self._pitch) @ rot_z(self._roll), self._position)

    @property
    def w2c(self) -> torch.Tensor:
        """``[4, 4]`` float64 world-to-camera (OpenCV axes), as every model function takes it."""
        if self._exact_w2c is not None:
            return self._exact_w2c.clone()
        return invert_pose(self.c2w)

    @property
    def position(self) -> torch.Tensor:
        """``[3]`` float64 camera centre in world metres."""
        return self._position.clone()

    @property
    def yaw_deg(self) -> float:
        """Heading in degrees (0 = the world's +z, positive = turned right)."""
        return math.degrees(self._yaw)

    @property
    def pitch_deg(self) -> float:
        """Tilt in degrees (positive = looking up)."""
        return math.degrees(self._pitch)

    def heading_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward, right)`` unit vectors on the ground plane for the current yaw."""
        return ground_vectors(self._yaw)

    # ---- input -----------------------------------------------------------------------------

    def press(self, action: Action | str) -> None:
        """A key went down. Motion and modifier actions are held until :meth:`release`; ``reset``
        resets the camera; the other triggers are the UI's business and are ignored here."""
        action = Action(action)
        if action in MOTION_ACTIONS or action in MODIFIER_ACTIONS:
            self._held.add(action)
        elif action is Action.RESET:
            self.reset()

    def release(self, action: Action | str) -> None:
        """A key went up (releasing a key that is not held is fine)."""
        self._held.discard(Action(action))

    def clear_held(self) -> None:
        """Forget every held key (call on focus loss / window deactivation: no stuck keys)."""
        self._held.clear()

    @property
    def held(self) -> frozenset[Action]:
        return frozenset(self._held)

    @property
    def speed_factor(self) -> float:
        """Product of the held modifiers' factors (fast x4, slow x0.25, both x1)."""
        factor = 1.0
        if Action.FAST in self._held:
            factor *= FAST_FACTOR
        if Action.SLOW in self._held:
            factor *= SLOW_FACTOR
        return factor

    def look(self, dx_px: float, dy_px: float) -> None:
        """Mouse moved by ``(dx, dy)`` pixels (right / down positive): turn right / tilt down."""
        if dx_px == 0 and dy_px == 0:
            return
        step = math.radians(self.sensitivity_deg_per_px)
        limit = math.radians(PITCH_LIMIT_DEG)
        self._yaw = _wrap(self._yaw + dx_px * step)
        self._pitch = min(limit, max(-limit, self._pitch - dy_px * step))
        self._exact_w2c = None
        self._changed = True

    def velocity(self) -> torch.Tensor:
        """``[3]`` float64 world velocity in metres per second from the held keys."""
        forward, right = self.heading_vectors()
        held = self._held
        direction = (
            (Action.FORWARD in held) * forward
            - (Action.BACK in held) * forward
            + (Action.RIGHT in held) * right
            - (Action.LEFT in held) * right
            + (Action.UP in held) * WORLD_UP
            - (Action.DOWN in held) * WORLD_UP
        )
        norm = float(direction.norm())
        if norm < 1e-12:
            return torch.zeros(3, dtype=torch.float64)
        return direction / norm * self.speed_mps * self.speed_factor

    def tick(self, dt_s: float) -> bool:
        """Advance ``dt_s`` seconds of held-key motion.

        Returns:
            True when the pose changed since the previous tick (key motion now, or mouse look /
            reset / set_pose since the last tick).
        """
        if not (math.isfinite(dt_s) and dt_s >= 0):
            raise ValueError(f"dt_s must be a finite, non-negative number of seconds, got {dt_s}")
        displacement = self.velocity() * dt_s
        moved = bool((displacement != 0.0).any())
        if moved:
            self._position = self._position + displacement
            self._exact_w2c = None
        changed, self._changed = self._changed or moved, False
        return changed


def ground_vectors(yaw_rad: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(forward, right)`` float64 unit vectors ``[3]`` on the ground plane (``y = const``) for heading ``yaw_rad``."""
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    return torch.tensor([s, 0.0, c], dtype=torch.float64), torch.tensor([c, 0.0, -s], dtype=torch.float64)


def _wrap(angle_rad: float) -> float:
    """Angle in (-pi, pi]."""
    return math.atan2(math.sin(angle_rad), math.cos(angle_rad))
