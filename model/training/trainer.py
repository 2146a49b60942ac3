"""Two-stage training of the memory branch and the backbone LoRA (Mirage paper §4).

* Stage ``branch`` (1): the backbone is frozen; only the :class:`~model.generation.memory_branch.MemoryBranch`
  trains (AdamW, lr 1e-5 by default). Output: a branch-only memory-weights folder.
* Stage ``lora`` (2): the branch is loaded from a stage-1 output and frozen; a LoRA (rank 64,
  alpha 64, dropout 0.05, self-attention q/k/v/o) on the backbone trains (lr 1e-4). Output: branch
  + LoRA.
* Stage ``mini``: the tiny transformer and a fresh memory branch train together from random
  initialisation (lr 5e-4, linear warm-up then cosine decay) on varied procedural worlds
  (:mod:`model.training.worlds`, scene seeds below
  :data:`~model.eval.scenes.world.HELD_OUT_SEED` only) with the exact pixel-patch VAE. Every
  ``eval_every`` steps the flow loss and the PSNR of the predicted clean latents (pixels, for the
  patch VAE) on held-out worlds (seeds from ``HELD_OUT_SEED`` up) at fixed noise go to
  ``heldout.csv``. Output: the ``mini`` backend's model folder ``OUT/model/``
  (:mod:`model.generation.mini`).

Objective: :mod:`model.training.flow` (per-frame sigma with shift 5, clean context + target frame 0
at t = 0, MSE to ``noise - x_0`` on the noisy target frames; with ``sampler_steps`` a share of the
samples at the sigmas the pipeline's scheduler visits, optionally rolled out from the model's own
earlier prediction). Data: :mod:`model.training.samples`.

The loop runs under ``accelerate.Accelerator`` (``accelerate launch`` for several GPUs; a plain
``python`` process on CPU works as is). Batches are a pure function of ``(seed, step)``: step
``k`` of process ``r`` uses positions ``(k * world + r) * B ... + B - 1`` of the concatenation of
per-epoch permutations ``default_rng([seed, epoch]).permutation(len(samples))``, and the sigmas and
noise of the sample at position ``p`` come from a generator seeded by ``(seed, p)``
(:func:`noise_generators`). So ``N`` processes of batch ``B`` see the samples and noise of one
process of batch ``N * B``; with DDP's gradient averaging their loss curves agree up to float
rounding (README, "Multi-process training"). Together with the checkpointed parameters, optimizer
and RNG states (:mod:`model.training.checkpoint`) this makes a resumed run continue bit-exactly.

Output folder (``--out``; loads with ``main.py generate --mode branch --memory-weights OUT``)::

    OUT/
      memory_branch.safetensors, memory_weights.json   (+ pytorch_lora_weights.safetensors, stage 2)
      train.json        config, backbone, data (clips used / skipped), timings, loss summary
      loss.csv          step, loss, lr (one row per step)
      loss.png          the loss curve
      checkpoints/step-NNNNNN/   the newest ``keep_checkpoints`` checkpoints
      cache/            per-clip latent / depth cache (unless ``cache_dir`` points elsewhere)
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import UniPCMultistepScheduler
from torch import nn

from model.eval.scenes import SceneRenderer
from model.eval.scenes.world import HELD_OUT_SEED
from model.generation.backbone import TI2V_SCHEDULER, Backbone, BackboneConfig
from model.generation.depth import DepthEstimator, PriorDepth, TransformersDepthEstimator
from model.generation.lora import BRANCH_FILE, LORA_FILE, MANIFEST_FILE, LoraSettings, add_lora, save_memory_weights
from model.generation.memory_branch import PREDICTIONS, MemoryBranch, MemoryBranchConfig, ReadoutSettings
from model.generation.mini import SIZE_KEYS, init_from_mini, save_mini
from model.generation.profiles import DEFAULT_BACKEND, profile
from model.generation.stack import attach_before_offload
from model.io.atomic import atomic_dir, write_json_atomic
from model.io.formats import read_json_object
from model.memory.latent import LatentSpatialMemory
from model.training import checkpoint as ckpt
from model.training.clips import ClipSource, discover_clips, procedural_clips
from model.training.flow import DEFAULT_SHIFT, NoisedBatch, SamplerLevels, add_flow_noise, flow_loss, roll_out
from model.training.losslog import LossLog, write_heldout_csv
from model.training.samples import Batch, ClipCache, SampleSet, SampleSpec, collate
from model.training.worlds import WorldSampleSet, WorldSpec

STAGES = ("branch", "lora", "mini")
DEFAULT_LR = {"branch": 1e-5, "lora": 1e-4, "mini": 5e-4}
#: The output folder's sub-folder holding the model a ``mini`` run trains (loads with ``--backend mini --model``).
MINI_MODEL_DIR = "model"
#: ``--data`` value that selects procedural rooms rendered on the fly.
PROCEDURAL = "procedural"
#: Prompt of every procedural training sample (stage mini; the mini model records it).
PROMPT = "a room"
#: Seed of the noise of the held-out evaluation (the same noise at every evaluation).
HELDOUT_NOISE_SEED = 20261127
TIMING_SKIP, TIMING_STEPS = 5, 20  # max_minutes: steps left out of, and steps in, the timing

StatusCallback = Callable[[str], None]


@dataclass
class TrainConfig:
    """Settings of one training run (``main.py train`` flags map onto these)."""

    stage: str = (
        "branch"  # "branch": train the memory branch (stage 1); "lora": train the LoRA, branch frozen (stage 2)
    )
    data: str = PROCEDURAL  # RealEstate10K-layout folder (see model.training.clips) or "procedural"
    out: str = "out/train"  # output folder (memory weights, loss log, checkpoints, cache)
    backend: str = (
        DEFAULT_BACKEND  # one of model.generation.profiles.BACKENDS: "tiny" (CPU, random weights), "wan" (model_dir)
    )
    model_dir: str | None = None  # model folder of backends that need one (wan: a Wan2.2-TI2V-5B diffusers folder)
    branch_dir: str | None = None  # stage lora: the stage-1 output folder whose branch is loaded and frozen
    steps: int = 1000  # total optimizer steps (a resumed run continues up to this)
    batch_size: int = 1  # samples per step and process
    lr: float | None = None  # learning rate; None: 1e-5 (branch) or 1e-4 (lora)
    weight_decay: float = 1e-2  # AdamW weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    grad_clip: float = 1.0  # max gradient norm (0 disables clipping)
    seed: int = 0  # data order, noise and procedural scene selection
    checkpoint_every: int = 500  # steps between checkpoints (one is also written at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    height: int | None = None  # frame height in pixels; None: the backend profile's train_size
    width: int | None = None  # frame width in pixels; None: the backend profile's train_size
    context_frames: int = 0  # preceding clean latent frames (0-2); the pipeline currently feeds 0
    chunk_frames: int = 33  # RGB frames of the target chunk (4k+1; the pipeline's segment length)
    window_stride: int = 32  # RGB frames between target chunk starts within a clip
    shift: float = DEFAULT_SHIFT  # sigma shift (5 for TI2V-5B at 704x1280)
    branch_layers: tuple[int, ...] | None = None  # injection blocks; None: every 4th block from 0 (paper)
    lora_rank: int = 64  # stage lora: LoRA rank
    lora_alpha: int = 64  # stage lora: LoRA alpha
    lora_dropout: float = 0.05  # stage lora: LoRA dropout
    procedural_scenes: int = 8  # procedural data: number of rooms (seeds procedural_seed ...)
    procedural_seed: int = 0  # procedural data: first room seed (keep held-out evaluation rooms apart)
    depth_model: str | None = None  # transformers metric depth model folder for folder clips (None: flat prior, warned)
    cache_dir: str | None = None  # clip cache folder; None: OUT/cache
    device: str | None = None  # torch device; None: the accelerator's (cuda when available)
    bf16: bool = False  # bf16 mixed precision (GPU; always on for a bf16 backbone: wan); trainable weights stay fp32
    gradient_checkpointing: bool = False  # recompute backbone and branch blocks in backward (GPU memory)
    tiny_num_heads: int = 2  # tiny backend: attention heads (generate loads the default tiny backbone)
    tiny_head_dim: int = 16  # tiny backend: width per head
    tiny_num_layers: int = 4  # tiny backend: blocks
    tiny_ffn_dim: int = 64  # tiny backend: feed-forward width
    warmup_steps: int = 0  # steps of linear learning-rate warm-up (stage mini: then cosine decay to 0 at --steps)
    heldout_scenes: int = 4  # stage mini: held-out worlds (seeds HELD_OUT_SEED ...) scored every eval_every steps
    eval_every: int = 100  # stage mini: steps between held-out evaluations
    world_segments: int = 2  # stage mini: segments (samples) per world path
    # what the transformer's output means (MemoryBranchConfig.prediction); None: "readout_x0" for stage mini
    # (trained with the x0 loss weighting), "velocity" otherwise (a pretrained backbone predicts velocity)
    prediction: str | None = None
    refiner_width: int = 0  # stage mini: hidden width of the readout refiner (MemoryBranchConfig.refiner_width)
    # stage mini: a mini model folder whose weights the run starts from (parts it lacks, e.g. a new refiner,
    # start as at init); None: random initialisation
    init_from: str | None = None
    cache_workers: int = 1  # stage mini: processes that build missing world-cache files
    worlds_on_device: bool = False  # stage mini: keep every world sample on the training device (GPU runs)
    # a wall-clock budget of the run, data preparation included: after timing steps 6-25, ``steps`` is lowered
    # so the loop ends within it (the cosine schedule then ends there too); None: run to ``steps``
    max_minutes: float | None = None
    # a share (sampler_share) of the samples drawn at the sigmas the pipeline's UniPC visits with this many
    # steps (flow_shift = shift), all noisy frames at one of them (flow.SamplerLevels); 0: per-frame sigmas only
    sampler_steps: int = 0
    sampler_share: float = 0.5
    rollout: bool = False  # samples at a later sampler sigma start from the model's own earlier prediction
    # the loss weight of a latent cell the memory readout did not cover (a covered one weighs 1; flow.flow_loss)
    hole_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == "lora" and not self.branch_dir:
            raise ValueError("--stage lora needs --branch DIR (the stage-1 output with the trained memory branch)")
        if self.stage != "lora" and self.branch_dir:
            raise ValueError("--branch is only for --stage lora (stages branch and mini train a fresh branch)")
        if self.backend == "mini":
            raise ValueError("--backend mini is the trained model itself; retrain it with --stage mini --backend tiny")
        if self.stage == "mini":
            if self.data != PROCEDURAL or self.backend != "tiny":
                raise ValueError(
                    "--stage mini trains from random weights on procedural worlds: --data procedural, --backend tiny"
                )
            if self.procedural_seed < 0 or self.procedural_seed + self.procedural_scenes > HELD_OUT_SEED:
                raise ValueError(
                    f"--stage mini: training scene seeds must lie below {HELD_OUT_SEED} (held out), got "
                    f"{self.procedural_seed}..{self.procedural_seed + self.procedural_scenes - 1}"
                )
        if self.prediction is None:
            self.prediction = "readout_x0" if self.stage == "mini" else "velocity"
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"--prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.stage != "mini" and (self.refiner_width or self.init_from):
            raise ValueError("--refiner-width and --init are for --stage mini")
        if self.refiner_width < 0:
            raise ValueError(f"--refiner-width must be >= 0, got {self.refiner_width}")
        if self.stage != "mini" and self.prediction != "velocity":
            raise ValueError(
                f"--prediction {self.prediction} is for --stage mini (from scratch); "
                "a pretrained backbone predicts velocity"
            )
        for name in (
            "steps",
            "batch_size",
            "checkpoint_every",
            "keep_checkpoints",
            "procedural_scenes",
            "window_stride",
            "tiny_ffn_dim",
            "eval_every",
            "world_segments",
            "cache_workers",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.sampler_steps < 0:
            raise ValueError(f"--sampler-steps must be >= 0, got {self.sampler_steps}")
        if self.sampler_steps:
            self.sampler_levels()  # validates the share and the rollout against the levels
        elif self.rollout:
            raise ValueError("--rollout needs --sampler-steps (2 or more)")
        if not (math.isfinite(self.hole_weight) and self.hole_weight > 0):
            raise ValueError(f"--hole-weight must be positive, got {self.hole_weight}")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise ValueError(f"--max-minutes must be positive, got {self.max_minutes}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.branch_layers is not None:
            self.branch_layers = tuple(int(i) for i in self.branch_layers)
        self.betas = tuple(float(b) for b in self.betas)

    @property
    def loss_weighting(self) -> str:
        """The :func:`~model.training.flow.flow_loss` weighting: ``"x0"`` for an x0-parametrised model."""
        return "x0" if self.prediction == "readout_x0" else "velocity"

    def sampler_levels(self) -> SamplerLevels | None:
        """The sigmas the pipeline's scheduler visits with ``sampler_steps`` steps (None when 0)."""
        if not self.sampler_steps:
            return None
        scheduler = UniPCMultistepScheduler(**{**TI2V_SCHEDULER, "flow_shift": self.shift})
        scheduler.set_timesteps(self.sampler_steps)
        sigmas = tuple(float(s) for s in scheduler.sigmas[:-1])
        try:
            return SamplerLevels(sigmas, self.sampler_share, self.rollout)
        except ValueError as error:
            raise ValueError(f"--sampler-steps {self.sampler_steps} / --sampler-share / --rollout: {error}") from None

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.stage]

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of (0-based) ``step``: linear warm-up over ``warmup_steps``, then constant
        (stages branch, lora) or cosine decay to 0 at ``steps`` (stage mini); a pure function of the step."""
        lr = self.learning_rate
        if step < self.warmup_steps:
            return lr * (step + 1) / self.warmup_steps
        if self.stage != "mini":
            return lr
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` in pixels of the training frames."""
        return profile(self.backend).training_size(self.height, self.width)

    def backbone_config(self, device: str | None) -> BackboneConfig:
        return BackboneConfig(
            backend=self.backend,
            model_dir=self.model_dir,
            device=device,
            seed=0,
            tiny_num_heads=self.tiny_num_heads,
            tiny_head_dim=self.tiny_head_dim,
            tiny_num_layers=self.tiny_num_layers,
            tiny_ffn_dim=self.tiny_ffn_dim,
        )

    def lora_settings(self) -> LoraSettings:
        return LoraSettings(rank=self.lora_rank, alpha=self.lora_alpha, dropout=self.lora_dropout)

    def identity(self) -> dict:
        """The settings a resumed run must share with the checkpoint (all but run length / bookkeeping)."""
        bookkeeping = {
            "out",
            "steps",
            "checkpoint_every",
            "keep_checkpoints",
            "device",
            "cache_dir",
            "eval_every",
            "cache_workers",
            "worlds_on_device",
            "max_minutes",
        }
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in bookkeeping}


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


