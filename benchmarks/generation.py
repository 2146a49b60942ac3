"""Generation benchmark: the latent memory against the pixel-space RGB point-cloud memory, same pipeline.

Both memories (``PipelineConfig.memory_kind`` ``"latent"`` and ``"rgb"``) run through the same
:class:`~model.generation.pipeline.MiragePipeline` with the same seed, start image, exact depth and camera path
(the bundled sample scene's procedural room, an orbit as in ``main.py generate``) for ``--segments``
segments (33 frames each by default). Each memory runs in its own fresh process, so peak RSS and GPU memory belong
to it alone. Per segment it records the memory readout and update seconds (the RGB readout split
into rasterise and VAE-encode), total seconds per generated frame (32 new frames per 33-frame segment), the
memory's size in bytes, peak process RSS (VmHWM, reset before each segment) and, on CUDA, peak
allocated GPU memory.

Configurations:

* ``cpu`` (default): a tiny Wan transformer (its cost is negligible) with the **full-size Wan2.2
  VAE architecture** at random weights (``BackboneConfig(tiny_vae="wan-full")``, 705M parameters:
  the real VAE's encode / decode cost), 352x640, 2 denoising steps (the tiny transformer makes more
  steps pointless: they would not change any memory cost).
* ``gpu``: full-size Wan2.2-TI2V-5B modules at random weights: ``WanTransformer3DModel`` with the
  TI2V-5B config (5.0B parameters, bf16), the Wan2.2 VAE (fp32, tiled, as the ``wan`` backend loads
  it) and a one-layer random UMT5 of the real width (4096) and prompt length (512 tokens);
  704x1280, 20 steps. Random weights cost exactly what real weights cost. Needs a CUDA GPU with
  ~40 GB; the rasteriser runs on whatever EGL provides there (Mesa llvmpipe if no GPU EGL driver).
* ``--quick``: cpu 192x320 with 9-frame segments (3 latent frames: 3 readout frames, 2 written
  frames, 9 decoded frames per segment), gpu 352x640; results go to ``*-quick`` files. The full-size
  VAE costs minutes per 33-frame decode at 352x640 on a 2-core CPU (a 352x640 single-image encode
  alone took 15-20 s there), so the ``cpu`` configuration needs an idle machine and hours.

Writes ``benchmarks/results/generation-<device>.json`` (per-segment rows and a summary),
``generation-<device>.md`` (a table) and ``generation-<device>.png`` (a plot drawn with PIL), where
``<device>`` is ``cpu`` or ``cuda``. The summary:

* ``memory_cost_ratio``: RGB / latent memory cost per segment (readout + update seconds), the
  ratio of the means over segments (per-segment ratios are listed too); goal >= 50.
* ``cache_size_ratio``: RGB / latent memory bytes after the last segment; goal >= 50.
* ``latent_flatness``: the latent run's seconds per frame, segment 5 / segment 2; goal <= 1.05.
* ``memory_cost_ratio_vs_decode``: the same ratio with each segment's memory cost divided by that
  segment's VAE decode seconds (identical work in both runs), which cancels the speed of a shared
  machine at the time of each run; ``end_to_end_speedup``: RGB / latent mean seconds per frame.

Run: ``python benchmarks/generation.py [--config cpu|gpu] [--segments 5] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.generate import build_trajectory  # noqa: E402
from explorer.machine import device_label  # noqa: E402
from model.baselines.kinds import MEMORY_KINDS, make_memory  # noqa: E402
from model.eval.scenes import SAMPLE_CONFIG, SAMPLE_FOV_Y_DEG, ProceduralScene, SceneRenderer  # noqa: E402
from model.generation.backbone import (
    TI2V_SCHEDULER,
    Backbone,
    BackboneConfig,
    WanVideoVAE,
    _cast_like_from_pretrained,
    load_backbone,
)
from model.generation.pipeline import MiragePipeline, PipelineConfig  # noqa: E402
from model.generation.profiles import WAN  # noqa: E402
from model.generation.tiny import tiny_tokenizer, wan22_vae
from model.geometry.camera import intrinsics_from_fov  # noqa: E402
from model.io.atomic import atomic_path, write_json_atomic, write_text_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "a room with a table and a shelf"
#: Goals from the Mirage paper's efficiency claims (section 5.3 of the digest).
GOALS = {"memory_cost_ratio": (">=", 50.0), "cache_size_ratio": (">=", 50.0), "latent_flatness": ("<=", 1.05)}
#: ``WanTransformer3DModel`` config of Wan2.2-TI2V-5B (diffusers' converter).
TI2V_5B_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
    text_dim=4096,
    freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
)  # fmt: skip


@dataclass
class BenchConfig:
    """One benchmark configuration."""

    name: str  # "cpu" or "gpu"
    height: int  # frame height, pixels
    width: int  # frame width, pixels
    steps: int  # denoising steps per segment
    segments: int  # segments generated
    device: str  # torch device
    segment_frames: int = 33  # RGB frames per segment (4k+1; 32 new frames each)


CONFIGS = {
    "cpu": BenchConfig("cpu", 352, 640, steps=2, segments=5, device="cpu"),
    "gpu": BenchConfig("gpu", 704, 1280, steps=20, segments=5, device="cuda"),
}
#: ``--quick`` runs: frame size (multiples of 32, the VAE stride x the transformer patch) and segment length.
QUICK = {"cpu": dict(height=192, width=320, segment_frames=9), "gpu": dict(height=352, width=640, segment_frames=33)}


# --------------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------------


def build_backbone(bench: BenchConfig) -> Backbone:
    """The configuration's backbone with seeded random weights (see the module docstring)."""
    if bench.name == "cpu":
        return load_backbone(BackboneConfig(backend="tiny", tiny_vae="wan-full", device=bench.device))
    from diffusers import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    device = torch.device(bench.device)
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=4096, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                   relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    )  # fmt: skip
    with device:  # random init on the GPU: minutes faster than on the CPU
        transformer = WanTransformer3DModel(**TI2V_5B_TRANSFORMER)
        vae = wan22_vae()
    _cast_like_from_pretrained(transformer, torch.bfloat16)
    vae.enable_tiling()  # as the wan backend loads it
    backbone = Backbone(
        config=BackboneConfig(backend="tiny", tiny_vae="wan-full", device=bench.device, dtype="bfloat16"),
        transformer=transformer.eval(),
        vae=WanVideoVAE(vae.eval(), device),
        tokenizer=tokenizer,
        text_encoder=text_encoder.to(torch.bfloat16).eval(),
        scheduler_config=dict(TI2V_SCHEDULER),
        device=device,
        dtype=torch.bfloat16,
        max_sequence_length=WAN.max_sequence_length,
    )
    backbone.apply_offload()
    return backbone


