"""Benchmark of the instant memory preview (explorer.preview.MemoryPreviewRenderer).

A memory-like point cloud of about 300k points (the bundled scene's room seen from several views,
one point per 4x4 pixel cell of a 1280x704 frame with its colour and cell footprint) is uploaded
once and rendered at 640x352 from poses along an orbit; the time of ``render()`` (draw + read-back
+ hole fill) is the input-to-preview latency the UI adds on top of its own paint.

    python benchmarks/preview.py            # -> benchmarks/results/preview-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.preview import DEFAULT_MAX_DRAW_POINTS, MemoryPreviewRenderer, cell_footprints  # noqa: E402
from model.eval.scenes import SAMPLE_CONFIG, ProceduralScene, SceneRenderer  # noqa: E402
from model.geometry.camera import intrinsics_from_fov, invert_pose, scale_intrinsics, unproject_depth  # noqa: E402
from model.geometry.trajectories import orbit, yaw_pan  # noqa: E402

STRIDE = 4  # PatchVAE stride; Wan2.2's is 16 (then the same room has 16x fewer points)


def memory_like_points(target_points: int, gen_hw=(704, 1280)):
    """Points, colours and footprints of one latent cell per ``STRIDE`` x ``STRIDE`` pixels over several views."""
    scene = ProceduralScene(SAMPLE_CONFIG)
    H, W = gen_hw
    K = intrinsics_from_fov(55.0, W, H)
    K_grid = scale_intrinsics(K, (H, W), (H // STRIDE, W // STRIDE))
    poses = torch.cat([yaw_pan(4, -120.0)[1:], yaw_pan(4, 120.0), orbit(4, 2.0, 60.0)[1:], orbit(4, 2.0, -60.0)[1:]])
    positions, colours, footprints = [], [], []
    with SceneRenderer() as renderer:
        for i, w2c in enumerate(poses):
            rgb, depth = renderer.render(scene, w2c, K, W, H)
            cell_depth = torch.from_numpy(depth[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE].copy()).double()
            valid = torch.isfinite(cell_depth)
            pts = unproject_depth(cell_depth, K_grid, invert_pose(w2c))[valid].float().numpy()
            col = rgb[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE][valid.numpy()]
            positions.append(pts)
            colours.append(col)
            footprints.append(cell_footprints(pts, np.full(len(pts), i), {i: w2c.numpy()}, float(K[0, 0]), STRIDE))
            if sum(len(p) for p in positions) >= target_points:
                break
    positions, colours, footprints = (np.concatenate(a)[:target_points] for a in (positions, colours, footprints))
    return positions, colours, footprints


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=300_000)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "preview-cpu.json"))
    args = parser.parse_args(argv)

    positions, colours, footprints = memory_like_points(args.points)
    K = intrinsics_from_fov(55.0, args.width, args.height)
    path = orbit(args.frames, 2.0, 40.0)
    load_before = os.getloadavg()
    runs = {}
    for name, cap in (("default_lod", DEFAULT_MAX_DRAW_POINTS), ("no_lod", None)):
        with MemoryPreviewRenderer(
            cell_angle_rad=STRIDE / float(K[0, 0]) * args.width / 1280, max_draw_points=cap
        ) as preview:
            with preview._ctx:  # noqa: SLF001 - reporting only
                renderer_info = dict(preview._ctx.info)  # noqa: SLF001
            t = time.perf_counter()
            preview.set_points(positions, colours, footprints)
            upload_ms = 1000 * (time.perf_counter() - t)
            preview.render(path[0], K, args.width, args.height)  # warm-up (shader compile, FBO)
            times, cpu, coverage, drawn = [], [], [], []
            for w2c in path:
                t, c = time.perf_counter(), time.process_time()
                preview.render(w2c, K, args.width, args.height)
                times.append(1000 * (time.perf_counter() - t))
                cpu.append(1000 * (time.process_time() - c))
                coverage.append(float(preview.last_coverage.mean()))
                drawn.append(preview.last_drawn)
        times_sorted = sorted(times)
        runs[name] = {
            "max_draw_points": cap,
            "render_ms": {
                "median": statistics.median(times),
                "p90": times_sorted[int(0.9 * (len(times) - 1))],
                "max": max(times),
                "min": min(times),
            },
            "cpu_ms_all_threads": {"median": statistics.median(cpu), "max": max(cpu)},
            "upload_ms": upload_ms,
            "mean_points_drawn": statistics.mean(drawn),
            "mean_coverage": statistics.mean(coverage),
            "within_budget": statistics.median(times) <= 50.0,
        }
    result = {
        "benchmark": "explorer.preview.MemoryPreviewRenderer.render (cull + draw + read-back + hole fill)",
        "points": int(len(positions)),
        "size": [args.width, args.height],
        "frames": args.frames,
        "budget_ms": 50.0,
        "runs": runs,
        "gl_renderer": renderer_info.get("GL_RENDERER"),
        "gl_version": renderer_info.get("GL_VERSION"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "note": (
            "render_ms is wall-clock on a shared machine: read it with the load averages. cpu_ms_all_threads is the "
            "CPU time of all of this process's threads (llvmpipe's included) per render: the wall time it would take "
            "on one idle core, an upper bound on an idle machine with more cores"
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
