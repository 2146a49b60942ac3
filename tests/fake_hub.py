"""A local stand-in for the Hugging Face Hub, installed at the project's Hub boundary (:mod:`model.io.hub`).

:class:`FakeHub` serves repositories from local folders. Downloads write the standard cache layout
(``models--owner--name/snapshots/<commit>/`` and ``refs/main``, written last, as ``huggingface_hub``
records a snapshot only once complete) or into ``local_dir``; look-ups with ``local_files_only=True``
go to the real ``huggingface_hub.snapshot_download``, so the offline look-up the project relies on is
the library's own. No network is touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
from huggingface_hub.errors import HTTPError, OfflineModeIsEnabled

from tests.model.test_remote_code import fake_wan_folder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_depth_folder(root: Path, depth_type: str = "metric") -> Path:
    """A folder the depth-model check accepts: Depth Anything configs and a (never read) weight file."""
    root.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "depth_anything", "depth_estimation_type": depth_type, "max_depth": 20}
    (root / "config.json").write_text(json.dumps(config))
    (root / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "DPTImageProcessor"}))
    (root / "model.safetensors").write_bytes(b"")
    return root


class FakeHub:
    """Serves ``repo_id -> folder``; replaces ``snapshot_download`` and ``HfApi`` in :mod:`model.io.hub`.

    Attributes:
        cache: the Hugging Face cache folder in use. downloads: repo ids whose download was asked for.
        fail_after: ``{repo_id: n}``: the next download of ``repo_id`` copies ``n`` files, then the
            connection drops (``huggingface_hub.errors.HTTPError``); the entry is then removed.
    """

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.repos: dict[str, tuple[Path, str]] = {}
        self.downloads: list[str] = []
        self.fail_after: dict[str, int] = {}

    def serve(self, repo_id: str, folder: Path, licence: str = "apache-2.0") -> None:
        self.repos[repo_id] = (folder, licence)

    # ---- the huggingface_hub API the project calls -------------------------------------------

    @staticmethod
    def _reach() -> None:
        """As the real client: no request while ``huggingface_hub`` is in offline mode."""
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            raise OfflineModeIsEnabled("Cannot reach the Hub: offline mode is enabled")

    def model_info(self, repo_id: str, files_metadata: bool = False):
        self._reach()
        folder, licence = self.repos[repo_id]
        sizes = [SimpleNamespace(size=p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]
        return SimpleNamespace(card_data={"license": licence}, tags=[f"license:{licence}"], siblings=sizes)

    def snapshot_download(self, repo_id: str, *, local_dir=None, local_files_only: bool = False, **kwargs) -> str:
        if local_files_only:
            return huggingface_hub.snapshot_download(repo_id, local_files_only=True, cache_dir=self.cache)
        self._reach()
        self.downloads.append(repo_id)
        source, _ = self.repos[repo_id]
        repo_root = self.cache / f"models--{repo_id.replace('/', '--')}"
        target = Path(local_dir) if local_dir is not None else repo_root / "snapshots" / COMMIT
        budget = self.fail_after.pop(repo_id, None)
        for index, path in enumerate(p for p in sorted(source.rglob("*")) if p.is_file()):
            if budget is not None and index >= budget:
                raise HTTPError("connection reset by peer")
            destination = target / path.relative_to(source)
            if not destination.exists():  # resumable: what is complete stays
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
        if local_dir is None:
            (repo_root / "refs").mkdir(parents=True, exist_ok=True)
            (repo_root / "refs" / "main").write_text(COMMIT)
        return str(target)


def install(monkeypatch, cache: Path) -> FakeHub:
    """A :class:`FakeHub` on ``cache``, installed in :mod:`model.io.hub` (and as the library's cache)."""
    import model.io.hub as hub

    fake = FakeHub(cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    # as in main.py, where the parsers import the backbone module, which switches the process offline
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(hub, "HfApi", lambda: fake)
    return fake


__all__ = ["COMMIT", "FakeHub", "fake_depth_folder", "fake_wan_folder", "install"]
