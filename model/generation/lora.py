"""peft LoRA on the Wan backbone (Mirage training stage 2), and the memory-weights folder that pairs
it with the memory branch.

The LoRA goes on self-attention only by default: ``attn1.to_q``, ``attn1.to_k``, ``attn1.to_v``,
``attn1.to_out.0`` of every block (paper v1: rank 64, alpha 64, dropout 0.05). A bare ``to_q``
would also hit the cross-attention ``attn2``. It is saved and loaded through diffusers' Wan LoRA
loader (``WanLoraLoaderMixin``, the mixin of ``WanPipeline``), so ``pytorch_lora_weights.safetensors``
is an ordinary diffusers LoRA file: ``pipe.load_lora_weights(folder)`` reads it too.

A memory-weights folder::

    memory_branch.safetensors         MemoryBranch.save (config in its metadata)
    pytorch_lora_weights.safetensors  WanLoraLoaderMixin.save_lora_weights, keys "transformer.blocks.i.attn1...",
                                      the peft LoraConfig in its "lora_adapter_metadata"; absent in a
                                      branch-only folder (training stage 1 output)
    memory_weights.json               format + version, branch config, LoRA settings (null: branch only),
                                      backbone summary, readout settings the weights were trained with
                                      (MemoryBranch.readout; format version 2)

It is written into a temporary folder next to the target and renamed into place. Only safetensors
are read (no pickle fallback), from local files only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import safetensors
import torch
from diffusers.loaders import WanLoraLoaderMixin
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict
from torch import nn

from model.generation.backbone import BackboneConfig, tiny_sizes_for
from model.generation.memory_branch import (
    MemoryBranch,
    MemoryBranchConfig,
    ReadoutSettings,
    backbone_summary,
    check_backbone,
)
from model.generation.profiles import profile
from model.io.atomic import atomic_dir, write_json_atomic
from model.io.formats import read_json_object

#: Self-attention projections of every block (the attn1 prefix keeps attn2 out).
SELF_ATTENTION_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")
#: Adapter name of the memory LoRA on the transformer.
DEFAULT_ADAPTER = "memory"
#: Files of a memory-weights folder.
BRANCH_FILE = "memory_branch.safetensors"
LORA_FILE = "pytorch_lora_weights.safetensors"
MANIFEST_FILE = "memory_weights.json"
#: ``format`` entry of memory_weights.json and the version this code writes; it reads version 1 too
#: (without the readout settings, which version 2 added: such weights load unchecked, with a warning).
MEMORY_WEIGHTS_FORMAT = "mirage-memory-weights"
MEMORY_WEIGHTS_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)

_FILES = (BRANCH_FILE, LORA_FILE, MANIFEST_FILE)
# Key prefix diffusers gives the transformer's LoRA tensors in a pipeline LoRA file.
_LORA_PREFIX = "transformer."


@dataclass
class LoraSettings:
    """LoRA hyper-parameters of the backbone adapter."""

    # LoRA rank r (paper v1: 64).
    rank: int = 64
    # lora_alpha; the update is scaled by alpha / rank.
    alpha: int = 64
    # Dropout on the LoRA input, active in train mode only (paper: 0.05).
    dropout: float = 0.05
    # Module-name suffixes of the nn.Linear layers to adapt (peft matching); kept sorted.
    target_modules: tuple[str, ...] = SELF_ATTENTION_TARGETS

    def __post_init__(self) -> None:
        self.target_modules = tuple(sorted(self.target_modules))
        if self.rank <= 0 or self.alpha <= 0:
            raise ValueError(f"LoraSettings rank and alpha must be positive, got {self.rank}, {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraSettings.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("LoraSettings.target_modules is empty")

    def to_peft(self) -> LoraConfig:
        """The peft config (LoRA B zero-initialised, so a fresh adapter changes nothing)."""
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            init_lora_weights=True,
        )

    @classmethod
    def from_peft(cls, config: dict) -> LoraSettings:
        """Settings from a ``LoraConfig.to_dict()``-shaped dict (keys ``r``, ``lora_alpha``, ...)."""
        return cls(
            rank=config["r"],
            alpha=config["lora_alpha"],
            dropout=config["lora_dropout"],
            target_modules=tuple(config["target_modules"]),
        )


def lora_targets(transformer: nn.Module, settings: LoraSettings) -> dict[str, nn.Linear]:
    """The Linear layers ``settings`` selects, by module name (peft's suffix rule).

    Returns:
        ``{name: linear}`` with the base ``nn.Linear`` (under any LoRA wrapper already there).

    Raises:
        ValueError: a target matches nothing, or matches a layer that is not an ``nn.Linear``.
    """
    found: dict[str, nn.Linear] = {}
    for name, module in transformer.named_modules():
        if not any(name == t or name.endswith("." + t) for t in settings.target_modules):
            continue
        base = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
        if not isinstance(base, nn.Linear):
            raise ValueError(f"LoRA target {name} is a {type(base).__name__}, only nn.Linear is supported")
        found[name] = base
    unmatched = [t for t in settings.target_modules if not any(n == t or n.endswith("." + t) for n in found)]
    if unmatched:
        raise ValueError(f"LoRA target_modules {unmatched} match no layer of the transformer")
    return found


def add_lora(
    transformer: nn.Module, settings: LoraSettings | None = None, adapter_name: str = DEFAULT_ADAPTER
) -> list[str]:
    """Add a fresh LoRA adapter (no effect until trained) and make it active.

    ``requires_grad`` of the backbone weights is left as it is: freeze them in the training code.

    Returns:
        The sorted names of the adapted modules, e.g. ``["blocks.0.attn1.to_k", ...]``.
    """
    settings = settings or LoraSettings()
    targets = lora_targets(transformer, settings)
    transformer.add_adapter(settings.to_peft(), adapter_name=adapter_name)
    return sorted(targets)


def save_memory_weights(
    folder: str | os.PathLike,
    transformer: nn.Module,
    branch: MemoryBranch,
    lora_settings: LoraSettings | None,
    adapter_name: str = DEFAULT_ADAPTER,
    *,
    branch_state: Mapping[str, torch.Tensor] | None = None,
    transformer_state: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write the branch and the LoRA adapter ``adapter_name`` of ``transformer`` into ``folder``.

    ``branch_state`` / ``transformer_state``: the weights to write instead of the modules' own (named as
    in their ``state_dict()``; the transformer's needs only its LoRA tensors), e.g. gathered from the
    shards of an FSDP run (``model.training.trainer``); the modules then give only config and structure.

    The manifest records the readout settings the weights were trained with (``branch.readout``).

    ``lora_settings=None`` writes a branch-only folder (no LoRA file; the manifest's ``lora`` is
    null), e.g. after training stage 1. An existing memory-weights folder is replaced; a folder
    holding anything else is refused.

    Raises:
        ValueError: branch built for another backbone, no such adapter, ``lora_settings`` not those
            of the adapter, or ``folder`` holds foreign files.
    """
    folder = Path(folder)
    check_backbone(branch.backbone, transformer, "MemoryBranch")
    adapter = None if lora_settings is None else _adapter_config(transformer, adapter_name)
    if adapter is not None and LoraSettings.from_peft(adapter) != lora_settings:
        raise ValueError(f"lora_settings {lora_settings} differ from adapter {adapter_name!r} on the transformer")
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in _FILES) if folder.is_dir() else []
    if foreign:
        raise ValueError(f"{folder}: holds files that are not memory weights {foreign[:5]}; choose another folder")
    if branch.readout is None:
        raise ValueError("the branch's readout settings are unknown; set branch.readout to those it was trained with")
    manifest = {
        "format": MEMORY_WEIGHTS_FORMAT,
        "format_version": MEMORY_WEIGHTS_FORMAT_VERSION,
        "branch": asdict(branch.config),
        "lora": None if lora_settings is None else asdict(lora_settings),
        "backbone": backbone_summary(transformer),
        "readout": asdict(branch.readout),
    }
    with atomic_dir(folder) as tmp:
        branch.save(tmp / BRANCH_FILE, branch_state)
        if adapter is not None:
            WanLoraLoaderMixin.save_lora_weights(
                tmp,
                transformer_lora_layers=get_peft_model_state_dict(
                    transformer,
                    state_dict=None if transformer_state is None else dict(transformer_state),
                    adapter_name=adapter_name,
                ),
                weight_name=LORA_FILE,
                safe_serialization=True,
                transformer_lora_adapter_metadata=adapter,
            )
        write_json_atomic(tmp / MANIFEST_FILE, manifest)


