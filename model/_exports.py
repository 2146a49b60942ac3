"""The public names of :mod:`model`'s subpackages, exported lazily (PEP 562).

Each subpackage's ``__init__`` calls :func:`lazy_exports`, so ``from model.memory import
LatentSpatialMemory`` works, and importing one light submodule (say :mod:`model.generation.profiles`,
which the command-line parsers read) does not import the package's heavy ones (diffusers, moderngl).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

#: ``{package: {public name: submodule}}``: what each subpackage exports.
PUBLIC_API: dict[str, dict[str, str]] = {
    "model.geometry": {
        "CV_FROM_GL": "camera",
        "FAR_M": "camera",
        "NEAR_M": "camera",
        "Trajectory": "camera",
        "closed_loop": "trajectories",
        "closed_orbit": "trajectories",
        "forward_dolly": "trajectories",
        "gl_projection": "camera",
        "interpolate_c2w": "trajectories",
        "interpolate_rotation": "rotations",
        "intrinsics_from_fov": "camera",
        "invert_pose": "camera",
        "look_around": "trajectories",
        "look_at": "camera",
        "orbit": "trajectories",
        "out_and_back": "trajectories",
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
    },
    "model.io": {
        "FolderCheck": "folders",
        "ImageLoadError": "images",
        "ModelFolderError": "folders",
        "Mp4Writer": "video",
        "OutputSet": "atomic",
        "Photo": "images",
        "RGBDView": "rgbd",
        "SAMPLE_SCENE_DIR": "rgbd",
        "atomic_dir": "atomic",
        "atomic_path": "atomic",
        "check_model_folder": "folders",
        "frames_to_tensor": "frames",
        "load_image": "images",
        "load_photo": "images",
        "load_rgbd_folder": "rgbd",
        "read_camera_path_json": "cameras",
        "read_json_object": "formats",
        "read_mp4_frames": "video",
        "read_mp4_metadata": "video",
        "read_re10k": "cameras",
        "read_versioned": "formats",
        "save_png": "images",
        "tensor_to_frames": "frames",
        "write_camera_path_json": "cameras",
        "write_json_atomic": "atomic",
        "write_re10k": "cameras",
        "write_rgbd_folder": "rgbd",
        "write_text_atomic": "atomic",
        "write_versioned": "formats",
    },
    "model.render": {
        "OffscreenGL": "offscreen_gl",
    },
    "model.memory": {
        "CellLabel": "latent",
        "LatentSpatialMemory": "latent",
        "MEMORY_KINDS": "base",
        "MemoryConfig": "base",
        "MemoryStats": "base",
        "Readout": "base",
        "SemanticSkySegmenter": "masks",
        "SpatialMemory": "base",
        "dynamic_mask": "masks",
        "sky_mask": "masks",
        "write_masks": "masks",
        "zbuffer_project": "latent",
    },
    "model.eval": {
        "ProceduralScene": "scenes",
        "SceneConfig": "scenes",
        "SceneRenderer": "scenes",
        "closed_loop_metrics": "metrics",
        "frame_scores": "frame_scores",
        "psnr": "metrics",
        "ssim": "metrics",
        "video_metrics": "metrics",
    },
    "model.generation": {
        "Backbone": "backbone",
        "BackboneConfig": "backbone",
        "BackendProfile": "profiles",
        "DepthEstimator": "depth",
        "DepthSource": "depth",
        "MemoryBranch": "memory_branch",
        "MemoryBranchConfig": "memory_branch",
        "MiragePipeline": "pipeline",
        "PROFILES": "profiles",
        "PatchVAE": "patch_vae",
        "PipelineConfig": "pipeline",
        "PriorDepth": "depth",
        "VideoVAE": "vae",
        "load_backbone": "backbone",
        "load_depth_for_photo": "depth",
        "load_generation_stack": "stack",
        "load_memory_weights": "lora",
        "profile": "profiles",
        "save_memory_weights": "lora",
    },
    "model.baselines": {
        "BlindMemory": "blind_memory",
        "RGBPointCloudMemory": "rgb_memory",
        "ReadoutInpaintPipeline": "readout_inpaint",
        "load_memory": "kinds",
        "make_memory": "kinds",
    },
}


def lazy_exports(package: str) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, exporting the names :data:`PUBLIC_API` lists for it.

    Example:
        >>> __getattr__, __dir__, __all__ = lazy_exports("model.memory")  # doctest: +SKIP
    """
    exports = PUBLIC_API[package]

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
