"""VACE-style side branch that conditions an unmodified diffusers ``WanTransformer3DModel`` on the
latent memory readout (Mirage paper §2.5).

Data flow of one transformer call (``B`` batch, ``C`` latent channels = ``transformer.config.in_channels``,
``F, h, w`` the latent grid, ``L = F * (h/2) * (w/2)`` tokens, ``D`` the backbone width)::

    prior = refiner(readout, visible, mapping)           [B, C, F, h, w]  (with a refiner; else prior = readout)
    prior ++ visible [B, 1, F, h, w]      (channel concat, 1 = memory covered the cell)
        -> patch_embedding (Conv3d C+1 -> D, kernel = stride = backbone patch (1, 2, 2))   [B, L, D]
        -> c = before_proj(tokens) + x          (x: the backbone's hidden_states entering blocks[0])
        -> for each injection layer i_j:  c = branch_block_j(c, text, temb, rope);  hint_j = after_proj_j(c)
    backbone: after blocks[i_j] the hidden states become  out + hint_j * scale

How it is wired (no diffusers code is copied, the transformer's state-dict keys never change):

* a forward pre-hook on the transformer checks the condition against the input latents
  ``[B, C, F, h, w]`` (exact grid, not only the token count) and primes it for this call;
* a forward pre-hook on ``blocks[0]`` receives ``(hidden_states, encoder_hidden_states, temb,
  rotary_emb)`` and runs the branch. ``temb`` is what the backbone blocks use, ``[B, 6, D]`` for
  scalar timesteps ``(B,)`` and ``[B, L, 6, D]`` for TI2V-5B per-token timesteps ``(B, L)``; the
  branch blocks are ``WanTransformerBlock`` copies and handle both natively;
* a forward hook on ``blocks[i_j]`` adds ``hint_j * scale``.

Per-call state is keyed by the ``temb`` tensor object of that call (a weak-keyed dict), so CFG's
two calls per step each get their own hints, and gradient checkpointing works: when backward
recomputes ``blocks[0]`` (its pre-hook included), the branch is recomputed from the condition that
was bound to that call, even if the ``condition`` block has been left or another condition set.
Under checkpointing each branch block is itself checkpointed (non-reentrant), so the 8 branch
blocks hold no activations between forward and backward.

Initialisation (at init the output is bit-identical to the bare backbone):

* ``patch_embedding``: the backbone's patch embedding weights and bias for the ``C`` latent
  channels, zeros for the mask channel. The readout lives in the same VAE latent space as the
  backbone input, so the copied embedding ("shared patch embedding", paper App. C) maps it to tokens
  in the space of ``x`` from step 0; the mask channel starts silent and is learned.
* branch blocks: copies of the backbone blocks at the injection layers (ControlNet/VACE practice),
  so the branch starts as a pretrained feature extractor rather than noise.
* ``before_proj`` and every ``after_proj_j``: weight and bias zero (upstream VACE). Hence at step 0
  only ``after_proj`` receives a non-zero gradient; the rest follows once it moves.

The readouts a branch is trained on depend on the memory's kind and readout settings; the branch
keeps them in :attr:`MemoryBranch.readout` (:class:`ReadoutSettings`, recorded with trained memory
weights by :mod:`model.generation.lora`), and :meth:`MemoryBranch.check_readout` refuses a memory that would
read out differently.

Refiner (:attr:`MemoryBranchConfig.refiner_width` > 0, mirage-mini): a latent-resolution conv net
(:mod:`model.generation.readout_refiner`) that resamples the readout with its cell mapping (where each
cell lies in its point's patch) into the memory's prior, once per ``condition`` block; its last layer
starts at zero, so an untrained refiner's prior is the readout.

Output (:attr:`MemoryBranchConfig.prediction`): ``"velocity"`` (default) leaves the transformer's
output alone, the flow velocity a pretrained Wan backbone predicts. ``"readout_x0"`` (mirage-mini,
trained from scratch) reads the raw output ``o`` as a correction of the clean latents on top of the
prior, ``x0 = prior + o``, and a forward hook on the transformer returns the velocity
``(x_t - x0) / sigma`` that the schedulers step with (:meth:`MemoryBranch.velocity_from_x0`): what the
memory holds is the model's answer from step 0, and training learns what to change.

Condition API: ``with branch.condition(readout, visible): transformer(...)``. While the branch is
attached and ``enabled``, a transformer call without a condition raises ``RuntimeError`` (a
silently unconditioned generation is a bug that is hard to spot). ``branch.enabled = False`` turns
the branch off (no hints, no condition needed): the "disabled branch" ablation.

Caveats: diffusers cache hooks (FirstBlockCache, MagCache, ...) that skip blocks also skip the
hints; ``torch.compile`` graph-breaks at the Python hooks; context parallelism (``_cp_plan`` splits
the sequence at ``blocks.0``) is not supported; create the branch before installing offloading or
cache hooks and before adding LoRA to the backbone (it refuses otherwise). The branch is not a
submodule of the transformer: move it to the device/dtype yourself.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.weak import WeakIdKeyDictionary

from model.generation.readout_refiner import ReadoutRefiner
from model.io.formats import check_tensors, read_versioned, write_versioned
from model.memory.base import MemoryConfig
from model.memory.footprint import MAPPING_CHANNELS
from model.memory.latent import LatentSpatialMemory

#: ``format`` entry in the safetensors metadata of a branch file.
BRANCH_FORMAT = "mirage-memory-branch"
#: Version of the branch file layout this code writes and reads.
BRANCH_FORMAT_VERSION = 1
#: Injection layers of the paper for the 30-block Wan2.2-TI2V-5B: every 4th block from 0.
DEFAULT_LAYERS = tuple(range(0, 30, 4))
#: What the conditioned transformer's raw output means (:attr:`MemoryBranchConfig.prediction`).
PREDICTIONS = ("velocity", "readout_x0")
#: ``num_train_timesteps`` of the Wan flow schedulers: a token's timestep is ``1000 * sigma``.
_TIMESTEPS_PER_SIGMA = 1000.0

# Transformer config entries whose equality makes a branch (and a LoRA) transferable.
_BACKBONE_KEYS = ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels", "ffn_dim", "patch_size")

# One MemoryBranch per transformer: two attached branches would silently add their hints twice.
_ATTACHED: weakref.WeakKeyDictionary[nn.Module, MemoryBranch] = weakref.WeakKeyDictionary()


@dataclass
class MemoryBranchConfig:
    """Layout of the memory side branch."""

    # Backbone blocks after which a hint is added; one branch block each; must include 0.
    layers: tuple[int, ...] = DEFAULT_LAYERS
    # Multiplier of every hint (conditioning scale); 0 makes the branch a no-op but still runs it.
    scale: float = 1.0
    # What the transformer's raw output is: "velocity" (the backbone's own flow prediction; Wan) or
    # "readout_x0" (a correction of the clean latents on top of the readout, turned into a velocity by
    # the branch: see MemoryBranch.velocity_from_x0; mirage-mini trains this from scratch)
    prediction: str = "velocity"
    # hidden width of the readout refiner (model.generation.readout_refiner); 0: none, the prior is the readout
    refiner_width: int = 0

    def __post_init__(self) -> None:
        self.layers = tuple(int(i) for i in self.layers)
        if not self.layers or self.layers[0] != 0:
            raise ValueError(f"MemoryBranchConfig.layers must start with 0, got {self.layers}")
        if any(b <= a for a, b in itertools.pairwise(self.layers)):
            raise ValueError(f"MemoryBranchConfig.layers must be strictly increasing, got {self.layers}")
        if not math.isfinite(self.scale):
            raise ValueError(f"MemoryBranchConfig.scale must be finite, got {self.scale}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"MemoryBranchConfig.prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.refiner_width < 0:
            raise ValueError(f"MemoryBranchConfig.refiner_width must be >= 0, got {self.refiner_width}")


@dataclass(frozen=True)
class ReadoutSettings:
    """What a memory readout depends on besides the stored points: the memory kind (the latent
    memory's z-buffer or the RGB baseline's VAE-encoded rasterisation) and the
    :class:`~model.memory.base.MemoryConfig` fields that the readout uses.

    A branch trained on readouts made one way sees readouts of another distribution when they are
    made another way, so trained memory weights record these and refuse other ones
    (:meth:`MemoryBranch.check_readout`).
    """

    memory_kind: str  # model.memory.base.MEMORY_KINDS
    near: float  # MemoryConfig.near: points closer to the camera are not read out
    depth_bin: float  # MemoryConfig.depth_bin: z-buffer depth bins (which of two close points shows)
    feature_dtype: str  # MemoryConfig.feature_dtype: storage precision of the features read out
    # MemoryConfig.splat: each point over its cell footprint, or into one cell; weights recorded before
    # the field existed were trained on one-cell readouts
    splat: str = "point"

    @classmethod
    def of(cls, kind: str, config: MemoryConfig) -> ReadoutSettings:
        """The readout settings of a memory of ``kind`` with ``config``."""
        return cls(kind, config.near, config.depth_bin, config.feature_dtype, config.splat)

    def differences(self, other: ReadoutSettings) -> list[str]:
        """``"<field> <other value> (trained: <own value>)"`` for each field where ``other`` differs."""
        return [
            f"{name} {value!r} (trained: {getattr(self, name)!r})"
            for name, value in asdict(other).items()
            if value != getattr(self, name)
        ]


#: The readout of the default memory (a latent memory with the default MemoryConfig), which training uses.
DEFAULT_READOUT = ReadoutSettings.of(LatentSpatialMemory.kind, MemoryConfig())


@dataclass
class _Condition:
    """The readout and mask of one ``condition`` block, as given (validated against each other), and the
    memory's prior of the clean latents made from them."""

    readout: torch.Tensor  # [B, C, F, h, w]
    visible: torch.Tensor  # [B, F, h, w]
    prior: torch.Tensor | None  # [B, C, F, h, w]: the refiner's output; None without a refiner


