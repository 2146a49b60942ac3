"""Headless generation: ``python main.py generate`` — a photo and a camera path in, a video out.

Writes ``OUT.mp4`` (H.264), ``OUT.json`` (settings, seed, model, trajectory, per-segment timings and
memory stats), ``OUT.cameras.txt`` (RealEstate10K) and the ``--save-memory`` file as one
:class:`model.io.atomic.OutputSet`: all of them are checked before the models load, written under
temporary names, and renamed into place together at the end, so a bad input, a full disk, a failure
or a signal leaves nothing new behind and earlier results untouched.

Every input file (photo, depth file, camera file, saved memory, depth and sky model folders) is read and
checked by :func:`check_inputs` before the backbone is built, so a bad file is refused in
milliseconds. What is read but not used whole is said on stderr: ``warning: <file>: ...`` (an
animation's first frame, a visible centre crop) and ``note: <file>: using the first N of M poses``.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from explorer.scene_inputs import PhotoFiles, bundled_scene, read_photo_files, scene_from_photo, seeded_scene
from model.baselines.kinds import load_memory, make_memory
from model.eval.scenes import SceneRenderer
from model.generation.backbone import BackboneConfig
from model.generation.depth import DepthEstimator, DepthSource, TransformersDepthEstimator
from model.generation.pipeline import MiragePipeline, PipelineConfig, check_memory_channels
from model.generation.profiles import default_backend, profile
from model.generation.stack import GenerationStack, load_generation_stack
from model.geometry.camera import invert_pose
from model.geometry.trajectories import closed_orbit, forward_dolly, look_around, orbit, yaw_pan
from model.io.atomic import OutputSet, write_json_atomic
from model.io.cameras import read_camera_path_json, read_re10k, write_re10k
from model.io.folders import check_model_folder
from model.io.hub import resolve_model_ref
from model.io.video import Mp4Writer, min_video_bytes
from model.memory.base import SpatialMemory
from model.memory.masks import SKY_FOLDER, SemanticSkySegmenter

TRAJECTORIES = ("orbit", "forward", "pan", "closed-orbit", "look-around")  # builders; parameters: BUILDER_PARAMS
# A rough lower bound of the saved memory for the free-space check: the start frame alone leaves about
# one 48-channel fp16 point per 16x16-pixel latent cell.
MEMORY_BYTES_PER_CELL = 96


@dataclass
class GenerateArgs:
    """Everything ``main.py generate`` accepts (one field per flag)."""

    out: str  # OUT.mp4; OUT.json and OUT.cameras.txt are written beside it
    image: str | None = None  # photo; None uses the bundled sample scene (with its exact depth)
    scene_seed: int | None = None  # instead of a photo: the procedural room of this seed (exact depth)
    trajectory: str = "orbit"  # one of TRAJECTORIES (NAME:key=value,...) | a RealEstate10K .txt | a camera-path .json
    segments: int = 2  # segments of 33 frames (32 new frames each)
    # one of model.generation.profiles.BACKENDS; None: default_backend (wan with --model, else the shipped mini)
    backend: str | None = None
    model: str | None = None  # model folder of backends that need one (wan: a Wan2.2-TI2V-5B diffusers folder)
    memory_weights: str | None = None  # folder with the trained memory branch + LoRA (mode branch)
    mode: str | None = None  # branch | inpaint; None: the backend profile's (mini: branch, others: inpaint)
    steps: int | None = None  # denoising steps per segment; None: the backend profile's
    height: int | None = None  # frame height in pixels (None: the backend profile's generate_size)
    width: int | None = None  # frame width in pixels (None: the backend profile's generate_size)
    seed: int = 0  # noise seed
    prompt: str = ""  # text prompt
    depth: str | None = None  # depth file for the photo (.png mm / .npy m)
    depth_model: str | None = None  # transformers depth-estimation model folder
    sky_model: str | None = None  # transformers segmentation folder with a "sky" class: its sky never enters the memory
    offload: str = "auto"  # auto | none | model | group
    device: str | None = None  # torch device (default: cuda when available)
    inpaint_fraction: float | None = None  # inpaint: share of steps following the readout (None: the backend profile's)
    save_memory: str | None = None  # write the final memory here (.safetensors)
    load_memory: str | None = None  # start from this saved memory instead of the photo alone
    fps: float = 16.0  # frames per second of the video
    memory: str = (
        "latent"  # latent | rgb (the pixel-space RGB point-cloud baseline: rasterise + VAE-encode per readout)
    )


#: Parameters of each builder and their defaults (``radius`` None: the median depth of the start view).
BUILDER_PARAMS: dict[str, dict[str, float | None]] = {
    "orbit": {"radius": None, "degrees": 40.0},
    "forward": {"distance": 1.0},
    "pan": {"degrees": 45.0},
    "closed-orbit": {"radius": None, "degrees": 40.0},
    "look-around": {"yaw_deg": 30.0, "pitch_deg": 10.0},
}


def parse_builder(spec: str) -> tuple[str, dict[str, float | None]] | None:
    """``NAME`` or ``NAME:key=value,...`` (e.g. ``orbit:degrees=60,radius=1.5``) as ``(name, parameters)``
    with the defaults of :data:`BUILDER_PARAMS` filled in; None when ``spec`` names no builder (a file).

    Raises:
        ValueError: an unknown parameter or a value that is not a finite number.
    """
    name, _, given = spec.partition(":")
    if name not in BUILDER_PARAMS:
        return None
    params = dict(BUILDER_PARAMS[name])
    for item in filter(None, given.split(",")):
        key, _, value = item.partition("=")
        try:
            number = float(value) if key in params else None
        except ValueError:
            number = None
        if number is None or not math.isfinite(number):
            raise ValueError(
                f"--trajectory {spec!r}: {item!r}: {name} takes {', '.join(f'{k}=NUMBER' for k in params)}"
            )
        params[key] = number
    return name, params


def build_trajectory(spec: str, n_frames: int, start_w2c: torch.Tensor, radius: float) -> torch.Tensor:
    """``n_frames`` poses ``[n, 4, 4]`` of a builder spec (:func:`parse_builder`) from ``start_w2c``.

    Args:
        radius: orbit radius in metres unless the spec gives one (``generate`` passes :func:`orbit_radius`).
    """
    parsed = parse_builder(spec)
    if parsed is None:
        raise ValueError(f"--trajectory: {spec!r} is not one of {', '.join(TRAJECTORIES)}")
    name, p = parsed
    radius = p["radius"] if p.get("radius") is not None else radius
    if name == "orbit":
        return orbit(n_frames, radius, p["degrees"], start_w2c)
    if name == "forward":
        return forward_dolly(n_frames, p["distance"], start_w2c)
    if name == "pan":
        return yaw_pan(n_frames, p["degrees"], start_w2c)
    if name == "look-around":  # yaw right, left and back, pitch up and down twice; ends at the start pose
        return look_around(n_frames, p["yaw_deg"], p["pitch_deg"], start_w2c)
    # closed-orbit: out and back; the turning pose is not repeated, so n_frames stays 4k+1
    return closed_orbit(n_frames, radius, p["degrees"], start_w2c)


def orbit_radius(depth: torch.Tensor) -> float:
    """Radius in metres of the orbits from a start view: the median of its finite depth ``[H, W]`` (2 m without)."""
    finite = depth[torch.isfinite(depth)]
    return float(finite.median()) if finite.numel() else 2.0


def read_trajectory_file(path: Path, n_frames: int, note: Callable[[str], None]) -> torch.Tensor:
    """The first ``n_frames`` poses ``[n, 4, 4]`` of a camera file (``.json`` camera path, else
    RealEstate10K), expressed relative to its first camera (frame 0 is the identity, our start pose).

    Args:
        note: told ``"<file>: using the first N of M poses"`` when the file holds more than are used.

    Raises:
        ValueError: naming the file (and field or line): the readers' errors, or too few poses.
    """
    w2c = read_camera_path_json(path).w2c if path.suffix.lower() == ".json" else read_re10k(path).w2c
    if len(w2c) < n_frames:
        raise ValueError(f"{path}: poses: {len(w2c)} poses, but {n_frames} are needed for the requested segments")
    if len(w2c) > n_frames:
        note(f"{path}: using the first {n_frames} of {len(w2c)} poses")
    w2c = w2c[:n_frames]
    return w2c @ invert_pose(w2c[0])[None]


def _warn(message: str) -> None:
    """Print ``warning: <message>`` to stderr (the message starts with the file it is about)."""
    print(f"warning: {message}", file=sys.stderr)


def _note(message: str) -> None:
    """Print ``note: <message>`` to stderr."""
    print(f"note: {message}", file=sys.stderr)


@dataclass
class CheckedInputs:
    """A run's input files, read and checked by :func:`check_inputs` before any model is loaded.

    Attributes:
        photo: the photo and its depth file; None for the bundled sample scene.
        trajectory: ``[n_frames, 4, 4]`` poses of a camera file; None for a builder name (built once
            the scene's depth gives the orbit radius).
        memory: the memory of ``--load-memory``, or None.
    """

    photo: PhotoFiles | None
    trajectory: torch.Tensor | None
    memory: SpatialMemory | None


def check_inputs(args: GenerateArgs, height: int, width: int, n_frames: int, latent_channels: int) -> CheckedInputs:
    """Read and check every input file of a run, before anything heavy runs.

    Checks the photo (decodable, large enough, not beyond 3:1) and its depth file, the depth and sky
    model folders' files, the camera file (every pose, enough of them) and the saved memory (format,
    tensors, channel count against ``latent_channels``). Prints ``warning: <file>: ...`` for what
    the photo loses and ``note: <file>: using the first N of M poses`` to stderr.

    Raises:
        ValueError: ``"<file>: <field or line>: <reason>"`` for the first bad input.
    """
    if args.image is None and args.depth:
        raise ValueError(f"--depth {args.depth}: given without --image (the bundled sample scene has exact depth)")
    if args.image is not None and args.scene_seed is not None:
        raise ValueError(f"--scene-seed {args.scene_seed}: given with --image {args.image}; choose one")
    photo = (
        None if args.image is None else read_photo_files(args.image, height, width, depth_path=args.depth, warn=_warn)
    )
    if args.depth_model:
        check_model_folder(args.depth_model, "depth model")
    if args.sky_model:
        check_model_folder(args.sky_model, SKY_FOLDER)
    trajectory = None
    if parse_builder(args.trajectory) is None:
        path = Path(args.trajectory)
        if not path.exists():
            raise ValueError(
                f"--trajectory: {args.trajectory!r} is neither one of {', '.join(TRAJECTORIES)} nor an existing file"
            )
        trajectory = read_trajectory_file(path, n_frames, _note)
    memory = None
    if args.load_memory:
        memory = load_memory(args.load_memory, args.memory)
        check_memory_channels(memory, latent_channels, args.load_memory)
    return CheckedInputs(photo, trajectory, memory)


def resolve_defaults(args: GenerateArgs) -> GenerateArgs:
    """``args`` with the backend (:func:`~model.generation.profiles.default_backend`), mode and steps
    that were left None filled in from the backend's profile."""
    name = args.backend or default_backend(bool(args.model))
    backend = profile(name)
    return replace(args, backend=name, mode=args.mode or backend.mode, steps=args.steps or backend.steps)


