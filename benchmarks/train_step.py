"""Time one training step of stage 1 (memory branch) and measure peak memory.

``--config gpu``: the full Wan2.2-TI2V-5B transformer architecture (30 blocks, 24 x 128 heads,
FFN 14336, text 4096) with random weights (they cost exactly what real weights cost), bf16
backbone, float32 trainable branch at blocks 0, 4, ..., 28 under bf16 autocast, gradient
checkpointing, AdamW, one 704x1280 sample: 9 latent frames of 44x80 (15,840 tokens), 512 text
tokens. Needs CUDA.

``--config cpu``: the same code path on a tiny architecture (CPU, float32), so the script is
exercised without a GPU; its numbers say nothing about the real model.

Both run the trainer's own step (:func:`model.training.trainer.training_step` on a
:class:`~model.training.trainer.MemoryFlowModel` built like stage 1) and write
``benchmarks/results/train_step-<device>.json``: median step time over the timed steps
(forward + backward + optimizer), peak allocated memory (CUDA), shapes and parameter counts.

    .venv/bin/python benchmarks/train_step.py --config gpu     # on a CUDA machine
    .venv/bin/python benchmarks/train_step.py --config cpu
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.generation.memory_branch import MemoryBranch, MemoryBranchConfig  # noqa: E402
from model.io.atomic import write_json_atomic  # noqa: E402
from model.training.samples import Batch  # noqa: E402
from model.training.trainer import MemoryFlowModel, trainable_parameters, training_step  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Wan2.2-TI2V-5B transformer (diffusers config of Wan-AI/Wan2.2-TI2V-5B-Diffusers).
TI2V_5B = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=24,
    attention_head_dim=128,
    in_channels=48,
    out_channels=48,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=14336,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)
TINY = dict(TI2V_5B, num_attention_heads=2, attention_head_dim=16, text_dim=32, ffn_dim=64, num_layers=4)
CONFIGS = {
    # architecture, (latent frames, h, w) of one sample, text tokens, dtype, gradient checkpointing, branch layers
    "gpu": dict(
        arch=TI2V_5B,
        grid=(9, 44, 80),
        text_tokens=512,
        dtype=torch.bfloat16,
        checkpointing=True,
        layers=tuple(range(0, 30, 4)),
    ),
    "cpu": dict(arch=TINY, grid=(9, 8, 16), text_tokens=32, dtype=torch.float32, checkpointing=True, layers=(0, 2)),
}


def build(config: dict, device: torch.device) -> MemoryFlowModel:
    """Random-weight transformer (frozen, ``config['dtype']``) + a float32 stage-1 branch, on ``device``."""
    with torch.device(device):
        transformer = WanTransformer3DModel(**config["arch"]).to(config["dtype"]).eval()
    transformer.requires_grad_(False)
    branch = MemoryBranch(transformer, MemoryBranchConfig(layers=config["layers"])).float()
    branch.attach(transformer)
    if config["checkpointing"]:
        transformer.enable_gradient_checkpointing()
    return MemoryFlowModel(transformer, branch)


def random_batch(config: dict, device: torch.device, generator: torch.Generator) -> Batch:
    f, h, w = config["grid"]
    channels, text_dim = config["arch"]["in_channels"], config["arch"]["text_dim"]
    return Batch(
        latents=torch.randn(1, channels, f, h, w, generator=generator).to(device),
        readout=torch.randn(1, channels, f, h, w, generator=generator).to(device),
        visible=(torch.rand(1, f, h, w, generator=generator) > 0.3).to(device),
        prompt_embeds=torch.randn(1, config["text_tokens"], text_dim, generator=generator).to(device),
    )


def measure(name: str, warmup: int, steps: int) -> dict:
    config = CONFIGS[name]
    device = torch.device("cuda" if name == "gpu" else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--config gpu needs CUDA (run --config cpu to exercise the code path here)")
    torch.manual_seed(0)
    model = build(config, device)
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(list(params.values()), lr=1e-5)
    generator = torch.Generator("cpu").manual_seed(0)
    batch = random_batch(config, device, generator)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if config["dtype"] == torch.bfloat16
        else contextlib.nullcontext()
    )
    model.train()
    times, losses = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast:
            loss, _ = training_step(model, batch, clean_frames=1, generator=generator, shift=5.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    f, h, w = config["grid"]
    _, ph, pw = config["arch"]["patch_size"]
    return {
        "config": name,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "backbone_parameters": sum(p.numel() for p in model.transformer.parameters()),
        "trainable_parameters": sum(p.numel() for p in params.values()),
        "branch_layers": list(config["layers"]),
        "dtype": str(config["dtype"]).removeprefix("torch."),
        "gradient_checkpointing": config["checkpointing"],
        "latent_grid": [f, h, w],
        "tokens": f * (h // ph) * (w // pw),
        "text_tokens": config["text_tokens"],
        "warmup_steps": warmup,
        "step_s": times,
        "median_step_s": statistics.median(times),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "losses": losses,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=tuple(CONFIGS), default="gpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", help="result JSON (default benchmarks/results/train_step-<cuda|cpu>.json)")
    args = parser.parse_args(argv)
    result = measure(args.config, args.warmup, args.steps)
    out = Path(
        args.out or ROOT / "benchmarks" / "results" / f"train_step-{'cuda' if args.config == 'gpu' else 'cpu'}.json"
    )
    write_json_atomic(out, result)
    peak = f", peak {result['peak_memory_gib']:.1f} GiB" if result["peak_memory_gib"] is not None else ""
    print(f"{result['device']}: median step {result['median_step_s']:.3f} s{peak}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
