"""Turning camera motion into generation segments.

Two ways of driving the model:

* **Flying** (:class:`FlightPath`): the UI records ``(time_s, w2c)`` samples while the user flies.
  When enough motion has accumulated since the end of the last generated segment
  (:meth:`FlightPath.ready`; default :data:`DEFAULT_THRESHOLD`: >= 0.4 m of travelled path **or**
  >= 15 degrees of accumulated rotation) :meth:`FlightPath.take_segment` resamples the flown path into
  one segment of ``n_frames`` poses that starts **exactly** at the last generated pose and ends
  exactly at the current pose. Resampling is uniform in *motion* (path length in units of the
  translation threshold plus rotation in units of the rotation threshold), so pauses in the flight
  do not become frozen frames; with no motion at all it falls back to uniform time. Between two
  samples the camera centre is interpolated linearly and the rotation by quaternion slerp.
* **Steps** (:func:`step_segment`): one key = one segment (forward / back, turn, orbit), linear in
  the step parameter, on the ground plane relative to the current heading.

All poses are ``[.., 4, 4]`` float64 torch world-to-camera in OpenCV axes (:mod:`model.camera`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from explorer.fly_camera import Action, ground_vectors
from explorer.pose_math import interpolate_c2w, rigid, rot_y, rotation_angle, to_c2w_numpy, to_w2c_torch, yaw_pitch_roll
from model.camera import validate_poses

#: RGB frames per segment (Wan2.2: 33 frames = 9 latent frames).
SEGMENT_FRAMES = 33


@dataclass(frozen=True)
class SegmentThreshold:
    """Motion that makes a segment's worth: either limit reached is enough."""

    translation_m: float = 0.4  # metres of travelled path (sum of the sample-to-sample distances)
    rotation_deg: float = 15.0  # degrees of accumulated rotation (sum of the sample-to-sample angles)

    def __post_init__(self) -> None:
        if not (self.translation_m > 0 and self.rotation_deg > 0):
            raise ValueError(f"thresholds must be positive, got {self.translation_m} m, {self.rotation_deg} deg")


DEFAULT_THRESHOLD = SegmentThreshold()


def _check_pose(w2c, name: str) -> torch.Tensor:
    w2c = validate_poses(torch.as_tensor(w2c, dtype=torch.float64), name)
    if w2c.shape != (4, 4):
        raise ValueError(f"{name}: expected [4,4], got {list(w2c.shape)}")
    return w2c


def _check_frames(n_frames: int) -> None:
    if n_frames < 2:
        raise ValueError(f"n_frames must be >= 2, got {n_frames}")


