"""The ``mini`` backend: mirage-mini, a miniature Mirage model trained by this project.

A tiny Wan-shaped transformer and its memory branch, trained together from random initialisation
on procedural worlds (``main.py train --stage mini``), with the exact pixel-patch VAE
(:class:`~model.generation.patch_vae.PatchVAE`) and the tiny backend's in-code tokenizer and text
encoder. Its folder (default ``resources/models/mirage-mini/``)::

    model.safetensors   transformer.*, branch.*, text_encoder.* weights; format "mirage-mini" and
                        the config below in the metadata
    config.json         the same config, readable: transformer sizes, branch layers, the readout
                        settings it was trained on, frame size, steps, training summary
    MODEL_CARD.md       what it is, how it was trained, how it scores

:func:`load_mini_parts` is the backend's builder (``_BUILDERS["mini"]`` in
:mod:`model.generation.backbone`): it returns the backbone's parts and the trained branch, attached
to the transformer, which the stack loader hands to the pipeline (mode ``branch``).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.generation.memory_branch import MemoryBranch, MemoryBranchConfig, ReadoutSettings
from model.io.atomic import write_json_atomic
from model.io.formats import check_tensors, read_versioned, write_versioned

#: ``format`` of a mini model file and the version this code writes and reads.
MINI_FORMAT = "mirage-mini"
MINI_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: The shipped model, relative to the repository root.
MINI_DIR = Path(__file__).resolve().parents[2] / "resources" / "models" / "mirage-mini"
#: The transformer sizes a mini config records (BackboneConfig ``tiny_*`` fields).
SIZE_KEYS = ("tiny_num_layers", "tiny_num_heads", "tiny_head_dim", "tiny_ffn_dim")
_PARTS = ("transformer", "branch", "text_encoder")


def mini_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """The mini model folder: ``model_dir`` when given, else the shipped :data:`MINI_DIR`."""
    return Path(model_dir) if model_dir else MINI_DIR


def save_mini(
    folder: str | os.PathLike,
    transformer: nn.Module,
    branch: MemoryBranch,
    text_encoder: nn.Module,
    sizes: dict[str, int],
    extra: dict[str, Any],
) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` (created; each file atomically).

    Args:
        sizes: the transformer's :data:`SIZE_KEYS`.
        extra: more config entries (frame size, steps, training summary), JSON-ready.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if branch.readout is None:
        raise ValueError("the branch's readout settings are unknown; set branch.readout to those it was trained with")
    config = {
        "format": MINI_FORMAT,
        "format_version": MINI_FORMAT_VERSION,
        "transformer": {key: int(sizes[key]) for key in SIZE_KEYS},
        "branch": asdict(branch.config),
        "readout": asdict(branch.readout),
        **extra,
    }
    tensors = {
        f"{prefix}.{name}": t.detach().float().clone()
        for prefix, module in zip(_PARTS, (transformer, branch, text_encoder), strict=True)
        for name, t in module.state_dict().items()
    }
    write_versioned(folder / WEIGHTS_FILE, tensors, MINI_FORMAT, MINI_FORMAT_VERSION, {"config": config})
    write_json_atomic(folder / CONFIG_FILE, config)


def read_mini(folder: str | os.PathLike) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The weights of a mini folder by part (``transformer``, ``branch``, ``text_encoder``) and its config.

    Raises:
        FileNotFoundError: no ``model.safetensors`` in ``folder``.
        ValueError: not a mini model file, another version, or a config without the transformer sizes.
    """
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the mini model; retrain it with main.py train --stage mini)")
    tensors, entries = read_versioned(path, MINI_FORMAT, MINI_FORMAT_VERSION, ("config",))
    config = entries["config"]
    missing = [key for key in SIZE_KEYS if key not in config.get("transformer", {})]
    if missing or "branch" not in config or "readout" not in config:
        raise ValueError(f"{path}: config lacks {missing or ['branch', 'readout']}")
    parts: dict[str, dict[str, torch.Tensor]] = {part: {} for part in _PARTS}
    for name, tensor in tensors.items():
        prefix, _, rest = name.partition(".")
        if prefix not in parts:
            raise ValueError(f"{path}: unexpected tensor {name!r}")
        parts[prefix][rest] = tensor
    return parts, config


