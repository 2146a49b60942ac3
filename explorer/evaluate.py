"""``main.py eval`` and ``main.py export-worldscore``: consistency metrics of a ``generate`` run, and
its frames + cameras in the layout the WorldScore benchmark reads.

A run is one of (:data:`RUN_LAYOUTS`):

* what ``main.py generate --out OUT.mp4`` writes: ``OUT.mp4`` (the frames), ``OUT.json`` (settings
  and report) and ``OUT.cameras.txt`` (RealEstate10K poses and intrinsics, one line per frame),
  named by the ``.mp4`` path or a folder holding exactly one ``.mp4``;
* an explorer session folder (``video.mp4`` + ``session.json`` + ``cameras.txt``, read with
  :func:`explorer.session.load_session`), named by the folder or its ``video.mp4``;
* a ``main.py walkthrough`` folder (``preview.mp4`` + ``session.json`` + ``cameras.txt``), named by
  the folder or its ``preview.mp4``.

``eval`` writes ``OUT.metrics.json`` beside the video (``video.metrics.json`` / ``preview.metrics.json``
in a session / walkthrough folder; checked before the run is read, written atomically), with
:func:`model.eval.metrics.video_metrics`. Runs on
the bundled sample scene (``generate`` without ``--image``, a session recorded from it, a
walkthrough of it) also get exact ground truth: the scene
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

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from explorer import session as sessions
from model.eval.metrics import video_metrics
from model.eval.scenes import ProceduralScene, SceneConfig, SceneRenderer
from model.geometry.camera import CV_FROM_GL, invert_pose
from model.io.atomic import OutputSet, write_json_atomic
from model.io.cameras import read_re10k
from model.io.formats import read_json_object
from model.io.images import save_png
from model.io.rgbd import SAMPLE_SCENE_DIR, load_rgbd_folder
from model.io.video import read_mp4_frames

# OpenCV camera axes -> Blender/OpenGL camera axes (model.geometry.camera.CV_FROM_GL, right-multiplied onto c2w), and
# our world axes
# (the first OpenCV camera's) -> WorldScore's PyTorch3D world axes (left-multiplied).
_CV_TO_WORLDSCORE_WORLD = np.diag([-1.0, -1.0, 1.0, 1.0])

#: What names a run, as said in errors.
RUN_LAYOUTS = (
    "a generate run (OUT.mp4 + OUT.json + OUT.cameras.txt, or a folder holding exactly one), an explorer session "
    "folder "
    "(video.mp4 + session.json + cameras.txt) or a walkthrough folder (preview.mp4 + session.json + cameras.txt)"
)
#: The video of a walkthrough folder (:func:`explorer.walkthrough.run_walkthrough`).
WALKTHROUGH_VIDEO = "preview.mp4"


@dataclass
class GeneratedRun:
    """One run (a ``generate`` output, an explorer session or a walkthrough), loaded and cross-checked.

    Attributes:
        video: the run's ``.mp4``.
        report: contents of ``OUT.json`` / ``session.json``.
        frames: ``[N, H, W, 3]`` uint8.
        w2c: ``[N, 4, 4]`` float64 poses of the frames.
        K: ``[3, 3]`` float64 pixel intrinsics of the frames (first camera line).
        fps: frames per second.
        kind: ``"generate"``, ``"session"`` or ``"walkthrough"``.
        segment_frames: frames per generated segment (shared end frames included); None for a walkthrough.
    """

    video: Path
    report: dict
    frames: np.ndarray
    w2c: torch.Tensor
    K: torch.Tensor
    fps: float
    kind: str = "generate"
    segment_frames: int | None = 33

    @property
    def on_bundled_scene(self) -> bool:
        """True when the frames show the bundled sample scene from its start, i.e. exact ground truth exists:
        ``generate`` without ``--image`` / ``--load-memory``, a session started (not continued) on it,
        a walkthrough of it."""
        if self.kind == "session":
            return self.report["source"]["kind"] == "bundled" and int(self.report.get("first_segment", 0)) == 0
        if self.kind == "walkthrough":
            return Path(self.report.get("settings", {}).get("scene_dir", "")).resolve() == SAMPLE_SCENE_DIR.resolve()
        settings = self.report.get("settings", {})
        return settings.get("image") is None and settings.get("load_memory") is None


def resolve_run(path: str | Path) -> tuple[str, Path]:
    """The kind (``"generate"``, ``"session"``, ``"walkthrough"``) and the ``.mp4`` of the run ``path``
    names: a video, a folder holding one generate run, a session folder or a walkthrough folder.

    Raises:
        ValueError: naming the path and saying what is accepted (:data:`RUN_LAYOUTS`).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / sessions.SESSION_JSON).is_file():
            return _session_folder_kind(path / sessions.SESSION_JSON)
        videos = sorted(p for p in path.glob("*.mp4") if not p.name.startswith("."))
        if len(videos) != 1:
            found = ", ".join(p.name for p in videos) or "none"
            raise ValueError(
                f"{path}: expected {RUN_LAYOUTS}; found {len(videos)} videos ({found}) and no {sessions.SESSION_JSON}"
            )
        return "generate", videos[0]
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"{path}: not a video; expected {RUN_LAYOUTS}")
    if not path.with_suffix(".json").exists() and (path.parent / sessions.SESSION_JSON).is_file():
        kind, video = _session_folder_kind(path.parent / sessions.SESSION_JSON)
        if video.name == path.name:  # a session's video.mp4 or a walkthrough's preview.mp4
            return kind, video
    return "generate", path