def load_memory_weights(
    folder: str | os.PathLike, transformer: nn.Module, adapter_name: str = DEFAULT_ADAPTER
) -> MemoryBranch:
    """Load a memory-weights folder into a bare ``transformer``: LoRA added and active (none for a
    branch-only folder), branch attached, its :attr:`~model.generation.memory_branch.MemoryBranch.readout` the
    settings the weights were trained with (None for a version-1 folder, with a warning).

    Returns:
        The attached :class:`MemoryBranch`.

    Raises:
        FileNotFoundError: the folder or one of its files is missing (the message names it).
        ValueError: a file is corrupt, of another format version, made for another backbone, or
            inconsistent with the others (the message names the file); the transformer already has
            an adapter ``adapter_name``. Nothing is added to the transformer then.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such memory-weights folder")
    for name in (BRANCH_FILE, MANIFEST_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing (a memory-weights folder holds {list(_FILES)})")
    manifest_path = folder / MANIFEST_FILE
    branch_config, settings, readout = _read_manifest(manifest_path, transformer)
    has_lora = (folder / LORA_FILE).is_file()
    if settings is not None and not has_lora:
        raise FileNotFoundError(f"{folder / LORA_FILE}: missing ({manifest_path} lists LoRA settings)")
    if settings is None and has_lora:
        raise ValueError(
            f"{folder / LORA_FILE}: present, but {manifest_path} says the folder is branch-only (lora null)"
        )
    if adapter_name in (getattr(transformer, "peft_config", None) or {}):
        raise ValueError(f"the transformer already has a LoRA adapter named {adapter_name!r}")
    branch = MemoryBranch.load(folder / BRANCH_FILE, transformer)
    if branch.config != branch_config:
        raise ValueError(f"{folder / BRANCH_FILE}: config {branch.config} differs from {manifest_path}")
    branch.readout = readout
    if settings is not None:
        state_dict, metadata = _read_lora(folder / LORA_FILE, transformer, settings)
        WanLoraLoaderMixin.load_lora_into_transformer(
            state_dict, transformer=transformer, adapter_name=adapter_name, metadata=metadata
        )
    branch.attach(transformer)
    return branch


def memory_weights_backbone(folder: str | os.PathLike) -> dict:
    """The backbone summary (:func:`model.generation.memory_branch.backbone_summary`) a memory-weights folder was
    trained on, read from its manifest: lets a tiny backbone be built to match before loading."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a memory-weights folder holds {list(_FILES)})")
    backbone = read_json_object(path, "memory-weights manifest").get("backbone")
    if not isinstance(backbone, dict):
        raise ValueError(f"{path}: 'backbone' must be an object")
    return backbone


