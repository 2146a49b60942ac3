"""``main.py train``: flags onto :class:`~model.training.trainer.TrainConfig` (imports torch only when run)."""

from __future__ import annotations

import argparse
import os
import sys

from model.generation.profiles import BACKENDS, DEFAULT_BACKEND, backend_summaries, model_folders, per_backend


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` flags to ``parser`` and set its ``run`` callback."""
    parser.add_argument(
        "--stage",
        choices=("branch", "lora", "mini"),
        required=True,
        help="branch: stage 1 (memory branch); lora: stage 2 (LoRA, branch frozen); mini: the mini model from "
        "scratch (tiny transformer + memory branch on procedural worlds; writes OUT/model, loads with --backend mini "
        "--model OUT/model)",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="'procedural' or a folder of RealEstate10K-layout clips (<clip>/cameras.txt + frames/ or video.mp4)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder: memory weights (loads with generate --memory-weights OUT), loss.csv/png, checkpoints",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help=f"{backend_summaries()} (default: %(default)s)"
    )
    parser.add_argument("--model", dest="model_dir", help=f"model folder ({model_folders()})")
    parser.add_argument("--branch", dest="branch_dir", help="stage lora: the stage-1 output folder")
    parser.add_argument("--steps", type=int, default=1000, help="total optimizer steps")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=1, help="samples per step and process")
    parser.add_argument("--lr", type=float, help="learning rate (default 1e-5 branch, 1e-4 lora)")
    parser.add_argument(
        "--resume", help="continue from a checkpoint folder or the newest checkpoint of an output folder"
    )
    parser.add_argument(
        "--checkpoint-every", dest="checkpoint_every", type=int, default=500, help="steps between checkpoints"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, help=f"frame height (default {per_backend(lambda p: p.train_size[0])})")
    parser.add_argument("--width", type=int, help=f"frame width (default {per_backend(lambda p: p.train_size[1])})")
    parser.add_argument(
        "--context-frames",
        dest="context_frames",
        type=int,
        default=0,
        help="preceding clean latent frames 0-2 (the pipeline feeds 0)",
    )
    parser.add_argument(
        "--branch-layers", dest="branch_layers", help="injection blocks, e.g. 0,4,8 (default every 4th from 0)"
    )
    parser.add_argument(
        "--scenes", dest="procedural_scenes", type=int, default=8, help="procedural data: number of rooms"
    )
    parser.add_argument(
        "--shift", type=float, default=5.0, help="sigma shift of training (and of the mini model's sampler; default 5)"
    )
    parser.add_argument("--warmup-steps", dest="warmup_steps", type=int, default=0, help="learning-rate warm-up steps")
    parser.add_argument("--layers", dest="tiny_num_layers", type=int, default=4, help="tiny transformer blocks")
    parser.add_argument("--heads", dest="tiny_num_heads", type=int, default=2, help="tiny transformer attention heads")
    parser.add_argument(
        "--head-dim", dest="tiny_head_dim", type=int, default=16, help="tiny transformer width per head"
    )
    parser.add_argument(
        "--ffn-dim", dest="tiny_ffn_dim", type=int, default=64, help="tiny transformer feed-forward width"
    )
    parser.add_argument(
        "--heldout-scenes",
        dest="heldout_scenes",
        type=int,
        default=4,
        help="mini: held-out worlds scored (seeds 5000...)",
    )
    parser.add_argument(
        "--prediction",
        help="mini: what the transformer outputs: readout_x0 (default for mini: a correction of the clean latents "
        "on top of the memory readout, x0 loss) or velocity (the only choice of stages branch and lora)",
    )
    parser.add_argument(
        "--refiner-width",
        dest="refiner_width",
        type=int,
        default=0,
        help="mini: hidden width of the readout refiner (a conv net resampling the readout; 0: none)",
    )
    parser.add_argument(
        "--init",
        dest="init_from",
        help="mini: start from this mini model folder's weights (parts it lacks, e.g. a new refiner, start fresh; "
        "more --layers than it has: the extra blocks start as the identity)",
    )
    parser.add_argument(
        "--eval-every", dest="eval_every", type=int, default=100, help="mini: steps between held-out evaluations"
    )
    parser.add_argument(
        "--cache-workers",
        dest="cache_workers",
        type=int,
        default=1,
        help="mini: processes that build missing world-cache files (each renders with its own GL context)",
    )
    parser.add_argument(
        "--worlds-on-device",
        dest="worlds_on_device",
        action="store_true",
        help="mini: keep every world sample on the training device (a GPU run reads no files per step; "
        "~2.8 MB of device memory per world at 64x128)",
    )
    parser.add_argument(
        "--max-minutes",
        dest="max_minutes",
        type=float,
        help="wall-clock budget of the run, data preparation included: after timing the first steps, --steps "
        "(and with it the learning-rate schedule) is lowered so the loop ends in time",
    )
    parser.add_argument(
        "--sampler-steps",
        dest="sampler_steps",
        type=int,
        default=0,
        help="draw a share of the samples at the sigmas the pipeline's scheduler visits with this many steps "
        "(all noisy frames at one of them; 0: per-frame sigmas only)",
    )
    parser.add_argument(
        "--sampler-share",
        dest="sampler_share",
        type=float,
        default=0.5,
        help="with --sampler-steps: the share of samples drawn at the sampler's sigmas (default 0.5)",
    )
    parser.add_argument(
        "--rollout",
        action="store_true",
        help="with --sampler-steps: a sample at a later sampler sigma starts from the model's own prediction "
        "one step earlier, as sampling does (one more forward pass for those samples, no gradient)",
    )
    parser.add_argument(
        "--hole-weight",
        dest="hole_weight",
        type=float,
        default=1.0,
        help="loss weight of a latent cell the memory readout did not cover, relative to a covered one "
        "(default 1: the plain mean)",
    )
    parser.add_argument("--depth-model", dest="depth_model", help="metric depth model folder for folder clips")
    parser.add_argument("--cache-dir", dest="cache_dir", help="clip cache folder (default OUT/cache)")
    parser.add_argument("--device", help="torch device (default: cuda when available)")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    parser.add_argument(
        "--gradient-checkpointing",
        dest="gradient_checkpointing",
        action="store_true",
        help="recompute blocks in backward (GPU memory)",
    )
    parser.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Build the config from ``args`` and train; prints where the weights went."""
    from model.training.trainer import TrainConfig, train

    names = (
        "stage",
        "data",
        "out",
        "backend",
        "model_dir",
        "branch_dir",
        "steps",
        "batch_size",
        "lr",
        "checkpoint_every",
        "seed",
        "height",
        "width",
        "context_frames",
        "procedural_scenes",
        "depth_model",
        "cache_dir",
        "device",
        "bf16",
        "gradient_checkpointing",
        "warmup_steps",
        "shift",
        "tiny_num_layers",
        "tiny_num_heads",
        "tiny_head_dim",
        "tiny_ffn_dim",
        "heldout_scenes",
        "eval_every",
        "prediction",
        "refiner_width",
        "init_from",
        "cache_workers",
        "worlds_on_device",
        "max_minutes",
        "sampler_steps",
        "sampler_share",
        "rollout",
        "hole_weight",
    )
    layers = None
    if args.branch_layers:
        try:
            layers = tuple(int(i) for i in args.branch_layers.split(","))
        except ValueError as exc:
            raise ValueError(
                f"--branch-layers: expected comma-separated block numbers, got {args.branch_layers!r}"
            ) from exc
    config = TrainConfig(**{name: getattr(args, name) for name in names}, branch_layers=layers)
    _note_single_cpu_process()
    result = train(config, resume=args.resume)
    losses = result.losses
    if config.stage == "mini":
        print(
            f"trained mini steps {result.start_step}..{result.steps}; loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
            f"wrote {result.out}/model (generate --backend mini --model {result.out}/model)"
        )
        return 0
    print(
        f"trained {config.stage} steps {result.start_step}..{result.steps}; loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
        f"wrote {result.out} (generate --mode branch --memory-weights {result.out}); skipped {len(result.skipped)} "
        "clips"
    )
    return 0


def _note_single_cpu_process() -> None:
    """Say on stderr when ``accelerate launch --cpu`` gave one process (whatever ``--num_processes`` said).

    accelerate 1.15's ``--cpu`` launcher starts several processes only through MPI (``--mpirun_hostfile``);
    torchrun does it for CPU too, via ``--multi_gpu`` (the trainer then joins the processes with gloo).
    """
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "WORLD_SIZE" not in os.environ:
        print(
            "note: one training process: `accelerate launch --cpu` starts one process without --mpirun_hostfile; "
            "for N CPU processes use `accelerate launch --config_file configs/accelerate/cpu-2proc.yaml` "
            "or `--multi_gpu --num_processes N`",
            file=sys.stderr,
        )
