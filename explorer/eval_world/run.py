"""``main.py eval-world``: generate procedural worlds with each system and score every frame against
the exact render of the same camera.

For each scene seed and trajectory: the world's exact render at the start pose (identity) is the
input image, with its exact depth; the trajectory is ``generate``'s builder of that name with its
default parameters (:func:`explorer.generate.build_trajectory`, orbit radius from the start depth);
every system generates ``segments`` segments from that image (exact depth of the generated frames'
cameras for the memory write-back, :class:`TrajectoryDepth`), and every generated
frame (1..N-1) is scored against the exact render at its camera (:mod:`model.eval.frame_scores`),
whole and split by :func:`explorer.eval_world.coverage.reference_coverage`.

Outputs (one :class:`model.io.atomic.OutputSet`, checked before anything loads): ``DIR/summary.json``,
``DIR/table.md`` and ``DIR/contact_sheet.png`` (:mod:`explorer.eval_world.report`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from explorer.eval_world.coverage import reference_coverage
from explorer.eval_world.pipelines import load_stacks, make_pipeline
from explorer.eval_world.report import (
    CONTACT_SHEET,
    SUMMARY,
    TABLE,
    contact_sheet,
    markdown_table,
    sheet_frame_ids,
    summarize,
)
from explorer.eval_world.systems import SYSTEMS, System, check_systems
from explorer.generate import TRAJECTORIES, build_trajectory, orbit_radius
from explorer.machine import machine_description
from model.eval.frame_scores import frame_scores, mean_scores
from model.eval.metrics import closed_loop_metrics
from model.eval.scenes import SAMPLE_FOV_Y_DEG, ProceduralScene, SceneRenderer
from model.eval.scenes.paths import PATH_MARGIN_M
from model.eval.scenes.world import HELD_OUT_SEED, world_config
from model.generation.pipeline import PipelineConfig
from model.generation.profiles import PROFILES
from model.geometry.camera import intrinsics_from_fov, invert_pose
from model.io.atomic import OutputSet, write_json_atomic, write_text_atomic
from model.io.images import save_png

#: Frames per second of the trajectories (``generate``'s default; times of a moving object).
FPS = 16.0
#: The backend whose profile gives the frame size when none is given: the shipped model's.
SIZE_BACKEND = "mini"


@dataclass
class EvalWorldArgs:
    """Everything ``main.py eval-world`` accepts (one field per flag)."""

    out: str  # output folder: summary.json, table.md, contact_sheet.png
    seeds: str  # comma-separated scene seeds, e.g. "5001,5002" (held-out worlds: >= HELD_OUT_SEED, 5000)
    trajectories: str = ",".join(TRAJECTORIES)  # comma-separated names of explorer.generate.TRAJECTORIES
    systems: str = ",".join(SYSTEMS)  # comma-separated names of explorer.eval_world.systems.SYSTEMS
    segments: int = 3  # segments of 33 frames per trajectory
    steps: int | None = None  # denoising steps per segment (None: each backend profile's)
    inpaint_fraction: float | None = None  # share of steps visible tokens follow the readout (None: each profile's)
    height: int | None = None  # frame height in pixels (None: the shipped model's profile size)
    width: int | None = None  # frame width in pixels
    seed: int = 0  # noise seed
    device: str | None = None  # torch device (default: cuda when available)
    model: str | None = None  # mini model folder (default: the shipped resources/models/mirage-mini)


@dataclass
class Plan:
    """The checked arguments of a run."""

    seeds: list[int]
    trajectories: list[str]
    systems: list[System]
    height: int
    width: int


def _names(value: str, flag: str) -> list[str]:
    names = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not n for n in names):
        raise ValueError(f"{flag}: {value!r} is not a comma-separated list of names")
    if len(set(names)) != len(names):
        raise ValueError(f"{flag}: {value!r} names something twice")
    return names


def parse_seeds(value: str) -> list[int]:
    """``"5001,5002"`` -> ``[5001, 5002]``.

    Raises:
        ValueError: ``"--seeds: ..."`` for anything but distinct integers >= 0 separated by commas.
    """
    names = _names(value, "--seeds")
    if not all(n.isdigit() for n in names):
        raise ValueError(f"--seeds: {value!r} is not a comma-separated list of scene seeds (integers >= 0)")
    return [int(n) for n in names]


def check_args(args: EvalWorldArgs) -> Plan:
    """Check every argument before anything heavy runs.

    Raises:
        ValueError: naming the flag (or the missing model folder).
    """
    seeds = parse_seeds(args.seeds)
    trajectories = _names(args.trajectories, "--trajectories")
    unknown = [t for t in trajectories if t not in TRAJECTORIES]
    if unknown:
        raise ValueError(f"--trajectories: {', '.join(map(repr, unknown))}: not one of {', '.join(TRAJECTORIES)}")
    if args.segments < 1:
        raise ValueError(f"--segments must be >= 1, got {args.segments}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.inpaint_fraction is not None and not 0.0 <= args.inpaint_fraction <= 1.0:
        raise ValueError(f"--inpaint-fraction must be in [0, 1], got {args.inpaint_fraction}")
    systems = check_systems(_names(args.systems, "--systems"), args.model)
    height, width = PROFILES[SIZE_BACKEND].generation_size(args.height, args.width)
    if height < 0 or width < 0:  # multiples of the backbone's image multiple: checked as its stack loads
        raise ValueError(f"--height/--width: {width}x{height} pixels must be positive")
    return Plan(seeds, trajectories, systems, height, width)


def declare_outputs(out: Path, plan: Plan) -> OutputSet:
    """The run's three files, checked now (folder, clashes, free space)."""
    outputs = OutputSet()
    outputs.add(out / SUMMARY)
    outputs.add(out / TABLE)
    rows = 1 + len(plan.systems)
    outputs.add(out / CONTACT_SHEET, size=rows * plan.height * plan.width * len(plan.trajectories))
    return outputs