def backbone_config_for_weights(config: BackboneConfig, folder: str | os.PathLike | None) -> BackboneConfig:
    """``config`` with the transformer's sizes taken from a memory-weights folder when its backend's
    profile is ``sized_by_config`` (tiny); unchanged otherwise (wan's sizes are fixed by its model
    folder) or without weights."""
    if folder is None or not profile(config.backend).sized_by_config:
        return config
    return replace(config, **tiny_sizes_for(memory_weights_backbone(folder)))


def _adapter_config(transformer: nn.Module, adapter_name: str) -> dict:
    """``LoraConfig.to_dict()`` of adapter ``adapter_name``, or ``ValueError`` if there is none."""
    configs = getattr(transformer, "peft_config", None) or {}
    if adapter_name not in configs:
        raise ValueError(f"the transformer has no LoRA adapter {adapter_name!r} (adapters: {sorted(configs)})")
    return configs[adapter_name].to_dict()


def _read_manifest(
    path: Path, transformer: nn.Module
) -> tuple[MemoryBranchConfig, LoraSettings | None, ReadoutSettings | None]:
    """Parse and check memory_weights.json against ``transformer``; errors name ``path``.

    The LoRA settings are None for a branch-only folder; the readout settings None for format version 1
    (warned).
    """
    manifest = read_json_object(path, "memory-weights manifest")
    if manifest.get("format") != MEMORY_WEIGHTS_FORMAT:
        raise ValueError(f"{path}: not a memory-weights manifest (no format {MEMORY_WEIGHTS_FORMAT!r})")
    version = manifest.get("format_version")
    if version not in _READABLE_VERSIONS:
        readable = " and ".join(map(str, _READABLE_VERSIONS))
        raise ValueError(f"{path}: format version {version!r}, this code reads {readable}")
    try:
        backbone = dict(manifest["backbone"])
        branch_config = MemoryBranchConfig(**manifest["branch"])
        settings = None if manifest["lora"] is None else LoraSettings(**manifest["lora"])
        readout = ReadoutSettings(**manifest["readout"]) if version >= 2 else None
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad entry ({e})") from e
    check_backbone(backbone, transformer, str(path))
    if readout is None:
        warnings.warn(
            f"{path}: format version 1 does not record the readout settings the weights were trained with; "
            "any memory is accepted",
            stacklevel=3,
        )
    return branch_config, settings, readout


