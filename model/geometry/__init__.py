"""Cameras (OpenCV axes, ``w2c`` poses, pixel ``K``), rotations and camera paths.

Public names are importable from here (``from model.geometry import ...``); they load on first use."""

from model._exports import lazy_exports

_EXPORTS = {
    "CV_FROM_GL": "camera",
    "FAR_M": "camera",
    "NEAR_M": "camera",
    "Trajectory": "camera",
    "closed_loop": "trajectories",
    "forward_dolly": "trajectories",
    "gl_projection": "camera",
    "interpolate_c2w": "trajectories",
    "interpolate_rotation": "rotations",
    "intrinsics_from_fov": "camera",
    "invert_pose": "camera",
    "look_around": "trajectories",
    "look_at": "camera",
    "orbit": "trajectories",
    "pixel_centers": "camera",
    "project_points": "camera",
    "resample_c2w": "trajectories",
    "rigid": "camera",
    "rot_x": "rotations",
    "rot_y": "rotations",
    "rot_z": "rotations",
    "rotation_angle": "rotations",
    "scale_intrinsics": "camera",
    "unproject_depth": "camera",
    "validate_intrinsics": "camera",
    "validate_poses": "camera",
    "yaw_pan": "trajectories",
    "yaw_pitch_roll": "rotations",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