@dataclass
class _Call:
    """State of one transformer call, keyed by its ``temb`` tensor."""

    condition: _Condition
    # Whether the branch blocks ran checkpointed; a recomputation must make the same choice.
    checkpointed: bool
    # hint_j per injection layer, set to None once added to the backbone.
    hints: list[torch.Tensor | None]


@dataclass
class _Attachment:
    """What ``attach`` installed: the transformer (kept out of the module tree) and hook handles."""

    transformer: nn.Module
    handles: list[torch.utils.hooks.RemovableHandle]


def backbone_summary(transformer: nn.Module) -> dict[str, object]:
    """The transformer config entries a branch or LoRA depends on, JSON-ready.

    Example:
        >>> backbone_summary(transformer)["num_layers"]  # doctest: +SKIP
        30
    """
    config = transformer.config
    summary: dict[str, object] = {key: config[key] for key in _BACKBONE_KEYS}
    summary["patch_size"] = [int(p) for p in summary["patch_size"]]
    summary["inner_dim"] = int(config["num_attention_heads"] * config["attention_head_dim"])
    return summary


def check_backbone(expected: dict[str, object], transformer: nn.Module, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` if ``transformer`` differs from the summary ``expected``."""
    actual = backbone_summary(transformer)
    diffs = [f"{k} {expected.get(k)!r} != {actual[k]!r}" for k in actual if expected.get(k) != actual[k]]
    if diffs:
        raise ValueError(f"{source} was made for another backbone (expected != transformer): " + "; ".join(diffs))


def _validate_layers(layers: Sequence[int], num_layers: int) -> None:
    """Raise ``ValueError`` if an injection layer is outside ``[0, num_layers)``."""
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"MemoryBranchConfig.layers {bad} out of range for a backbone of {num_layers} blocks")


def _copy_block(block: nn.Module, index: int) -> nn.Module:
    """Deep copy of backbone block ``index``, refusing blocks that are not plain diffusers modules.

    LoRA layers, torch hooks (another attached branch) and instance-level ``forward`` overrides
    (diffusers offloading/cache hooks) would be copied along and change what the copy computes.
    """
    for name, module in block.named_modules():
        where = f"transformer.blocks.{index}{'.' + name if name else ''}"
        if isinstance(module, BaseTunerLayer):
            raise ValueError(f"{where} carries LoRA layers: create the MemoryBranch before adding LoRA")
        if "forward" in vars(module) or module._forward_hooks or module._forward_pre_hooks:
            raise ValueError(
                f"{where} carries hooks (an attached MemoryBranch, offloading or caching): "
                "create the MemoryBranch before installing them, or detach the other branch"
            )
    return copy.deepcopy(block)


class MemoryBranch(nn.Module):
    """Memory side branch for a ``WanTransformer3DModel`` (see the module docstring).

    Args:
        transformer: the backbone; read for its config and to copy weights. Not modified and not
            attached: call :meth:`attach`.
        config: injection layers and scale; ``layers`` must lie in ``[0, num_layers)``.

    Example:
        >>> branch = MemoryBranch(transformer, MemoryBranchConfig(layers=(0, 2)))  # doctest: +SKIP
        >>> branch.attach(transformer)  # doctest: +SKIP
        >>> with branch.condition(readout, visible):  # doctest: +SKIP
        ...     noise_pred = transformer(latents, timestep, text).sample
    """

    def __init__(self, transformer: nn.Module, config: MemoryBranchConfig | None = None) -> None:
        super().__init__()
        config = config or MemoryBranchConfig()
        _validate_layers(config.layers, transformer.config.num_layers)
        self.config = config
        self.backbone = backbone_summary(transformer)
        #: False: hooks stay installed but add nothing and need no condition (ablation switch).
        self.enabled = True
        #: The readouts it is (to be) trained on; None: unknown (weights saved before this was recorded).
        self.readout: ReadoutSettings | None = DEFAULT_READOUT
        self.patch_embedding = self._init_patch_embedding(transformer.patch_embedding)
        weight = transformer.patch_embedding.weight
        dim = self.backbone["inner_dim"]
        self.before_proj = nn.Linear(dim, dim, device=weight.device, dtype=weight.dtype)
        self.blocks = nn.ModuleList(_copy_block(transformer.blocks[i], i) for i in config.layers)
        self.after_proj = nn.ModuleList(
            nn.Linear(dim, dim, device=weight.device, dtype=weight.dtype) for _ in config.layers
        )
        channels = self.backbone["in_channels"]
        self.refiner = (
            ReadoutRefiner(channels, config.refiner_width).to(weight.device, weight.dtype)
            if config.refiner_width
            else None
        )
        for proj in [self.before_proj, *self.after_proj]:
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)
        self.requires_grad_(True)
        self._attachment: _Attachment | None = None
        self._condition: _Condition | None = None
        self._pending: _Condition | None = None
        # the condition of the running transformer call, for its output (prediction "readout_x0")
        self._output_condition: _Condition | None = None
        self._calls: WeakIdKeyDictionary = WeakIdKeyDictionary()

    @staticmethod
    def _init_patch_embedding(backbone: nn.Conv3d) -> nn.Conv3d:
        """Conv3d ``C + 1 -> D``: backbone weights for the latent channels, zeros for the mask."""
        channels = backbone.in_channels
        embed = nn.Conv3d(
            channels + 1,
            backbone.out_channels,
            kernel_size=backbone.kernel_size,
            stride=backbone.stride,
            device=backbone.weight.device,
            dtype=backbone.weight.dtype,
        )
        with torch.no_grad():
            embed.weight.zero_()
            embed.weight[:, :channels].copy_(backbone.weight)
            embed.bias.copy_(backbone.bias)
        return embed

    # ------------------------------------------------------------------------------------------
    # Attach / detach
    # ------------------------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Whether the hooks are installed on a transformer."""
        return self._attachment is not None

    def attach(self, transformer: nn.Module) -> None:
        """Install the hooks on ``transformer`` (a backbone of the same config). Idempotent.

        Raises:
            ValueError: another backbone config, or another branch already attached to it.
            RuntimeError: this branch is attached to a different transformer.
        """
        if self._attachment is not None:
            if self._attachment.transformer is transformer:
                return
            raise RuntimeError("MemoryBranch is attached to another transformer: detach() it first")
        check_backbone(self.backbone, transformer, "MemoryBranch")
        if _ATTACHED.get(transformer) is not None:
            raise ValueError("another MemoryBranch is already attached to this transformer: detach() it first")
        blocks = transformer.blocks
        handles = [transformer.register_forward_pre_hook(self._prime, with_kwargs=True)]
        if self.config.prediction == "readout_x0":
            handles.append(transformer.register_forward_hook(self._to_velocity, with_kwargs=True))
        handles.append(blocks[0].register_forward_pre_hook(self._run_branch))
        for j, layer in enumerate(self.config.layers):
            handles.append(blocks[layer].register_forward_hook(self._make_injector(j)))
        self._attachment = _Attachment(transformer, handles)
        _ATTACHED[transformer] = self

    def detach(self) -> None:
        """Remove every hook; the transformer computes exactly as before. Idempotent."""
        if self._attachment is None:
            return
        for handle in self._attachment.handles:
            handle.remove()
        _ATTACHED.pop(self._attachment.transformer, None)
        self._attachment = None
        self._pending = None

    # ------------------------------------------------------------------------------------------
    # Condition
    # ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def condition(
        self, readout: torch.Tensor, visible: torch.Tensor, mapping: torch.Tensor | None = None
    ) -> Iterator[None]:
        """Condition the transformer calls inside the block on a memory readout.

        Args:
            readout: ``[B, C, F, h, w]`` latent readout (zeros where the memory has nothing), in the
                transformer's latent layout; ``B`` is 1 (broadcast, e.g. CFG batches) or the batch
                size of the calls; ``F, h, w`` must equal the latent grid of the calls.
            visible: ``[B, F, h, w]`` bool or float, 1 where the memory covered the cell.
            mapping: ``[B, 6, F, h, w]`` where each cell samples its point's patch
                (:attr:`~model.memory.base.Readout.mapping`), used by the refiner; None for a readout
                made per pixel (the RGB memory's) or a branch without a refiner.

        The refiner (if any) runs once here; blocks nest; leaving one restores the previous condition.
        """
        self._check_condition(readout, visible, mapping)
        prior = self._prior(readout, visible, mapping)
        previous, self._condition = self._condition, _Condition(readout, visible, prior)
        try:
            yield
        finally:
            self._condition = previous

    def _check_condition(self, readout: torch.Tensor, visible: torch.Tensor, mapping: torch.Tensor | None) -> None:
        """Raise ``ValueError`` if readout/visible/mapping do not fit this branch or each other."""
        channels = self.backbone["in_channels"]
        if readout.ndim != 5 or readout.shape[1] != channels:
            raise ValueError(f"readout must be [B, {channels}, F, h, w], got {tuple(readout.shape)}")
        b, _, f, h, w = readout.shape
        if tuple(visible.shape) != (b, f, h, w):
            raise ValueError(f"visible must be [B, F, h, w] = {(b, f, h, w)}, got {tuple(visible.shape)}")
        if mapping is not None and tuple(mapping.shape) != (b, MAPPING_CHANNELS, f, h, w):
            raise ValueError(
                f"mapping must be [B, {MAPPING_CHANNELS}, F, h, w] = {(b, MAPPING_CHANNELS, f, h, w)}, "
                f"got {tuple(mapping.shape)}"
            )
        _, ph, pw = self.backbone["patch_size"]
        if h % ph or w % pw:
            raise ValueError(f"readout grid {h}x{w} is not divisible by the patch size {ph}x{pw}")

    # ------------------------------------------------------------------------------------------
    # Hooks
    # ------------------------------------------------------------------------------------------

    def _prior(self, readout: torch.Tensor, visible: torch.Tensor, mapping: torch.Tensor | None) -> torch.Tensor | None:
        """``[B, C, F, h, w]`` the refiner's prior of the clean latents; None without a refiner."""
        if self.refiner is None:
            return None
        return self.refiner(readout, visible, mapping).to(readout.dtype)

    def _prime(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Transformer pre-hook: check the condition against the input latents, bind it to this call."""
        self._pending = self._output_condition = None
        if not self.enabled:
            return
        if self._condition is None:
            raise RuntimeError(
                "MemoryBranch is attached and enabled but no condition is set: call the transformer "
                "inside `with branch.condition(readout, visible):` or set `branch.enabled = False`"
            )
        latents = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        readout = self._condition.readout
        b, _, f, h, w = latents.shape
        if readout.shape[0] not in (1, b) or tuple(readout.shape[2:]) != (f, h, w):
            raise ValueError(
                f"memory readout {tuple(readout.shape)} does not fit the transformer input "
                f"{tuple(latents.shape)}: need batch 1 or {b} and grid (F, h, w) = {(f, h, w)}"
            )
        self._pending = self._output_condition = self._condition

    def _to_velocity(self, module: nn.Module, args: tuple, kwargs: dict, output):
        """Transformer forward hook of prediction ``"readout_x0"``: its raw output becomes a velocity
        (:meth:`velocity_from_x0`), in the output container the call asked for."""
        latents = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        timestep = kwargs["timestep"] if "timestep" in kwargs else args[1]
        condition, self._output_condition = self._output_condition, None
        raw = output[0] if isinstance(output, tuple) else output.sample
        velocity = self.velocity_from_x0(raw, latents, timestep, condition)
        if isinstance(output, tuple):
            return (velocity, *output[1:])
        output.sample = velocity
        return output

    def velocity_from_x0(
        self, raw: torch.Tensor, latents: torch.Tensor, timestep: torch.Tensor, condition: _Condition | None
    ) -> torch.Tensor:
        """The flow velocity of a ``"readout_x0"`` output.

        The raw output ``o`` is read as a correction of the memory's prior of the clean latents,
        ``x0 = prior + o`` (``prior = visible * readout`` without a refiner; ``x0 = o`` without a
        condition: the branch disabled), and turned
        into the velocity the flow schedulers step with, ``v = (x_t - x0) / sigma`` (the inverse of their
        ``x0 = x_t - sigma * v``), with ``sigma = timestep / 1000`` per token. Tokens at sigma 0 (the
        clean first frame) get velocity 0: they stay as they are. So the readout is the model's answer
        until it learns better, and the flow-matching loss weighted by ``sigma**2`` is the MSE of ``x0``.

        Args:
            raw: ``[B, C, F, h, w]`` the transformer's output.
            latents: ``[B, C, F, h, w]`` its input ``x_t``.
            timestep: ``[B]`` or per token ``[B, L]`` (``L = F * h/ph * w/pw``, frame-major).
            condition: the call's readout and visibility, or None.

        Returns:
            ``[B, C, F, h, w]`` velocity in ``raw``'s dtype.
        """
        b, _, f, h, w = latents.shape
        t = timestep.float().to(latents.device)
        if t.ndim == 1:
            sigma = t.view(-1, 1, 1, 1, 1).expand(b, 1, f, h, w)
        else:
            _, ph, pw = self.backbone["patch_size"]
            sigma = t.view(b, 1, f, h // ph, w // pw).repeat_interleave(ph, 3).repeat_interleave(pw, 4)
        sigma = sigma / _TIMESTEPS_PER_SIGMA
        x0 = raw.float()
        if condition is not None and condition.prior is not None:
            x0 = x0 + condition.prior.to(x0.device, x0.dtype)
        elif condition is not None:
            visible = condition.visible.to(x0.device, x0.dtype).unsqueeze(1)
            x0 = x0 + visible * condition.readout.to(x0.device, x0.dtype)
        velocity = (latents.float() - x0) / sigma.clamp_min(1e-6)
        return torch.where(sigma > 0, velocity, torch.zeros_like(velocity)).to(raw.dtype)

    def _run_branch(self, block: nn.Module, args: tuple) -> None:
        """``blocks[0]`` pre-hook: compute the hints of this call from its bound condition."""
        hidden_states, encoder_hidden_states, temb, rotary_emb = args
        call = self._calls.get(temb)
        if call is not None:
            # Checkpoint recomputation during backward: redo the ops so their saved activations are
            # regenerated, but keep no hints (the forward's hints already carry the graph).
            self._hints(call, hidden_states, encoder_hidden_states, temb, rotary_emb)
            return
        if self._pending is None:
            return
        checkpointed = torch.is_grad_enabled() and self._attachment.transformer.gradient_checkpointing
        call = _Call(self._pending, checkpointed, hints=[])
        self._pending = None
        call.hints = self._hints(call, hidden_states, encoder_hidden_states, temb, rotary_emb)
        self._calls[temb] = call

    def _make_injector(self, j: int):
        """Forward hook for injection layer ``j``: ``output + hint_j * scale`` (hint used once)."""

        def inject(block: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            call = self._calls.get(args[2])
            if call is None or call.hints[j] is None:
                return None
            hint, call.hints[j] = call.hints[j], None
            return output + hint * self.config.scale

        return inject

    # ------------------------------------------------------------------------------------------
    # Branch computation
    # ------------------------------------------------------------------------------------------

    def _embed(self, condition: _Condition, dtype: torch.dtype) -> torch.Tensor:
        """Patch-embed prior ++ mask: ``[B, C, F, h, w]`` + ``[B, F, h, w]`` -> tokens ``[B, L, D]``
        (without a refiner the readout is embedded)."""
        weight = self.patch_embedding.weight
        mask = condition.visible.to(device=weight.device, dtype=weight.dtype).unsqueeze(1)
        content = condition.readout if condition.prior is None else condition.prior
        x = torch.cat([content.to(device=weight.device, dtype=weight.dtype), mask], dim=1)
        return self.patch_embedding(x).flatten(2).transpose(1, 2).to(dtype)

    def _hints(
        self,
        call: _Call,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: object,
    ) -> list[torch.Tensor | None]:
        """Run the branch on ``hidden_states`` ``[B, L, D]``; one hint ``[B, L, D]`` per injection layer.

        A condition of batch 1 broadcasts over ``B``.
        """
        c = self.before_proj(self._embed(call.condition, hidden_states.dtype)) + hidden_states
        hints: list[torch.Tensor | None] = []
        for block, proj in zip(self.blocks, self.after_proj, strict=True):
            if call.checkpointed:
                c = checkpoint(block, c, encoder_hidden_states, temb, rotary_emb, use_reentrant=False)
            else:
                c = block(c, encoder_hidden_states, temb, rotary_emb)
            hints.append(proj(c))
        return hints

    def check_readout(self, memory, source: str | os.PathLike = "memory") -> None:
        """Refuse a memory (a :class:`~model.memory.base.SpatialMemory`) that reads out other than the
        branch was trained on (:class:`ReadoutSettings`; nothing is checked when those are unknown).

        Raises:
            ValueError: ``"<source>: memory_kind 'rgb' (trained: 'latent') ..."`` naming every difference.
        """
        if self.readout is None:
            return
        differences = self.readout.differences(ReadoutSettings.of(memory.kind, memory.config))
        if differences:
            raise ValueError(
                f"{source}: {', '.join(differences)}: the memory weights were trained on readouts with other settings; "
                "use a memory with the settings they were trained with, or retrain"
            )

    # ------------------------------------------------------------------------------------------
    # Files
    # ------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, state: Mapping[str, torch.Tensor] | None = None) -> None:
        """Write the branch weights to a safetensors file (atomically), config and backbone in the metadata.

        Args:
            state: the weights to write, named as in ``self.state_dict()`` (e.g. gathered from the shards of
                an FSDP run, whose own ``state_dict()`` would be collective); None: this branch's own.
        """
        entries = {"config": asdict(self.config), "backbone": self.backbone}
        tensors = self.state_dict() if state is None else dict(state)
        write_versioned(path, tensors, BRANCH_FORMAT, BRANCH_FORMAT_VERSION, entries)

    @classmethod
    def load(cls, path: str | os.PathLike, transformer: nn.Module) -> MemoryBranch:
        """Read a branch written by :meth:`save` for ``transformer`` (returned detached).

        Files written before the project's formats were merged (format version in the metadata entry
        ``format_version``) load as well.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not a branch file, another format version or backbone, missing/extra/misshaped
                tensors; the message names the file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        tensors, entries = read_versioned(path, BRANCH_FORMAT, BRANCH_FORMAT_VERSION, ("config", "backbone"))
        try:
            config = MemoryBranchConfig(**entries["config"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: bad config metadata ({e})") from e
        check_backbone(entries["backbone"], transformer, str(path))
        branch = cls(transformer, config)
        check_tensors(path, tensors, {name: (None, tuple(t.shape)) for name, t in branch.state_dict().items()})
        branch.load_state_dict(tensors)
        return branch
