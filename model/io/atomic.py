"""Crash-safe outputs: every file or folder of a run is whole or absent.

:class:`OutputSet` is the mechanism behind the project's writes. A run declares its outputs
before any work (:meth:`OutputSet.add` checks the folder, clashes and free space), writes each under a
temporary name in the output's own folder (:meth:`OutputSet.reserve`), and renames them into place as
one set when all of them exist (:meth:`OutputSet.commit`). A failure, an exception or a signal removes
the temporaries (:meth:`OutputSet.abort`); earlier results at the final names stay byte-identical.

Names: a temporary is ``.NAME.tmp-PID-TOKEN[.SUFFIX]``, and an earlier result kept aside while a set is
committed is ``.NAME.old-PID-TOKEN[.SUFFIX]``. A process killed with ``kill -9`` cannot clean up; the
next :meth:`OutputSet.add` of the same output removes the temporaries of processes that no longer run
(and puts a kept-aside earlier result back if the kill came between its two renames).

Signals: :func:`raise_on_signals` (used by ``main.py`` for headless jobs) turns SIGINT and SIGTERM into
:class:`Interrupted`, so the ``with`` blocks on the way out remove their temporaries. Where an
exception would leave a half-done step (between a child process's start and its handle, in the
middle of a commit's renames) :func:`signals_held` defers it to the end of that step.

:func:`atomic_path`, :func:`atomic_dir`, :func:`write_text_atomic` and :func:`write_json_atomic` are
one-output sets for the simple cases.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_NAME_CHARS = 200  # of the final name kept in a temporary's name (file names stop at 255 bytes)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once: setting it to read it is not thread-safe


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised by :func:`raise_on_signals` (a ``BaseException``: only cleanup code sees it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_held = threading.local()  # .depth: nesting of signals_held; .pending: a signal that arrived meanwhile


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` in the main thread while the block runs.

    After the first signal further ones are ignored, so the cleanup on the way out runs undisturbed.
    A signal ignored by whoever started the process (a background job's SIGINT, nohup) stays ignored.
    Outside the main thread (where Python cannot set handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = (signal.SIGINT, signal.SIGTERM)

    def interrupt(signum, frame):
        for name in names:
            signal.signal(name, signal.SIG_IGN)
        if getattr(_held, "depth", 0):
            _held.pending = signum
        else:
            raise Interrupted(signum)

    previous = {name: signal.signal(name, interrupt) for name in names if signal.getsignal(name) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(name, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Defer :class:`Interrupted` from a signal that arrives during the block until it ends."""
    _held.depth = getattr(_held, "depth", 0) + 1
    try:
        yield
    finally:
        _held.depth -= 1
        pending = getattr(_held, "pending", None)
        if _held.depth == 0 and pending is not None:
            _held.pending = None
            raise Interrupted(pending)


