"""Benchmark of the latent spatial memory's operations.

Part ``ops``: for caches of 10^4 ... 10^6 points on the surfaces of a procedural room (random
points without footprints, as before footprints existed): readout of one segment's 9 target latent
frames on the 44x80 grid of 704x1280 video, and the update (write-back) of one segment's 9 latent
frames; then the cache growth in MiB per 33-frame segment at 704x1280 while the camera pans into
new space, and while it comes back (revisit), for each de-duplication mode. Writes
``benchmarks/results/memory_ops-<device>.json`` and prints a table.

Part ``readout`` (:mod:`readout_bench`): the footprint readout against the one-cell readout —
coverage of what the memory holds vs camera motion on the bundled scene and procedural rooms at the
patch-VAE (stride 4) and Wan (stride 16) grids, decoded patch-VAE PSNR, speed at 350k points with
real footprints (and 1M on CUDA), and whether the cost follows what is in view (chunk culling).
Writes ``benchmarks/results/readout-coverage-<device>.md`` and ``.json``.

Run: ``python benchmarks/memory_ops.py [--device cpu|cuda] [--repeats 7] [--part all|ops|readout]``
(``--device cuda`` without a CUDA device is refused, exit code 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.machine import device_label  # noqa: E402
from model.eval.scenes import ProceduralScene, SceneConfig, SceneRenderer  # noqa: E402
from model.geometry.camera import intrinsics_from_fov, scale_intrinsics  # noqa: E402
from model.geometry.trajectories import orbit, yaw_pan  # noqa: E402
from model.io.atomic import write_json_atomic  # noqa: E402
from model.memory.latent import LatentSpatialMemory, MemoryConfig  # noqa: E402

HEIGHT, WIDTH, STRIDE, CHANNELS = 704, 1280, 16, 48
LATENT_H, LATENT_W = HEIGHT // STRIDE, WIDTH // STRIDE
FOV_Y = 55.0
SEGMENT_FRAMES, LATENT_FRAMES = 33, 9
SIZES = (10_000, 30_000, 100_000, 350_000, 1_000_000)
TARGETS = {"readout_350k_cpu_ms": 50.0, "readout_350k_cuda_ms": 1.0, "growth_new_space_mib": 0.45}


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds after two warm-up calls."""
    for _ in range(2):
        fn()
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        samples.append(1000 * (time.perf_counter() - t))
    return statistics.median(samples)


def room_surface_points(scene: ProceduralScene, n: int, seed: int = 0) -> torch.Tensor:
    """``[n, 3]`` points uniformly on the room's walls, floor and ceiling (area-weighted)."""
    lo, hi = scene.room_lo, scene.room_hi
    size = hi - lo
    areas = np.array(
        [
            size[1] * size[2],
            size[1] * size[2],
            size[0] * size[2],
            size[0] * size[2],
            size[0] * size[1],
            size[0] * size[1],
        ]
    )
    rng = np.random.default_rng(seed)
    face = rng.choice(6, size=n, p=areas / areas.sum())
    pts = lo + rng.random((n, 3)) * size
    axis = face // 2
    pts[np.arange(n), axis] = np.where(face % 2 == 0, lo[axis], hi[axis])
    return torch.from_numpy(pts.astype(np.float32))


def segment_poses(start_deg: float, sweep_deg: float) -> torch.Tensor:
    """The 33 poses of one segment of a yaw pan from ``start_deg`` sweeping ``sweep_deg``."""
    return yaw_pan(SEGMENT_FRAMES, sweep_deg, start_w2c=yaw_pan(2, start_deg)[1])


