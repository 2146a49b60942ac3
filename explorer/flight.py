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
  samples the camera centre is interpolated linearly and the rotation along the shortest arc
  (:func:`model.geometry.trajectories.resample_c2w`).
* **Steps** (:func:`step_segment`): one key = one segment (forward / back, turn, orbit), linear in
  the step parameter, on the ground plane relative to the current heading.

All poses are ``[.., 4, 4]`` float64 torch world-to-camera in OpenCV axes (:mod:`model.geometry.camera`), from
the fly camera to the segments handed to the generation queue: samples are kept as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from explorer.fly_camera import Action, ground_vectors
from model.geometry.camera import invert_pose, rigid, validate_poses
from model.geometry.rotations import rot_y, rotation_angle, yaw_pitch_roll
from model.geometry.trajectories import resample_c2w

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
        >>> path = FlightPath(torch.eye(4, dtype=torch.float64))
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
        # (time_s, w2c [4, 4]) with w2c a copy of the pose given: segment endpoints are these copies
        self._samples: list[tuple[float, torch.Tensor]] = [(float(time_s), w2c.clone())]
        for t, sample in kept:
            self._append(t, sample)

    @property
    def anchor_w2c(self) -> torch.Tensor:
        """The last generated pose: where the next segment starts."""
        return self._samples[0][1].clone()

    @property
    def current_w2c(self) -> torch.Tensor:
        """The newest recorded pose."""
        return self._samples[-1][1].clone()

    def __len__(self) -> int:
        """Samples since the anchor, the anchor included."""
        return len(self._samples)

    def record(self, time_s: float, w2c) -> None:
        """Add a sample (call on every camera tick that moved). Times must not decrease."""
        if not math.isfinite(time_s):
            raise ValueError(f"time_s must be finite, got {time_s}")
        if time_s < self._samples[-1][0]:
            raise ValueError(f"time_s {time_s} is earlier than the previous sample's {self._samples[-1][0]}")
        self._append(float(time_s), _check_pose(w2c, "w2c").clone())

    def _append(self, time_s: float, w2c: torch.Tensor) -> None:
        last_t, last = self._samples[-1]
        if torch.equal(last, w2c):  # no motion: only time passes
            return
        self._samples.append((max(time_s, last_t), w2c))

    def _c2w(self) -> torch.Tensor:
        """``[len(self), 4, 4]`` camera-to-world poses of the samples (the anchor first)."""
        return invert_pose(torch.stack([w2c for _, w2c in self._samples]))

    def _steps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[len(self) - 1]`` metres travelled and degrees turned from each sample to the next."""
        c2w = self._c2w()
        metres = (c2w[1:, :3, 3] - c2w[:-1, :3, 3]).norm(dim=-1)
        degrees = torch.rad2deg(rotation_angle(c2w[:-1, :3, :3].mT @ c2w[1:, :3, :3]))
        return metres, degrees

    def motion(self) -> tuple[float, float]:
        """``(metres travelled, degrees turned)`` along the samples since the anchor."""
        metres, degrees = self._steps()
        return float(metres.sum()), float(degrees.sum())

    def ready(self, threshold: SegmentThreshold = DEFAULT_THRESHOLD) -> bool:
        """Whether a segment's worth of motion has accumulated since the anchor."""
        metres, degrees = self.motion()
        return metres >= threshold.translation_m or degrees >= threshold.rotation_deg

    def progress(self, threshold: SegmentThreshold = DEFAULT_THRESHOLD) -> torch.Tensor:
        """``[len(self)]`` float64 cumulative motion at each sample, in units of the thresholds (0 at the anchor)."""
        metres, degrees = self._steps()
        steps = metres / threshold.translation_m + degrees / threshold.rotation_deg
        return torch.cat([steps.new_zeros(1), steps]).cumsum(0)

    def take_segment(
        self, n_frames: int = SEGMENT_FRAMES, threshold: SegmentThreshold = DEFAULT_THRESHOLD
    ) -> torch.Tensor:
        """Resample the flight since the anchor into ``[n_frames, 4, 4]`` w2c and start a new one.

        Frame 0 is exactly the anchor (the last generated pose), the last frame exactly the current
        pose; the current pose becomes the new anchor. Without any motion all frames are the anchor.
        """
        _check_frames(n_frames)
        if len(self._samples) == 1:  # no motion since the anchor: every frame is a copy of it
            return self._samples[0][1].expand(n_frames, 4, 4).clone()
        knots = self.progress(threshold)
        if knots[-1] <= 0.0:  # no motion: uniform in time (all equal poses anyway)
            knots = torch.tensor([t for t, _ in self._samples], dtype=torch.float64) - self._samples[0][0]
        w2c = invert_pose(resample_c2w(self._c2w(), knots, n_frames))
        w2c[0] = self._samples[0][1]
        w2c[-1] = self._samples[-1][1]
        self._samples = [self._samples[-1]]
        return w2c


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
    return path.take_segment(n_frames)  # its endpoints are copies of the path's


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
      keeping that point in view, like :func:`model.geometry.trajectories.orbit`.

    Frame ``k`` is at parameter ``k / (n_frames - 1)`` of the motion (constant speed).
    """
    _check_frames(n_frames)
    action = Action(action)
    start = _check_pose(current_w2c, "current_w2c")
    c2w0 = invert_pose(start)
    yaw, _, _ = yaw_pitch_roll(c2w0[:3, :3])
    forward, _ = ground_vectors(yaw)
    centre = c2w0[:3, 3]
    s = torch.linspace(0.0, 1.0, n_frames, dtype=torch.float64)
    if action in (Action.STEP_FORWARD, Action.STEP_BACK):
        sign = 1.0 if action is Action.STEP_FORWARD else -1.0
        c2w = rigid(c2w0[:3, :3], centre + sign * distance_m * s[:, None] * forward)
    elif action in (Action.TURN_LEFT, Action.TURN_RIGHT, Action.ORBIT_LEFT, Action.ORBIT_RIGHT):
        if action in (Action.TURN_LEFT, Action.TURN_RIGHT):
            angle, pivot = math.radians(turn_deg) * (1.0 if action is Action.TURN_RIGHT else -1.0), centre
        else:  # orbiting left turns the view right (positive yaw) about a point ahead
            angle, pivot = (
                math.radians(orbit_deg) * (1.0 if action is Action.ORBIT_LEFT else -1.0),
                centre + orbit_radius_m * forward,
            )
        rot = rot_y(angle * s)  # about world y, i.e. about world up (-y) with the yaw sign convention
        c2w = rigid(rot @ c2w0[:3, :3], pivot + rot @ (centre - pivot))
    else:
        raise ValueError(
            f"{action.value!r} is not a step action (expected one of step_forward, step_back, turn_left, turn_right, "
            "orbit_left, orbit_right)"
        )
    w2c = invert_pose(c2w)
    w2c[0] = start
    return w2c