class OutputError(OSError):
    """An output that cannot be checked or written. ``str()`` is ``<path>: <reason>``.

    An :class:`OSError`, so callers that handle file errors handle it; ``filename`` is the output's
    final path (never a temporary name) and ``strerror`` the reason.
    """

    def __init__(self, path: str | os.PathLike, reason: str, errno: int | None = None) -> None:
        super().__init__(errno, reason, str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


@dataclass
class _Output:
    final: Path
    folder: bool
    tmp: Path | None = None  # the temporary being written (None before reserve and once placed)
    backup: Path | None = None  # the earlier result, kept aside while the set is committed
    placed: bool = False  # the new content is at ``final``


class OutputSet:
    """Outputs written under temporary names and renamed into place together; a context manager.

    Leaving the ``with`` block normally commits, an exception (or a signal turned into one) aborts.

    Example:
        >>> outputs = OutputSet()  # doctest: +SKIP
        >>> outputs.add("out/run.mp4", size=4 << 20)  # checked now, before any work
        >>> outputs.add("out/run.json")
        >>> with outputs:
        ...     encode_video(outputs.reserve("out/run.mp4"))
        ...     outputs.write("out/run.json", lambda tmp: tmp.write_text(report))
    """

    def __init__(self) -> None:
        self._outputs: dict[str, _Output] = {}  # by absolute path
        self._needed: dict[int, int] = {}  # device -> bytes the declared outputs need there
        self._made_folders: list[Path] = []  # parents created by reserve, removed again by abort

    # ---- declaring -------------------------------------------------------------------------

    def add(self, path: str | os.PathLike, *, folder: bool = False, size: int = 0) -> None:
        """Declare an output and check it now, before any work is done.

        Checks: the path names a file (or, with ``folder``, a folder) and nothing of the other kind is
        there; it is not declared twice; its nearest existing parent is a writable folder (missing
        parents are created when writing starts); the free space of that disk covers ``size`` plus
        what the set's other outputs there expect. Removes this output's temporaries left by
        processes that no longer run.

        Args:
            size: a rough lower bound of the output's size in bytes (0: only the other checks).

        Raises:
            OutputError: naming the path and what is wrong.
        """
        final = Path(path)
        if _key(final) in self._outputs:
            raise OutputError(final, "named twice among the outputs of this run")
        if str(path).endswith(("/", os.sep)) and not folder:
            raise OutputError(final, "ends with a path separator; expected a file name")
        existing = _check_target(final, folder)
        if size > 0:
            device = os.stat(existing).st_dev
            self._needed[device] = self._needed.get(device, 0) + int(size)
            free = shutil.disk_usage(existing).free
            if self._needed[device] > free:
                raise OutputError(
                    final,
                    f"not enough free space: the outputs need about {_size(self._needed[device])} on the disk of "
                    f"{existing}, which has {_size(free)} free",
                )
        self._outputs[_key(final)] = _Output(final, folder)
        sweep_orphans(final)

    def reserve(self, path: str | os.PathLike, *, folder: bool = False, suffix: str | None = None) -> Path:
        """The temporary path to write an output to (declared now if :meth:`add` was not called).

        The temporary is created empty (a file, or a folder with ``folder``) beside the final path;
        missing parent folders are created. A file gets the usual permissions (0666 less the umask)
        when it is renamed into place.

        Args:
            suffix: suffix of a temporary file (default: the final one, so that writers that pick a
                format from the extension, such as ffmpeg, still work).
        """
        final = Path(path)
        output = self._outputs.get(_key(final))
        if output is None:
            _check_target(final, folder)
            output = self._outputs[_key(final)] = _Output(final, folder)
        if output.tmp is not None or output.placed:
            raise RuntimeError(f"{final}: reserved twice")
        try:
            with signals_held():  # what is created is recorded, so that abort() finds it
                self._make_parents(final.parent)
                output.tmp = _new_temporary(final, output.folder, final.suffix if suffix is None else suffix)
        except OSError as exc:
            raise OutputError(final, f"cannot create a temporary beside it: {exc.strerror or exc}", exc.errno) from exc
        return output.tmp

    def write(self, path: str | os.PathLike, writer: Callable[[Path], object], *, folder: bool = False) -> None:
        """Reserve ``path`` and call ``writer(temporary)``; a file error names the output, not the temporary."""
        tmp = self.reserve(path, folder=folder)
        try:
            writer(tmp)
        except OSError as exc:
            raise _named(exc, Path(path), tmp) from exc

    # ---- finishing -------------------------------------------------------------------------

    def commit(self) -> None:
        """Rename every temporary to its final name; if one rename fails, undo the others.

        Raises:
            RuntimeError: when a declared output was never written.
            OutputError: when a rename fails (the earlier results are back in place).
        """
        missing = [str(o.final) for o in self._outputs.values() if o.tmp is None]
        if missing:
            self.abort()
            raise RuntimeError(f"outputs declared but never written: {', '.join(missing)}")
        placed: list[_Output] = []
        try:
            with signals_held():  # all renames or none: a signal waits for the last one
                for output in self._outputs.values():
                    tmp = output.tmp
                    placed.append(output)
                    _place(output)
        except BaseException as exc:
            for earlier in reversed(placed):
                with contextlib.suppress(OSError):
                    _take_back(earlier)
            self.abort()
            if isinstance(exc, OSError):
                raise _named(exc, placed[-1].final, tmp) from exc
            raise
        for output in placed:
            if output.backup is not None:
                _remove(output.backup)
        self._outputs.clear()
        self._made_folders.clear()

    def abort(self) -> None:
        """Remove the temporaries (and the parent folders :meth:`reserve` created); the final paths are untouched."""
        for output in self._outputs.values():
            if output.tmp is not None:
                _remove(output.tmp)
                output.tmp = None
        for made in reversed(self._made_folders):
            with contextlib.suppress(OSError):
                made.rmdir()  # only when empty
        self._outputs.clear()
        self._made_folders.clear()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # ---- helpers ---------------------------------------------------------------------------

    def _make_parents(self, parent: Path) -> None:
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir()
            self._made_folders.append(folder)


def _key(path: Path) -> str:
    return os.path.abspath(path)


def _named(exc: OSError, final: Path, tmp: Path | None) -> OutputError:
    """``exc`` as an :class:`OutputError` naming ``final`` where it named the temporary ``tmp`` (or a file in it)."""
    name = final if exc.filename is None else Path(os.fsdecode(exc.filename))
    if tmp is not None and (name == tmp or tmp in name.parents):
        name = final / name.relative_to(tmp)
    return OutputError(name, exc.strerror or str(exc), exc.errno)


def _check_target(final: Path, folder: bool) -> Path:
    """Check that ``final`` can be written; returns its nearest existing parent folder."""
    if os.path.lexists(final):
        if folder and not final.is_dir():
            raise OutputError(final, "exists and is not a folder")
        if not folder and final.is_dir():
            raise OutputError(final, "is a folder; expected a file name")
    parent = final.parent
    while not parent.exists():
        if os.path.lexists(parent):  # a dangling link
            raise OutputError(final, f"{parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(final, f"{parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(final, f"folder {parent} is not writable")
    return parent


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{-(-n // 1024)} KiB"


def _sibling_name(final: Path, kind: str, suffix: str) -> Path:
    """``.NAME.KIND-PID-TOKEN[SUFFIX]`` beside ``final`` (``kind``: ``tmp`` or ``old``)."""
    return final.with_name(f".{final.name[:_NAME_CHARS]}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def _new_temporary(final: Path, folder: bool, suffix: str) -> Path:
    """Create an empty temporary file or folder for ``final`` (a fresh :func:`_sibling_name`)."""
    while True:
        path = _sibling_name(final, "tmp", "" if folder else suffix)
        try:
            if folder:
                os.mkdir(path)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return path
        except FileExistsError:
            continue


def sweep_orphans(final: str | os.PathLike, writers_gone: bool = False) -> None:
    """Remove the temporaries of ``final`` left by processes that no longer run.

    Matches ``.NAME.tmp-PID-…`` and ``.NAME.old-PID-…`` beside ``final`` (and ``..NAME.tmp-PID-…``, a
    temporary's own temporary). A kept-aside earlier result (``old``) is put back when ``final`` is missing.

    Args:
        writers_gone: every process that wrote ``final`` is known to have stopped (e.g. a batch worker Ray
            reported dead): sweep whatever the PIDs say (a just-killed process can still hold its PID
            until it is reaped, and a PID from another host means nothing here).
    """
    final = Path(final)
    if not final.parent.is_dir():
        return
    pattern = re.compile(r"(\.\.?)" + re.escape(final.name[:_NAME_CHARS]) + r"\.(tmp|old)-(\d+)-[0-9a-f]+")
    for entry in os.scandir(final.parent):
        match = pattern.match(entry.name)
        if match is None or (not writers_gone and _running(int(match.group(3)))):
            continue
        if match.group(2) == "old" and match.group(1) == "." and not os.path.lexists(final):
            with contextlib.suppress(OSError):
                os.replace(entry.path, final)
            continue
        _remove(Path(entry.path))


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove(path: Path) -> None:
    """Delete a file or a folder tree; a missing path or a failure is ignored (the sweep retries later)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _place(output: _Output) -> None:
    """Rename ``output.tmp`` to ``output.final``, keeping an earlier result aside as ``output.backup``."""
    final, tmp = output.final, output.tmp
    if not output.folder:
        os.chmod(tmp, 0o666 & ~_UMASK)  # some writers (safetensors) replace the file with a 0600 one
    if os.path.lexists(final):
        if output.folder and _exchange(tmp, final):  # one atomic swap: the temporary now holds the earlier folder
            output.backup, output.tmp, output.placed = tmp, None, True
            return
        backup = _sibling_name(final, "old", "" if output.folder else final.suffix)
        if output.folder:
            os.replace(final, backup)
        else:
            try:
                os.link(final, backup, follow_symlinks=False)  # the earlier file keeps its name until the replace
            except OSError:  # no hard links on this file system
                os.replace(final, backup)
        output.backup = backup
    os.replace(tmp, final)
    output.tmp, output.placed = None, True


def _take_back(output: _Output) -> None:
    """Undo :func:`_place`: the earlier result (or nothing) is at ``output.final`` again."""
    final, backup = output.final, output.backup
    if output.placed and output.folder and backup is not None and _exchange(backup, final):
        _remove(backup)  # the swap moved the new folder there
    else:
        if output.placed and (output.folder or backup is None):
            _remove(final)
        if backup is not None:
            os.replace(backup, final)
            _remove(backup)  # renaming a hard link onto the same file leaves both names
    output.backup, output.placed = None, False


def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _load_renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that fails."""
    if _RENAMEAT2 is None:
        return False
    return _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    A one-file :class:`OutputSet`. Args: ``path``: final file path (missing parent folders are
    created); ``suffix``: suffix of the temporary name (default: the final one).

    Example:
        >>> with atomic_path("out/video.mp4") as tmp:  # doctest: +SKIP
        ...     write_video(tmp, frames)
    """
    with OutputSet() as outputs:
        yield outputs.reserve(path, suffix=suffix)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; it replaces ``path`` as a whole when the block succeeds.

    A one-folder :class:`OutputSet`: an existing folder at ``path`` is swapped out atomically (on Linux;
    elsewhere moved aside for the instant between two renames) and deleted. A file at ``path`` is an error.

    Example:
        >>> with atomic_dir("out/weights") as tmp:  # doctest: +SKIP
        ...     (tmp / "a.json").write_text("{}")
    """
    with OutputSet() as outputs:
        yield outputs.reserve(path, folder=True)
