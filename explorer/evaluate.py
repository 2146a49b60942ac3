"""``main.py eval`` and ``main.py export-worldscore``: consistency metrics of a ``generate`` run, and
its frames + cameras in the layout the WorldScore benchmark reads.

A run is what ``main.py generate --out OUT.mp4`` writes: ``OUT.mp4`` (the frames), ``OUT.json``
(settings and report) and ``OUT.cameras.txt`` (RealEstate10K poses and intrinsics, one line per
frame). Either the ``.mp4`` path or a folder holding exactly one ``.mp4`` names a run.

``eval`` writes ``OUT.metrics.json`` (checked before the run is read, written atomically) with :func:`model.metrics.video_metrics`. Runs on
the bundled sample scene (``generate`` without ``--image``) also get exact ground truth: the scene
is re-rendered at every pose and time (``t = i / fps``), which adds the known-pose reprojection
metrics (with exact depth) and PSNR / SSIM against the exact images. Other runs have no depth
that is not itself an estimate, so those two groups are left out (``"reprojection": null`` with a
reason).

``export-worldscore`` writes ``OUT/frames/000.png ...``, ``OUT/input_image.png`` (frame 0) and
``OUT/camera_data.json`` in the format of WorldScore's ``CameraGen.save_cameras``
(worldscore/benchmark/helpers/camera_generator.py):

* ``cameras_interp``: one camera-to-world 4x4 per frame with Blender/OpenGL camera axes (x right,
  y up, z backward) in WorldScore's world frame, in which the first camera's matrix is
  ``diag(-1, 1, -1, 1)`` (PyTorch3D world axes: x left, y up, z forward). From our OpenCV poses:
  ``c2w_ws = diag(-1, -1, 1, 1) @ c2w_cv @ diag(1, -1, -1, 1)``.
* ``cameras``: the same for the key frames (frame 0 and every segment's last frame).
* ``focal_length``: ``fx`` in pixels (WorldScore assumes square pixels); ``scale``: 1.0, the
  length unit of the translations (our metres; WorldScore stores its camera speed there).
* Extra keys WorldScore ignores: ``intrinsics`` (full ``K``, width, height), ``camera_convention``,
  ``frames`` and ``source``.

WorldScore also wants ``image_data.json`` (its prompt and layout metadata for the instance); that
comes from the benchmark's own instance list and is not written here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from explorer.video_io import read_mp4_frames
from model.atomic import OutputSet, write_json_atomic
from model.camera import invert_pose, read_re10k
from model.metrics import video_metrics
from model.rgbd_io import SAMPLE_SCENE_DIR, load_rgbd_folder
from model.scenes import ProceduralScene, SceneConfig, SceneRenderer

# OpenCV camera axes -> Blender/OpenGL camera axes (right-multiplied onto c2w), and our world axes
# (the first OpenCV camera's) -> WorldScore's PyTorch3D world axes (left-multiplied).
_CV_TO_GL_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])
_CV_TO_WORLDSCORE_WORLD = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class GeneratedRun:
    """One ``generate`` output, loaded and cross-checked.

    Attributes:
        video: the ``OUT.mp4`` path.
        report: contents of ``OUT.json``.
        frames: ``[N, H, W, 3]`` uint8.
        w2c: ``[N, 4, 4]`` float64 poses from ``OUT.cameras.txt``.
        K: ``[3, 3]`` float64 pixel intrinsics of the frames (first camera line).
        fps: frames per second.
    """

    video: Path
    report: dict
    frames: np.ndarray
    w2c: torch.Tensor
    K: torch.Tensor
    fps: float

    @property
    def on_bundled_scene(self) -> bool:
        """True when the run started from the bundled sample scene (exact ground truth exists)."""
        settings = self.report.get("settings", {})
        return settings.get("image") is None and settings.get("load_memory") is None


def resolve_video(path: str | Path) -> Path:
    """The ``.mp4`` of a run named by its video path or by a folder holding exactly one ``.mp4``."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir():
        videos = sorted(p for p in path.glob("*.mp4") if not p.name.startswith("."))
        if len(videos) != 1:
            found = ", ".join(p.name for p in videos) or "none"
            raise ValueError(f"{path}: expected a folder with exactly one generate run (.mp4), found {found}")
        return videos[0]
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"{path}: expected a generate run's .mp4 or its folder")
    return path


def load_run(path: str | Path) -> GeneratedRun:
    """Load a run (video, report, cameras) and check that they describe the same frames.

    Raises:
        ValueError: naming the file, for a missing or unreadable file or mismatched frame counts / sizes.
    """
    video = resolve_video(path)
    report_path, cameras_path = video.with_suffix(".json"), video.with_suffix(".cameras.txt")
    for needed in (report_path, cameras_path):
        if not needed.is_file():
            raise ValueError(f"{needed}: missing (a generate run is OUT.mp4 + OUT.json + OUT.cameras.txt)")
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{report_path}: not a readable JSON report: {exc}") from exc
    cameras = read_re10k(cameras_path)
    try:
        frames = read_mp4_frames(video)
    except (OSError, RuntimeError, StopIteration, ValueError) as exc:
        raise ValueError(f"{video}: cannot read the video: {exc}") from exc
    n, height, width = frames.shape[:3]
    if len(cameras.w2c) != n:
        raise ValueError(f"{cameras_path}: {len(cameras.w2c)} cameras, but {video.name} has {n} frames")
    expected = report.get("trajectory", {}).get("frames")
    if expected is not None and expected != n:
        raise ValueError(f"{report_path}: trajectory has {expected} frames, but {video.name} has {n}")
    fps = float(report.get("trajectory", {}).get("fps", cameras.trajectory(width, height).fps))
    return GeneratedRun(video, report, frames, cameras.w2c, cameras.K(width, height)[0], fps)


