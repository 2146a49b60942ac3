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


@dataclass(frozen=True, eq=False)
class _Sample:
    """One recorded pose: ``w2c`` ``[4, 4]`` float64 torch exactly as given, its ``c2w`` (numpy) for
    interpolation, and its time in seconds."""

    time_s: float
    w2c: torch.Tensor
    c2w: np.ndarray


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
            time_s = kept[0].time_s if kept else 0.0
        # Each sample keeps the w2c it was given (a copy) next to its c2w: segment endpoints are
        # those copies, never a w2c -> c2w -> w2c round trip, whose last bits depend on the CPU.
        self._samples: list[_Sample] = [_Sample(float(time_s), w2c.clone(), to_c2w_numpy(w2c))]
        for sample in kept:
            self._append(sample)

    @property
    def anchor_w2c(self) -> torch.Tensor:
        """The last generated pose: where the next segment starts (a copy of the pose it was given)."""
        return self._samples[0].w2c.clone()

    @property
    def current_w2c(self) -> torch.Tensor:
        """The newest recorded pose (a copy of the pose given to :meth:`record`)."""
        return self._samples[-1].w2c.clone()

    def __len__(self) -> int:
        """Samples since the anchor, the anchor included."""
        return len(self._samples)

    def record(self, time_s: float, w2c) -> None:
        """Add a sample (call on every camera tick that moved). Times must not decrease."""
        if not math.isfinite(time_s):
            raise ValueError(f"time_s must be finite, got {time_s}")
        if time_s < self._samples[-1].time_s:
            raise ValueError(f"time_s {time_s} is earlier than the previous sample's {self._samples[-1].time_s}")
        w2c = _check_pose(w2c, "w2c")
        self._append(_Sample(float(time_s), w2c.clone(), to_c2w_numpy(w2c)))

    def _append(self, sample: _Sample) -> None:
        last = self._samples[-1]
        if torch.equal(last.w2c, sample.w2c):  # no motion: only time passes
            return
        self._samples.append(_Sample(max(sample.time_s, last.time_s), sample.w2c, sample.c2w))

    def motion(self) -> tuple[float, float]:
        """``(metres travelled, degrees turned)`` along the samples since the anchor."""
        metres = degrees = 0.0
        c2w = self._c2w()
        for a, b in zip(c2w, c2w[1:]):
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
        c2w = self._c2w()
        for a, b in zip(c2w, c2w[1:]):
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
        if len(self._samples) == 1:  # no motion since the anchor: every frame is a copy of it
            return self._samples[0].w2c.expand(n_frames, 4, 4).clone()
        knots = self.progress(threshold)
        if knots[-1] <= 0.0:  # no motion: uniform in time (all equal poses anyway)
            knots = np.array([sample.time_s for sample in self._samples]) - self._samples[0].time_s
        w2c = to_w2c_torch(np.stack(resample_c2w(self._c2w(), knots, n_frames)))
        # The endpoints are copies of the given poses, so segments chain bit-exactly.
        w2c[0] = self._samples[0].w2c
        w2c[-1] = self._samples[-1].w2c
        self._samples = [self._samples[-1]]
        return w2c

    def _c2w(self) -> list[np.ndarray]:
        """``[len(self)]`` camera-to-world ``[4, 4]`` of the samples (the anchor first)."""
        return [sample.c2w for sample in self._samples]


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
    return path.take_segment(n_frames)  # its last pose is a copy of w2c[-1]


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