def _session_folder_kind(json_path: Path) -> tuple[str, Path]:
    """``("session", video.mp4)`` or ``("walkthrough", preview.mp4)`` by the ``session.json`` of a folder."""
    data = read_json_object(json_path, "session JSON")
    if data.get("format") == sessions.FORMAT_NAME:
        return "session", json_path.parent / sessions.VIDEO
    if data.get("kind") == "walkthrough":
        return "walkthrough", json_path.parent / WALKTHROUGH_VIDEO
    raise ValueError(
        f"{json_path}: format: neither an explorer session ({sessions.FORMAT_NAME!r}) nor a walkthrough (kind "
        "'walkthrough')"
    )


def load_run(path: str | Path) -> GeneratedRun:
    """Load a run (video, report, cameras) and check that they describe the same frames.

    A session folder is read by :func:`explorer.session.load_session` (which checks it as strictly).

    Raises:
        ValueError: naming the file, for a missing or unreadable file or mismatched frame counts / sizes.
    """
    kind, video = resolve_run(path)
    if kind == "session":
        session = sessions.load_session(video.parent)
        return GeneratedRun(
            video,
            session.data,
            session.frames,
            torch.from_numpy(session.all_w2c()),
            torch.from_numpy(session.K),
            session.fps,
            kind,
            segment_frames=int(session.w2c.shape[1]),
        )
    if kind == "generate":
        report_path, cameras_path = video.with_suffix(".json"), video.with_suffix(".cameras.txt")
    else:
        report_path, cameras_path = video.parent / sessions.SESSION_JSON, video.parent / sessions.CAMERAS
    for needed in (video, report_path, cameras_path):
        if not needed.is_file():
            raise ValueError(f"{needed}: missing; expected {RUN_LAYOUTS}")
    report = read_json_object(report_path, "JSON report")
    cameras = read_re10k(cameras_path)
    try:
        frames = read_mp4_frames(video)
    except (OSError, RuntimeError, StopIteration, ValueError) as exc:
        raise ValueError(f"{video}: cannot read the video: {exc}") from exc
    n, height, width = frames.shape[:3]
    if len(cameras.w2c) != n:
        raise ValueError(f"{cameras_path}: {len(cameras.w2c)} cameras, but {video.name} has {n} frames")
    if kind == "generate":  # OUT.json
        field, expected, fps = (
            "trajectory.frames",
            report.get("trajectory", {}).get("frames"),
            report.get("trajectory", {}).get("fps"),
        )
        segment_frames = int(report.get("model", {}).get("pipeline", {}).get("segment_frames", 33))
    else:  # a walkthrough's session.json
        field, expected, fps, segment_frames = (
            "frames",
            report.get("frames"),
            report.get("settings", {}).get("fps"),
            None,
        )
    if expected is not None and expected != n:
        raise ValueError(f"{report_path}: {field}: {expected} frames, but {video.name} has {n}")
    fps = float(fps if fps is not None else cameras.trajectory(width, height).fps)
    return GeneratedRun(video, report, frames, cameras.w2c, cameras.K(width, height)[0], fps, kind, segment_frames)


