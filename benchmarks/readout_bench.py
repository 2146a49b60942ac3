"""The readout part of ``benchmarks/memory_ops.py``: footprint splats against one cell per point.

* Coverage: a memory built from one RGB-D view (the bundled scene, and procedural rooms) read out
  at cameras moved forward 0..1.5 m, panned 15/30 deg and orbited 15/30 deg (both ways) about the
  point the view looks at, on the latent grid of the patch VAE (stride 4, 1280x704 -> 320x176) and
  of Wan (stride 16 -> 80x44). "Surfaces" = the cells where the memory's own surfaces truly project,
  from the same depth at full resolution (:mod:`model.eval.coverage`). Goal: readout >= 97 % of the
  surfaces, cells filled without a surface <= 2 % of the grid.
* Accuracy: the patch VAE's readout decoded and compared with the exact render of the moved camera
  (bundled scene, stride 4): PSNR on the cells the one-cell readout covers, for both readouts, and on
  all cells the footprint readout covers.
* Speed: 9 latent frames 44x80 from a 350k-point cache with real footprints (100 views of a room
  lifted without de-duplication; and 1M on CUDA), and from the random surface points of the ``ops``
  part (no footprints). Goal: <= 50 ms on the 2-core CPU, <= 1 ms on an H100/H200 at 350k.
* Cost follows the view: the same 9 frames from a cache written (with de-duplication) from 100 views
  around a room vs from the 20 views around the targets; goal ratio <= 1.5x; without chunk culling
  for comparison.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from model.eval.coverage import coverage_stats, surface_cells
from model.eval.scenes import ProceduralScene, SceneConfig, SceneRenderer
from model.generation.patch_vae import PatchVAE
from model.geometry.camera import intrinsics_from_fov, invert_pose, scale_intrinsics, unproject_depth
from model.geometry.trajectories import forward_dolly, orbit, yaw_pan
from model.io.atomic import write_json_atomic, write_text_atomic
from model.io.rgbd import load_rgbd_folder
from model.memory.footprint import cell_axes
from model.memory.latent import LatentSpatialMemory, MemoryConfig, downsample_depth, zbuffer_project

SAMPLE = Path(__file__).resolve().parent.parent / "resources" / "sample_scene"
FORWARD_M = (0.0, 0.25, 0.5, 1.0, 1.5)
ANGLES = (15.0, 30.0)
STRIDES = (4, 16)
ROOM_SEEDS = (1, 2, 3)
GOALS = {"coverage_ratio": 0.97, "over": 0.02, "cpu_ms": 50.0, "cuda_ms": 1.0, "view_ratio": 1.5}


def motions(w2c: torch.Tensor, centre_m: float) -> dict[str, torch.Tensor]:
    """Target poses by name: forward, pans and orbits (both ways) about the point ``centre_m`` ahead."""
    out = {f"forward {d:g} m": forward_dolly(2, d, w2c)[1] for d in FORWARD_M}
    for a in ANGLES:
        out[f"pan {a:g} deg"] = yaw_pan(2, a, w2c)[1]
        out[f"pan -{a:g} deg"] = yaw_pan(2, -a, w2c)[1]
    for a in ANGLES:
        out[f"orbit {a:g} deg"] = orbit(2, centre_m, a, w2c)[1]
        out[f"orbit -{a:g} deg"] = orbit(2, centre_m, -a, w2c)[1]
    return out


def coverage_rows(depth, K, w2c, stride: int, device: torch.device) -> list[dict]:
    """Coverage of both readouts at every motion for one RGB-D view ``depth [H, W]``."""
    H, W = depth.shape
    h, w = H // stride, W // stride
    K_grid = scale_intrinsics(K, (H, W), (h, w))
    centre = float(depth[H // 2, W // 2]) if torch.isfinite(depth[H // 2, W // 2]) else 3.0
    named = motions(w2c, centre)
    targets = torch.stack(list(named.values()))
    held = torch.isfinite(downsample_depth(depth[None], h, w))
    surfaces = surface_cells(depth[None], K, w2c[None], targets, K_grid, h, w, cells=held)
    stats = {}
    for splat in ("point", "footprint"):
        memory = LatentSpatialMemory(MemoryConfig(splat=splat), device)
        memory.initialize(torch.zeros(1, h, w), depth, K, w2c)
        visible = memory.readout(targets, K_grid, h, w).visible.cpu()
        stats[splat] = [coverage_stats(visible[i : i + 1], surfaces[i : i + 1]) for i in range(len(targets))]
    return [
        {"motion": name, "surfaces": p["surfaces"], "point": p["readout"], "point_ratio": p["ratio"],
         "footprint": f["readout"], "footprint_ratio": f["ratio"], "over": f["over"]}
        for name, p, f in zip(named, stats["point"], stats["footprint"], strict=True)
    ]  # fmt: skip


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def accuracy_rows(view, scene: ProceduralScene, renderer: SceneRenderer, device: torch.device) -> list[dict]:
    """Decoded patch-VAE readouts vs exact renders of the moved cameras (bundled scene, stride 4)."""
    vae = PatchVAE(device)
    image = torch.from_numpy(view.image).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    latent = vae.encode(image)[0]  # [48, h, w]
    H, W = view.depth.shape
    h, w = H // vae.spatial_stride, W // vae.spatial_stride
    K, w2c = torch.from_numpy(view.K), torch.from_numpy(view.w2c)
    K_grid = scale_intrinsics(K, (H, W), (h, w))
    depth = torch.from_numpy(view.depth)
    rows = []
    named = motions(w2c, float(depth[H // 2, W // 2]))
    decoded, masks = {}, {}
    for splat in ("point", "footprint"):
        memory = LatentSpatialMemory(MemoryConfig(splat=splat), device)
        memory.initialize(latent, depth, K, w2c)
        out = memory.readout(torch.stack(list(named.values())), K_grid, h, w)
        frames = ((vae.decode(out.latent.float()) + 1.0) * 127.5).round().clamp(0, 255).cpu()  # [F, 3, H, W]
        decoded[splat] = frames
        masks[splat] = (
            out.visible.cpu().repeat_interleave(vae.spatial_stride, 1).repeat_interleave(vae.spatial_stride, 2)
        )
    for i, (name, pose) in enumerate(named.items()):
        rgb, _ = renderer.render(scene, pose, K, W, H)
        exact = torch.from_numpy(rgb).permute(2, 0, 1).float()
        old, new = masks["point"][i], masks["footprint"][i]
        rows.append(
            {
                "motion": name,
                "point_on_point_cells": psnr(decoded["point"][i][:, old], exact[:, old]),
                "footprint_on_point_cells": psnr(decoded["footprint"][i][:, old], exact[:, old]),
                "footprint_on_its_cells": psnr(decoded["footprint"][i][:, new], exact[:, new]),
            }
        )
    return rows


def lifted_cache(scene, renderer, views: torch.Tensor, K, device) -> LatentSpatialMemory:
    """Every valid cell of ``views`` (704x1280, Wan grid 44x80) with its footprint, no de-duplication."""
    H, W, h, w = 704, 1280, 44, 80
    K_grid = scale_intrinsics(K, (H, W), (h, w))
    depth = torch.from_numpy(np.stack([renderer.render(scene, v, K, W, H)[1] for v in views]))
    cells = downsample_depth(depth, h, w)
    valid = torch.isfinite(cells)
    points = unproject_depth(torch.where(valid, cells, 1.0).double(), K_grid.double(), invert_pose(views.double()))
    axes = cell_axes(points.float(), cells, views, K_grid)
    n = int(valid.sum())
    return LatentSpatialMemory.from_points(points.float()[valid], torch.randn(n, 48), axes=axes[valid], device=device)


def written_cache(scene, renderer, views: torch.Tensor, K, device) -> LatentSpatialMemory:
    """A memory written view by view with the default (view) de-duplication, as exploration writes it."""
    H, W = 704, 1280
    memory = LatentSpatialMemory(device=device)
    for start in range(0, len(views), 10):
        chunk = views[start : start + 10]
        depth = torch.from_numpy(np.stack([renderer.render(scene, v, K, W, H)[1] for v in chunk]))
        memory.update(torch.randn(len(chunk), 48, 44, 80), depth, chunk, K)
    return memory


def measure(fn, device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` calls (after two warm-ups) in milliseconds: on the CPU, CPU time of this
    process with one thread (robust to other processes sharing the cores; with several threads the
    waiting threads' spinning would count too); wall time on CUDA."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        else:
            start = time.process_time()
            fn()
            best = min(best, time.process_time() - start)
    torch.set_num_threads(threads)
    return 1000 * best


def speed_rows(scene, renderer, device, repeats: int, timed, random_points: torch.Tensor) -> dict:
    """Readout speed at 350k (and 1M on CUDA) points, and the cost of a large cache vs the views around.

    ``*_ms``: :func:`measure` (CPU time on the CPU); ``*_wall_ms``: median wall time (``timed``)."""
    K = intrinsics_from_fov(55.0, 1280, 704)
    K_grid = scale_intrinsics(K, (704, 1280), (44, 80))
    start = torch.as_tensor(scene.start_w2c())
    ring = yaw_pan(101, 360.0, start)[:100]  # 100 views around the room, 3.6 deg apart
    targets = yaw_pan(9, 30.0, yaw_pan(2, -15.0, start)[1])  # 9 frames panning across view 0
    out: dict = {}
    sizes = {"350k": 1} if device.type == "cpu" else {"350k": 1, "1M": 3}
    for label, copies in sizes.items():
        cache = lifted_cache(scene, renderer, ring, K, device)
        if copies > 1:  # the same surfaces again, slightly moved: a denser cache
            jitter = [cache.positions + 0.003 * k for k in range(copies)]
            cache = LatentSpatialMemory.from_points(
                torch.cat(jitter), cache.features.repeat(copies, 1), axes=cache.axes.repeat(copies, 1, 1), device=device
            )
        for splat in ("point", "footprint"):
            cache.config = MemoryConfig(splat=splat)
            run = lambda c=cache: c.readout(targets, K_grid, 44, 80)  # noqa: E731
            out[f"lifted_{label}_{splat}_ms"] = measure(run, device, repeats)
            out[f"lifted_{label}_{splat}_wall_ms"] = timed(run, device, repeats)
        out[f"lifted_{label}_points"] = len(cache)
    random_cache = LatentSpatialMemory.from_points(random_points, torch.randn(len(random_points), 48), device=device)
    for splat in ("point", "footprint"):
        random_cache.config = MemoryConfig(splat=splat)
        run = lambda: random_cache.readout(orbit(9, 2.0, 30.0), K_grid, 44, 80)  # noqa: E731
        out[f"random_350k_{splat}_ms"] = measure(run, device, repeats)
        out[f"random_350k_{splat}_wall_ms"] = timed(run, device, repeats)
    around = torch.cat([ring[-10:], ring[:10]])  # the 20 views around the targets
    big, small = written_cache(scene, renderer, ring, K, device), written_cache(scene, renderer, around, K, device)
    for name, cache in (("100_views", big), ("20_views", small)):
        out[f"{name}_points"] = len(cache)
        out[f"{name}_ms"] = measure(lambda c=cache: c.readout(targets, K_grid, 44, 80), device, repeats)
        out[f"{name}_unculled_ms"] = measure(
            lambda c=cache: zbuffer_project(c.positions, targets, K_grid, 44, 80, axes=c.axes), device, repeats
        )
    out["view_ratio"] = out["100_views_ms"] / out["20_views_ms"]
    out["view_ratio_unculled"] = out["100_views_unculled_ms"] / out["20_views_unculled_ms"]
    return out


def markdown(label: str, result: dict) -> str:
    lines = [
        f"# Readout coverage, accuracy and speed ({label})",
        "",
        "Run: `python benchmarks/memory_ops.py --part readout`",
        "",
        f"Machine: {label}, torch {result['torch']}; load average {result['load']:.1f} when the run began "
        "(other processes shared the cores: wall times are not comparable across runs, 1-thread CPU times are "
        "the better measure).",
        "",
        "Coverage: share of the grid filled; 'share of surfaces' = cells filled where the memory's own surfaces",
        "truly project (full-resolution depth) over those cells; 'filled without surface' = cells filled where",
        "no surface projects, over the grid.",
        "",
    ]
    every = [r for by_stride in result["coverage"].values() for rows in by_stride.values() for r in rows]
    sp = result["speed"]
    lines += [
        "## Summary",
        "",
        f"- Lowest share of the surfaces filled, any scene, stride and motion: "
        f"{100 * min(r['footprint_ratio'] for r in every):.1f} % (goal >= {100 * GOALS['coverage_ratio']:.0f} %; "
        f"one cell per point: {100 * min(r['point_ratio'] for r in every):.1f} %).",
        f"- Most of the grid filled without a surface: {100 * max(r['over'] for r in every):.2f} % "
        f"(goal <= {100 * GOALS['over']:.0f} %).",
        f"- Readout of 9 frames 44x80 from 350k points with real footprints: {sp['lifted_350k_footprint_ms']:.1f} ms "
        f"CPU time, 1 thread (one cell per point: {sp['lifted_350k_point_ms']:.1f} ms); median wall time with 2 "
        f"threads {sp['lifted_350k_footprint_wall_ms']:.1f} ms (one cell: {sp['lifted_350k_point_wall_ms']:.1f} ms); "
        f"goal <= {GOALS['cpu_ms']:.0f} ms.",
        f"- Cache written from 100 views vs the 20 around the targets: {sp['view_ratio']:.2f}x "
        f"(goal <= {GOALS['view_ratio']}x; without chunk culling {sp['view_ratio_unculled']:.2f}x).",
        "",
    ]
    for stride in STRIDES:
        rows = result["coverage"]["sample"][str(stride)]
        lines += [
            f"## Bundled scene, stride {stride} ({'patch-VAE' if stride == 4 else 'Wan'} grid)",
            "",
            "| motion | surfaces cover | one cell per point | share of surfaces | footprints | share of surfaces "
            "| filled without surface |",
            "|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for r in rows:
            lines.append(
                f"| {r['motion']} | {r['surfaces']:.3f} | {r['point']:.3f} | {100 * r['point_ratio']:.1f} % | "
                f"{r['footprint']:.3f} | {100 * r['footprint_ratio']:.1f} % | {100 * r['over']:.2f} % |"
            )
        lines.append("")
    lines += ["## Procedural rooms (seeds " + ", ".join(map(str, ROOM_SEEDS)) + "), all motions", "",
              "| room | stride | lowest share of surfaces | most filled without surface |",
              "|---|---|---|---|"]  # fmt: skip
    for room, by_stride in result["coverage"].items():
        if room == "sample":
            continue
        for stride, rows in by_stride.items():
            worst = min(rows, key=lambda r: r["footprint_ratio"])
            over = max(rows, key=lambda r: r["over"])
            lines.append(
                f"| {room} | {stride} | {100 * worst['footprint_ratio']:.1f} % ({worst['motion']}) | "
                f"{100 * over['over']:.2f} % ({over['motion']}) |"
            )
    lines += ["", "## Decoded patch-VAE readout vs the exact render (bundled scene, stride 4), PSNR dB", "",
              "| motion | one cell, its cells | footprints, the same cells | footprints, all their cells |",
              "|---|---|---|---|"]  # fmt: skip
    for r in result["accuracy"]:
        lines.append(
            f"| {r['motion']} | {r['point_on_point_cells']:.2f} | {r['footprint_on_point_cells']:.2f} | "
            f"{r['footprint_on_its_cells']:.2f} |"
        )
    lines += ["", "## Speed (9 latent frames 44x80, ms)", "",
              "`*_ms`: fastest of the repeats; on the CPU the process's CPU time with 1 thread (robust to other",
              "processes on the shared cores), on CUDA wall time; `*_wall_ms`: median wall time, 2 threads.",
              "`lifted_350k`: 100 views of a room lifted cell by cell with their footprints (no de-duplication:",
              "~30 points per cell in view); `random_350k`: the `ops` part's random surface points (no footprints);",
              "`100_views` / `20_views`: written with de-duplication from 100 views around the room / the 20 around",
              "the targets (`unculled`: the same z-buffer without chunk culling).", ""]  # fmt: skip
    lines += [f"- `{k}`: {v:.2f}" if isinstance(v, float) else f"- `{k}`: {v}" for k, v in sp.items()]
    lines += ["", f"Goals: share >= {100 * GOALS['coverage_ratio']:.0f} %, filled without surface <= "
              f"{100 * GOALS['over']:.0f} %, readout <= {GOALS['cpu_ms']:.0f} ms (CPU) / "
              f"{GOALS['cuda_ms']:.0f} ms (CUDA) at 350k, view ratio <= {GOALS['view_ratio']}x.", ""]  # fmt: skip
    return "\n".join(lines)


def run_readout_benchmark(device: torch.device, repeats: int, out: Path, label: str, timed) -> dict:
    """Run every measurement of the readout part and write ``readout-coverage-<device>.{json,md}``."""
    from memory_ops import room_surface_points

    load = os.getloadavg()[0]
    view = load_rgbd_folder(SAMPLE)
    sample_scene = ProceduralScene(SceneConfig(**view.source["config"]))
    depth, K, w2c = torch.from_numpy(view.depth), torch.from_numpy(view.K), torch.from_numpy(view.w2c)
    coverage = {"sample": {str(s): coverage_rows(depth, K, w2c, s, device) for s in STRIDES}}
    t0 = time.perf_counter()
    with SceneRenderer() as renderer:
        K_room = intrinsics_from_fov(55.0, 1280, 704)
        for seed in ROOM_SEEDS:
            room = ProceduralScene(SceneConfig(seed=seed, num_objects=8))
            start = torch.as_tensor(room.start_w2c())
            room_depth = torch.from_numpy(renderer.render(room, start, K_room, 1280, 704)[1])
            coverage[f"room {seed}"] = {str(s): coverage_rows(room_depth, K_room, start, s, device) for s in STRIDES}
        accuracy = accuracy_rows(view, sample_scene, renderer, device)
        speed_scene = ProceduralScene(SceneConfig(seed=1, room_size=(9.0, 10.0, 3.0), num_objects=10))
        speed = speed_rows(speed_scene, renderer, device, repeats, timed, room_surface_points(speed_scene, 350_000))
    result = {"benchmark": "readout", "device": label, "torch": torch.__version__, "seconds": time.perf_counter() - t0,
              "load": load,
              "coverage": coverage, "accuracy": accuracy, "speed": speed, "goals": GOALS}  # fmt: skip
    write_json_atomic(out / f"readout-coverage-{device.type}.json", result)
    write_text_atomic(out / f"readout-coverage-{device.type}.md", markdown(label, result))
    print(json.dumps(speed, indent=2))
    print(f"wrote {out / f'readout-coverage-{device.type}.md'}")
    return result