def measure_ops(device: torch.device, repeats: int, scene: ProceduralScene, renderer: SceneRenderer) -> list[dict]:
    K = intrinsics_from_fov(FOV_Y, WIDTH, HEIGHT)
    K_grid = scale_intrinsics(K, (HEIGHT, WIDTH), (LATENT_H, LATENT_W))
    targets = orbit(LATENT_FRAMES, 2.0, 30.0)
    write_poses = segment_poses(0.0, 30.0)[::4]
    depth = torch.from_numpy(np.stack([renderer.render(scene, p, K.numpy(), WIDTH, HEIGHT)[1] for p in write_poses]))
    latents = torch.randn(LATENT_FRAMES, CHANNELS, LATENT_H, LATENT_W).to(device)
    rows = []
    for n in SIZES:
        points = room_surface_points(scene, n)
        memory = LatentSpatialMemory.from_points(points, torch.randn(n, CHANNELS), device=device)
        readout_ms = timed(lambda memory=memory: memory.readout(targets, K_grid, LATENT_H, LATENT_W), device, repeats)
        update_ms = timed(
            lambda memory=memory: memory.clone().update(latents, depth, write_poses, K), device, max(3, repeats // 2)
        )
        clone_ms = timed(lambda memory=memory: memory.clone(), device, max(3, repeats // 2))
        stats = memory.stats()
        visible = float(memory.readout(targets, K_grid, LATENT_H, LATENT_W).visible.float().mean())
        rows.append(
            {
                "points": n,
                "mib": stats.mib,
                "readout_9x44x80_ms": readout_ms,
                "update_9_frames_ms": update_ms - clone_ms,
                "visible_fraction": visible,
            }
        )
        print(
            f"  {n:>9,d} points {stats.mib:8.2f} MiB  readout {readout_ms:8.2f} ms  update {update_ms - clone_ms:8.2f} "
            f"ms  visible {visible:.2f}"
        )
    return rows


def measure_growth(
    device: torch.device,
    scene: ProceduralScene,
    renderer: SceneRenderer,
    config: MemoryConfig,
    segments: int = 5,
    sweep: float = 40.0,
) -> dict:
    """MiB added per segment while panning into new space, then per segment coming back the same way."""
    K = intrinsics_from_fov(FOV_Y, WIDTH, HEIGHT)
    memory = LatentSpatialMemory(config, device)
    start = segment_poses(0.0, sweep)[0]
    rgb, depth = renderer.render(scene, start, K.numpy(), WIDTH, HEIGHT)
    memory.initialize(torch.randn(CHANNELS, LATENT_H, LATENT_W), torch.from_numpy(depth), K, start)
    plan = [(s * sweep, sweep) for s in range(segments)] + [((segments - s) * sweep, -sweep) for s in range(segments)]
    added = []
    for start_deg, sweep_deg in plan:
        poses = segment_poses(start_deg, sweep_deg)[::4]  # latent frame k <-> RGB frame 4k
        depth = torch.from_numpy(np.stack([renderer.render(scene, p, K.numpy(), WIDTH, HEIGHT)[1] for p in poses]))
        before = memory.stats().bytes
        memory.update(torch.randn(LATENT_FRAMES, CHANNELS, LATENT_H, LATENT_W), depth, poses, K)
        added.append((memory.stats().bytes - before) / 2**20)
    return {
        "config": {"dedup": config.dedup, "voxel_size": config.voxel_size, "view_tolerance": config.view_tolerance},
        "sweep_deg_per_segment": sweep,
        "mib_added_new_space": added[:segments],
        "mib_added_revisit": added[segments:],
        "final_points": len(memory),
        "final_mib": memory.stats().mib,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--part", choices=("all", "ops", "readout"), default="all")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here (torch.cuda.is_available() is False)")
    device = torch.device(args.device)
    if args.part in ("all", "readout"):
        from readout_bench import run_readout_benchmark

        run_readout_benchmark(device, args.repeats, Path(args.out), device_label(device), timed)
        if args.part == "readout":
            return 0
    scene = ProceduralScene(SceneConfig(seed=1, room_size=(9.0, 10.0, 3.0), num_objects=10))
    print(f"memory ops on {device_label(device)}")
    with SceneRenderer() as renderer:
        ops = measure_ops(device, args.repeats, scene, renderer)
        growth = [
            measure_growth(device, scene, renderer, cfg)
            for cfg in (
                MemoryConfig(dedup="view"),
                MemoryConfig(dedup="voxel", voxel_size=0.05),
                MemoryConfig(dedup="voxel", voxel_size=0.10),
            )
        ]
    print(f"{'de-dup':<16} {'new space MiB/segment':<40} {'revisit MiB/segment':<40}")
    for g in growth:
        name = g["config"]["dedup"] + ("" if g["config"]["dedup"] == "view" else f"@{g['config']['voxel_size']}m")
        print(
            f"{name:<16} {' '.join(f'{v:.3f}' for v in g['mib_added_new_space']):<40} "
            f"{' '.join(f'{v:.3f}' for v in g['mib_added_revisit']):<40}"
        )
    at_350k = next(r for r in ops if r["points"] == 350_000)
    default = growth[0]
    summary = {
        "readout_350k_ms": at_350k["readout_9x44x80_ms"],
        "readout_target_ms": TARGETS["readout_350k_cuda_ms" if device.type == "cuda" else "readout_350k_cpu_ms"],
        "growth_new_space_mib_max": max(default["mib_added_new_space"]),
        "growth_revisit_mib_max": max(default["mib_added_revisit"]),
        "growth_target_mib": TARGETS["growth_new_space_mib"],
    }
    summary["readout_ok"] = summary["readout_350k_ms"] <= summary["readout_target_ms"]
    summary["growth_ok"] = summary["growth_new_space_mib_max"] <= summary["growth_target_mib"]
    result = {
        "benchmark": "memory_ops",
        "device": device_label(device),
        "torch": torch.__version__,
        "grid": [LATENT_H, LATENT_W],
        "video": [HEIGHT, WIDTH],
        "ops": ops,
        "growth": growth,
        "summary": summary,
    }
    out = Path(args.out) / f"memory_ops-{device.type}.json"
    write_json_atomic(out, result)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
