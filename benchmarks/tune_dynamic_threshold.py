"""Tune the threshold of :func:`model.memory.masks.dynamic_mask` on procedural rooms with a moving box.

For each seeded room (:class:`model.eval.scenes.ProceduralScene` with ``moving_object=True``) and each
standard camera path (33 frames at 16 fps, i.e. one segment):

1. render frame 0 at ``t = 0`` and build a :class:`model.memory.latent.LatentSpatialMemory` from it, with
   pixel patches as features (48 = 3 x 4 x 4 channels, :class:`model.generation.patch_vae.PatchVAE`, stride 4:
   320x176 frames give the 80x44 grid of Wan2.2 latents at 1280x704);
2. at every 4th frame (the latent frames 1..8) read the memory out at the frame's camera, and
   "generate" the frame as the exact render at its time plus Gaussian feature noise (the generator's
   infidelity, as a share of the feature spread; several levels);
3. ground truth: render the same camera at ``t = 0``; a cell is *changed* when at least half of its
   pixels differ (depth by > 1 cm or a colour channel by > 10/255) and *unchanged* when none does;
   mixed cells are not scored. Only cells the memory shows (readout visible) are scored;
4. sweep the threshold and count true/false positives of ``dynamic_mask`` per noise level, for its
   default rule (any visible cell may be flagged) and for ``confident_only=True`` (only cells whose
   3x3 readout neighbourhood is fully visible).

The default is the threshold with the best F1 of the default rule averaged over the noise levels. Writes
``benchmarks/results/dynamic_threshold.json`` and prints a table.

Run: ``python benchmarks/tune_dynamic_threshold.py [--seeds 6]`` (CPU, EGL; about a minute).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.eval.scenes import ProceduralScene, SceneConfig, SceneRenderer  # noqa: E402
from model.generation.patch_vae import PatchVAE  # noqa: E402
from model.geometry.camera import intrinsics_from_fov  # noqa: E402
from model.geometry.trajectories import forward_dolly, look_around, orbit, yaw_pan  # noqa: E402
from model.io.atomic import write_json_atomic  # noqa: E402
from model.memory.latent import LatentSpatialMemory  # noqa: E402
from model.memory.masks import DEFAULT_DYNAMIC_THRESHOLD, change_score, confident_cells, dynamic_mask  # noqa: E402

WIDTH, HEIGHT, FOV_Y, FPS = 320, 176, 55.0, 16.0
SEGMENT_FRAMES, LATENT_STRIDE = 33, 4
NOISE_LEVELS = (0.0, 0.1, 0.2, 0.3)
THRESHOLDS = np.round(np.arange(0.1, 2.01, 0.05), 3)
DEPTH_CHANGE_M, COLOUR_CHANGE = 0.01, 10
#: Which cells may be flagged: any "visible" one (dynamic_mask's default) or only "confident" ones
#: (3x3 neighbourhood fully visible, ``confident_only=True``).
RULES = ("visible", "confident")
PATHS = {
    "yaw_pan": lambda n: yaw_pan(n, degrees=30.0),
    "orbit": lambda n: orbit(n, radius=2.0, degrees=30.0),
    "forward_dolly": lambda n: forward_dolly(n, distance=1.0),
    "look_around": lambda n: look_around(n),
}
RESULT = Path(__file__).resolve().parent / "results" / "dynamic_threshold.json"


def encode(vae: PatchVAE, rgb: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[48, H/4, W/4]`` pixel-patch features in [-1, 1]."""
    frame = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    return vae.encode(frame)[0]


def changed_fraction(rgb_t, depth_t, rgb_0, depth_0) -> torch.Tensor:
    """Share of each 4x4 cell's pixels that the moving object changed: ``[h, w]``."""
    both_inf = np.isinf(depth_t) & np.isinf(depth_0)
    depth_diff = np.where(both_inf, 0.0, np.abs(np.nan_to_num(depth_t - depth_0, posinf=1e9, neginf=1e9)))
    colour_diff = np.abs(rgb_t.astype(int) - rgb_0.astype(int)).max(axis=-1)
    changed = (depth_diff > DEPTH_CHANGE_M) | (colour_diff > COLOUR_CHANGE)
    return F.avg_pool2d(torch.from_numpy(changed).float()[None, None], LATENT_STRIDE)[0, 0]