def load_state(path: Path, module: nn.Module, tensors: dict[str, torch.Tensor], part: str) -> None:
    """Copy ``tensors`` into ``module`` after a strict name/shape check naming ``path`` and ``part``."""
    expected = {name: (None, tuple(t.shape)) for name, t in module.state_dict().items()}
    check_tensors(path, {f"{part}.{k}": v for k, v in tensors.items()}, {f"{part}.{k}": v for k, v in expected.items()})
    module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in tensors.items()})


def build_branch(transformer: nn.Module, config: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path):
    """The trained :class:`MemoryBranch` of a mini config on ``transformer`` (not attached)."""
    branch = MemoryBranch(transformer, MemoryBranchConfig(**config["branch"]))
    load_state(path, branch, tensors, "branch")
    branch.readout = ReadoutSettings(**config["readout"])
    return branch


def init_from_mini(folder: str | os.PathLike, transformer: nn.Module, branch: MemoryBranch) -> None:
    """Copy a mini folder's transformer and branch weights into ``transformer`` and ``branch`` (a run that
    continues from a trained model). Branch parts the folder lacks (a refiner added since) keep their
    initial weights, whose zero output leaves the model computing what the folder's model computes.
    A deeper ``transformer`` (more blocks, the same width) grows: the folder's blocks fill the first ones and
    each further block starts as the identity (:func:`zero_block_outputs`), so the grown model too computes
    what the folder's model computes, and training gives the new blocks their job.

    Raises:
        FileNotFoundError / ValueError: as :func:`read_mini`; another transformer width, fewer blocks, other
            branch layers or prediction, or tensors that do not fit (the message names the file).
    """
    parts, config = read_mini(folder)
    path = Path(folder) / WEIGHTS_FILE
    saved = MemoryBranchConfig(**config["branch"])
    if (saved.layers, saved.prediction) != (branch.config.layers, branch.config.prediction):
        raise ValueError(
            f"{path}: branch layers {saved.layers} / prediction {saved.prediction!r} differ from this run's "
            f"{branch.config.layers} / {branch.config.prediction!r}"
        )
    saved_blocks = int(config["transformer"]["tiny_num_layers"])
    if len(transformer.blocks) < saved_blocks:
        raise ValueError(
            f"{path}: a {saved_blocks}-block transformer does not fit this run's {len(transformer.blocks)} blocks "
            "(a run can add blocks to a trained model, not remove them)"
        )
    grown = {name: t for name, t in transformer.state_dict().items() if _block_index(name) >= saved_blocks}
    load_state(path, transformer, {**parts["transformer"], **grown}, "transformer")
    for block in transformer.blocks[saved_blocks:]:
        zero_block_outputs(block)
    own = branch.state_dict()
    fresh = {name: t for name, t in own.items() if name not in parts["branch"]}
    if not all(name.startswith("refiner.") for name in fresh):
        raise ValueError(f"{path}: branch tensors missing: {sorted(n for n in fresh if not n.startswith('refiner.'))}")
    load_state(path, branch, {**parts["branch"], **fresh}, "branch")


def zero_block_outputs(block: nn.Module) -> None:
    """Zero the output projections of a Wan transformer block (self-attention, cross-attention, feed-forward):
    each adds its output to the residual stream, so the block passes its input through unchanged, and the
    gradient still reaches those projections (their inputs are not zero)."""
    for linear in (block.attn1.to_out[0], block.attn2.to_out[0], block.ffn.net[-1]):
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)


def _block_index(name: str) -> int:
    """The block number of a transformer tensor name ``blocks.N.*``; -1 for the others."""
    head, _, rest = name.partition(".")
    return int(rest.partition(".")[0]) if head == "blocks" else -1
