"""mirage-mini on held-out worlds: PSNR against exact renders and seconds per segment.

For each held-out scene seed (>= 5000, never trained on; :func:`model.eval.scenes.world.world_config`)
and trajectory (``closed-orbit`` and ``forward`` of ``main.py generate``, 2 segments of 33 frames),
the start view is rendered with exact depth, each system generates the path, and every frame is
compared with the exact render of its camera:

* ``psnr``: whole frames; ``psnr_visible`` / ``psnr_holes``: the latent frames' pixels whose cell the
  memory readout covered / did not (frames 4k of each segment);
* ``psnr_c``: closed-loop PSNR, the closed orbit's last frame (back at the start pose) against its
  first (the input view);
* ``s_per_segment``: median wall seconds of one 33-frame segment (pipeline timings ``total``).

Systems: ``mini`` (the shipped model, mode branch, its profile's size and steps) and ``tiny``
(random weights, inpaint mode, the same size and steps). Writes ``benchmarks/results/mini-<tag>.json``
and ``.md`` with the machine.

    .venv/bin/python benchmarks/mini_heldout.py --seeds 5000,5001,5002,5003 --tag cpu
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.generate import build_trajectory  # noqa: E402
from explorer.scene_inputs import SceneDepth  # noqa: E402
from model.eval.metrics import psnr  # noqa: E402
from model.eval.scenes import ProceduralScene, SceneRenderer  # noqa: E402
from model.eval.scenes.world import HELD_OUT_SEED, world_config  # noqa: E402
from model.generation.backbone import BackboneConfig  # noqa: E402
from model.generation.pipeline import MiragePipeline, PipelineConfig  # noqa: E402
from model.generation.profiles import profile  # noqa: E402
from model.generation.stack import load_generation_stack  # noqa: E402
from model.geometry.camera import intrinsics_from_fov  # noqa: E402
from model.io.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from model.training.clips import PROCEDURAL_FOV_Y_DEG, PROCEDURAL_FPS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's machine string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def run_world(pipe, scene, renderer, trajectory: str, segments: int, height: int, width: int) -> dict:
    """Generate ``segments`` segments of ``trajectory`` in ``scene`` and score them (see the module docstring)."""
    K = intrinsics_from_fov(PROCEDURAL_FOV_Y_DEG, width, height).to(torch.float64)
    image, depth = renderer.render(scene, np.eye(4), K, width, height)
    pipe.start(image, torch.from_numpy(depth), K, prompt="a room")
    n_frames = segments * 32 + 1
    finite = depth[np.isfinite(depth)]
    w2c = build_trajectory(trajectory, n_frames, torch.eye(4, dtype=torch.float64), float(np.median(finite)))
    whole, visible, holes, seconds, frames = [], [], [], [], [image]
    for result in pipe.generate(w2c, SceneDepth(scene, renderer, width, height), segments):
        seconds.append(result.timings["total"])
        for j, (frame, index) in enumerate(zip(result.frames[1:], result.frame_ids[1:], strict=True)):
            truth = renderer.render(scene, w2c[index], K, width, height, t=index / PROCEDURAL_FPS)[0]
            whole.append(psnr(frame, truth))
            frames.append(frame)
            if (j + 1) % 4 == 0:  # latent frame k <-> RGB frame 4k of the segment
                cells = result.visible[(j + 1) // 4].numpy()
                mask = np.kron(cells, np.ones((4, 4), bool)).astype(bool)
                visible.append(psnr(frame, truth, mask))
                holes.append(psnr(frame, truth, ~mask))
    row = {
        "psnr": float(np.mean(whole)),
        "psnr_visible": float(np.nanmean(visible)),
        "psnr_holes": float(np.nanmean(holes)),
        "seconds": seconds,
    }
    if trajectory == "closed-orbit":
        row["psnr_c"] = psnr(frames[-1], frames[0])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="5000,5001,5002,5003", help="held-out scene seeds (>= 5000)")
    parser.add_argument("--trajectories", default="closed-orbit,forward")
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--systems", default="mini,tiny")
    parser.add_argument("--model", help="mini model folder (default: the shipped one)")
    parser.add_argument("--tag", default="cpu", help="results file suffix")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the mini profile's)")
    parser.add_argument(
        "--inpaint-fraction", dest="inpaint_fraction", type=float, help="share of steps following the readout (mini)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    if min(seeds) < HELD_OUT_SEED:
        parser.error(f"--seeds: held-out seeds are >= {HELD_OUT_SEED}")
    mini = profile("mini")
    height, width = mini.generate_size
    results: dict = {}
    with SceneRenderer() as renderer:
        for system in args.systems.split(","):
            backend = system
            config = BackboneConfig(backend=backend, model_dir=args.model if backend == "mini" else None, device="cpu")
            mode = profile(backend).mode
            stack = load_generation_stack(config, None, (height, width), mode=mode)
            rows = []
            for seed in seeds:
                scene = ProceduralScene(world_config(seed))
                for trajectory in args.trajectories.split(","):
                    pipe = MiragePipeline(
                        stack.backbone,
                        PipelineConfig.for_backend(
                            backend,
                            steps=args.steps or mini.steps,
                            inpaint_fraction=args.inpaint_fraction if backend == "mini" else None,
                        ),
                        stack.branch,
                    )
                    row = run_world(pipe, scene, renderer, trajectory, args.segments, height, width)
                    rows.append({"seed": seed, "trajectory": trajectory, **row})
                    print(system, seed, trajectory, {k: v for k, v in row.items() if k != "seconds"}, flush=True)
            closed = [r["psnr_c"] for r in rows if "psnr_c" in r]
            results[system] = {
                "psnr": float(np.mean([r["psnr"] for r in rows])),
                "psnr_visible": float(np.nanmean([r["psnr_visible"] for r in rows])),
                "psnr_holes": float(np.nanmean([r["psnr_holes"] for r in rows])),
                "psnr_c": float(np.mean(closed)) if closed else None,
                "s_per_segment": statistics.median(s for r in rows for s in r["seconds"]),
                "runs": rows,
            }
    machine = (
        f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    report = {
        "machine": machine,
        "size": [height, width],
        "steps": args.steps or mini.steps,
        "mini_inpaint_fraction": args.inpaint_fraction or mini.inpaint_fraction,
        "seeds": seeds,
        "trajectories": args.trajectories.split(","),
        "segments": args.segments,
        "systems": results,
    }
    RESULTS.mkdir(exist_ok=True)
    write_json_atomic(RESULTS / f"mini-{args.tag}.json", report)
    lines = [
        f"# mirage-mini on held-out worlds (seeds {args.seeds}; {args.trajectories}; {args.segments} segments)",
        "",
        f"{width}x{height}, {args.steps or mini.steps} steps, mini follows the readout for "
        f"{args.inpaint_fraction or mini.inpaint_fraction:.2f} of them; machine: {machine}",
        "",
        "| system | PSNR | PSNR visible | PSNR holes | PSNR_C | s / 33-frame segment |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        psnr_c = "n/a" if r["psnr_c"] is None else f"{r['psnr_c']:.2f}"
        lines.append(
            f"| {name} | {r['psnr']:.2f} | {r['psnr_visible']:.2f} | {r['psnr_holes']:.2f} | {psnr_c} | "
            f"{r['s_per_segment']:.2f} |"
        )
    write_text_atomic(RESULTS / f"mini-{args.tag}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