def resolve_model_refs(args: GenerateArgs) -> GenerateArgs:
    """``args`` with ``--model`` / ``--depth-model`` / ``--sky-model`` given as a Hub repo id replaced by
    its folder in the local cache (looked up offline: :func:`model.io.hub.resolve_model_ref`).

    Raises:
        ValueError: a repo id that is not in the cache (the message names ``fetch-models``).
    """
    flags = {"model": "--model", "depth_model": "--depth-model", "sky_model": "--sky-model"}
    found = {name: resolve_model_ref(getattr(args, name), flag) for name, flag in flags.items() if getattr(args, name)}
    return replace(args, **found)


#: Builds the generation stack of a run: ``load_stack(backbone_config, memory_weights, (height, width),
#: mode=..., on_status=...)``, as :func:`model.generation.stack.load_generation_stack` does; a batch
#: worker passes one that keeps stacks loaded across jobs (:mod:`explorer.batch.worker`).
StackLoader = Callable[..., GenerationStack]
#: Loads a helper model folder of a run: ``load_model(kind, folder, device)``, ``kind`` ``"depth"`` or
#: ``"sky"``, as :func:`load_helper_model` does; a batch worker passes one that keeps them loaded.
ModelLoader = Callable[[str, str, "str | torch.device"], object]
#: The helper model kinds of :func:`load_helper_model`.
HELPER_KINDS = ("depth", "sky")