def collect(seeds: int) -> tuple[dict, dict]:
    """Counts ``{rule: {noise: {"tp","fp","fn": [len(THRESHOLDS)]}}}`` and dataset statistics."""
    vae = PatchVAE()
    K = intrinsics_from_fov(FOV_Y, WIDTH, HEIGHT)
    h, w = HEIGHT // LATENT_STRIDE, WIDTH // LATENT_STRIDE
    counts = {
        rule: {noise: {k: np.zeros(len(THRESHOLDS), np.int64) for k in ("tp", "fp", "fn")} for noise in NOISE_LEVELS}
        for rule in RULES
    }
    stats = {"scored_cells": 0, "changed_cells": 0, "changed_cells_confident": 0, "frames": 0}
    gen = torch.Generator().manual_seed(0)
    with SceneRenderer() as renderer:
        for seed in range(seeds):
            scene = ProceduralScene(SceneConfig(seed=seed, moving_object=True))
            rgb0, depth0 = renderer.render(scene, scene.start_w2c(), K, WIDTH, HEIGHT, t=0.0)
            for path in PATHS.values():
                w2c = path(SEGMENT_FRAMES)
                memory = LatentSpatialMemory()
                memory.initialize(encode(vae, rgb0), torch.from_numpy(depth0), K, w2c[0])
                for frame in range(LATENT_STRIDE, SEGMENT_FRAMES, LATENT_STRIDE):
                    rgb_t, depth_t = renderer.render(scene, w2c[frame], K, WIDTH, HEIGHT, t=frame / FPS)
                    rgb_s, depth_s = renderer.render(scene, w2c[frame], K, WIDTH, HEIGHT, t=0.0)
                    readout = memory.readout(w2c[frame], K, h, w, image_hw=(HEIGHT, WIDTH))
                    fraction = changed_fraction(rgb_t, depth_t, rgb_s, depth_s)
                    scored = readout.visible[0] & ((fraction >= 0.5) | (fraction == 0))
                    positive = scored & (fraction >= 0.5)
                    stats["frames"] += 1
                    stats["scored_cells"] += int(scored.sum())
                    stats["changed_cells"] += int(positive.sum())
                    clean = encode(vae, rgb_t)
                    spread = clean.std()
                    confident = confident_cells(readout.visible)[0]
                    for noise in NOISE_LEVELS:
                        generated = (clean + noise * spread * torch.randn(clean.shape, generator=gen))[None]
                        score = change_score(generated, readout.latent, readout.visible)[0]
                        # dynamic_mask(threshold) == visible & (score > threshold), for all thresholds at once
                        above = score > torch.from_numpy(THRESHOLDS).float()[:, None, None]
                        reference = dynamic_mask(generated, readout.latent, readout.visible, DEFAULT_DYNAMIC_THRESHOLD)[
                            0
                        ]
                        assert torch.equal(reference, readout.visible[0] & (score > DEFAULT_DYNAMIC_THRESHOLD))
                        for rule, flagged in (
                            ("confident", confident & above),
                            ("visible", readout.visible[0] & above),
                        ):
                            c = counts[rule][noise]
                            c["tp"] += (flagged & positive).sum(dim=(1, 2)).numpy()
                            c["fp"] += (flagged & scored & ~positive).sum(dim=(1, 2)).numpy()
                            c["fn"] += (~flagged & positive).sum(dim=(1, 2)).numpy()
                    stats["changed_cells_confident"] += int((positive & confident).sum())
    return counts, stats


def curves(counts: dict) -> dict:
    """Precision, recall and F1 per threshold for each noise level."""
    out = {}
    for noise, c in counts.items():
        tp, fp, fn = (c[k].astype(np.float64) for k in ("tp", "fp", "fn"))
        precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
        recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
        f1 = np.divide(
            2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0
        )
        out[str(noise)] = {
            "precision": precision.round(4).tolist(),
            "recall": recall.round(4).tolist(),
            "f1": f1.round(4).tolist(),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="number of seeded rooms")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    counts, stats = collect(args.seeds)
    tables = {rule: curves(counts[rule]) for rule in RULES}
    mean_f1 = {rule: np.mean([tables[rule][str(n)]["f1"] for n in NOISE_LEVELS], axis=0) for rule in RULES}
    best = int(np.argmax(mean_f1["visible"]))
    result = {
        "setup": {
            "size": [WIDTH, HEIGHT],
            "fov_y_deg": FOV_Y,
            "fps": FPS,
            "seeds": args.seeds,
            "paths": sorted(PATHS),
            "segment_frames": SEGMENT_FRAMES,
            "features": "PatchVAE pixel patches (48 ch, stride 4)",
            "noise_levels": list(NOISE_LEVELS),
            "rules": list(RULES),
            "ground_truth": "visible cells with >= 50% pixels changed by the object "
            "(depth > 1 cm or colour > 10/255) vs none",
        },
        "stats": stats,
        "thresholds": THRESHOLDS.tolist(),
        "curves": tables,
        "mean_f1": {rule: mean_f1[rule].round(4).tolist() for rule in RULES},
        "best_threshold": float(THRESHOLDS[best]),
        "best_threshold_confident_rule": float(THRESHOLDS[int(np.argmax(mean_f1["confident"]))]),
        "current_default": DEFAULT_DYNAMIC_THRESHOLD,
    }
    write_json_atomic(RESULT, result)
    print(
        f"scored cells {stats['scored_cells']}, changed {stats['changed_cells']} "
        f"({stats['changed_cells_confident']} confident) over {stats['frames']} frames"
    )
    for rule in RULES:
        table = tables[rule]
        print(f"rule {rule!r}\nthr   " + "  ".join(f"P/R/F1@{n:<4}" for n in NOISE_LEVELS))
        for i, thr in enumerate(THRESHOLDS):
            if i % 2 == 0 or i == best:
                row = "  ".join(
                    f"{table[str(n)]['precision'][i]:.2f}/{table[str(n)]['recall'][i]:.2f}/{table[str(n)]['f1'][i]:.2f}"
                    for n in NOISE_LEVELS
                )
                print(
                    f"{thr:4.2f}  {row}  mean F1 "
                    f"{mean_f1[rule][i]:.3f}{'  <- best (default rule)' if i == best else ''}"
                )
    print(
        f"best threshold {THRESHOLDS[best]:.2f} (mean F1 {mean_f1['visible'][best]:.3f}); current default "
        f"{DEFAULT_DYNAMIC_THRESHOLD}"
    )
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