def _read_lora(path: Path, transformer: nn.Module, settings: LoraSettings) -> tuple[dict[str, torch.Tensor], dict]:
    """Read the LoRA file through ``WanLoraLoaderMixin.lora_state_dict`` and check it fully.

    Returns:
        The state dict (keys ``transformer.blocks.i...``) and diffusers' adapter metadata.

    Raises:
        ValueError naming ``path``: unreadable, keys or shapes other than ``settings`` give on this
        transformer, or adapter metadata missing or different from ``settings``.
    """
    try:
        state_dict, metadata = WanLoraLoaderMixin.lora_state_dict(
            str(path.parent),
            weight_name=path.name,
            use_safetensors=True,
            local_files_only=True,
            return_lora_metadata=True,
        )
    except (safetensors.SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors LoRA file ({e})") from e
    expected = {}
    for name, linear in lora_targets(transformer, settings).items():
        expected[f"{_LORA_PREFIX}{name}.lora_A.weight"] = (settings.rank, linear.in_features)
        expected[f"{_LORA_PREFIX}{name}.lora_B.weight"] = (linear.out_features, settings.rank)
    missing, unexpected = sorted(expected.keys() - state_dict.keys()), sorted(state_dict.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"{path}: missing LoRA tensors {missing[:5]}, unexpected LoRA tensors {unexpected[:5]}")
    wrong = [f"{k} {tuple(state_dict[k].shape)} != {v}" for k, v in expected.items() if tuple(state_dict[k].shape) != v]
    if wrong:
        raise ValueError(f"{path}: LoRA tensors of the wrong shape: " + "; ".join(wrong[:5]))
    adapter = {k.removeprefix(_LORA_PREFIX): v for k, v in (metadata or {}).items()}
    try:
        file_settings = LoraSettings.from_peft(adapter)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: missing or bad lora_adapter_metadata ({e})") from e
    if file_settings != settings:
        raise ValueError(f"{path}: adapter metadata {file_settings} differs from the manifest {settings}")
    return state_dict, metadata
