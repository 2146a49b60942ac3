"""``main.py fetch-models``: the real models one command away.

Downloads the recommended models (:data:`RECOMMENDED`: Wan2.2-TI2V-5B in diffusers layout and a
metric Depth Anything V2) through the Hub boundary :mod:`model.io.hub`, in this order:

1. the licence and size of each, as the Hub states them, are printed; then a confirmation is asked
   (``--yes`` skips it; without a terminal to ask on, ``--yes`` is required);
2. each is downloaded (progress bars, resumable) into the standard Hugging Face cache or
   ``--dir DIR/<name>``, and the exact folder is printed;
3. each folder is checked with the project's folder checks
   (:func:`model.generation.backbone.validate_wan_folder`,
   :func:`model.generation.depth.check_depth_model_folder`), all after every download: importing the
   backbone switches the process to offline mode;
4. the folders are recorded as the explorer's defaults (``record``, given by ``main.py``: the user's
   settings), so ``python main.py`` and ``make demo`` use them next time.

Run-time loading stays offline: the recorded folders are local paths; a repo id given to ``--model``
/ ``--depth-model`` is looked up in the cache without the network (:func:`model.io.hub.resolve_model_ref`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.io.hub import RepoFacts, download, hub_cache, repo_facts


def _check_wan(folder: Path) -> Path:
    from model.generation.backbone import validate_wan_folder  # imports torch and switches to offline mode

    return validate_wan_folder(folder)


def _check_depth(folder: Path) -> Path:
    from model.generation.depth import check_depth_model_folder

    return check_depth_model_folder(folder)


@dataclass(frozen=True)
class RecommendedModel:
    """One model ``fetch-models`` downloads."""

    key: str  # its name for --only
    repo_id: str  # Hugging Face repository
    what: str  # one line saying what it is
    setting: str  # the explorer setting it becomes the default of (ui.settings.MODEL_FOLDER_FIELDS)
    check: Callable[[Path], Path]  # the folder check after download; raises ModelFolderError


#: What ``fetch-models`` downloads. Depth: the small indoor metric checkpoint (Hypersim, depth up to
#: 20 m; about 0.1 GB, Apache-2.0 per its model card) in transformers layout, which the
#: depth-estimation loader of :mod:`model.generation.depth` takes as it is.
RECOMMENDED = (
    RecommendedModel(
        "wan",
        "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        "Wan2.2-TI2V-5B video model, diffusers layout",
        "model_dir",
        _check_wan,
    ),
    RecommendedModel(
        "depth",
        "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf",
        "Depth Anything V2 metric depth (indoor, small), transformers layout",
        "depth_model_dir",
        _check_depth,
    ),
)
#: ``--only`` choices.
MODEL_KEYS = tuple(m.key for m in RECOMMENDED)


class Cancelled(Exception):
    """The user declined the download; nothing was written."""


def ask_on_terminal(question: str) -> bool:
    """``question`` answered on the terminal: True for y/yes.

    Raises:
        ValueError: standard input is not a terminal (pass ``--yes``).
    """
    if not sys.stdin.isatty():
        raise ValueError("fetch-models: standard input is not a terminal to confirm on: pass --yes to download")
    return input(question).strip().lower() in ("y", "yes")


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def fetch_models(
    keys: Sequence[str],
    local_root: str | Path | None,
    *,
    yes: bool,
    confirm: Callable[[str], bool],
    record: Callable[[dict[str, str]], str],
    out: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Download, check and record the recommended models named by ``keys``.

    Args:
        keys: :data:`MODEL_KEYS` to fetch, in any order (fetched in :data:`RECOMMENDED` order).
        local_root: a folder to download into (each model into ``local_root/<repository name>``);
            None: the standard Hugging Face cache.
        yes: download without asking. confirm: asks the question, True to go on.
        record: makes ``{setting: folder}`` the explorer's defaults; returns where they are stored.
        out: where progress lines go.

    Returns:
        ``{key: folder}`` of what was downloaded and checked.

    Raises:
        Cancelled: ``confirm`` said no (nothing downloaded).
        ValueError: an unknown key; :class:`model.io.hub.DownloadError` (a ``ValueError``) for a
            download that stopped; :class:`model.io.folders.ModelFolderError` for a downloaded folder
            that fails its check (nothing is recorded then).
    """
    unknown = sorted(set(keys) - set(MODEL_KEYS))
    if unknown or not keys:
        raise ValueError(f"fetch-models: models must be among {', '.join(MODEL_KEYS)}; got {', '.join(keys)}")
    chosen = [m for m in RECOMMENDED if m.key in keys]
    facts: list[RepoFacts] = [repo_facts(m.repo_id) for m in chosen]
    for model, fact in zip(chosen, facts, strict=True):
        out(f"{model.what}: {model.repo_id}")
        out(f"  licence: {fact.licence} (https://huggingface.co/{model.repo_id}); size {_size(fact.size_bytes)}")
    total = sum(f.size_bytes for f in facts)
    where = Path(local_root).expanduser() if local_root is not None else hub_cache()
    if not yes and not confirm(f"Download {_size(total)} into {where}, accepting the licences above? [y/N] "):
        raise Cancelled
    folders: dict[str, Path] = {}
    for model in chosen:
        target = None if local_root is None else where / model.repo_id.split("/")[1]
        out(f"downloading {model.repo_id} (resumable: run the command again after an interruption)")
        folders[model.key] = download(model.repo_id, target)
        out(f"wrote {folders[model.key]}")
    for model in chosen:
        folders[model.key] = model.check(folders[model.key])
    store = record({m.setting: str(folders[m.key]) for m in chosen})
    for model in chosen:
        out(f"default {model.setting} = {folders[model.key]} (recorded in {store})")
    return folders