def bundled_ground_truth(run: GeneratedRun, renderer: SceneRenderer) -> tuple[np.ndarray, np.ndarray]:
    """Exact images ``[N, H, W, 3]`` uint8 and depth ``[N, H, W]`` metres of the bundled scene at the run's poses and times."""
    scene = ProceduralScene(SceneConfig(**load_rgbd_folder(SAMPLE_SCENE_DIR).source["config"]))
    height, width = run.frames.shape[1:3]
    return renderer.render_trajectory(scene, run.w2c, run.K, width, height, fps=run.fps)


def evaluate_run(run: GeneratedRun, stride: int = 4) -> dict:
    """:func:`model.metrics.video_metrics` of a run, with exact ground truth on the bundled scene."""
    depth = reference = None
    if run.on_bundled_scene:
        with SceneRenderer() as renderer:
            reference, depth = bundled_ground_truth(run, renderer)
    metrics = video_metrics(run.frames, run.w2c, run.K, stride, depth=depth, reference=reference)
    if depth is None:
        reason = "no exact depth or images: the run did not start from the bundled sample scene"
        metrics["reprojection"] = metrics["ground_truth"] = None
        metrics["ground_truth_reason"] = reason
    return {"video": str(run.video), "ground_truth_source": "bundled sample scene, re-rendered" if depth is not None else None, **metrics}


def run_eval(path: str | Path, stride: int = 4) -> tuple[dict, Path]:
    """Evaluate a run and write ``OUT.metrics.json`` beside its video; returns the metrics and that path."""
    out = resolve_video(path).with_suffix(".metrics.json")
    outputs = OutputSet()
    outputs.add(out)
    run = load_run(path)
    metrics = evaluate_run(run, stride)
    with outputs:
        outputs.write(out, lambda tmp: write_json_atomic(tmp, json_safe(metrics)))
    return metrics, out


def json_safe(value):
    """Replace NaN / inf floats by None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(metrics: dict) -> str:
    """The metrics as aligned ``group.metric  value`` lines (nested dicts flattened)."""
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        elif isinstance(value, float):
            rows.append((prefix, "nan" if math.isnan(value) else f"{value:.4g}"))
        elif value is not None and not isinstance(value, str | list):
            rows.append((prefix, str(value)))

    walk("", {k: v for k, v in metrics.items() if k != "video"})
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def worldscore_c2w(w2c: torch.Tensor) -> np.ndarray:
    """Our OpenCV ``w2c`` ``[N, 4, 4]`` -> WorldScore camera-to-world ``[N, 4, 4]`` (see the module docstring)."""
    c2w = invert_pose(torch.as_tensor(w2c, dtype=torch.float64)).numpy()
    return _CV_TO_WORLDSCORE_WORLD @ c2w @ _CV_TO_GL_CAMERA


def export_worldscore(path: str | Path, out_dir: str | Path) -> dict:
    """Write a run as ``OUT/frames/000.png ...``, ``OUT/input_image.png`` and ``OUT/camera_data.json``.

    The folder is checked before the run is read (:meth:`model.atomic.OutputSet.add`), built under a
    temporary name and swapped into place as a whole. An existing ``OUT`` is only replaced when it
    looks like an earlier export (it holds ``camera_data.json``); any other non-empty folder is an error.

    Returns:
        the ``camera_data.json`` contents.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "camera_data.json").is_file())):
        raise ValueError(f"{out_dir}: exists and is not an earlier WorldScore export; choose an empty or new folder")
    outputs = OutputSet()
    outputs.add(out_dir, folder=True, size=resolve_video(path).stat().st_size)  # lossless PNGs outweigh the H.264 video
    run = load_run(path)
    n, height, width = run.frames.shape[:3]
    c2w = worldscore_c2w(run.w2c)
    segment = int(run.report.get("model", {}).get("pipeline", {}).get("segment_frames", 33)) - 1
    keys = sorted(set(range(0, n, segment)) | {n - 1})
    data = {
        "focal_length": float(run.K[0, 0]),
        "scale": 1.0,
        "cameras": c2w[keys].tolist(),
        "cameras_interp": c2w.tolist(),
        "camera_convention": "camera-to-world, Blender/OpenGL camera axes (x right, y up, z back), WorldScore world axes; first camera diag(-1,1,-1,1)",
        "intrinsics": {"K": run.K.tolist(), "width": width, "height": height},
        "frames": n,
        "source": str(run.video),
    }
    with outputs:
        outputs.write(out_dir, lambda tmp: _write_export(tmp, run.frames, data), folder=True)
    return data


def _write_export(folder: Path, frames: np.ndarray, data: dict) -> None:
    """Fill the empty folder ``folder`` with the export's frames, input image and ``camera_data.json``."""
    (folder / "frames").mkdir()
    for i, frame in enumerate(frames):
        _write_png(folder / "frames" / f"{i:03d}.png", frame)
    _write_png(folder / "input_image.png", frames[0])
    write_json_atomic(folder / "camera_data.json", data)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(None, "could not write the PNG (disk full or not writable?)", str(path))