# --------------------------------------------------------------------------------------------
# One memory kind (runs in its own process)
# --------------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """Peak resident set size of this process since the last :func:`reset_peaks`, MiB (Linux VmHWM)."""
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_peaks(device: torch.device) -> None:
    """Reset the peak RSS (``/proc/self/clear_refs`` 5) and CUDA's peak memory statistics."""
    Path("/proc/self/clear_refs").write_text("5")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_kind(kind: str, bench: BenchConfig) -> dict:
    """Generate ``bench.segments`` segments with one memory kind; per-segment measurements."""
    backbone = build_backbone(bench)
    device = backbone.device
    H, W = bench.height, bench.width
    scene = ProceduralScene(SAMPLE_CONFIG)
    K = intrinsics_from_fov(SAMPLE_FOV_Y_DEG, W, H)
    eye = torch.eye(4, dtype=torch.float64)
    rows = []
    with SceneRenderer() as renderer:
        image, depth = renderer.render(scene, eye, K, W, H)

        def exact_depth(frames: np.ndarray, w2c: torch.Tensor, K_: torch.Tensor) -> torch.Tensor:
            """Exact depth of the procedural scene at the written frames' poses (as ``main.py generate`` does)."""
            return torch.from_numpy(np.stack([renderer.render(scene, p, K_, W, H)[1] for p in w2c]))

        config = PipelineConfig(segment_frames=bench.segment_frames, steps=bench.steps, seed=0, memory_kind=kind)
        pipe = MiragePipeline(backbone, config, memory=make_memory(kind, config.memory, backbone.device, backbone.vae))
        start = time.perf_counter()
        pipe.start(image, torch.from_numpy(depth), K, eye, prompt=PROMPT)
        start_s = time.perf_counter() - start
        radius = float(np.median(depth[np.isfinite(depth)]))
        w2c = build_trajectory("orbit", bench.segments * (config.segment_frames - 1) + 1, eye, radius)
        segments = pipe.generate(w2c, exact_depth, bench.segments)
        for s in range(bench.segments):
            reset_peaks(device)
            load = os.getloadavg()[0]
            result = next(segments)
            t = result.timings
            row = {
                "segment": s + 1,
                "readout_s": t["readout"],
                "update_s": t["update"],
                "memory_cost_s": t["readout"] + t["update"],
                "total_s": t["total"],
                "seconds_per_frame": t["total"] / (config.segment_frames - 1),
                "memory_points": result.memory_points,
                "memory_bytes": result.memory_bytes,
                "memory_mib": result.memory_bytes / 2**20,
                "peak_rss_mib": peak_rss_mib(),
                "peak_cuda_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
                "visible_fraction": float(result.visible[1:].float().mean()),
                "timings_s": t,
                "load_1min": load,
            }
            if kind == "rgb":
                row["rasterise_s"], row["encode_s"] = (
                    pipe.memory.last_readout.rasterise,
                    pipe.memory.last_readout.encode,
                )
            rows.append(row)
            print(f"  {kind:>6} segment {s + 1}: readout {row['readout_s']:.3f} s, update {row['update_s']:.3f} s, "
                  f"{row['seconds_per_frame']:.2f} s/frame, {row['memory_mib']:.2f} MiB, RSS {row['peak_rss_mib']:.0f} "
                  f"MiB, load {load:.2f}",
                  file=sys.stderr, flush=True)  # fmt: skip
    return {
        "kind": kind,
        "start_s": start_s,
        "backbone": backbone.describe(),
        "memory_config": asdict(config.memory),
        "segments": rows,
    }