def load_helper_model(kind: str, folder: str, device: str | torch.device) -> DepthEstimator | SemanticSkySegmenter:
    """Load the depth model (``kind="depth"``: a :class:`TransformersDepthEstimator`) or the sky model
    (``"sky"``: a :class:`SemanticSkySegmenter`) of ``folder`` onto ``device``.

    Raises:
        ModelFolderError: a bad folder (named in the message). ValueError: an unknown ``kind``.
    """
    if kind == "depth":
        return TransformersDepthEstimator(folder, device=device)
    if kind == "sky":
        return SemanticSkySegmenter(folder, device=device)
    raise ValueError(f"kind must be one of {HELPER_KINDS}, got {kind!r}")


def run_generate(
    args: GenerateArgs, load_stack: StackLoader = load_generation_stack, load_model: ModelLoader = load_helper_model
) -> dict:
    """Run the whole job; returns the report written to ``OUT.json``.

    Input files are checked (:func:`check_inputs`) before ``load_stack`` builds (or hands out) the
    backbone and memory weights, and ``load_model`` the depth and sky models.
    """
    args = resolve_model_refs(args)
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"--out: expected a .mp4 path, got {args.out!r}")
    if args.segments < 1:
        raise ValueError(f"--segments must be >= 1, got {args.segments}")
    args = resolve_defaults(args)
    backend = profile(args.backend)
    height, width = backend.generation_size(args.height, args.width)
    config = PipelineConfig.for_backend(
        args.backend,
        steps=args.steps,
        mode=args.mode,
        seed=args.seed,
        inpaint_fraction=args.inpaint_fraction,
        memory_kind=args.memory,
    )
    n_frames = args.segments * (config.segment_frames - 1) + 1
    outputs = declare_outputs(args, n_frames, height, width)
    status = lambda message: print(message, file=sys.stderr)  # noqa: E731
    backbone_config = BackboneConfig(
        backend=args.backend, model_dir=args.model, offload=args.offload, device=args.device
    )
    checked = check_inputs(args, height, width, n_frames, backbone_config.latent_channels)
    if checked.photo is not None and backend.photo_notice:
        _note(backend.photo_notice)
    backbone, branch = load_stack(
        backbone_config, args.memory_weights, (height, width), mode=args.mode, on_status=status
    )
    sky = load_model("sky", args.sky_model, backbone.device) if args.sky_model else None
    with outputs, SceneRenderer() as renderer:
        if checked.photo is None and args.scene_seed is not None:
            inputs = seeded_scene(args.scene_seed, height, width, renderer)
        elif checked.photo is None:
            inputs = bundled_scene(height, width, renderer)
        else:
            estimator = load_model("depth", args.depth_model, backbone.device) if args.depth_model else None
            inputs = scene_from_photo(checked.photo, backbone.device, warn=_warn, estimator=estimator)
        depth, K = inputs.depth, inputs.K
        memory = make_memory(args.memory, config.memory, backbone.device, backbone.vae)
        pipe = MiragePipeline(backbone, config, branch, memory, sky)
        pipe.start(inputs.image, depth, K, prompt=args.prompt)
        if checked.memory is not None:
            if checked.memory.kind == "rgb":
                checked.memory.vae = (
                    backbone.vae
                )  # read before the backbone existed; its readouts encode through this VAE
            pipe.load_memory(checked.memory, source=args.load_memory)
        if checked.trajectory is not None:
            w2c = checked.trajectory
        else:
            w2c = build_trajectory(args.trajectory, n_frames, torch.eye(4, dtype=torch.float64), orbit_radius(depth))
        report = _generate_video(pipe, w2c, inputs.depth_source, outputs, width, height, args, inputs.k_source)
        outputs.write(
            out.with_suffix(".cameras.txt"),
            lambda tmp: write_re10k(
                tmp, w2c, K, width, height, fps=args.fps, url=f"mirage-explorer generate seed={args.seed}"
            ),
        )
        outputs.write(out.with_suffix(".json"), lambda tmp: write_json_atomic(tmp, report))
        if args.save_memory is not None:
            outputs.write(args.save_memory, pipe.memory.save)
    return report


