"""Local model folders: one error, one way to check a folder before any weight is read, and the
refusal of folders that ship their own Python code.

:class:`FolderCheck` gathers every problem of a folder (a missing or unreadable config, a config
that points to code in the folder, a weights folder without safetensors files or missing a shard its
index lists) so that one :class:`ModelFolderError` lists them all. :func:`check_model_folder` checks a
``transformers`` folder (depth and segmentation models); :func:`model.generation.backbone.validate_wan_folder`
builds the Wan2.2 check from the same pieces.

Custom code: a Hugging Face folder can name classes from its own ``.py`` files in the ``auto_map`` of
a config (``config.json``, ``tokenizer_config.json``, ``preprocessor_config.json``). ``transformers``
imports that code when remote code is trusted, and when the argument is left out it *asks on the
terminal* ("Do you wish to run the custom code? [y/N]"), so one keystroke runs whatever the folder
holds. This project therefore passes ``trust_remote_code=False`` to every ``transformers`` /
``diffusers`` loader, and :meth:`FolderCheck.config` refuses every config with an ``auto_map``
before any loader runs, with a message that names the file and the classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.io.formats import read_json_object

#: Weight files that are pickles: never loaded (unpickling runs code), only named in the hint.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


class ModelFolderError(ValueError):
    """A local model folder that cannot be loaded: missing, incomplete, unsafe or of the wrong kind.

    Args:
        folder: the folder.
        what: what it should hold, e.g. ``"depth model"`` (the message says "is not a usable <what>
            folder"; the GUI's advice depends on it).
        problems: every missing or wrong piece found, one line each.
        message: the message; by default "<folder> is not a usable <what> folder:" and the problems,
            one a line.
    """

    def __init__(
        self, folder: str | os.PathLike, what: str, problems: Sequence[str], message: str | None = None
    ) -> None:
        self.folder, self.what, self.problems = Path(folder), what, list(problems)
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(message or f"{self.folder} is not a usable {what} folder:\n{listing}")


class FolderCheck:
    """The problems of one model folder, gathered so that :meth:`done` raises one error listing them all.

    Args:
        model_dir: the folder (``~`` expanded).
        what: what it should hold (see :class:`ModelFolderError`).

    Attributes:
        folder: the folder checked. problems: what is wrong so far; checks of a kind of folder of
            their own (e.g. Wan2.2's latent channels) append to it.

    Raises:
        ModelFolderError: at once, ``"<folder>: <what> folder not found"``, when ``model_dir`` is not a folder.

    Example::

        check = FolderCheck(folder, "depth model")
        config = check.config("config.json")
        check.weights()
        folder = check.done()
    """

    def __init__(self, model_dir: str | os.PathLike, what: str) -> None:
        self.folder, self.what = Path(model_dir).expanduser(), what
        self.problems: list[str] = []
        if not self.folder.is_dir():
            problem = f"{self.folder} not found or not a folder"
            raise ModelFolderError(self.folder, what, [problem], f"{self.folder}: {what} folder not found")

    def config(self, name: str) -> dict[str, Any] | None:
        """The JSON object in the folder's file ``name``, or None after noting why it is missing or
        unreadable; a config that points to code of its own (``auto_map``) is noted too."""
        path = self.folder / name
        if not path.is_file():
            self.problems.append(f"{path} missing")
            return None
        config = self._read(path, "model config JSON")
        problem = custom_code_problem(path, config) if config is not None else None
        if problem:
            self.problems.append(problem)
        return config

    def weights(self, name: str = ".") -> None:
        """Note a sub-folder ``name`` without safetensors weights, or lacking a shard that one of its
        ``*.safetensors.index.json`` files lists."""
        folder = self.folder / name
        for index_path in sorted(folder.glob("*.safetensors.index.json")):
            weight_map = (self._read(index_path, "safetensors index JSON") or {}).get("weight_map", {})
            if not isinstance(weight_map, dict):
                self.problems.append(f"{index_path}: weight_map is not an object")
                continue
            for shard in sorted(set(map(str, weight_map.values()))):
                if not (folder / shard).is_file():
                    self.problems.append(f"{folder / shard} missing (listed in {index_path.name})")
        if not any(folder.glob("*.safetensors")):
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
            why = "expected *.safetensors"
            if pickles:
                why = f"only pickle files {', '.join(pickles)}, never loaded: convert them to safetensors"
            self.problems.append(f"no weight files in {folder} ({why})")

    def component(self, name: str) -> dict[str, Any] | None:
        """Check the sub-folder ``name`` of a pipeline folder (``config.json`` and safetensors weights);
        returns its config (None when missing or unreadable)."""
        if not (self.folder / name).is_dir():
            self.problems.append(f"{self.folder / name} missing (config.json and *.safetensors weights)")
            return None
        config = self.config(f"{name}/config.json")
        self.weights(name)
        return config

    def _read(self, path: Path, what: str) -> dict[str, Any] | None:
        """The JSON object in ``path``, or None after noting why it cannot be read."""
        try:
            return read_json_object(path, what)
        except ValueError as exc:
            self.problems.append(str(exc))
            return None

    def done(self) -> Path:
        """The folder, when no problem was noted.

        Raises:
            ModelFolderError: listing every problem noted.
        """
        if self.problems:
            raise ModelFolderError(self.folder, self.what, self.problems)
        return self.folder


def check_model_folder(model_dir: str | os.PathLike, what: str) -> Path:
    """Check that ``model_dir`` holds a ``transformers`` model saved with ``save_pretrained``:
    ``config.json``, ``preprocessor_config.json`` and safetensors weights (every shard an index lists
    included), and no config that points to code shipped in the folder.

    Args:
        what: what the model is for, used in messages (e.g. ``"depth model"``).

    Raises:
        ModelFolderError: naming the folder and listing every missing or wrong piece.
    """
    check = FolderCheck(model_dir, what)
    check.config("config.json")
    check.config("preprocessor_config.json")
    check.weights()
    return check.done()


def custom_code_problem(config_path: Path, config: dict) -> str | None:
    """Why ``config`` (parsed from ``config_path``) cannot be loaded safely, or None.

    Returns:
        One line naming ``config_path`` and every class its ``auto_map`` points to, e.g.
        ``".../tokenizer_config.json: ships custom code (auto_map: my_tok.MyTokenizer); ..."``, or
        None when the config has no ``auto_map``.
    """
    auto_map = config.get("auto_map")
    if not auto_map:
        return None
    values = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
    targets: list[str] = []
    for value in values:  # a class reference, or [slow, fast] for tokenizers (either may be null)
        for target in value if isinstance(value, list) else [value]:
            if target and str(target) not in targets:
                targets.append(str(target))
    listing = ", ".join(targets) or repr(auto_map)
    return (
        f"{config_path}: ships custom code (auto_map: {listing}); code from a model folder is never run "
        "(trust_remote_code=False): use a folder saved with the library's own classes"
    )