def scene_for_seed(seed: int) -> ProceduralScene:
    """The procedural world of a scene seed (:func:`model.eval.scenes.world.world_config`, as training draws them)."""
    return ProceduralScene(world_config(seed))


def run_eval_world(args: EvalWorldArgs, on_status: Callable[[str], None] | None = None) -> dict:
    """Run the benchmark and write its outputs; returns the summary written to ``summary.json``.

    Args:
        on_status: told a line per stage and per scored run (default: printed to stderr).
    """
    status = on_status or (lambda message: print(message, file=sys.stderr))
    plan = check_args(args)
    out = Path(args.out)
    outputs = declare_outputs(out, plan)
    started, load = time.perf_counter(), os.getloadavg()[0]
    n_frames = args.segments * (PipelineConfig().segment_frames - 1) + 1
    stacks = load_stacks(plan.systems, (plan.height, plan.width), args.device, status, args.model)
    device = next(iter(stacks.values())).backbone.device
    seen = [seed for seed in plan.seeds if seed < HELD_OUT_SEED]
    if seen:
        status(f"note: seeds {', '.join(map(str, seen))} are training worlds (held out: >= {HELD_OUT_SEED})")
    runs, sheet, picks = [], {}, sheet_frame_ids(n_frames)
    with outputs, SceneRenderer() as renderer:
        for seed in plan.seeds:
            world = World(scene_for_seed(seed), renderer, plan.width, plan.height)
            for trajectory in plan.trajectories:
                truth = world.truth(trajectory, n_frames)
                if not truth.free:
                    status(f"warning: seed {seed} {trajectory}: the camera passes through a wall or furniture")
                if seed == plan.seeds[0]:
                    sheet[trajectory] = {"ground truth": truth.frames[picks]}
                for system in plan.systems:
                    pipe = make_pipeline(system, stacks[system.backend], args.steps, args.seed, args.inpaint_fraction)
                    frames, run = score_run(pipe, world, truth, args.segments)
                    runs.append(
                        {"seed": seed, "trajectory": trajectory, "system": system.name, "path_free": truth.free, **run}
                    )
                    if seed == plan.seeds[0]:
                        sheet[trajectory][system.name] = frames[picks]
                    status(
                        f"seed {seed} {trajectory} {system.name}: PSNR {run['psnr']:.2f} dB "
                        f"(visible {run['psnr_visible']:.2f}, holes {run['psnr_holes']:.2f}), "
                        f"{run['s_per_frame']:.3f} s/frame"
                    )
        settings = {**asdict(args), "height": plan.height, "width": plan.width, "fov_y_deg": SAMPLE_FOV_Y_DEG}
        settings["load_average"] = [load, os.getloadavg()[0]]  # 1-minute load at start and end: other jobs
        summary = summarize(runs, plan, settings, machine_description(device), time.perf_counter() - started)
        outputs.write(out / SUMMARY, lambda tmp: write_json_atomic(tmp, summary))
        outputs.write(out / TABLE, lambda tmp: write_text_atomic(tmp, markdown_table(summary)))
        outputs.write(out / CONTACT_SHEET, lambda tmp: save_png(tmp, contact_sheet(sheet, picks)))
    return summary


@dataclass
class Truth:
    """One trajectory through a world, exactly: poses ``w2c [N, 4, 4]``, renders ``frames [N, H, W, 3]``
    uint8 and ``depth [N, H, W]`` metres at times ``i / FPS``, and the ``visible [N, H, W]`` bool split
    (:func:`reference_coverage`)."""

    w2c: torch.Tensor
    frames: np.ndarray
    depth: np.ndarray
    visible: np.ndarray
    free: bool = True  # every camera centre keeps PATH_MARGIN_M from walls and furniture

    def depth_source(self) -> TrajectoryDepth:
        """A fresh depth source for one generation along this trajectory."""
        return TrajectoryDepth(self.depth, self.w2c)


