"""Rewind-checkpoint and memory-vs-model costs per segment, as the explorer's worker pays them.

Runs the tiny backend (exact 4x4 patch VAE, 48 channels like Wan's latent) on the bundled scene with exact
depth, an orbit of ``--segments`` 33-frame segments at ``--height x --width`` (default: the tiny profile's
generation size), and after each segment measures what the worker does on top of generating:

* the rewind checkpoint (:class:`explorer.history.MemoryCheckpoint`): its bytes (memory + last frame),
  the seconds to take it (a clone to the CPU) and to restore it;
* the memory-vs-model readout (:func:`explorer.worker.messages.decode_readout`): decode seconds.

The latent grid is the frame size / 4 here (Wan: / 16), so at 176x320 the grid is 44x80, Wan's grid at
704x1280: the memory's size per segment is Wan's at that size (the last frame in each checkpoint is
16x smaller than Wan's: add 2.6 MiB per checkpoint there). Writes
``benchmarks/results/rewind_checkpoints-<device>.json``.

Run: ``python benchmarks/rewind_checkpoints.py [--segments 8] [--height 176 --width 320]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.history import MemoryCheckpoint  # noqa: E402
from explorer.machine import device_label  # noqa: E402
from explorer.scene_inputs import bundled_scene  # noqa: E402
from explorer.worker.messages import decode_readout  # noqa: E402
from model.baselines.kinds import make_memory  # noqa: E402
from model.eval.scenes import SceneRenderer  # noqa: E402
from model.generation.backbone import BackboneConfig  # noqa: E402
from model.generation.pipeline import MiragePipeline, PipelineConfig  # noqa: E402
from model.generation.profiles import profile  # noqa: E402
from model.generation.stack import load_generation_stack  # noqa: E402
from model.geometry.trajectories import orbit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    height, width = profile("tiny").generation_size(args.height, args.width)
    config = PipelineConfig(steps=args.steps)
    stack = load_generation_stack(BackboneConfig(backend="tiny", device="cpu"), frame_hw=(height, width))
    backbone = stack.backbone
    renderer = SceneRenderer()
    try:
        inputs = bundled_scene(height, width, renderer)
        memory = make_memory(config.memory_kind, config.memory, backbone.device, backbone.vae)
        pipe = MiragePipeline(backbone, config, stack.branch, memory)
        pipe.start(inputs.image, inputs.depth, inputs.K)
        frames = args.segments * (config.segment_frames - 1) + 1
        w2c = orbit(frames, degrees=10.0 * args.segments)
        rows = []
        for s in range(args.segments):
            poses = w2c[s * (config.segment_frames - 1) : (s + 1) * (config.segment_frames - 1) + 1]
            result = pipe.run_segment(poses, inputs.depth_source)
            started = time.perf_counter()
            checkpoint = MemoryCheckpoint.take(pipe.memory, pipe.last_frame, result.w2c[-1], s + 1, {})
            take_s = time.perf_counter() - started
            started = time.perf_counter()
            checkpoint.restore(backbone.device)
            restore_s = time.perf_counter() - started
            readout = decode_readout(backbone.vae, result)
            rows.append(
                {
                    "segment": s,
                    "memory_points": result.memory_points,
                    "checkpoint_mib": checkpoint.nbytes / 2**20,
                    "take_ms": 1e3 * take_s,
                    "restore_ms": 1e3 * restore_s,
                    "readout_decode_ms": 1e3 * readout.decode_s,
                    "segment_s": result.timings["total"],
                    "visible_fraction": float(readout.visible[1:].mean()),
                }
            )
            print(json.dumps(rows[-1]))
    finally:
        renderer.close()
    total = sum(r["checkpoint_mib"] for r in rows)
    out = {
        "benchmark": "rewind_checkpoints",
        "device": device_label(torch.device("cpu")),
        "torch": torch.__version__,
        "frame": [height, width],
        "latent_grid": [height // 4, width // 4],
        "segments": rows,
        "summary": {
            "checkpoint_mib_per_segment_growth": (rows[-1]["checkpoint_mib"] - rows[0]["checkpoint_mib"])
            / max(1, len(rows) - 1),
            "all_checkpoints_mib": total,
            "mean_take_ms": sum(r["take_ms"] for r in rows) / len(rows),
            "mean_readout_decode_ms": sum(r["readout_decode_ms"] for r in rows) / len(rows),
        },
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "rewind_checkpoints-cpu.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