class FlightPath:
    """Samples of a flight since the last generated pose.

    Args:
        start_w2c: ``[4, 4]`` pose the first segment starts from (the photo's pose).
        start_time_s: time of that pose (any clock, seconds).

    Example:
        >>> path = FlightPath(np.eye(4))
        >>> path.record(1.0, forward_pose)  # doctest: +SKIP
        >>> if path.ready():  # doctest: +SKIP
        ...     controller.queue_segment(path.take_segment())
    """

    def __init__(self, start_w2c, start_time_s: float = 0.0) -> None:
        self.rebase(start_w2c, start_time_s)

    def rebase(self, w2c, time_s: float | None = None) -> None:
        """Make ``w2c`` the last generated pose (the start of the next segment) and drop nothing else.

        Call it after a cancelled or failed segment with the pose generation really ended at: the
        samples flown since stay, so the next segment goes from there through them.
        """
        w2c = _check_pose(w2c, "w2c")
        kept = getattr(self, "_samples", [])[1:]
        if time_s is None:
            time_s = kept[0][0] if kept else 0.0
        self._anchor = w2c.clone()
        self._samples: list[tuple[float, np.ndarray]] = [(float(time_s), to_c2w_numpy(w2c))]
        for t, c2w in kept:
            self._append(t, c2w)

    @property
    def anchor_w2c(self) -> torch.Tensor:
        """The last generated pose: where the next segment starts."""
        return self._anchor.clone()

    @property
    def current_w2c(self) -> torch.Tensor:
        """The newest recorded pose."""
        return to_w2c_torch(self._samples[-1][1]) if len(self._samples) > 1 else self._anchor.clone()

    def __len__(self) -> int:
        """Samples since the anchor, the anchor included."""
        return len(self._samples)

    def record(self, time_s: float, w2c) -> None:
        """Add a sample (call on every camera tick that moved). Times must not decrease."""
        if not math.isfinite(time_s):
            raise ValueError(f"time_s must be finite, got {time_s}")
        if time_s < self._samples[-1][0]:
            raise ValueError(f"time_s {time_s} is earlier than the previous sample's {self._samples[-1][0]}")
        self._append(float(time_s), to_c2w_numpy(_check_pose(w2c, "w2c")))

    def _append(self, time_s: float, c2w: np.ndarray) -> None:
        last_t, last = self._samples[-1]
        if np.array_equal(last, c2w):  # no motion: only time passes
            return
        self._samples.append((max(time_s, last_t), c2w))

    def motion(self) -> tuple[float, float]:
        """``(metres travelled, degrees turned)`` along the samples since the anchor."""
        metres = degrees = 0.0
        for (_, a), (_, b) in zip(self._samples, self._samples[1:]):
            metres += float(np.linalg.norm(b[:3, 3] - a[:3, 3]))
            degrees += math.degrees(rotation_angle(a[:3, :3], b[:3, :3]))
        return metres, degrees

    def ready(self, threshold: SegmentThreshold = DEFAULT_THRESHOLD) -> bool:
        """Whether a segment's worth of motion has accumulated since the anchor."""
        metres, degrees = self.motion()
        return metres >= threshold.translation_m or degrees >= threshold.rotation_deg

    def progress(self, threshold: SegmentThreshold = DEFAULT_THRESHOLD) -> np.ndarray:
        """``[len(self)]`` cumulative motion at each sample, in units of the thresholds (0 at the anchor)."""
        steps = [0.0]
        for (_, a), (_, b) in zip(self._samples, self._samples[1:]):
            metres = float(np.linalg.norm(b[:3, 3] - a[:3, 3]))
            degrees = math.degrees(rotation_angle(a[:3, :3], b[:3, :3]))
            steps.append(metres / threshold.translation_m + degrees / threshold.rotation_deg)
        return np.cumsum(steps)

    def take_segment(self, n_frames: int = SEGMENT_FRAMES, threshold: SegmentThreshold = DEFAULT_THRESHOLD) -> torch.Tensor:
        """Resample the flight since the anchor into ``[n_frames, 4, 4]`` w2c and start a new one.

        Frame 0 is exactly the anchor (the last generated pose), the last frame exactly the current
        pose; the current pose becomes the new anchor. Without any motion all frames are the anchor.
        """
        _check_frames(n_frames)
        knots = self.progress(threshold)
        if knots[-1] <= 0.0:  # no motion: uniform in time (all equal poses anyway)
            knots = np.array([t for t, _ in self._samples]) - self._samples[0][0]
        poses = resample_c2w([c for _, c in self._samples], knots, n_frames)
        w2c = to_w2c_torch(np.stack(poses))
        w2c[0] = self._anchor
        end = self.current_w2c
        w2c[-1] = end
        last_time = self._samples[-1][0]
        self._anchor = end.clone()
        self._samples = [(last_time, to_c2w_numpy(end))]
        return w2c


def resample_c2w(c2w: list[np.ndarray], knots: np.ndarray, n_frames: int) -> list[np.ndarray]:
    """``n_frames`` poses at uniform parameter values along a piecewise path.

    Args:
        c2w: ``[K]`` poses (numpy ``[4, 4]``), at the non-decreasing parameters ``knots [K]``.
    """
    knots = np.asarray(knots, dtype=np.float64)
    if len(c2w) == 1 or knots[-1] <= knots[0]:
        return [np.array(c2w[0]) for _ in range(n_frames)]
    out = []
    for s in np.linspace(knots[0], knots[-1], n_frames):
        i = int(np.clip(np.searchsorted(knots, s, side="right") - 1, 0, len(knots) - 2))
        span = knots[i + 1] - knots[i]
        t = 0.0 if span <= 0 else (s - knots[i]) / span
        out.append(interpolate_c2w(c2w[i], c2w[i + 1], t))
    return out


