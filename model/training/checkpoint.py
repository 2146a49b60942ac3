"""Training checkpoints for exact resume, in safetensors + JSON (no pickle).

A checkpoint folder (written atomically, :func:`model.io.atomic.atomic_dir`)::

    step-000100/
      trainable.safetensors   the trainable parameters by name (branch or LoRA), exact dtype
      optimizer.safetensors   optimizer state tensors "state.<parameter name>.<name>"; param_groups in the
                              metadata (earlier files: "state.<index>.<name>", still read)
      rng-<rank>.safetensors  RNG states of each process: torch CPU (+ CUDA) generators, the noise
                              generator, numpy's global state; Python's ``random`` state in the metadata
      state.json              step, the training config and the loss history up to this step

The data order needs no state: batches are a pure function of (seed, step) (see ``trainer``).

Parameters and optimizer state are full (unsharded) tensors by parameter name, read and written
through accelerate (``Accelerator.get_state_dict``, in ``trainer``) and ``torch.distributed.checkpoint.
state_dict``: the same files whether the run was one process, DDP or FSDP (whose shards are gathered
to the main process on save and re-sharded on load). Only the number of processes must match on resume
(one RNG file per process).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from model.io.formats import read_safetensors

TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
CHECKPOINTS_DIR = "checkpoints"
#: ``keys`` metadata of an optimizer file whose state is keyed by parameter name (not index).
OPTIMIZER_KEYS = "parameter-names"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def rng_file(rank: int) -> str:
    return f"rng-{rank}.safetensors"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a checkpoint file; ``ValueError`` naming it when unreadable."""
    return read_safetensors(path)


# --------------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------------


def _state_dict_options() -> StateDictOptions:
    """Full (unsharded) state dicts on the CPU: under FSDP gathered to the main process, which writes them."""
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _torch_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (or ``optimizer`` itself)."""
    return getattr(optimizer, "optimizer", optimizer)


def optimizer_tensors(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flatten the optimizer state of ``model``'s parameters into tensors ``state.<param name>.<name>`` +
    JSON param groups.

    Uses ``torch.distributed.checkpoint.state_dict`` (what accelerate's FSDP saving calls), so the state is
    keyed by parameter name and complete whether ``model`` is plain, DDP- or FSDP-wrapped. Collective under
    FSDP: every process must call it; the main process gets the whole state (the others may get nothing).
    """
    state = get_optimizer_state_dict(model, _torch_optimizer(optimizer), options=_state_dict_options())
    tensors = {}
    for name, values in state.get("state", {}).items():  # empty on all but the main process of a parallel run
        for key, value in values.items():
            tensors[f"state.{name}.{key}"] = torch.as_tensor(value)
    return tensors, {"param_groups": json.dumps(state.get("param_groups", [])), "keys": OPTIMIZER_KEYS}


def load_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Restore what :func:`optimizer_tensors` wrote into ``optimizer`` (every process reads the whole file;
    under FSDP each keeps its shard).

    Files of the first checkpoint format (state keyed by parameter index, no ``keys`` metadata) load as well.
    """
    tensors, metadata = read_tensors(path)
    try:
        groups = json.loads(metadata["param_groups"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: no param_groups metadata ({exc})") from exc
    state: dict = {}
    for key, value in tensors.items():
        name, field = key[len("state.") :].rsplit(".", 1)
        state.setdefault(name, {})[field] = value
    if metadata.get("keys") != OPTIMIZER_KEYS:  # indices: the optimizer's own state_dict layout
        state = {int(index): values for index, values in state.items()}
        _torch_optimizer(optimizer).load_state_dict({"state": state, "param_groups": groups})
        return
    set_optimizer_state_dict(
        model, _torch_optimizer(optimizer), {"state": state, "param_groups": groups}, options=_load_options()
    )


def load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``tensors`` (full, unsharded, by parameter name) into ``model``'s parameters of those names;
    the other parameters stay. Plain, DDP- or FSDP-wrapped ``model`` (under FSDP each process keeps its shard)."""
    set_model_state_dict(model, dict(tensors), options=_load_options())  # it adds the missing entries to the dict


def _load_options() -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, strict=False)


# --------------------------------------------------------------------------------------------
# RNG
# --------------------------------------------------------------------------------------------


def rng_tensors(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every RNG a training step may draw from: torch CPU/CUDA, ``generator``, numpy, Python."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        "torch_cpu": torch.get_rng_state(),
        "noise": generator.get_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
    }
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    metadata = {
        "numpy": json.dumps([kind, int(pos), int(has_gauss), float(cached)]),
        "python": json.dumps(random.getstate()),
    }
    return tensors, metadata


def restore_rng(path: Path, generator: torch.Generator) -> None:
    """Set every RNG back to the states :func:`rng_tensors` saved in ``path``."""
    tensors, metadata = read_tensors(path)
    torch.set_rng_state(tensors["torch_cpu"])
    generator.set_state(tensors["noise"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = json.loads(metadata["numpy"])
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(metadata["python"])
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------------------------
# Finding checkpoints
# --------------------------------------------------------------------------------------------


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders of a training output folder, oldest first."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file())


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder itself, or the newest checkpoint of a training output folder.

    Raises:
        FileNotFoundError: naming ``path``, when neither holds a checkpoint.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise FileNotFoundError(
            f"--resume {path}: no checkpoint there (expected {STATE_FILE} or {CHECKPOINTS_DIR}/step-*/)"
        )
    return found[-1]