class MemoryFlowModel(nn.Module):
    """The trained system as one module (so ``accelerator.prepare`` can wrap it for DDP).

    ``forward(model_input [B,C,F,h,w], timestep [B,L], prompt_embeds [B,L_text,D], readout
    [B,C,F,h,w], visible [B,F,h,w], mapping [B,6,F,h,w]) -> velocity [B,C,F,h,w]``: the backbone called
    inside the branch's condition (the branch is attached to the transformer by hooks).
    """

    def __init__(self, transformer: nn.Module, branch: MemoryBranch) -> None:
        super().__init__()
        self.transformer = transformer
        self.branch = branch

    def forward(self, model_input, timestep, prompt_embeds, readout, visible, mapping=None) -> torch.Tensor:
        dtype = self.transformer.dtype
        with self.branch.condition(readout.to(dtype), visible, mapping):
            return self.transformer(
                hidden_states=model_input.to(dtype),
                timestep=timestep,
                encoder_hidden_states=prompt_embeds.to(dtype),
                return_dict=False,
            )[0]


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` of every parameter with ``requires_grad`` (the checkpointed set)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def build_model(config: TrainConfig, backbone: Backbone) -> MemoryFlowModel:
    """Backbone frozen; stage branch: a fresh trainable branch; stage lora: the stage-1 branch frozen +
    a fresh trainable LoRA. Trainable weights are float32 whatever the backbone's dtype."""
    transformer = backbone.transformer
    transformer.requires_grad_(config.stage == "mini")  # mini: the whole transformer trains, from random weights
    if config.stage in ("branch", "mini"):
        layers = config.branch_layers or tuple(range(0, transformer.config.num_layers, 4))
        branch = MemoryBranch(
            transformer,
            MemoryBranchConfig(layers=layers, prediction=config.prediction, refiner_width=config.refiner_width),
        )
        if config.stage == "mini":
            # from random weights there is no pretrained output to preserve: zero-initialised projections
            # (VACE's fine-tuning choice) would keep the readout out of the gradient until after_proj has grown
            for proj in [branch.before_proj, *branch.after_proj]:
                proj.reset_parameters()
            if config.prediction == "readout_x0":
                # a zero correction: the untrained model's clean estimate is the readout itself (DiT's zero head)
                nn.init.zeros_(transformer.proj_out.weight)
                nn.init.zeros_(transformer.proj_out.bias)
            if config.init_from:
                init_from_mini(config.init_from, transformer, branch)
    else:
        branch = MemoryBranch.load(Path(config.branch_dir) / BRANCH_FILE, transformer)
        branch.requires_grad_(False)
        add_lora(transformer, config.lora_settings())
        for name, p in transformer.named_parameters():
            p.requires_grad_("lora_" in name)
    branch.attach(transformer)
    model = MemoryFlowModel(transformer, branch)
    for p in trainable_parameters(model).values():
        p.data = p.data.float()
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return model


def batch_positions(step: int, batch_size: int, rank: int = 0, world: int = 1) -> range:
    """Global positions in the sample stream of ``step`` (0-based) on process ``rank`` (module docstring)."""
    first = (step * world + rank) * batch_size
    return range(first, first + batch_size)


def batch_indices(seed: int, step: int, batch_size: int, num_samples: int, rank: int = 0, world: int = 1) -> list[int]:
    """Sample indices of ``step`` (0-based) on process ``rank``: a pure function (see the module docstring)."""
    out = []
    for position in batch_positions(step, batch_size, rank, world):
        epoch, offset = divmod(position, num_samples)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(num_samples)[offset]))
    return out


def noise_generators(seed: int, step: int, batch_size: int, rank: int = 0, world: int = 1) -> list[torch.Generator]:
    """One CPU generator per sample of ``step`` on ``rank``, seeded by ``(seed, global position)``.

    The sigmas and noise of a sample depend only on its position in the stream, not on how the global
    batch is split into processes: ``world`` processes of batch ``B`` draw what one process of batch
    ``world * B`` draws.
    """
    seeds = (
        np.random.SeedSequence([seed, p]).generate_state(1, np.uint64)[0]
        for p in batch_positions(step, batch_size, rank, world)
    )
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def predict_velocity(
    model: nn.Module,
    batch: Batch,
    clean_frames: int,
    generator: torch.Generator | list[torch.Generator],
    shift: float,
    levels: SamplerLevels | None = None,
) -> tuple[torch.Tensor, NoisedBatch]:
    """Noise ``batch`` (:func:`~model.training.flow.add_flow_noise`) and predict the velocity.

    ``levels``: draw a share of the samples at a sampler's sigmas; with ``levels.rollout`` the samples at a
    later one first get the model's own earlier prediction (:func:`~model.training.flow.roll_out`).
    Returns ``(prediction [B, C, F, h, w], noised batch)``; ``model`` may be wrapped (DDP / FSDP) or not.
    """
    device = next(p for p in model.parameters()).device
    inner = model.module if hasattr(model, "module") else model
    latents = batch.latents.to(device)
    noised = add_flow_noise(latents, clean_frames, tuple(inner.transformer.config.patch_size), generator, shift, levels)

    def predict_rows(index: torch.Tensor, model_input: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        rows = index.to(device)
        conditions = (batch.prompt_embeds, batch.readout, batch.visible, batch.mapping)
        return inner(model_input, timestep, *(c.to(device)[rows] for c in conditions))

    noised = roll_out(noised, latents, predict_rows)
    prediction = model(
        noised.model_input,
        noised.timestep,
        batch.prompt_embeds.to(device),
        batch.readout.to(device),
        batch.visible.to(device),
        batch.mapping.to(device),
    )
    return prediction, noised


def training_step(
    model: nn.Module,
    batch: Batch,
    clean_frames: int,
    generator: torch.Generator | list[torch.Generator],
    shift: float,
    weighting: str = "velocity",
    levels: SamplerLevels | None = None,
    hole_weight: float = 1.0,
) -> tuple[torch.Tensor, NoisedBatch]:
    """Noise ``batch``, predict the velocity, return ``(loss, noised batch)`` (no backward).

    ``weighting``, ``hole_weight``: as :func:`~model.training.flow.flow_loss` (holes: cells ``batch.visible``
    leaves out); ``levels``: as :func:`predict_velocity`."""
    prediction, noised = predict_velocity(model, batch, clean_frames, generator, shift, levels)
    return flow_loss(prediction, noised, weighting, batch.visible, hole_weight), noised


@dataclass
class TrainResult:
    """What :func:`train` did: steps run in this call, the loss log, where the weights went."""

    out: Path
    start_step: int
    steps: int
    losses: list[float] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Trainer:
    """Sets up backbone, model, data and optimizer for ``config``; :meth:`run` trains.

    Construction does everything but the loop (so tests can take single steps).
    """

    def __init__(self, config: TrainConfig, on_status: StatusCallback | None = None) -> None:
        self.created = time.perf_counter()  # config.max_minutes counts from here (data preparation included)
        self.config = config
        self.status = on_status or (lambda message: print(message, file=sys.stderr))
        self.out = Path(config.out)
        self.accelerator = Accelerator(
            mixed_precision="bf16" if config.bf16 or profile(config.backend).dtype == "bfloat16" else "no",
            cpu=config.device == "cpu" or (config.device is None and not torch.cuda.is_available()),
        )
        device = config.device or str(self.accelerator.device)
        set_seed(config.seed)  # LoRA init and dropout draw from the global RNGs (restored on resume)
        self.status(f"Loading {config.backend} backbone…")
        with attach_before_offload(config.backbone_config(device), self.status) as backbone:
            self.model = build_model(config, backbone)
        self.backbone = backbone
        self.model.to(self.backbone.device)
        self.samples = self._samples()
        # the readouts it trains on, recorded with the weights
        self.model.branch.readout = ReadoutSettings.of(LatentSpatialMemory.kind, self.samples.memory_config)
        self.optimizer = torch.optim.AdamW(
            list(trainable_parameters(self.model).values()),
            lr=config.learning_rate,
            betas=config.betas,
            weight_decay=config.weight_decay,
        )
        #: names of the trained parameters (taken before ``prepare``: FSDP renames and shards the module's own)
        self.trainable_names = tuple(trainable_parameters(self.model))
        self.prepared, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.generator = torch.Generator("cpu").manual_seed(config.seed * 1_000_003 + self.accelerator.process_index)
        #: the sampler sigmas a share of the samples is drawn at (None: per-frame sigmas only)
        self.sampler_levels = config.sampler_levels()
        self.step = 0
        self.log = LossLog()
        #: rows ``[step, held-out loss, held-out PSNR dB]`` (stage mini)
        self.heldout_log: list[list[float]] = []
        self.heldout = (
            self._world_samples(range(HELD_OUT_SEED, HELD_OUT_SEED + config.heldout_scenes), "held-out")
            if config.stage == "mini" and config.heldout_scenes > 0
            else None
        )

    # ---- data ------------------------------------------------------------------------------

    def _samples(self) -> SampleSet:
        config = self.config
        height, width = config.size
        self.backbone.check_image_size(height, width)
        spec = SampleSpec(height, width, config.context_frames, config.chunk_frames, config.window_stride)
        encoder_id = {k: v for k, v in asdict(self.backbone.config).items() if k not in ("device", "offload")}
        cache = ClipCache(
            Path(config.cache_dir) if config.cache_dir else self.out / "cache",
            spec,
            self.backbone.vae,
            self.backbone.encode_prompt,
            self._depth_estimator(),
            encoder_id,
            self.backbone.device,
        )
        if config.stage == "mini":
            return self._world_samples(range(config.procedural_seed, config.procedural_seed + config.procedural_scenes))
        with self.accelerator.main_process_first():  # the main process builds the cache, the others read it
            if config.data == PROCEDURAL:
                self.renderer = SceneRenderer()
                seeds = range(config.procedural_seed, config.procedural_seed + config.procedural_scenes)
                clips: list[ClipSource] = procedural_clips(seeds, spec.min_clip_frames, self.renderer)
                samples = SampleSet(clips, cache, on_status=self.status)
            else:
                clips, problems = discover_clips(config.data)
                samples = SampleSet(clips, cache, on_status=self.status)
                for problem in problems:
                    samples.skip(problem)
        for reason in samples.skipped:
            self.status(f"skipped {reason}")
        self.status(f"{len(samples)} samples from {len(samples.clip_ids)} clips ({len(samples.skipped)} skipped)")
        return samples

    def _world_samples(self, seeds: range, what: str = "training") -> WorldSampleSet:
        """Samples of the procedural worlds ``seeds`` (stage mini), cached in the clip cache folder."""
        config = self.config
        height, width = config.size
        self.backbone.check_image_size(height, width)
        if getattr(self, "renderer", None) is None:
            self.renderer = SceneRenderer()
        spec = WorldSpec(height, width, segments=config.world_segments, segment_frames=config.chunk_frames)
        encoder_id = {k: v for k, v in asdict(self.backbone.config).items() if k in ("backend", "tiny_vae")}
        with self.accelerator.main_process_first():
            samples = WorldSampleSet(
                seeds,
                spec,
                self.backbone.vae,
                self.backbone.encode_prompt(PROMPT)[0],
                Path(config.cache_dir) if config.cache_dir else self.out / "cache",
                self.renderer,
                encoder_id,
                on_status=self.status,
                workers=config.cache_workers,
                device=self.backbone.device if config.worlds_on_device else None,
            )
        self.status(f"{len(samples)} {what} samples from {len(seeds)} worlds (seeds {seeds.start}..{seeds.stop - 1})")
        return samples

    def _depth_estimator(self) -> DepthEstimator | None:
        """Depth of folder clips' first frames (procedural clips carry exact depth: None)."""
        if self.config.data == PROCEDURAL:
            return None
        if self.config.depth_model:
            return TransformersDepthEstimator(self.config.depth_model, device=self.backbone.device)
        self.status(
            "warning: no --depth-model: folder clips get a flat prior depth (ground plane + backdrop) for their memory"
        )
        return PriorDepth()

    def batch(self, step: int) -> Batch:
        """The batch of (0-based) ``step`` on this process."""
        indices = batch_indices(
            self.config.seed,
            step,
            self.config.batch_size,
            len(self.samples),
            self.accelerator.process_index,
            self.accelerator.num_processes,
        )
        return collate([self.samples.sample(i) for i in indices])

    # ---- one step --------------------------------------------------------------------------

    def noise(self, step: int) -> list[torch.Generator]:
        """The per-sample noise generators of (0-based) ``step`` on this process (:func:`noise_generators`)."""
        acc = self.accelerator
        return noise_generators(self.config.seed, step, self.config.batch_size, acc.process_index, acc.num_processes)

    def train_step(self, batch: Batch, noise: list[torch.Generator] | None = None) -> float:
        """One optimizer step on ``batch``; returns the loss (averaged over processes).

        Args:
            noise: one generator per sample (:meth:`noise`); None: draw from ``self.generator``.
        """
        self.prepared.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate_at(self.step)
        generator = self.generator if noise is None else noise
        clean_frames, weighting = self.samples.spec.clean_frames, self.config.loss_weighting
        loss, _ = training_step(
            self.prepared,
            batch,
            clean_frames,
            generator,
            self.config.shift,
            weighting,
            self.sampler_levels,
            self.config.hole_weight,
        )
        self.accelerator.backward(loss)
        if self.config.grad_clip > 0:
            self.accelerator.clip_grad_norm_(list(trainable_parameters(self.model).values()), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(self.accelerator.reduce(loss.detach(), reduction="mean"))

    # ---- checkpoints -----------------------------------------------------------------------

    def model_state(self) -> dict[str, torch.Tensor]:
        """The whole model's state ``{parameter name: full tensor}`` (``Accelerator.get_state_dict``).

        Plain and DDP runs: every process gets it (views of the parameters, no copy). FSDP: the shards are
        gathered to the main process, which alone gets them; collective, so every process must call it.
        """
        return self.accelerator.get_state_dict(self.prepared)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-N`` (all processes' RNG states; the rest from the main process).

        Collective: every process calls it (FSDP gathers parameters and optimizer state here).
        """
        acc = self.accelerator
        folder = self.out / ckpt.CHECKPOINTS_DIR / ckpt.checkpoint_name(self.step)
        staging = self.out / ckpt.CHECKPOINTS_DIR / f".{folder.name}.rng"
        staging.mkdir(parents=True, exist_ok=True)
        rng, rng_meta = ckpt.rng_tensors(self.generator)
        ckpt.save_tensors(staging / ckpt.rng_file(acc.process_index), rng, rng_meta)
        state = self.model_state()
        optimizer, optimizer_meta = ckpt.optimizer_tensors(self.prepared, self.optimizer)
        acc.wait_for_everyone()
        if acc.is_main_process:
            with atomic_dir(folder) as tmp:
                ckpt.save_tensors(tmp / ckpt.TRAINABLE_FILE, {name: state[name] for name in self.trainable_names})
                ckpt.save_tensors(tmp / ckpt.OPTIMIZER_FILE, optimizer, optimizer_meta)
                for path in staging.iterdir():
                    shutil.move(str(path), tmp / path.name)
                write_json_atomic(
                    tmp / ckpt.STATE_FILE,
                    {
                        "step": self.step,
                        "config": self.config.identity(),
                        "losses": self.log.to_json(),
                        "heldout": self.heldout_log,
                    },
                )
            shutil.rmtree(staging, ignore_errors=True)
            for old in ckpt.list_checkpoints(self.out)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            self.log.write(self.out)
        acc.wait_for_everyone()
        return folder

    def resume(self, path: str | os.PathLike) -> Path:
        """Load a checkpoint (or the newest in an output folder) into this trainer.

        Raises:
            FileNotFoundError: no checkpoint there. ValueError: it was made with other settings.
        """
        folder = ckpt.resolve_checkpoint(path)
        state = _read_state(folder / ckpt.STATE_FILE)
        mine = self.config.identity()
        diffs = [
            f"{k}: checkpoint {state['config'].get(k)!r} != now {v!r}"
            for k, v in mine.items()
            if state["config"].get(k) != v
        ]
        if diffs:
            raise ValueError(f"--resume {folder}: made with other settings: " + "; ".join(diffs))
        tensors, _ = ckpt.read_tensors(folder / ckpt.TRAINABLE_FILE)
        if tensors.keys() != set(self.trainable_names):
            raise ValueError(f"{folder / ckpt.TRAINABLE_FILE}: holds other parameters than this model trains")
        ckpt.load_trainable(self.prepared, tensors)
        ckpt.load_optimizer(self.prepared, self.optimizer, folder / ckpt.OPTIMIZER_FILE)
        rng = folder / ckpt.rng_file(self.accelerator.process_index)
        if not rng.is_file():
            raise ValueError(
                f"{folder}: no RNG state for process {self.accelerator.process_index} (resume with the same number of "
                "processes)"
            )
        ckpt.restore_rng(rng, self.generator)
        self.step = int(state["step"])
        self.log = LossLog.from_json(state["losses"])
        self.heldout_log = [list(row) for row in state.get("heldout", [])]
        self.status(f"Resumed from {folder} at step {self.step}")
        return folder

    # ---- the loop --------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train from ``self.step`` to ``config.steps``, checkpointing; then write the weights and logs."""
        config, acc = self.config, self.accelerator
        start, started = self.step, time.perf_counter()
        timed_from = None
        while self.step < config.steps:
            if config.max_minutes is not None and self.step == start + TIMING_SKIP:
                timed_from = time.perf_counter()  # the first steps pay for allocation and kernel selection
            lr = config.learning_rate_at(self.step)
            loss = self.train_step(self.batch(self.step), self.noise(self.step))
            self.step += 1
            self.log.append(self.step, loss, lr)
            if timed_from is not None and self.step == start + TIMING_SKIP + TIMING_STEPS:
                self._fit_steps_to_budget((time.perf_counter() - timed_from) / TIMING_STEPS)
            if acc.is_main_process and (self.step % 10 == 0 or self.step == config.steps):
                self.status(f"step {self.step}/{config.steps} loss {loss:.5f}")
            if self.heldout is not None and (self.step % config.eval_every == 0 or self.step == config.steps):
                self.evaluate_heldout()
            if self.step % config.checkpoint_every == 0 and self.step < config.steps:
                self.save_checkpoint()
        seconds = time.perf_counter() - started
        if start < config.steps or not ckpt.list_checkpoints(self.out):
            self.save_checkpoint()
        state = self.model_state()  # every process: FSDP gathers here
        if acc.is_main_process:
            self.export_weights(state)
            self._write_report(start, seconds, state)
            if self.heldout_log:
                write_heldout_csv(self.out / "heldout.csv", self.heldout_log)
        acc.wait_for_everyone()
        return TrainResult(self.out, start, self.step, self.log.losses, list(self.samples.skipped))

    def _fit_steps_to_budget(self, seconds_per_step: float) -> None:
        """Lower ``config.steps`` so the run (from this trainer's construction) ends its loop within
        ``config.max_minutes`` at ``seconds_per_step`` (the slowest process's), 3 % kept for evaluations."""
        acc = self.accelerator
        rate = float(acc.gather(torch.tensor([seconds_per_step], device=acc.device)).max())
        left = self.config.max_minutes * 60.0 * 0.97 - (time.perf_counter() - self.created)
        steps = min(self.config.steps, self.step + max(0, int(left / rate)))
        self.status(f"{rate * 1000:.1f} ms/step: {steps} steps fit in {self.config.max_minutes:g} min")
        self.config.steps = steps

    @torch.no_grad()
    def evaluate_heldout(self) -> tuple[float, float]:
        """Flow loss and PSNR (dB, for latents in [-1, 1]) of the predicted clean latents
        ``x_t - sigma * v`` on the noisy frames of every held-out sample, at noise drawn from a fixed
        seed (the same at every evaluation; the training RNGs are not touched). Appended to
        :attr:`heldout_log`."""
        model = self.accelerator.unwrap_model(self.prepared)
        model.eval()
        generator = torch.Generator("cpu").manual_seed(HELDOUT_NOISE_SEED)
        losses, errors = [], []
        device = next(model.parameters()).device
        for i in range(len(self.heldout)):
            batch = collate([self.heldout.sample(i)])
            clean = batch.latents.to(device).float()
            prediction, noised = predict_velocity(
                model, batch, self.heldout.spec.clean_frames, generator, self.config.shift
            )
            prediction = prediction.float()
            x0 = noised.model_input - noised.sigmas[:, None, :, None, None] * prediction
            errors.append(float(((x0 - clean)[:, :, noised.noisy] ** 2).mean()))
            losses.append(float(flow_loss(prediction, noised, self.config.loss_weighting)))
        model.train()
        mse = float(np.mean(errors))
        row = [self.step, float(np.mean(losses)), 10.0 * math.log10(4.0 / max(mse, 1e-12))]
        self.heldout_log.append(row)
        self.status(f"held-out at step {self.step}: loss {row[1]:.5f}, predicted-x0 PSNR {row[2]:.2f} dB")
        return row[1], row[2]

    def export_weights(self, state: dict[str, torch.Tensor] | None = None) -> None:
        """Write the memory-weights files into the output folder (branch only for stage 1; the
        mini model folder ``OUT/model/`` for stage mini).

        Args:
            state: the gathered model state (:meth:`model_state`; under FSDP every process must call that,
                then the main process exports); None: gather it here (one process or DDP). Stage mini
                (tiny backend, CPU) writes the modules' own weights.
        """
        model = self.accelerator.unwrap_model(self.prepared)
        if self.config.stage == "mini":
            self._export_mini(model)
            return
        state = self.model_state() if state is None else state
        settings = self.config.lora_settings() if self.config.stage == "lora" else None
        self.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.out, prefix=".export-") as staging:
            save_memory_weights(
                Path(staging) / "weights",
                model.transformer,
                model.branch,
                settings,
                branch_state=_under(state, "branch."),
                transformer_state=_under(state, "transformer."),
            )
            stale = self.out / LORA_FILE
            if settings is None and stale.exists():
                stale.unlink()
            for name in (BRANCH_FILE, LORA_FILE, MANIFEST_FILE):  # the manifest last
                if (Path(staging) / "weights" / name).is_file():
                    os.replace(Path(staging) / "weights" / name, self.out / name)

    def _export_mini(self, model: MemoryFlowModel) -> None:
        """Write the mini model folder ``OUT/model/`` (:func:`model.generation.mini.save_mini`)."""
        config = self.config
        sizes = {key: getattr(config, key) for key in SIZE_KEYS}
        height, width = config.size
        training = {
            "recipe": "main.py train --stage mini",
            "init_from": config.init_from,
            "steps": self.step,
            "batch_size": config.batch_size,
            "lr": config.learning_rate,
            "warmup_steps": config.warmup_steps,
            "shift": config.shift,
            "sampler_steps": config.sampler_steps,
            "sampler_share": config.sampler_share if config.sampler_steps else None,
            "rollout": config.rollout,
            "hole_weight": config.hole_weight,
            "train_seeds": [config.procedural_seed, config.procedural_seed + config.procedural_scenes - 1],
            "heldout_seeds_from": HELD_OUT_SEED,
            "heldout": self.heldout_log[-1] if self.heldout_log else None,
        }
        extra = {"size": [height, width], "prompt": PROMPT, "flow_shift": config.shift, "training": training}
        save_mini(self.out / MINI_MODEL_DIR, model.transformer, model.branch, self.backbone.text_encoder, sizes, extra)

    def _write_report(self, start: int, seconds: float, state: dict[str, torch.Tensor]) -> None:
        losses = self.log.losses
        head = losses[: max(1, len(losses) // 10)]
        tail = losses[-max(1, len(losses) // 10) :]
        write_json_atomic(
            self.out / "train.json",
            {
                "config": {k: _jsonable(v) for k, v in asdict(self.config).items()},
                "backbone": self.backbone.describe(),
                "trainable_parameters": sum(state[name].numel() for name in self.trainable_names),
                "processes": self.accelerator.num_processes,
                "data": {"samples": len(self.samples), "clips": self.samples.clip_ids, "skipped": self.samples.skipped},
                "steps": {"resumed_from": start, "final": self.step, "seconds_this_run": seconds},
                "loss": {
                    "first_10pct_mean": float(np.mean(head)) if losses else None,
                    "last_10pct_mean": float(np.mean(tail)) if losses else None,
                },
                "heldout": {"columns": ["step", "loss", "psnr_db"], "rows": self.heldout_log},
            },
        )

    def close(self) -> None:
        """Release the procedural renderer (if any)."""
        renderer = getattr(self, "renderer", None)
        if renderer is not None:
            renderer.close()


def _under(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` whose names start with ``prefix``, named relative to it."""
    return {name[len(prefix) :]: value for name, value in state.items() if name.startswith(prefix)}


def _read_state(path: Path) -> dict:
    """A checkpoint's ``state.json``; ``ValueError`` naming it when unreadable or lacking a key."""
    state = read_json_object(path, "checkpoint state")
    missing = [key for key in ("step", "config", "losses") if key not in state]
    if missing:
        raise ValueError(f"{path}: not a readable checkpoint state (missing {missing})")
    return state


def check_output_folder(config: TrainConfig, resume: str | None) -> None:
    """Refuse to start a fresh run in a folder that already holds one (pass ``--resume`` instead)."""
    out = Path(config.out)
    if resume is None and (ckpt.list_checkpoints(out) or (out / "train.json").exists()):
        raise ValueError(
            f"--out {out}: already holds a training run; pass --resume {out} to continue it or choose another folder"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")


def train(config: TrainConfig, resume: str | None = None, on_status: StatusCallback | None = None) -> TrainResult:
    """Run (or, with ``resume``, continue) a training run; see the module docstring."""
    check_output_folder(config, resume)
    trainer = Trainer(config, on_status)
    try:
        if resume is not None:
            trainer.resume(resume)
        return trainer.run()
    finally:
        trainer.close()
