"""The Hugging Face Hub boundary: what a repository is (licence, size), downloading it, and finding
it in the local cache without the network.

Every call into ``huggingface_hub`` the project makes goes through this module, so tests replace
:func:`snapshot_download` and :data:`HfApi` here with a local fake that serves a tiny folder.

* :func:`repo_facts` asks the Hub for a repository's licence and the total size of its files.
* :func:`download` fetches a repository (``snapshot_download``: a progress bar per file, resumable:
  files already complete are skipped, partial ones continue) into the standard cache
  (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``) or into a folder of its own.
* :func:`cached_snapshot` / :func:`resolve_model_ref` find a repository already in the cache, with
  ``local_files_only=True``: no network, so run-time loading stays offline (``HF_HUB_OFFLINE=1``
  does not stop it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HFValidationError, HTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

#: ``owner/name`` as the Hub spells repository ids (letters, digits, ``-``, ``_``, ``.``).
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: The command that fills the cache, named in every "not downloaded" message.
FETCH_COMMAND = "python main.py fetch-models"


class DownloadError(ValueError):
    """A download that did not finish (network, disk, refused access); the message names the repository
    and says that running the command again resumes it."""


@dataclass(frozen=True)
class RepoFacts:
    """What the Hub says about one repository before anything is downloaded."""

    repo_id: str  # "owner/name"
    licence: str  # the model card's licence ("apache-2.0"), or "unknown" when it states none
    size_bytes: int  # total size of the repository's files at its main revision, in bytes


@contextmanager
def _online() -> Iterator[None]:
    """The Hub reachable inside the block, offline mode as it was after it.

    The loaders switch the whole process to offline mode (``model.generation.backbone.force_offline``,
    which runs when the backbone module is imported, e.g. by ``main.py``'s parsers); downloading is
    what :func:`repo_facts` and :func:`download` are asked to do, so they lift it for their call only.
    """
    before = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = before


def looks_like_repo_id(text: str) -> bool:
    """True for ``"owner/name"`` (one slash, Hub characters, not a path such as ``./a/b`` or ``/models/x``)."""
    return bool(_REPO_ID.match(text)) and ".." not in text


def hub_cache() -> Path:
    """The cache folder ``huggingface_hub`` uses now (``HF_HUB_CACHE`` / ``HF_HOME``, read when it was imported)."""
    return Path(huggingface_hub.constants.HF_HUB_CACHE)


def repo_facts(repo_id: str) -> RepoFacts:
    """Licence and total file size of the Hub repository ``repo_id`` (one metadata request).

    Raises:
        DownloadError: the Hub cannot be reached or does not know the repository.
    """
    try:
        with _online():
            info = HfApi().model_info(repo_id, files_metadata=True)
    except (OSError, ValueError, HTTPError) as exc:  # HfHubHTTPError and OfflineModeIsEnabled are OSErrors
        raise DownloadError(f"{repo_id}: cannot read the repository's details from the Hub: {exc}") from exc
    licence = None
    card = getattr(info, "card_data", None)
    if card is not None:
        licence = card.get("license") if hasattr(card, "get") else getattr(card, "license", None)
    if not licence:
        tags = [t.removeprefix("license:") for t in (info.tags or []) if t.startswith("license:")]
        licence = tags[0] if tags else "unknown"
    size = sum(int(s.size or 0) for s in (info.siblings or []))
    return RepoFacts(repo_id, str(licence), size)


def download(repo_id: str, local_dir: str | os.PathLike | None = None) -> Path:
    """Download every file of ``repo_id`` and return the folder that holds them.

    Args:
        local_dir: a folder of its own for the repository; None: the standard cache (the returned
            folder is then its snapshot folder, ``.../models--owner--name/snapshots/<commit>``).

    Raises:
        DownloadError: the download stopped (network, disk full, access refused); files already
            complete stay, so the same call resumes.
    """
    try:
        with _online():
            folder = snapshot_download(repo_id, local_dir=None if local_dir is None else str(local_dir))
    except (OSError, ValueError, HTTPError) as exc:  # HTTPError: the transport's (a dropped connection)
        raise DownloadError(
            f"{repo_id}: download interrupted: {exc}; run {FETCH_COMMAND} again to resume "
            "(files already complete are kept)"
        ) from exc
    return Path(folder)


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of ``repo_id`` in the local cache, looked up without the network; None when it is
    not there (or only partly: ``huggingface_hub`` records a snapshot only once it is complete)."""
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OfflineModeIsEnabled, FileNotFoundError):
        return None


def resolve_model_ref(value: str, flag: str) -> str:
    """A model folder given either as a path or as a Hub repo id already in the local cache.

    Args:
        value: what the user gave: an existing path is returned as it is; an ``owner/name`` that
            is not a path is looked up in the cache (no network).
        flag: what ``value`` came from, for the message (``"--model"``).

    Returns:
        ``value`` itself, or the cached snapshot folder of the repository.

    Raises:
        ValueError: ``"--model Wan-AI/X: not a folder, and not in the local Hugging Face cache (<cache>);
            download it with python main.py fetch-models"``.
    """
    if Path(value).expanduser().exists() or not looks_like_repo_id(value):
        return value
    folder = cached_snapshot(value)
    if folder is None:
        raise ValueError(
            f"{flag} {value}: not a folder, and not in the local Hugging Face cache ({hub_cache()}); "
            f"download it with {FETCH_COMMAND}"
        )
    return str(folder)
