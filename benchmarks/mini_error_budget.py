"""Where mirage-mini's error comes from on held-out worlds: the VAE, the memory's own history, or the model.

On the world benchmark's worlds and trajectories (``main.py eval-world``: exact renders, 3 segments of 33
frames, the shipped sampler) three rows, each scored frame by frame against the exact render:

* ``patch VAE round trip``: the exact renders encoded and decoded by the pixel-patch VAE, the in-between
  frames only (frame ``4k`` comes back exactly; ``4k + j`` is a blend of its two keyframes): the ceiling
  of any output of this latent space;
* ``mini, exact context``: the shipped model with the memory written with the exact renders' latents
  (the pipeline's own masks and depth) and every segment started from the exact last frame: what the
  model makes of a perfect history;
* ``mini``: the shipped model as it runs (``eval-world``'s ``mini`` system): its own frames written back.

Segment 1 is the same run in both model rows (nothing written yet; same noise seed), so the rows differ
only from segment 2 on: that difference is what the model's own history costs.

A second table follows the exact-context run through the model, in latent space (the patch VAE's latents
are the keyframes' pixels, so latent PSNR is keyframe pixel PSNR): the memory readout, the readout refiner's
prior of the clean latents, and the generated latents, each against the exact latents of the segment's
generated keyframes, over the cells the readout covered and the rest (mean squared error pooled over cells).
It says which stage the covered cells' error is left at. Writes
``benchmarks/results/mini-error-budget-<tag>.md`` and ``.json``.

    .venv/bin/python benchmarks/mini_error_budget.py --tag cpu   # ~1.5 min on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.eval_world.pipelines import load_stacks, make_pipeline  # noqa: E402
from explorer.eval_world.run import World, parse_seeds, scene_for_seed  # noqa: E402
from explorer.eval_world.systems import SYSTEMS  # noqa: E402
from explorer.machine import machine_description  # noqa: E402
from model.eval.frame_scores import frame_scores, mean_scores  # noqa: E402
from model.eval.scenes import SceneRenderer  # noqa: E402
from model.generation.pipeline import MiragePipeline, PipelineConfig, frames_to_tensor  # noqa: E402
from model.generation.profiles import PROFILES  # noqa: E402
from model.io.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from model.memory.latent import LatentSpatialMemory  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("psnr", "psnr_visible", "psnr_holes")
#: The stages of the latent table: what the model is given, what its refiner makes of it, what it generates.
STAGES = {
    "readout": "memory readout",
    "prior": "readout refiner's prior",
    "output": "generated latents (after the sampler's last step)",
}


class ExactWrites(LatentSpatialMemory):
    """A latent memory that writes, at its ``n``-th update, the exact latents ``exact[n]`` (``[F, C, h, w]``, the
    segment's written latent frames) in place of the generated ones; masks, depth and poses stay the pipeline's."""

    def __init__(self, config, device, exact: list[torch.Tensor]) -> None:
        super().__init__(config, device)
        self.exact = list(exact)

    def update(self, latents: torch.Tensor, *args, **kwargs):
        return super().update(self.exact.pop(0).to(latents), *args, **kwargs)


class RefinerProbe:
    """While entered, records the last call of the branch's readout refiner: ``(readout [1, C, F, h, w],
    visible [1, F, h, w] bool, prior [1, C, F, h, w])``."""

    def __init__(self, refiner: torch.nn.Module) -> None:
        self.refiner, self.last = refiner, None

    def __enter__(self) -> RefinerProbe:
        forward = self.refiner.forward

        def record(readout, visible, mapping):
            prior = forward(readout, visible, mapping)
            self.last = (readout.detach(), visible.detach().bool(), prior.detach())
            return prior

        self.refiner.forward = record
        return self

    def __exit__(self, *exc) -> None:
        del self.refiner.forward  # the class's forward again


def stage_errors(probe: RefinerProbe, latents: torch.Tensor, exact: torch.Tensor) -> dict[str, list[float]]:
    """``{stage: [squared error on covered cells, covered cells, on the others, other cells]}`` of the readout,
    the prior and the generated ``latents`` ``[F, C, h, w]`` against ``exact`` ``[F - 1, C, h, w]`` (frames 1..)."""
    readout, visible, prior = probe.last
    target = exact.float().cpu()
    covered = visible[0, 1:].cpu()  # [F - 1, h, w]
    out = {}
    for name, value in (
        ("readout", readout[0].transpose(0, 1)),
        ("prior", prior[0].transpose(0, 1)),
        ("output", latents),
    ):
        error = ((value[1:].float().cpu() - target) ** 2).mean(1)  # [F - 1, h, w]
        out[name] = [
            float(error[covered].sum()),
            int(covered.sum()),
            float(error[~covered].sum()),
            int((~covered).sum()),
        ]
    return out


def generate(
    pipe: MiragePipeline, world: World, truth, segments: int, exact_context: bool, on_segment=None
) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 frames of ``segments`` segments along ``truth``; with ``exact_context`` every segment
    after the first starts from the exact render of its first frame (the memory is the caller's).
    ``on_segment(s, result)``: called after segment ``s``."""
    stride = pipe.config.segment_frames - 1
    pipe.start(world.image, torch.from_numpy(world.depth), world.K, world.start)
    depth, frames = truth.depth_source(), [world.image[None]]
    for s in range(segments):
        if exact_context and s:
            pipe.resume(truth.frames[s * stride], world.K, "", pipe.memory, s)
        result = pipe.run_segment(truth.w2c[s * stride : (s + 1) * stride + 1], depth)
        frames.append(result.frames[1:])
        if on_segment is not None:
            on_segment(s, result)
    return np.concatenate(frames)


