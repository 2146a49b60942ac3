"""Training checkpoints for exact resume, in safetensors + JSON (no pickle).

A checkpoint folder (written atomically, :func:`model.io.atomic.atomic_dir`)::

    step-000100/
      trainable.safetensors   the trainable parameters by name (branch or LoRA), exact dtype
      optimizer.safetensors   optimizer state tensors "state.<i>.<name>"; param_groups in the metadata
      rng-<rank>.safetensors  RNG states of each process: torch CPU (+ CUDA) generators, the noise
                              generator, numpy's global state; Python's ``random`` state in the metadata
      state.json              step, the training config and the loss history up to this step

The data order needs no state: batches are a pure function of (seed, step) (see ``trainer``).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from model.io.formats import read_safetensors

TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
CHECKPOINTS_DIR = "checkpoints"


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


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flatten ``optimizer.state_dict()`` into tensors ``state.<i>.<name>`` + JSON param groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            tensors[f"state.{index}.{name}"] = torch.as_tensor(value)
    return tensors, {"param_groups": json.dumps(state["param_groups"])}


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Restore what :func:`optimizer_tensors` wrote into ``optimizer`` (same parameters, same order)."""
    tensors, metadata = read_tensors(path)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    try:
        groups = json.loads(metadata["param_groups"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: no param_groups metadata ({exc})") from exc
    optimizer.load_state_dict({"state": state, "param_groups": groups})


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