def resample_path(w2c, n_frames: int = SEGMENT_FRAMES) -> torch.Tensor:
    """Any ``[T, 4, 4]`` path resampled to ``n_frames`` poses, uniform in motion; exact endpoints.

    Used to merge two queued segments into one (the first's end is the second's start).
    """
    _check_frames(n_frames)
    w2c = validate_poses(torch.as_tensor(w2c, dtype=torch.float64), "path")
    if w2c.ndim != 3 or len(w2c) < 1:
        raise ValueError(f"path: expected [T,4,4], got {list(w2c.shape)}")
    path = FlightPath(w2c[0])
    for i in range(1, len(w2c)):
        path.record(float(i), w2c[i])
    out = path.take_segment(n_frames)
    out[-1] = w2c[-1]
    return out


# --------------------------------------------------------------------------------------------
# Steps mode
# --------------------------------------------------------------------------------------------


def step_segment(
    action: Action | str,
    current_w2c,
    n_frames: int = SEGMENT_FRAMES,
    distance_m: float = 0.5,
    turn_deg: float = 20.0,
    orbit_deg: float = 20.0,
    orbit_radius_m: float = 2.0,
) -> torch.Tensor:
    """One segment ``[n_frames, 4, 4]`` w2c for a step action, starting exactly at ``current_w2c``.

    * ``step_forward`` / ``step_back``: ``distance_m`` along the heading on the ground plane (pitch
      does not lift the camera), orientation unchanged.
    * ``turn_left`` / ``turn_right``: ``turn_deg`` about world up through the camera, in place.
    * ``orbit_left`` / ``orbit_right``: ``orbit_deg`` about the vertical axis through the point
      ``orbit_radius_m`` ahead on the heading; the camera moves left (right) and turns right (left),
      keeping that point in view, like :func:`model.camera.orbit`.

    Frame ``k`` is at parameter ``k / (n_frames - 1)`` of the motion (constant speed).
    """
    _check_frames(n_frames)
    action = Action(action)
    start = _check_pose(current_w2c, "current_w2c")
    c2w0 = to_c2w_numpy(start)
    yaw, _, _ = yaw_pitch_roll(c2w0[:3, :3])
    forward, _ = ground_vectors(yaw)
    centre = c2w0[:3, 3]
    s = np.linspace(0.0, 1.0, n_frames)
    if action in (Action.STEP_FORWARD, Action.STEP_BACK):
        sign = 1.0 if action is Action.STEP_FORWARD else -1.0
        poses = [rigid(c2w0[:3, :3], centre + sign * distance_m * k * forward) for k in s]
    elif action in (Action.TURN_LEFT, Action.TURN_RIGHT, Action.ORBIT_LEFT, Action.ORBIT_RIGHT):
        if action in (Action.TURN_LEFT, Action.TURN_RIGHT):
            angle, pivot = math.radians(turn_deg) * (1.0 if action is Action.TURN_RIGHT else -1.0), centre
        else:  # orbiting left turns the view right (positive yaw) about a point ahead
            angle, pivot = math.radians(orbit_deg) * (1.0 if action is Action.ORBIT_LEFT else -1.0), centre + orbit_radius_m * forward
        poses = []
        for k in s:
            rot = rot_y(angle * k)  # about world y, i.e. about world up (-y) with the yaw sign convention
            poses.append(rigid(rot @ c2w0[:3, :3], pivot + rot @ (centre - pivot)))
    else:
        raise ValueError(f"{action.value!r} is not a step action (expected one of step_forward, step_back, turn_left, turn_right, orbit_left, orbit_right)")
    w2c = to_w2c_torch(np.stack(poses))
    w2c[0] = start
    return w2c
