"""Generation backbones behind one interface: Wan2.2-TI2V-5B from a local folder, or a tiny stand-in.

Backends:

* ``wan``: the real Wan2.2-TI2V-5B in diffusers format, read from a local folder laid out like
  ``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (``model_index.json``, ``scheduler/``, ``text_encoder/``
  (UMT5), ``tokenizer/``, ``transformer/``, ``vae/``). Transformer and text encoder in bf16, VAE in
  fp32 with tiling. The folder is checked first (:func:`validate_wan_folder`), so a bad folder gets
  one error listing every problem before anything heavy loads.
* ``tiny``: the same diffusers classes with tiny configs and seeded random weights, an in-code
  word-level tokenizer and either the exact :class:`~model.generation.patch_vae.PatchVAE` (default) or a tiny
  random ``AutoencoderKLWan`` shaped like Wan2.2's. Runs on the CPU in tests.
* ``mini``: mirage-mini (:mod:`model.generation.mini`), the tiny classes with weights this project
  trained, the exact patch VAE and a trained memory branch that the backbone carries
  (:attr:`Backbone.branch`). Read from ``model_dir`` or the shipped ``resources/models/mirage-mini``.

Each backend's defaults (frame sizes, steps, dtype, prompt length, model folder) are its
:class:`~model.generation.profiles.BackendProfile`; the function that builds its parts is its ``_BUILDERS``
entry here.

Both give a :class:`Backbone`: an unmodified ``WanTransformer3DModel`` (others attach forward hooks
and peft LoRA to it), a :class:`~model.generation.vae.VideoVAE`, ``encode_prompt`` and ``make_scheduler``.

Nothing here touches the network: the Hub is switched to offline mode when this module is imported
and again on every load, and every ``from_pretrained`` passes ``local_files_only=True``. Nothing
from a model folder is executed: every loader gets ``trust_remote_code=False`` (left out,
``transformers`` asks on the terminal whether to run a folder's code) and a folder whose configs
point to code of its own (``auto_map``) is refused by :func:`validate_wan_folder`
(:mod:`model.io.folders`).

Example:
    >>> backbone = load_backbone(BackboneConfig(backend="tiny", device="cpu"))  # doctest: +SKIP
    >>> backbone.encode_prompt("a red room").shape  # doctest: +SKIP
    torch.Size([1, 32, 32])
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import huggingface_hub.constants
import torch
from accelerate import cpu_offload_with_hook
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from diffusers.hooks import apply_group_offloading
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5EncoderModel

from model.generation.gpu_fit import AUTO, fit_offload
from model.generation.memory_branch import MemoryBranch
from model.generation.mini import build_branch, load_state, mini_dir, read_mini
from model.generation.patch_vae import PatchVAE
from model.generation.profiles import DEFAULT_BACKEND, WAN22_LATENT_CHANNELS, profile
from model.generation.tiny import seeded, tiny_text_encoder, tiny_tokenizer, tiny_transformer, tiny_wan_vae, wan22_vae
from model.generation.vae import VideoVAE, check_frames, check_latents
from model.io.folders import FolderCheck

OFFLOADS = ("none", "model", "group", AUTO)
TINY_VAES = ("patch", "wan", "wan-full")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}

#: Scheduler of Wan2.2-TI2V-5B (diffusers' converter); the ``wan`` backend reads it from the folder.
TI2V_SCHEDULER = dict(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0, num_train_timesteps=1000)
#: Blocks per group when the text encoder is group-offloaded (diffusers' Wan docs use 4).
TEXT_ENCODER_BLOCKS_PER_GROUP = 4

StatusCallback = Callable[[str], None]


def force_offline() -> None:
    """Put this process's Hugging Face libraries in offline mode.

    Sets ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` / ``HF_DATASETS_OFFLINE`` and the flag that
    ``huggingface_hub`` derived from them at import time (setting the variables alone is too late
    once it has been imported).
    """
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True


force_offline()


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class BackboneConfig:
    """What backbone to build and where it runs. Invalid values raise ``ValueError`` naming the field."""

    # one of model.generation.profiles.BACKENDS: "wan" (Wan2.2-TI2V-5B from model_dir) or "tiny" (seeded random weights,
    # CPU)
    backend: str = DEFAULT_BACKEND
    # local model folder (required for, and only used by, backends whose profile needs one: wan)
    model_dir: str | None = None
    # VAE of the tiny backend: "patch" (exact 4x4 pixel patches), "wan" (tiny random AutoencoderKLWan, stride 16) or
    # "wan-full" (the full-size Wan2.2 VAE architecture, 705M random weights: real VAE cost, for benchmarks)
    tiny_vae: str = "patch"
    # memory profile: "none" (all on device), "model" (whole-model CPU offload), "group" (group offload, 24 GB cards),
    # "auto" (the least offloaded one that fits the free GPU memory: model.generation.gpu_fit)
    offload: str = "none"
    # torch device, e.g. "cuda", "cuda:1", "cpu"; None picks "cuda" when available, else "cpu"
    device: str | None = None
    # transformer and text encoder dtype, "bfloat16" or "float32"; None: the backend profile's
    dtype: str | None = None
    # seed of the tiny backend's random weights (same seed, same weights, in any process)
    seed: int = 0
    # tiny transformer depth (number of blocks a memory branch can hook)
    tiny_num_layers: int = 4
    # tiny transformer attention heads
    tiny_num_heads: int = 2
    # tiny transformer width per head (even, >= 6 for Wan's 3-axis RoPE); inner dim = heads x head_dim
    tiny_head_dim: int = 16
    # tiny transformer feed-forward width
    tiny_ffn_dim: int = 64
    # prompt length in tokens after padding / truncation; None: the backend profile's
    max_sequence_length: int | None = None

    def __post_init__(self) -> None:
        backend = profile(self.backend)
        _check_choice("offload", self.offload, OFFLOADS)
        _check_choice("tiny_vae", self.tiny_vae, TINY_VAES)
        if self.dtype is not None:
            _check_choice("dtype", self.dtype, tuple(DTYPES))
        if backend.needs_model_dir and not self.model_dir:
            raise ValueError(f"model_dir is required for backend {self.backend!r} ({backend.model_folder})")
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as error:
                raise ValueError(f"device {self.device!r} is not a torch device: {error}") from error
        for name in ("tiny_num_layers", "tiny_num_heads", "tiny_head_dim", "tiny_ffn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tiny_head_dim < 6 or self.tiny_head_dim % 2:
            raise ValueError(f"tiny_head_dim must be even and >= 6 (RoPE over t, h, w), got {self.tiny_head_dim}")
        if self.max_sequence_length is not None and self.max_sequence_length < 1:
            raise ValueError(f"max_sequence_length must be >= 1, got {self.max_sequence_length}")

    @property
    def latent_channels(self) -> int:
        """Channels of the latent this backbone will have, known before it is built (its profile's;
        a wan folder with another count is refused)."""
        return profile(self.backend).latent_channels


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


# --------------------------------------------------------------------------------------------
# Wan folder validation
# --------------------------------------------------------------------------------------------


#: What a ``wan`` model folder holds (:attr:`ModelFolderError.what` of its errors).
WAN_FOLDER = "Wan2.2-TI2V-5B diffusers"


def validate_wan_folder(model_dir: str | os.PathLike) -> Path:
    """Check a local Wan2.2-TI2V-5B diffusers folder without loading any weights.

    Checks that every config / tokenizer file exists and parses, that no config points to code
    shipped in the folder (``auto_map``), that ``text_encoder/``, ``transformer/`` and ``vae/`` hold
    safetensors weights (every shard a ``*.index.json`` lists included), and that the transformer
    and VAE have Wan2.2's 48 latent channels (:class:`model.io.folders.FolderCheck`).

    Returns:
        The folder as a ``Path``.

    Raises:
        ModelFolderError: (a ``ValueError``) listing all problems found, e.g.
            ``".../transformer/config.json missing"``, ``"no weight files in .../vae ..."``,
            ``".../tokenizer/tokenizer_config.json: ships custom code (auto_map: ...) ..."``.
    """
    check = FolderCheck(model_dir, WAN_FOLDER)
    check.config("model_index.json")
    check.config("scheduler/scheduler_config.json")
    if (check.folder / "tokenizer").is_dir():
        check.config("tokenizer/tokenizer_config.json")
        if not any((check.folder / "tokenizer" / name).is_file() for name in ("tokenizer.json", "spiece.model")):
            check.problems.append(f"{check.folder / 'tokenizer' / 'tokenizer.json'} missing (or spiece.model)")
    else:
        check.problems.append(f"{check.folder / 'tokenizer'} missing (tokenizer files)")
    configs = {name: check.component(name) for name in ("text_encoder", "transformer", "vae")}
    _check_latent_channels(check.folder, configs, check.problems)
    return check.done()


def _check_latent_channels(root: Path, configs: dict[str, dict | None], problems: list[str]) -> None:
    """Reject transformers / VAEs of other Wan models (Wan2.1 and Wan2.2-A14B use 16 channels)."""
    expected = {"transformer": ("in_channels", WanTransformer3DModel), "vae": ("z_dim", AutoencoderKLWan)}
    for name, (key, cls) in expected.items():
        config = configs[name]
        if config is None:
            continue
        path = root / name / "config.json"
        if config.get("_class_name") != cls.__name__:
            problems.append(f"{path}: _class_name is {config.get('_class_name')!r}, expected {cls.__name__!r}")
        elif config.get(key) != WAN22_LATENT_CHANNELS:
            problems.append(
                f"{path}: {key} is {config.get(key)!r}, expected {WAN22_LATENT_CHANNELS} (not Wan2.2-TI2V-5B)"
            )


# --------------------------------------------------------------------------------------------
# VAE wrapper
# --------------------------------------------------------------------------------------------


class WanVideoVAE:
    """:class:`~model.generation.vae.VideoVAE` over a diffusers ``AutoencoderKLWan``.

    Adds and removes the batch dimension and the ``[B, C, T, H, W]`` layout, casts to the VAE's dtype,
    and normalises latents as the Wan pipelines do: ``(z - latents_mean) / latents_std`` on the
    posterior mode when encoding, the inverse before decoding. Runs without autograd.

    Args:
        vae: the autoencoder (Wan2.2: ``z_dim=48``, ``scale_factor_spatial=16``).
        device: where inputs go and outputs come back; under model offload this is the execution
            device, not where the weights rest.
    """

    def __init__(self, vae: AutoencoderKLWan, device: str | torch.device) -> None:
        self.module = vae
        self.device = torch.device(device)
        self.latent_channels = int(vae.config.z_dim)
        self.spatial_stride = int(vae.config.scale_factor_spatial)
        self.temporal_stride = int(vae.config.scale_factor_temporal)
        shape = (1, self.latent_channels, 1, 1, 1)
        self._mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=self.device).view(shape)
        self._inv_std = 1.0 / torch.tensor(vae.config.latents_std, dtype=torch.float32, device=self.device).view(shape)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, 3, H, W]`` in ``[-1, 1]`` (T = 4k+1) -> normalised latents ``[k+1, C, H/16, W/16]`` float32."""
        check_frames(frames, self.spatial_stride, self.temporal_stride)
        video = frames.to(self.device, self.module.dtype).movedim(0, 1).unsqueeze(0)  # [1, 3, T, H, W]
        z = self.module.encode(video).latent_dist.mode().float()  # [1, C, F, h, w]
        return ((z - self._mean) * self._inv_std)[0].movedim(1, 0).contiguous()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[F, C, h, w]`` -> frames ``[4(F-1)+1, 3, 16h, 16w]`` float32 in ``[-1, 1]``."""
        check_latents(latents, self.latent_channels)
        z = latents.to(self.device, torch.float32).movedim(0, 1).unsqueeze(0) / self._inv_std + self._mean
        video = self.module.decode(z.to(self.module.dtype)).sample  # [1, 3, T, H, W]
        return video[0].movedim(1, 0).float().contiguous()


# --------------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class Backbone:
    """A loaded backbone: transformer, VAE, text encoding and scheduler factory.

    Attributes:
        config: the configuration it was built from.
        transformer: an unmodified diffusers ``WanTransformer3DModel`` (48 latent channels in and
            out, patch ``(1, 2, 2)``); ``forward`` accepts per-token timesteps ``[B, L]``.
        vae: the :class:`~model.generation.vae.VideoVAE` for frames <-> normalised latents.
        tokenizer, text_encoder: UMT5 tokenizer and encoder behind :meth:`encode_prompt`.
        scheduler_config: config of the ``UniPCMultistepScheduler`` that :meth:`make_scheduler` builds.
        device: the execution device (inputs go here, also under offload).
        dtype: compute dtype of the transformer (latents and prompt embeddings are cast to it).
        max_sequence_length: prompt length ``L`` in tokens.
        branch: the trained memory branch the backend carries (mini), attached to ``transformer``
            and on ``device`` once placed; None for backends without one.
    """

    config: BackboneConfig
    transformer: WanTransformer3DModel
    vae: VideoVAE
    tokenizer: PreTrainedTokenizerBase
    text_encoder: UMT5EncoderModel
    scheduler_config: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    max_sequence_length: int
    branch: MemoryBranch | None = None
    _prompt_pipeline: WanPipeline = field(init=False, repr=False)
    _offload_applied: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        # a text-only pipeline, so prompts are cleaned, padded and zeroed exactly as diffusers does
        self._prompt_pipeline = WanPipeline(
            tokenizer=self.tokenizer, text_encoder=self.text_encoder, vae=None, scheduler=None
        )

    @property
    def text_dim(self) -> int:
        """Width of the prompt embeddings (4096 for UMT5-XXL, 32 for tiny)."""
        return int(self.transformer.config.text_dim)

    @property
    def expected_image_multiple(self) -> int:
        """Image height and width must be multiples of this (VAE stride x transformer patch): 32 for Wan2.2."""
        return self.vae.spatial_stride * int(self.transformer.config.patch_size[1])

    def check_image_size(self, height: int, width: int, name: str = "frame size (--height/--width)") -> None:
        """Refuse frames of ``height`` x ``width`` pixels unless both are multiples of
        :attr:`expected_image_multiple`; ``name`` says what they are (default: the frames the
        ``--height`` / ``--width`` flags of every command set).

        Raises:
            ValueError: ``"<name>: 320x60 pixels must be multiples of 8 for the tiny backbone"``.
        """
        multiple = self.expected_image_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"{name}: {width}x{height} pixels must be multiples of {multiple} "
                f"for the {self.config.backend} backbone"
            )

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """Text embeddings of one prompt as the Wan pipelines compute them.

        The prompt is cleaned, tokenised, padded / truncated to ``max_sequence_length`` and encoded;
        embeddings past the prompt's real length (its ``</s>`` included) are zeros.

        Returns:
            ``[1, max_sequence_length, text_dim]`` in ``self.dtype`` on ``self.device``.
        """
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        embeds, _ = self._prompt_pipeline.encode_prompt(
            prompt,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=self.device,
            dtype=self.dtype,
        )
        return embeds

    def make_scheduler(self) -> UniPCMultistepScheduler:
        """A fresh flow-matching UniPC scheduler (schedulers are stateful: one per denoising run)."""
        return UniPCMultistepScheduler.from_config(self.scheduler_config)

    def apply_offload(self, on_status: StatusCallback | None = None) -> None:
        """Place the models according to ``config.offload`` (``load_backbone`` does this by default).

        Call it yourself after ``load_backbone(..., apply_offload=False)`` when LoRA adapters or other
        submodules must be attached first: group offloading only manages the modules present when it
        is applied (:func:`model.generation.stack.attach_before_offload` does both in order).

        Args:
            on_status: told ``"Placing models on <device> (offload <profile>)…"``.
        """
        if self._offload_applied:
            raise RuntimeError("apply_offload() was already called on this backbone")
        if on_status is not None:
            on_status(f"Placing models on {self.device} (offload {self.config.offload})…")
        vae_module = self.vae.module if isinstance(self.vae, WanVideoVAE) else None
        place = {"none": _place_on_device, "model": _offload_model, "group": _offload_group}[self.config.offload]
        place(self.text_encoder, self.transformer, vae_module, self.device)
        if self.branch is not None:
            self.branch.to(self.device)
        self._offload_applied = True

    def __repr__(self) -> str:
        return f"Backbone({self.describe()})"

    def describe(self) -> str:
        """One line for the UI / JSON reports: backend, device, offload, parameters and dtypes."""
        if isinstance(self.vae, WanVideoVAE):
            vae_kind = f"AutoencoderKLWan {_count(self.vae.module)} params float32"
        else:
            vae_kind = f"{type(self.vae).__name__} (no weights)"
        s, t = self.vae.spatial_stride, self.vae.temporal_stride
        return (
            f"{self.config.backend} backbone on {self.device} (offload {self.config.offload}); "
            f"transformer {len(self.transformer.blocks)} blocks {_count(self.transformer)} params "
            f"{_dtype_name(self.dtype)}; "
            f"text encoder {_count(self.text_encoder)} params {_dtype_name(self.text_encoder.dtype)}, "
            f"{self.max_sequence_length} tokens x {self.text_dim}; "
            f"VAE {vae_kind}, stride {s}x{s} px x {t} frames, {self.vae.latent_channels} channels"
        )


def _count(module: torch.nn.Module) -> str:
    """Parameter count as ``"5.00B"``, ``"704.7M"``, ``"34.6k"``."""
    n = sum(p.numel() for p in module.parameters())
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.{2 if suffix == 'B' else 1}f}{suffix}"
    return str(n)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _place_on_device(text_encoder, transformer, vae_module, device: torch.device) -> None:
    """Offload ``none``: every model on ``device``."""
    for module in (text_encoder, transformer, vae_module):
        if module is not None:
            module.to(device)


def _offload_model(text_encoder, transformer, vae_module, device: torch.device) -> None:
    """Offload ``model``: weights rest on the CPU; each model moves to ``device`` when called and
    pushes the previous one of the chain text_encoder -> transformer -> vae back to the CPU (as
    diffusers' ``enable_model_cpu_offload``; the VAE's ``encode`` / ``decode`` fire the hook too)."""
    hook = None
    for module in (text_encoder, transformer, vae_module):
        if module is not None:
            module.to("cpu")
            _, hook = cpu_offload_with_hook(module, device, prev_module_hook=hook)


def _offload_group(text_encoder, transformer, vae_module, device: torch.device) -> None:
    """Offload ``group``: text encoder in groups of blocks, transformer leaf by leaf (prefetched on a
    CUDA stream), VAE resident on ``device``; fits Wan2.2-TI2V-5B on a 24 GB card."""
    for module in (text_encoder, transformer):
        module.to("cpu")
    apply_group_offloading(
        text_encoder,
        onload_device=device,
        offload_type="block_level",
        num_blocks_per_group=TEXT_ENCODER_BLOCKS_PER_GROUP,
    )
    transformer.enable_group_offload(onload_device=device, offload_type="leaf_level", use_stream=device.type == "cuda")
    if vae_module is not None:
        vae_module.to(device)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _Parts(NamedTuple):
    tokenizer: PreTrainedTokenizerBase
    text_encoder: UMT5EncoderModel
    transformer: WanTransformer3DModel
    vae: VideoVAE
    scheduler_config: dict[str, Any]
    branch: MemoryBranch | None = None


def tiny_sizes_for(summary: dict) -> dict[str, int]:
    """:class:`BackboneConfig` ``tiny_*`` fields that rebuild the tiny transformer a backbone summary
    describes (``memory_weights.json``'s ``backbone``), so trained tiny weights load onto it."""
    try:
        return {
            "tiny_num_layers": int(summary["num_layers"]),
            "tiny_num_heads": int(summary["num_attention_heads"]),
            "tiny_head_dim": int(summary["attention_head_dim"]),
            "tiny_ffn_dim": int(summary["ffn_dim"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"backbone summary lacks the transformer sizes: {exc}") from exc


def load_backbone(
    config: BackboneConfig, on_status: StatusCallback | None = None, *, apply_offload: bool = True
) -> Backbone:
    """Build the backbone that ``config`` describes.

    Args:
        config: backend, folder, device, offload profile, tiny sizes.
        on_status: called with a short message at each stage ("Loading transformer…").
        apply_offload: place the models per ``config.offload`` now; pass ``False`` to attach LoRA
            adapters first and then call :meth:`Backbone.apply_offload`.

    The offload profile is checked against the free GPU memory first (``"auto"`` picks one:
    :func:`model.generation.gpu_fit.fit_offload`); the backbone's ``config`` holds the profile used.

    Raises:
        ModelFolderError: the ``wan`` folder is incomplete or wrong (before any weight is read).
        GpuMemoryError: the offload profile does not fit the free GPU memory (before any weight is read).
    """
    force_offline()
    status = on_status or (lambda message: None)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = fit_offload(config, device)
    backend = profile(config.backend)
    dtype = DTYPES[config.dtype or backend.dtype]
    parts = _BUILDERS[config.backend](config, dtype, device, status)
    backbone = Backbone(
        config=config,
        transformer=parts.transformer,
        vae=parts.vae,
        tokenizer=parts.tokenizer,
        text_encoder=parts.text_encoder,
        scheduler_config=parts.scheduler_config,
        device=device,
        dtype=dtype,
        max_sequence_length=config.max_sequence_length or backend.max_sequence_length,
        branch=parts.branch,
    )
    if apply_offload:
        backbone.apply_offload(status)
    status("Backbone ready")
    return backbone


def _load_wan_parts(config: BackboneConfig, dtype: torch.dtype, device: torch.device, status: StatusCallback) -> _Parts:
    """Read Wan2.2-TI2V-5B from ``config.model_dir`` (validated first) onto the CPU."""
    status("Checking model folder…")
    root = validate_wan_folder(config.model_dir)
    # never run code from the folder, never ask (AutoTokenizer would; diffusers' concrete classes ignore the flag)
    local = dict(local_files_only=True, trust_remote_code=False)
    status("Loading tokenizer…")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", **local)
    status("Loading text encoder…")
    text_encoder = UMT5EncoderModel.from_pretrained(root / "text_encoder", dtype=dtype, use_safetensors=True, **local)
    status("Loading transformer…")
    transformer = WanTransformer3DModel.from_pretrained(
        root, subfolder="transformer", torch_dtype=dtype, use_safetensors=True, **local
    )
    status("Loading VAE…")
    vae = AutoencoderKLWan.from_pretrained(
        root, subfolder="vae", torch_dtype=torch.float32, use_safetensors=True, **local
    )
    vae.enable_tiling()
    scheduler_config = dict(UniPCMultistepScheduler.load_config(root / "scheduler", **local))
    return _Parts(tokenizer, text_encoder.eval(), transformer.eval(), WanVideoVAE(vae.eval(), device), scheduler_config)


def _build_tiny_parts(
    config: BackboneConfig, dtype: torch.dtype, device: torch.device, status: StatusCallback
) -> _Parts:
    """Tiny models with weights drawn from ``config.seed`` (each model from its own derived seed)."""
    status(f"Building tiny models (seed {config.seed})…")
    tokenizer = tiny_tokenizer()
    text_encoder = seeded(config.seed, lambda: tiny_text_encoder(len(tokenizer)))
    transformer = seeded(config.seed + 1, lambda: tiny_transformer(config, text_encoder.config.d_model))
    if config.tiny_vae in ("wan", "wan-full"):
        factory = tiny_wan_vae if config.tiny_vae == "wan" else wan22_vae
        vae: VideoVAE = WanVideoVAE(seeded(config.seed + 2, factory).eval(), device)
    else:
        vae = PatchVAE(device)
    scheduler_config = dict(UniPCMultistepScheduler(**TI2V_SCHEDULER).config)
    _cast_like_from_pretrained(transformer, dtype)
    return _Parts(tokenizer, text_encoder.to(dtype).eval(), transformer.eval(), vae, scheduler_config)


def _load_mini_parts(
    config: BackboneConfig, dtype: torch.dtype, device: torch.device, status: StatusCallback
) -> _Parts:
    """mirage-mini from ``config.model_dir`` or the shipped folder: the tiny classes at the sizes of
    its ``config.json``, its trained transformer, text encoder and memory branch (attached), the patch VAE.

    Raises:
        FileNotFoundError: no ``model.safetensors`` there. ValueError: a bad file (named).
    """
    folder = mini_dir(config.model_dir)
    status(f"Loading mirage-mini from {folder}…")
    tensors, mini = read_mini(folder)
    path = folder / "model.safetensors"
    sized = replace(config, **mini["transformer"])
    tokenizer = tiny_tokenizer()
    text_encoder = seeded(config.seed, lambda: tiny_text_encoder(len(tokenizer)))
    transformer = seeded(config.seed + 1, lambda: tiny_transformer(sized, text_encoder.config.d_model))
    load_state(path, transformer, tensors["transformer"], "transformer")
    load_state(path, text_encoder, tensors["text_encoder"], "text_encoder")
    branch = build_branch(transformer, mini, tensors["branch"], path)
    _cast_like_from_pretrained(transformer, dtype)
    branch.to(dtype)
    branch.attach(transformer)
    # sampled with the sigma shift it was trained with (config.json "flow_shift")
    scheduler = UniPCMultistepScheduler(**{**TI2V_SCHEDULER, "flow_shift": float(mini.get("flow_shift", 5.0))})
    scheduler_config = dict(scheduler.config)
    return _Parts(
        tokenizer, text_encoder.to(dtype).eval(), transformer.eval(), PatchVAE(device), scheduler_config, branch.eval()
    )


#: How each backend's parts are built (a loader per profile in model.generation.profiles).
_BUILDERS: dict[str, Callable[[BackboneConfig, torch.dtype, torch.device, StatusCallback], _Parts]] = {
    "wan": _load_wan_parts,
    "tiny": _build_tiny_parts,
    "mini": _load_mini_parts,
}


def _cast_like_from_pretrained(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast parameters to ``dtype`` in place, except those of the model's ``_keep_in_fp32_modules``
    (as ``from_pretrained(torch_dtype=...)`` does; a plain ``.to(dtype)`` would cast them too)."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, param in model.named_parameters():
        if keep.isdisjoint(name.split(".")):
            param.data = param.data.to(dtype)
