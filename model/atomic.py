"""Atomic file writes: write to a temporary name in the target folder, rename on success.

A failure (an exception, a full disk, a killed process) never leaves a half-written file under the
final name, and never clobbers a previous good file. :func:`atomic_dir` does the same for a folder
of files that belong together (a brief window where the old folder is moved aside excepted).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    Args:
        path: final file path. Its parent folder is created if missing.
        suffix: suffix of the temporary name (defaults to the final suffix, so writers that pick a
            format from the extension, such as ffmpeg, still work).

    Example:
        >>> with atomic_path("out/video.mp4") as tmp:  # doctest: +SKIP
        ...     write_video(tmp, frames)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=final.suffix if suffix is None else suffix, dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp (and some writers) create 0600; use the usual permissions
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; it replaces ``path`` when the block succeeds.

    An existing folder at ``path`` is moved aside, the new one renamed into place, and the old one
    deleted; if the rename fails the old folder is put back. On an exception inside the block the
    temporary folder is deleted and ``path`` is untouched.

    Args:
        path: final folder path. Its parent folder is created if missing; a file there is an error.

    Example:
        >>> with atomic_dir("out/weights") as tmp:  # doctest: +SKIP
        ...     (tmp / "a.json").write_text("{}")
    """
    final = Path(path)
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(f"{final}: exists and is not a folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new: Path, final: Path) -> None:
    """Rename folder ``new`` to ``final``, replacing (then deleting) a folder already there."""
    if not final.exists():
        os.replace(new, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
    os.replace(final, old / final.name)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(old / final.name, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
