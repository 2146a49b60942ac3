"""Files in and out: atomic output sets, images, RGB-D folders, MP4 video, camera files, versioned safetensors, model
folders.

Public names are importable from here (``from model.io import ...``); they load on first use."""

from model._exports import lazy_exports

_EXPORTS = {
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
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