# --------------------------------------------------------------------------------------------
# Summary and reports
# --------------------------------------------------------------------------------------------


def summarise(runs: dict[str, dict]) -> dict:
    """Ratios of the RGB run to the latent run and whether the goals are met."""
    latent, rgb = runs["latent"]["segments"], runs["rgb"]["segments"]
    cost = lambda rows: float(np.mean([r["memory_cost_s"] for r in rows]))  # noqa: E731
    relative = lambda rows: float(np.mean([r["memory_cost_s"] / r["timings_s"]["decode"] for r in rows]))  # noqa: E731
    summary = {
        "memory_cost_ratio": cost(rgb) / cost(latent),
        "memory_cost_ratio_per_segment": [
            r["memory_cost_s"] / q["memory_cost_s"] for r, q in zip(rgb, latent, strict=True)
        ],
        # each run's memory cost over its own VAE decode time in the same segment: the decode is the
        # same work in both runs, so this cancels how fast the (shared) machine was at the time
        "memory_cost_ratio_vs_decode": relative(rgb) / relative(latent),
        "cache_size_ratio": rgb[-1]["memory_bytes"] / latent[-1]["memory_bytes"],
        "latent_flatness": latent[4]["seconds_per_frame"] / latent[1]["seconds_per_frame"]
        if len(latent) >= 5
        else None,
        "rgb_flatness": rgb[4]["seconds_per_frame"] / rgb[1]["seconds_per_frame"] if len(rgb) >= 5 else None,
        "end_to_end_speedup": float(
            np.mean([r["seconds_per_frame"] for r in rgb]) / np.mean([q["seconds_per_frame"] for q in latent])
        ),
    }
    summary["goals"] = {
        name: {"goal": f"{op} {bound}", "value": summary[name],
               "met": None if summary[name] is None
               else (summary[name] >= bound if op == ">=" else summary[name] <= bound)}
        for name, (op, bound) in GOALS.items()
    }  # fmt: skip
    return summary


