"""One-line error messages for the command line and for batch records (``<file>: <reason>``)."""

from __future__ import annotations


def error_line(exc: BaseException) -> str:
    """``exc`` as one line: ``<file>: <reason>`` for a file error (Python's ``[Errno 28] ...: 'file'``
    turned around), the message of a ``ValueError`` / ``OSError``, else ``<Type>: <message>``; the lines
    of a list (``"folder:\\n  - a\\n  - b"``) joined with ``"; "``.
    """
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, ValueError | OSError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    head, *items = [line.strip().removeprefix("- ") for line in message.splitlines() if line.strip()] or [""]
    return f"{head} {'; '.join(items)}" if items else head
