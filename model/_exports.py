"""Lazy re-exports for the subpackages of :mod:`model` (PEP 562).

Each subpackage names its public API in its ``__init__`` as ``{name: submodule}`` and gets a module
``__getattr__`` from :func:`lazy_exports`: ``from model.memory import LatentSpatialMemory`` works,
and importing one light submodule (say :mod:`model.generation.profiles`, which the command-line
parsers read) does not import the package's heavy ones (diffusers, moderngl).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` exporting each ``name`` from ``package.<submodule>``.

    Example:
        >>> __getattr__, __dir__ = lazy_exports("model.memory", {"LatentSpatialMemory": "latent"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