def markdown(report: dict) -> str:
    """The per-segment table and the summary as markdown."""
    cuda = report["config"]["device"] == "cuda"
    lines = [
        f"# Generation benchmark: latent vs RGB point-cloud memory ({report['config']['name']})",
        "",
        f"Machine: {report['machine']}. torch {report['torch']}. "
        f"{report['config']['height']}x{report['config']['width']}, "
        f"{report['config']['steps']} steps, {report['config']['segments']} segments of "
        f"{report['config']['segment_frames']} frames. Load average (1 min) "
        f"during the runs: {report['load_during']['min']:.2f} to {report['load_during']['max']:.2f}.",
        "",
        f"Backbone: {report['runs']['latent']['backbone']}",
        "",
        "| segment | memory | readout s | update s | memory cost s | s / frame | cache MiB | points | peak RSS MiB |"
        + (" peak CUDA MiB |" if cuda else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if cuda else ""),
    ]  # fmt: skip
    for latent, rgb in zip(report["runs"]["latent"]["segments"], report["runs"]["rgb"]["segments"], strict=True):
        for kind, r in (("latent", latent), ("rgb", rgb)):
            split = f" (raster {r['rasterise_s']:.2f} + encode {r['encode_s']:.2f})" if kind == "rgb" else ""
            lines.append(
                f"| {r['segment']} | {kind} | {r['readout_s']:.3f}{split} | {r['update_s']:.3f} | "
                f"{r['memory_cost_s']:.3f} | "
                f"{r['seconds_per_frame']:.2f} | {r['memory_mib']:.2f} | {r['memory_points']:,} | "
                f"{r['peak_rss_mib']:.0f} |"
                + (f" {r['peak_cuda_mib']:.0f} |" if cuda else "")
            )  # fmt: skip
    s = report["summary"]
    lines += ["", "| summary | value | goal | met |", "|---|---|---|---|"]
    for name, goal in s["goals"].items():
        value = "n/a" if goal["value"] is None else f"{goal['value']:.2f}"
        lines.append(f"| {name} | {value} | {goal['goal']} | {goal['met']} |")
    lines.append(
        "| memory_cost_ratio_vs_decode (each run's cost / its own decode time) | "
        f"{s['memory_cost_ratio_vs_decode']:.2f} | | |"
    )
    lines.append(f"| end_to_end_speedup (RGB / latent s per frame) | {s['end_to_end_speedup']:.2f} | | |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Three grouped bar charts (s / frame, memory cost s, cache MiB; the last two log-scaled) with PIL."""
    from PIL import Image, ImageDraw, ImageFont

    colours = {"latent": (31, 119, 180), "rgb": (255, 127, 14)}
    panels = [
        ("seconds per frame", "seconds_per_frame", False),
        ("memory cost s (readout + update), log", "memory_cost_s", True),
        ("cache MiB, log", "memory_mib", True),
    ]
    width, height, margin = 420, 320, 50
    image = Image.new("RGB", (width * len(panels), height + 40), "white")
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    runs = {kind: report["runs"][kind]["segments"] for kind in colours}
    n = len(runs["latent"])
    for p, (title, key, log) in enumerate(panels):
        x0, y0, x1, y1 = p * width + margin, 30, (p + 1) * width - 15, height - 10
        values = {kind: [max(r[key], 1e-6) for r in rows] for kind, rows in runs.items()}
        top = max(max(v) for v in values.values())
        bottom = min(min(v) for v in values.values())
        lo, hi = (np.floor(np.log10(bottom)), np.ceil(np.log10(top))) if log else (0.0, top * 1.1)
        # this panel's lo / hi bound as defaults (scale is only used within this iteration, but say so)
        scale = (lambda v, lo=lo, hi=hi: (np.log10(v) - lo) / max(hi - lo, 1e-9)) if log else (lambda v, hi=hi: v / hi)
        draw.text((p * width + 10, 8), title, fill="black", font=font)
        draw.line([(x0, y0), (x0, y1), (x1, y1)], fill="black")
        ticks = [10.0**e for e in range(int(lo), int(hi) + 1)] if log else list(np.linspace(0, hi, 5))
        for tick in ticks:
            y = y1 - scale(tick) * (y1 - y0)
            draw.line([(x0 - 4, y), (x0, y)], fill="black")
            draw.text((p * width + 2, y - 7), f"{tick:.3g}", fill="black", font=font)
        slot = (x1 - x0) / n
        for s in range(n):
            for k, kind in enumerate(colours):
                bx = x0 + s * slot + slot * (0.15 + 0.35 * k)
                draw.rectangle([bx, y1 - scale(values[kind][s]) * (y1 - y0), bx + slot * 0.33, y1], fill=colours[kind])
            draw.text((x0 + s * slot + slot * 0.4, y1 + 4), str(s + 1), fill="black", font=font)
    for k, kind in enumerate(colours):
        draw.rectangle([20 + k * 120, height + 18, 32 + k * 120, height + 30], fill=colours[kind])
        draw.text((38 + k * 120, height + 16), f"{kind} memory", fill="black", font=font)
    draw.text(
        (270, height + 16),
        f"segment ->   {report['config']['name']} config, {report['machine']}",
        fill="black",
        font=font,
    )
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument(
        "--segments", type=int, default=None, help="segments to generate (default 5; >= 5 for the flatness ratio)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller frames (cpu: 192x320, 9-frame segments): results go to *-quick files",
    )
    parser.add_argument("--worker", choices=MEMORY_KINDS, help=argparse.SUPPRESS)  # internal: run one memory kind ...
    parser.add_argument("--result", help=argparse.SUPPRESS)  # ... and write its JSON here
    args = parser.parse_args(argv)
    bench = CONFIGS[args.config]
    if args.quick:
        bench = replace(bench, **QUICK[bench.name])
    if args.segments is not None:
        bench.segments = args.segments
    if bench.segments < 2:
        parser.error("--segments must be >= 2")
    if args.worker:
        write_json_atomic(args.result, run_kind(args.worker, bench))
        return 0
    if bench.device == "cuda" and not torch.cuda.is_available():
        print("error: --config gpu needs a CUDA GPU", file=sys.stderr)
        return 2
    runs, loads = {}, [os.getloadavg()[0]]
    for kind in MEMORY_KINDS:  # one fresh process per memory: its peak RSS / GPU memory are its own
        print(f"{kind} memory, {bench}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / f"{kind}.json"
            command = [
                sys.executable,
                __file__,
                "--config",
                args.config,
                "--segments",
                str(bench.segments),
                "--worker",
                kind,
                "--result",
                str(result),
            ]
            subprocess.run(command + (["--quick"] if args.quick else []), check=True)
            runs[kind] = json.loads(result.read_text())
        loads += [r["load_1min"] for r in runs[kind]["segments"]]
    device = "cuda" if bench.device == "cuda" else "cpu"
    machine = torch.cuda.get_device_name(0) if device == "cuda" else device_label(torch.device("cpu"))
    report = {
        "benchmark": "generation",
        "config": asdict(bench) | {"quick": args.quick},
        "machine": machine,
        "torch": torch.__version__,
        "load_during": {"min": min(loads), "max": max(loads)},
        "runs": runs,
        "summary": summarise(runs),
    }
    stem = RESULTS / f"generation-{device}{'-quick' if args.quick else ''}"
    write_json_atomic(stem.with_suffix(".json"), report)
    write_text_atomic(stem.with_suffix(".md"), markdown(report))
    plot(report, stem.with_suffix(".png"))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