class TrajectoryDepth:
    """The exact depth of the generated frames (a :class:`~model.generation.depth.DepthSource`), looked up in
    the trajectory's renders. The pipeline asks for its written frames in order, so each requested pose is
    the first frame at that pose after the last one found: a path that passes a pose twice (out and back)
    gets each visit's own depth (a moving object has moved in between).

    Args:
        depth: ``[N, H, W]`` float32 metres of the trajectory's frames. w2c: ``[N, 4, 4]`` their poses.
    """

    name = "exact (procedural world, rendered at each frame's time)"

    def __init__(self, depth: np.ndarray, w2c: torch.Tensor) -> None:
        self.depth, self.w2c, self.next = depth, torch.as_tensor(w2c, dtype=torch.float64), 0

    def __call__(self, frames: np.ndarray, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """``[T, H, W]`` float32 depth of the ``T`` poses ``w2c`` (``frames`` and ``K`` are not needed).

        Raises:
            ValueError: a pose the trajectory does not reach after the last frame found.
        """
        found = []
        for pose in torch.as_tensor(w2c, dtype=torch.float64).cpu():
            later = torch.arange(self.next, len(self.w2c))
            match = later[torch.isclose(self.w2c[later], pose, rtol=0.0, atol=1e-9).flatten(1).all(1)]
            if not len(match):
                raise ValueError(f"depth asked at a pose the trajectory does not reach after frame {self.next - 1}")
            found.append(int(match[0]))
            self.next = found[-1] + 1
        return torch.from_numpy(self.depth[found])


class World:
    """A procedural world seen from its start pose (the identity) at ``width x height`` pixels.

    Attributes:
        K: ``[3, 3]`` pixel intrinsics (vertical FOV :data:`~model.eval.scenes.SAMPLE_FOV_Y_DEG`).
        image, depth: the start view, ``[H, W, 3]`` uint8 and ``[H, W]`` float32 metres.
    """

    def __init__(self, scene: ProceduralScene, renderer: SceneRenderer, width: int, height: int) -> None:
        self.scene, self.renderer, self.width, self.height = scene, renderer, width, height
        self.K = intrinsics_from_fov(SAMPLE_FOV_Y_DEG, width, height)
        self.start = torch.eye(4, dtype=torch.float64)
        self.image, self.depth = renderer.render(scene, self.start, self.K, width, height)

    def truth(self, trajectory: str, n_frames: int) -> Truth:
        """``generate``'s trajectory of that name from the start pose, rendered exactly, with its split."""
        w2c = build_trajectory(trajectory, n_frames, self.start, orbit_radius(torch.from_numpy(self.depth)))
        frames, depth = self.renderer.render_trajectory(self.scene, w2c, self.K, self.width, self.height, fps=FPS)
        free = bool(self.scene.is_free(invert_pose(w2c)[:, :3, 3].numpy(), PATH_MARGIN_M).all())
        return Truth(w2c, frames, depth, reference_coverage(frames, depth, w2c, self.K), free)


def score_run(pipe, world: World, truth: Truth, segments: int) -> tuple[np.ndarray, dict]:
    """Generate ``segments`` segments along ``truth.w2c`` from the world's start view and score them.

    Returns:
        frames: ``[N, H, W, 3]`` uint8 generated (frame 0 is the start image).
        run: the means of :data:`model.eval.frame_scores.SCORES` over frames 1..N-1, ``psnr_c`` (None when
            the path does not return to its start pose), ``s_per_frame`` (generation wall time per new frame),
            ``cache_mib_per_segment`` and ``memory_visible_fraction``
            (share of latent cells the system's own memory showed in its readouts).
    """
    pipe.start(world.image, torch.from_numpy(world.depth), world.K, world.start)
    start_bytes = pipe.memory.stats().bytes
    results = list(pipe.generate(truth.w2c, truth.depth_source(), segments))
    frames = np.concatenate([results[0].frames] + [r.frames[1:] for r in results[1:]])
    scores = [frame_scores(frames[i], truth.frames[i], truth.visible[i]) for i in range(1, len(frames))]
    loop = closed_loop_metrics(frames, truth.w2c)
    total = sum(r.timings["total"] for r in results)
    return frames, {
        **mean_scores(scores),
        "psnr_c": loop["psnr_c"] if loop["return_frame"] is not None else None,
        "s_per_frame": total / (len(frames) - 1),
        "cache_mib_per_segment": (results[-1].memory_bytes - start_bytes) / 2**20 / len(results),
        "memory_visible_fraction": float(np.mean([r.visible[1:].float().mean() for r in results])),
    }
