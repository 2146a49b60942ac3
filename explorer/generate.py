"""Headless generation: ``python main.py generate`` — a photo and a camera path in, a video out.

Writes ``OUT.mp4`` (H.264), ``OUT.json`` (settings, seed, model, trajectory, per-segment timings and
memory stats) and ``OUT.cameras.txt`` (RealEstate10K), each atomically and only after everything was
generated, so a bad input or a failure leaves nothing behind.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from explorer.video_io import Mp4Writer
from model.atomic import write_json_atomic
from model.backbone import BackboneConfig, load_backbone
from model.lora import backbone_config_for_weights, load_memory_weights
from model.camera import (
    closed_loop,
    forward_dolly,
    invert_pose,
    orbit,
    read_camera_path_json,
    read_re10k,
    write_re10k,
    yaw_pan,
)
from explorer.scene_inputs import bundled_scene, photo_inputs
from model.memory_kinds import load_memory, make_memory
from model.pipeline import DepthSource, MiragePipeline, PipelineConfig
from model.scenes import SceneRenderer

TRAJECTORIES = ("orbit", "forward", "pan", "closed-orbit")
DEFAULT_SIZE = {"wan": (704, 1280), "tiny": (176, 320)}
# The tiny backbone has random weights: once tokens stop following the readout it turns them into
# noise, so on tiny they follow it to the end and frames show what the memory holds. Wan refines
# the last 40 % of the schedule freely to blend the memory's content with what it generates.
DEFAULT_INPAINT_FRACTION = {"wan": 0.6, "tiny": 1.0}


@dataclass
class GenerateArgs:
    """Everything ``main.py generate`` accepts (one field per flag)."""

    out: str  # OUT.mp4; OUT.json and OUT.cameras.txt are written beside it
    image: str | None = None  # photo; None uses the bundled sample scene (with its exact depth)
    trajectory: str = "orbit"  # orbit | forward | pan | closed-orbit | a RealEstate10K .txt | a camera-path .json
    segments: int = 2  # segments of 33 frames (32 new frames each)
    backend: str = "tiny"  # tiny | wan
    model: str | None = None  # Wan2.2-TI2V-5B diffusers folder (backend wan)
    memory_weights: str | None = None  # folder with the trained memory branch + LoRA (mode branch)
    mode: str = "inpaint"  # branch | inpaint
    steps: int = 20  # denoising steps per segment
    height: int | None = None  # frame height (default: 704 for wan, 176 for tiny)
    width: int | None = None  # frame width (default: 1280 for wan, 320 for tiny)
    seed: int = 0  # noise seed
    prompt: str = ""  # text prompt
    depth: str | None = None  # depth file for the photo (.png mm / .npy m)
    depth_model: str | None = None  # transformers depth-estimation model folder
    offload: str = "none"  # none | model | group
    device: str | None = None  # torch device (default: cuda when available)
    inpaint_fraction: float | None = None  # inpaint: share of steps following the readout (None: 1.0 tiny, 0.6 wan)
    save_memory: str | None = None  # write the final memory here (.safetensors)
    load_memory: str | None = None  # start from this saved memory instead of the photo alone
    fps: float = 16.0  # frames per second of the video
    memory: str = "latent"  # latent | rgb (the pixel-space RGB point-cloud baseline: rasterise + VAE-encode per readout)


def build_trajectory(spec: str, n_frames: int, start_w2c: torch.Tensor, radius: float) -> torch.Tensor:
    """``n_frames`` poses ``[n, 4, 4]`` for a builder name or a camera file (re-based on the start pose)."""
    if spec == "orbit":
        return orbit(n_frames, radius, 40.0, start_w2c)
    if spec == "forward":
        return forward_dolly(n_frames, 1.0, start_w2c)
    if spec == "pan":
        return yaw_pan(n_frames, 45.0, start_w2c)
    if spec == "closed-orbit":  # out and back; the turning pose is not repeated, so n_frames stays 4k+1
        half = orbit(n_frames // 2 + 1, radius, 40.0, start_w2c)
        loop = closed_loop(half)
        return torch.cat([loop[: len(half)], loop[len(half) + 1 :]])[:n_frames]
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"--trajectory: {spec!r} is neither one of {', '.join(TRAJECTORIES)} nor an existing file")
    w2c = read_camera_path_json(path).w2c if path.suffix.lower() == ".json" else read_re10k(path).w2c
    # express the file's path relative to its first camera, starting at our start pose
    w2c = w2c @ invert_pose(w2c[0])[None] @ start_w2c[None]
    if len(w2c) < n_frames:
        raise ValueError(f"--trajectory {path}: {len(w2c)} frames, but {n_frames} are needed for the requested segments")
    return w2c[:n_frames]


def run_generate(args: GenerateArgs) -> dict:
    """Run the whole job; returns the report written to ``OUT.json``."""
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"--out: expected a .mp4 path, got {args.out!r}")
    if args.segments < 1:
        raise ValueError(f"--segments must be >= 1, got {args.segments}")
    height, width = (args.height or DEFAULT_SIZE[args.backend][0]), (args.width or DEFAULT_SIZE[args.backend][1])
    fraction = args.inpaint_fraction if args.inpaint_fraction is not None else DEFAULT_INPAINT_FRACTION[args.backend]
    config = PipelineConfig(steps=args.steps, mode=args.mode, seed=args.seed, inpaint_fraction=fraction, memory_kind=args.memory)
    if args.mode == "branch" and not args.memory_weights:
        raise ValueError("--mode branch needs --memory-weights DIR (a trained memory branch + LoRA); use --mode inpaint with stock weights")
    status = lambda message: print(message, file=sys.stderr)  # noqa: E731
    backbone_config = BackboneConfig(backend=args.backend, model_dir=args.model, offload=args.offload, device=args.device)
    backbone = load_backbone(backbone_config_for_weights(backbone_config, args.memory_weights), status, apply_offload=False)
    multiple = backbone.expected_image_multiple
    if height % multiple or width % multiple:
        raise ValueError(f"--height/--width {height}x{width} must be multiples of {multiple} for the {args.backend} backbone")
    branch = None
    if args.memory_weights:
        branch = load_memory_weights(args.memory_weights, backbone.transformer).to(backbone.device)
    backbone.apply_offload()
    with SceneRenderer() as renderer:
        if args.image is None:
            inputs = bundled_scene(height, width, renderer)
        else:
            inputs = photo_inputs(args.image, height, width, backbone.device, depth_path=args.depth, depth_model=args.depth_model,
                                  warn=lambda message: print(f"warning: {message}", file=sys.stderr))
        depth, K = inputs.depth, inputs.K
        pipe = MiragePipeline(backbone, config, branch, make_memory(args.memory, config.memory, backbone.device, backbone.vae))
        pipe.start(inputs.image, depth, K, prompt=args.prompt)
        if args.load_memory:
            pipe.load_memory(load_memory(args.load_memory, args.memory, backbone.vae))
        finite = depth[torch.isfinite(depth)]
        radius = float(finite.median()) if finite.numel() else 2.0
        n_frames = args.segments * (config.segment_frames - 1) + 1
        w2c = build_trajectory(args.trajectory, n_frames, torch.eye(4, dtype=torch.float64), radius)
        report = _generate_video(pipe, w2c, inputs.depth_source, out, width, height, args, inputs.k_source)
    write_re10k(out.with_suffix(".cameras.txt"), w2c, K, width, height, fps=args.fps, url=f"mirage-explorer generate seed={args.seed}")
    write_json_atomic(out.with_suffix(".json"), report)
    if args.save_memory:
        pipe.memory.save(args.save_memory)
    return report


def _generate_video(pipe: MiragePipeline, w2c, depth_source: DepthSource, out: Path, width: int, height: int, args: GenerateArgs, k_source: str) -> dict:
    segments = []
    total_steps = args.segments * pipe.config.steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        with tqdm(total=total_steps, desc="generating", unit="step", file=sys.stderr) as bar, Mp4Writer(out, width, height, args.fps, metadata={"generator": "mirage-explorer", "seed": args.seed}) as video:
            for segment in pipe.generate(w2c, depth_source, args.segments, on_step=lambda s, i, n: bar.update(1)):
                for frame in segment.frames if segment.index == 0 else segment.frames[1:]:
                    video.append(frame)
                segments.append({"index": segment.index, "timings_s": segment.timings, "memory_points": segment.memory_points, "memory_bytes": segment.memory_bytes,
                                 "seconds_per_frame": segment.timings["total"] / (pipe.config.segment_frames - 1), "visible_fraction": float(segment.visible[1:].float().mean())})
                bar.set_postfix(segment=segment.index + 1, points=segment.memory_points)
    return {
        "settings": asdict(args),
        "seed": args.seed,
        "model": pipe.describe(),
        "intrinsics": {"K": pipe.K.tolist(), "source": k_source},
        "depth_source": getattr(depth_source, "name", "custom"),
        "trajectory": {"spec": args.trajectory, "frames": len(w2c), "fps": args.fps, "camera_to_world": invert_pose(w2c).reshape(len(w2c), 16).tolist()},
        "segments": segments,
        "memory": {"points": pipe.memory.stats().points, "bytes": pipe.memory.stats().bytes},
    }