def bundled_ground_truth(run: GeneratedRun, renderer: SceneRenderer) -> tuple[np.ndarray, np.ndarray]:
    """Exact images ``[N, H, W, 3]`` uint8 and depth ``[N, H, W]`` metres of the bundled scene at the run's poses and
    times.
    """
    scene = ProceduralScene(SceneConfig(**load_rgbd_folder(SAMPLE_SCENE_DIR).source["config"]))
    height, width = run.frames.shape[1:3]
    return renderer.render_trajectory(scene, run.w2c, run.K, width, height, fps=run.fps)


def evaluate_run(run: GeneratedRun, stride: int = 4) -> dict:
    """:func:`model.eval.metrics.video_metrics` of a run, with exact ground truth on the bundled scene."""
    depth = reference = None
    if run.on_bundled_scene:
        with SceneRenderer() as renderer:
            reference, depth = bundled_ground_truth(run, renderer)
    metrics = video_metrics(run.frames, run.w2c, run.K, stride, depth=depth, reference=reference)
    if depth is None:
        reason = "no exact depth or images: the run did not start from the bundled sample scene"
        metrics["reprojection"] = metrics["ground_truth"] = None
        metrics["ground_truth_reason"] = reason
    return {
        "video": str(run.video),
        "ground_truth_source": "bundled sample scene, re-rendered" if depth is not None else None,
        **metrics,
    }


def run_eval(path: str | Path, stride: int = 4) -> tuple[dict, Path]:
    """Evaluate a run and write ``OUT.metrics.json`` beside its video; returns the metrics and that path."""
    out = resolve_run(path)[1].with_suffix(".metrics.json")
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
    return _CV_TO_WORLDSCORE_WORLD @ c2w @ CV_FROM_GL.numpy()


def export_worldscore(path: str | Path, out_dir: str | Path) -> dict:
    """Write a run as ``OUT/frames/000.png ...``, ``OUT/input_image.png`` and ``OUT/camera_data.json``.

    The folder is checked before the run is read (:meth:`model.io.atomic.OutputSet.add`), built under a
    temporary name and swapped into place as a whole. An existing ``OUT`` is only replaced when it
    looks like an earlier export (it holds ``camera_data.json``); any other non-empty folder is an error.

    Returns:
        the ``camera_data.json`` contents.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "camera_data.json").is_file())
    ):
        raise ValueError(f"{out_dir}: exists and is not an earlier WorldScore export; choose an empty or new folder")
    outputs = OutputSet()
    outputs.add(
        out_dir, folder=True, size=resolve_run(path)[1].stat().st_size
    )  # lossless PNGs outweigh the H.264 video
    run = load_run(path)
    n, height, width = run.frames.shape[:3]
    c2w = worldscore_c2w(run.w2c)
    keys = sorted(set(range(0, n, run.segment_frames - 1) if run.segment_frames else {0}) | {n - 1})
    data = {
        "focal_length": float(run.K[0, 0]),
        "scale": 1.0,
        "cameras": c2w[keys].tolist(),
        "cameras_interp": c2w.tolist(),
        "camera_convention": "camera-to-world, Blender/OpenGL camera axes (x right, y up, z back), "
        "WorldScore world axes; first camera diag(-1,1,-1,1)",
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
        save_png(folder / "frames" / f"{i:03d}.png", frame)
    save_png(folder / "input_image.png", frames[0])
    write_json_atomic(folder / "camera_data.json", data)