def declare_outputs(args: GenerateArgs, frames: int, height: int, width: int) -> OutputSet:
    """Every file the run will write, checked now (folder, clashes, free space; see :meth:`OutputSet.add`)."""
    out = Path(args.out)
    outputs = OutputSet()
    outputs.add(out, size=min_video_bytes(frames, height, width))
    outputs.add(out.with_suffix(".json"))
    outputs.add(out.with_suffix(".cameras.txt"))
    if args.save_memory is not None:
        outputs.add(args.save_memory, size=(height // 16) * (width // 16) * MEMORY_BYTES_PER_CELL)
    return outputs


def _generate_video(
    pipe: MiragePipeline,
    w2c,
    depth_source: DepthSource,
    outputs: OutputSet,
    width: int,
    height: int,
    args: GenerateArgs,
    k_source: str,
) -> dict:
    segments = []
    initial_points = pipe.memory.stats().points  # the photo's (or the loaded memory's) points, before segment 0
    total_steps = args.segments * pipe.config.steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        with (
            tqdm(total=total_steps, desc="generating", unit="step", file=sys.stderr) as bar,
            Mp4Writer(
                args.out,
                width,
                height,
                args.fps,
                metadata={"generator": "mirage-explorer", "seed": args.seed},
                outputs=outputs,
            ) as video,
        ):
            for segment in pipe.generate(w2c, depth_source, args.segments, on_step=lambda s, i, n: bar.update(1)):
                for frame in segment.frames if segment.index == 0 else segment.frames[1:]:
                    video.append(frame)
                segments.append(
                    {
                        "index": segment.index,
                        "timings_s": segment.timings,
                        "memory_points": segment.memory_points,
                        "memory_bytes": segment.memory_bytes,
                        "seconds_per_frame": segment.timings["total"] / (pipe.config.segment_frames - 1),
                        "visible_fraction": float(segment.visible[1:].float().mean()),
                        "depth_source": segment.depth_source,
                        "depth_residual": segment.depth_residual,
                        "cells": segment.label_counts(),
                    }
                )
                bar.set_postfix(segment=segment.index + 1, points=segment.memory_points)
    return {
        "settings": asdict(args),
        "seed": args.seed,
        "model": pipe.describe(),
        "intrinsics": {"K": pipe.K.tolist(), "source": k_source},
        "depth_source": depth_source.name,
        "trajectory": {
            "spec": args.trajectory,
            "frames": len(w2c),
            "fps": args.fps,
            "camera_to_world": invert_pose(w2c).reshape(len(w2c), 16).tolist(),
        },
        "segments": segments,
        "memory": {
            "initial_points": initial_points,
            "points": pipe.memory.stats().points,
            "bytes": pipe.memory.stats().bytes,
        },
    }
