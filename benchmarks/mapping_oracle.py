"""How much the latent readout's cell mapping says: nearest paste vs resampling each winner's patch with it.

A latent readout pastes each winning point's whole cell; :func:`model.memory.footprint.cell_mapping`
says where the target cell really lies in that cell (``s, t`` and the Jacobian). With the exact
pixel-patch VAE a latent cell *is* its 4x4x3 pixels, so the mapping can be applied exactly: every
target pixel bilinearly samples its winner's patch at ``(s, t) + J * offset`` (clamped to the patch;
the neighbours' pixels are not used). That is an oracle of what a model given the mapping can learn
(the readout refiner, :mod:`model.generation.readout_refiner`), not a method: it needs the VAE to be
pixels.

Memories are built as ``eval-world`` builds them with exact frames (written back after every
segment); each segment's readouts are scored on the pixels they cover against the exact renders.
Writes ``benchmarks/results/mapping-oracle-<tag>.md`` and ``.json``.

    .venv/bin/python benchmarks/mapping_oracle.py --seeds 5100,5101,5102,5103,5104   # ~30 s, 2 cores
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.eval_world.run import World, scene_for_seed  # noqa: E402
from explorer.machine import machine_description  # noqa: E402
from model.eval.scenes import SceneRenderer  # noqa: E402
from model.generation.patch_vae import PatchVAE  # noqa: E402
from model.io.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from model.io.frames import frames_to_tensor  # noqa: E402
from model.memory.base import Readout  # noqa: E402
from model.memory.latent import LatentSpatialMemory, MemoryConfig  # noqa: E402
from model.memory.masks import DEFAULT_SKY_FAR_M, write_masks  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STRIDE = 4  # PatchVAE: a latent cell is 4x4 pixels


def resample_patches(readout: Readout) -> torch.Tensor:
    """``[F, 48, h, w]``: each cell's pixels sampled from its winner's 4x4x3 patch at the mapped positions."""
    latent = readout.latent.float()
    n, channels, h, w = latent.shape
    mapping = readout.mapping
    offsets = (torch.arange(STRIDE) + 0.5) / STRIDE - 0.5  # pixel centres in target cells from the cell centre
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    dx, dy = dx[None, :, :, None, None], dy[None, :, :, None, None]
    m = mapping[:, :, None, None]  # [F, 6, 1, 1, h, w]
    s = m[:, 0] + m[:, 2] * dx + m[:, 3] * dy  # [F, 4, 4, h, w] source cells from the winner's centre
    t = m[:, 1] + m[:, 4] * dx + m[:, 5] * dy
    px = ((s + 0.5) * STRIDE - 0.5).clamp(0, STRIDE - 1)  # source pixel within the patch
    py = ((t + 0.5) * STRIDE - 0.5).clamp(0, STRIDE - 1)
    x0, y0 = px.floor().long().clamp(max=STRIDE - 2), py.floor().long().clamp(max=STRIDE - 2)
    fx, fy = (px - x0)[:, None], (py - y0)[:, None]
    patches = latent.view(n, 3, STRIDE * STRIDE, h, w)

    def pick(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        index = (rows * STRIDE + cols).view(n, 1, STRIDE * STRIDE, h, w).expand(n, 3, -1, -1, -1)
        return patches.gather(2, index).view(n, 3, STRIDE, STRIDE, h, w)

    out = (
        pick(y0, x0) * (1 - fx) * (1 - fy)
        + pick(y0, x0 + 1) * fx * (1 - fy)
        + pick(y0 + 1, x0) * (1 - fx) * fy
        + pick(y0 + 1, x0 + 1) * fx * fy
    )
    return out.reshape(n, channels, h, w)


def covered_squared_errors(latent: torch.Tensor, readout: Readout, truth: np.ndarray) -> list[float]:
    """Per frame: mean squared error (8-bit units) of the decoded ``latent`` on the covered pixels."""
    image = ((F.pixel_shuffle(latent, STRIDE).clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    covered = readout.visible.repeat_interleave(STRIDE, 1).repeat_interleave(STRIDE, 2).numpy()
    return [float(((image[j] - truth[j]) ** 2)[covered[j]].mean()) for j in range(len(truth)) if covered[j].any()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="5100,5101,5102,5103,5104", help="held-out scene seeds (>= 5000)")
    parser.add_argument("--trajectories", default="forward,closed-orbit")
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    trajectories = args.trajectories.split(",")
    vae, height, width = PatchVAE(), 64, 128
    h, w = height // STRIDE, width // STRIDE
    errors: dict[tuple[str, str, int], list[float]] = {}
    with SceneRenderer() as renderer:
        for seed in seeds:
            world = World(scene_for_seed(seed), renderer, width, height)
            for trajectory in trajectories:
                truth = world.truth(trajectory, 32 * args.segments + 1)
                depth = torch.from_numpy(truth.depth)
                memory = LatentSpatialMemory(MemoryConfig())
                memory.initialize(vae.encode(frames_to_tensor(truth.frames[0]))[0], depth[0], world.K, truth.w2c[0])
                for segment in range(args.segments):
                    ids = torch.arange(32 * segment + 4, 32 * segment + 33, 4)
                    readout = memory.readout(truth.w2c[ids], world.K, h, w, image_hw=(height, width), mapping=True)
                    frames = truth.frames[ids.numpy()].astype(np.float64)
                    for name, latent in (("nearest", readout.latent.float()), ("mapped", resample_patches(readout))):
                        errors.setdefault((name, trajectory, segment), []).extend(
                            covered_squared_errors(latent, readout, frames)
                        )
                    keep, labels = write_masks(depth[ids], (h, w), far_m=DEFAULT_SKY_FAR_M)
                    latents = torch.cat([vae.encode(frames_to_tensor(f)) for f in truth.frames[ids.numpy()]])
                    memory.update(latents, depth[ids], truth.w2c[ids], world.K, keep=keep, labels=labels)

    def psnr(values: list[float]) -> float:
        return float(10 * np.log10(255**2 / np.mean(values)))

    rows = []
    for trajectory in trajectories:
        for segment in range(args.segments):
            nearest, mapped = (psnr(errors[(n, trajectory, segment)]) for n in ("nearest", "mapped"))
            rows.append({"trajectory": trajectory, "segment": segment, "nearest": nearest, "mapped": mapped})
    overall = {n: psnr([e for k, v in errors.items() if k[0] == n for e in v]) for n in ("nearest", "mapped")}
    machine = machine_description()
    stem = RESULTS / f"mapping-oracle-{args.tag}"
    write_json_atomic(stem.with_suffix(".json"), {"seeds": seeds, "machine": machine, "rows": rows, "all": overall})
    lines = [
        f"# Cell mapping oracle on held-out worlds {','.join(map(str, seeds))}",
        "",
        f"`benchmarks/mapping_oracle.py`. Machine: {machine}. PSNR (dB) of the decoded readout on the pixels it",
        "covers, against the exact renders: `nearest` = the latent readout (each winner's whole 4x4 patch pasted),",
        "`mapped` = each target pixel sampled from its winner's patch at the position the cell mapping gives",
        "(exact only because the PatchVAE's latents are pixels: an oracle, not a method).",
        "",
        "| trajectory | segment | nearest | mapped | gain |",
        "|---|---|---|---|---|",
        *(
            f"| {r['trajectory']} | {r['segment']} | {r['nearest']:.2f} | {r['mapped']:.2f} | "
            f"{r['mapped'] - r['nearest']:+.2f} |"
            for r in rows
        ),
        f"| all | | {overall['nearest']:.2f} | {overall['mapped']:.2f} | "
        f"{overall['mapped'] - overall['nearest']:+.2f} |",
        "",
    ]
    write_text_atomic(stem.with_suffix(".md"), "\n".join(lines))
    print(f"wrote {stem}.md: nearest {overall['nearest']:.2f} dB, mapped {overall['mapped']:.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
