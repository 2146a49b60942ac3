"""The project's own file formats: versioned safetensors files and JSON objects, read strictly with
errors that name the file.

* :func:`write_versioned` / :func:`read_versioned`: tensors in a safetensors file whose metadata
  holds the format's name (``format``), its version (``version``) and JSON-encoded entries of the
  format's own (a config, counters, a backbone summary ...). Memories
  (:meth:`model.memory.base.PointMemory.save`) and the memory branch
  (:meth:`model.generation.memory_branch.MemoryBranch.save`) are stored this way; :func:`read_safetensors`
  reads any safetensors file (training checkpoints) with the same errors.
* :func:`check_tensors`: the strict check of the tensors read against the names, dtypes and shapes
  the format expects (:data:`Layout`).
* :func:`read_json_object`: a JSON file that must hold an object (session, camera path, RGB-D
  camera, memory-weights manifest, run report, model configs).

Every error is a ``ValueError`` (``OSError`` when writing) whose message starts with the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.io.atomic import atomic_path

#: Metadata entries that may hold a file's format version: ``version``, and ``format_version`` in
#: memory-branch files written before the formats shared this module. Every one present must match.
VERSION_KEYS = ("version", "format_version")

#: Expected tensors of a file: name -> (dtype, shape); a ``str`` dimension is a row count that every
#: tensor naming it shares (e.g. ``"N"`` points), a dtype of None accepts any dtype.
Layout = dict[str, tuple[torch.dtype | None, tuple[int | str, ...]]]


def write_versioned(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    format_name: str,
    version: int,
    entries: Mapping[str, object],
) -> None:
    """Write ``tensors`` to a safetensors file atomically, with ``format_name``, ``version`` and each
    of ``entries`` (JSON-encoded) in its metadata.

    Raises:
        OSError: naming ``path`` when the file cannot be written (safetensors' own error turned into one).
    """
    metadata = {"format": format_name, "version": str(version), **{key: json.dumps(v) for key, v in entries.items()}}
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(cpu, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # "... I/O error: No space left on device (os error 28)"
            code = re.search(r"os error (\d+)", str(exc))
            errno = int(code.group(1)) if code else None
            raise OSError(errno, os.strerror(errno) if errno else str(exc), str(path)) from exc


def read_versioned(
    path: str | os.PathLike, format_name: str, version: int | Sequence[int], entries: Sequence[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`write_versioned`, checking its format name and version (one of
    ``version`` when several are readable; ask for the entry ``"version"`` to learn which).

    Returns:
        ``(tensors, {entry: decoded JSON value})``: the tensors on the CPU, unchecked (see
        :func:`check_tensors`), and the metadata ``entries`` asked for.

    Raises:
        ValueError: naming the file and what is wrong: missing, not safetensors, another format or
            version, a missing or undecodable entry.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: {'not a file' if path.exists() else 'file not found'}")
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != format_name:
        raise ValueError(f"{path}: not a {format_name} file (format {metadata.get('format')!r})")
    readable = [str(v) for v in ([version] if isinstance(version, int) else version)]
    found = [metadata[key] for key in VERSION_KEYS if key in metadata]
    if not found or any(value not in readable for value in found) or len(set(found)) > 1:
        other = next((value for value in found if value not in readable), found[-1] if found else None)
        reads = " and ".join(readable)
        raise ValueError(f"{path}: unsupported {format_name} format version {other!r} (this build reads {reads})")
    try:
        values = {key: json.loads(metadata[key]) for key in entries}
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: invalid {format_name} metadata: {exc}") from exc
    return tensors, values


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (on the CPU) and metadata of any safetensors file.

    Raises:
        ValueError: ``"<file>: not a readable safetensors file: <reason>"``.
    """
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            return tensors, handle.metadata() or {}
    except (OSError, SafetensorError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file: {exc}") from exc


def check_tensors(path: Path, tensors: Mapping[str, torch.Tensor], layout: Layout, finite: Sequence[str] = ()) -> None:
    """Strict checks of the tensors read from ``path``: names, dtypes and shapes as in ``layout``,
    and no NaN or Inf in the tensors named in ``finite``.

    Raises:
        ValueError: naming the file and what is wrong (at most 5 names of each kind are listed).
    """
    missing = [name for name in layout if name not in tensors]
    unexpected = sorted(name for name in tensors if name not in layout)
    if missing or unexpected:
        raise ValueError(f"{path}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    rows: dict[str, int] = {}
    for name, (dtype, shape) in layout.items():
        t = tensors[name]
        expected = tuple(rows.setdefault(d, t.shape[0] if t.ndim else -1) if isinstance(d, str) else d for d in shape)
        if t.dtype != (dtype or t.dtype) or tuple(t.shape) != expected:
            raise ValueError(
                f"{path}: tensor '{name}' is {t.dtype} {list(t.shape)}, expected {dtype or t.dtype} {list(expected)}"
            )
    for name in finite:
        if not torch.isfinite(tensors[name]).all():
            raise ValueError(f"{path}: tensor '{name}' contains NaN or Inf")


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The JSON object in ``path``.

    Args:
        what: what the file holds, for messages, e.g. ``"camera-path JSON"``.

    Raises:
        ValueError: ``"<file>: cannot read <what>: <reason>"`` when the file is missing, unreadable
            or not JSON, and ``"<file>: expected a JSON object, got <kind>"``.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {json_kind(data)}")
    return data


def json_kind(value: object) -> str:
    """How a JSON value reads in an error message: ``"a string ('wide')"``, ``"a list"``, ``"null"`` ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"the number {value:g}"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__