def scores(frames: np.ndarray, truth, frame_ids) -> list[dict]:
    return [frame_scores(frames[i], truth.frames[i], truth.visible[i]) for i in frame_ids]


def psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error of values in [-1, 1]."""
    return 10.0 * math.log10(4.0 / max(mse, 1e-12))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="5001,5002", help="held-out scene seeds (>= 5000)")
    parser.add_argument("--trajectories", default="forward,closed-orbit")
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--model", help="mini model folder (default: the shipped one)")
    parser.add_argument("--tag", default="cpu", help="results file tag")
    args = parser.parse_args(argv)
    seeds, trajectories = parse_seeds(args.seeds), args.trajectories.split(",")
    load = os.getloadavg()[0]
    height, width = PROFILES["mini"].generation_size(None, None)
    system = SYSTEMS["mini"]
    stack = load_stacks([system], (height, width), "cpu", lambda message: None, args.model)["mini"]
    vae, config = stack.backbone.vae, PipelineConfig.for_backend("mini", seed=0)
    stride = config.segment_frames - 1
    n_frames = args.segments * stride + 1
    rows: dict[str, list[dict]] = {"vae": [], "exact": [], "mini": []}
    per_segment: dict[str, list[list[dict]]] = {k: [[] for _ in range(args.segments)] for k in ("exact", "mini")}
    stages = {name: np.zeros(4) for name in STAGES}
    with SceneRenderer() as renderer:
        for seed in seeds:
            world = World(scene_for_seed(seed), renderer, width, height)
            for trajectory in trajectories:
                truth = world.truth(trajectory, n_frames)
                exact = vae.encode(frames_to_tensor(truth.frames, stack.backbone.device))
                decoded = vae.decode(exact).clamp(-1, 1)
                round_trip = ((decoded + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
                rows["vae"] += scores(round_trip, truth, [i for i in range(1, n_frames) if i % 4])
                written = [exact[s * stride // 4 + 1 : (s + 1) * stride // 4 + 1] for s in range(args.segments)]
                probe = RefinerProbe(stack.branch.refiner)

                def add_stages(s, result, probe=probe, written=written):
                    for name, row in stage_errors(probe, result.latents, written[s]).items():
                        stages[name] += row

                exact_writes = ExactWrites(config.memory, stack.backbone.device, written)
                runs = {  # name: (pipeline, what is recorded while it runs, per-segment callback)
                    "exact": (MiragePipeline(stack.backbone, config, stack.branch, exact_writes), probe, add_stages),
                    "mini": (make_pipeline(system, stack, None, 0), contextlib.nullcontext(), None),
                }
                for name, (pipe, recording, on_segment) in runs.items():
                    with recording:
                        frames = generate(pipe, world, truth, args.segments, name == "exact", on_segment)
                    for s in range(args.segments):
                        segment = scores(frames, truth, range(s * stride + 1, (s + 1) * stride + 1))
                        per_segment[name][s] += segment
                        rows[name] += segment
    means = {name: mean_scores(r) for name, r in rows.items()}
    segments = {name: [mean_scores(r) for r in per] for name, per in per_segment.items()}
    labels = {
        "vae": "patch VAE round trip of the exact renders (in-between frames)",
        "exact": "mini, exact context (memory written with the exact renders, exact first frames)",
        "mini": "mini (its own frames written back, as it runs)",
    }
    machine = machine_description("cpu")
    result = {
        "machine": machine,
        "load_average": [load, os.getloadavg()[0]],
        "seeds": seeds,
        "trajectories": trajectories,
        "segments": args.segments,
        "size": [height, width],
        "model": args.model or "resources/models/mirage-mini",
        "rows": {name: {"label": labels[name], **{k: means[name][k] for k in METRICS}} for name in labels},
        "per_segment": {name: [{k: m[k] for k in METRICS} for m in per] for name, per in segments.items()},
        "latent_stages": {
            name: {"label": STAGES[name], "psnr_covered": psnr(row[0] / row[1]), "psnr_other": psnr(row[2] / row[3])}
            for name, row in stages.items()
        },
    }
    covered_share = stages["output"][1] / (stages["output"][1] + stages["output"][3])
    stage_lines = [
        f"| {row['label']} | {row['psnr_covered']:.2f} | {row['psnr_other']:.2f} |"
        for row in result["latent_stages"].values()
    ]
    lines = [f"| {labels[n]} | " + " | ".join(f"{means[n][k]:.2f}" for k in METRICS) + " |" for n in labels]
    seg_lines = [
        f"| {s + 1} | "
        + " | ".join(f"{segments[n][s]['psnr']:.2f} / {segments[n][s]['psnr_visible']:.2f}" for n in segments)
        + " |"
        for s in range(args.segments)
    ]
    text = (
        f"# mirage-mini error budget on held-out worlds {args.seeds}\n\n"
        f"Trajectories {args.trajectories}, {args.segments} segments of {config.segment_frames} frames, "
        f"{width}x{height}, the mini profile's sampler; frames 1..N-1 against the exact render: PSNR in dB, the mean "
        "over every scored frame of every run (`eval-world` averages each run first, so its hole PSNR, over runs "
        "with few hole pixels, differs a little); visible / holes: `eval-world`'s pixel split. "
        f"Machine: {machine}; 1-minute load {load:.1f} at the start.\n\n"
        "| row | PSNR | visible | holes |\n|---|---|---|---|\n" + "\n".join(lines) + "\n\n"
        "Per segment, PSNR / visible (segment 1: the same run in both rows, nothing written yet):\n\n"
        "| segment | mini, exact context | mini |\n|---|---|---|\n" + "\n".join(seg_lines) + "\n\n"
        "Through the model, exact context, latent space (generated keyframes of every segment; "
        f"{100 * covered_share:.0f} % of their cells covered by the readout), PSNR in dB:\n\n"
        "| stage | covered cells | other cells |\n|---|---|---|\n" + "\n".join(stage_lines) + "\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / f"mini-error-budget-{args.tag}.json", result)
    write_text_atomic(RESULTS / f"mini-error-budget-{args.tag}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
