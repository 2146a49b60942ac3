"""``main.py fetch-models`` against a local fake Hub (no network): download, check, record; and the
``--model`` / ``--depth-model`` repo ids resolved from the local cache."""

from __future__ import annotations

import os
import shutil

import huggingface_hub.constants
import pytest

import main
from explorer.fetch_models import RECOMMENDED, Cancelled, fetch_models
from explorer.generate import GenerateArgs, resolve_model_refs
from model.io.hub import resolve_model_ref
from tests.fake_hub import fake_depth_folder, fake_wan_folder, install
from ui.settings import ExplorerSettings, user_qsettings

WAN, DEPTH = (m.repo_id for m in RECOMMENDED)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The fake Hub serving a tiny valid Wan2.2 folder and a tiny metric depth folder."""
    fake = install(monkeypatch, tmp_path / "hf-cache")
    fake.serve(WAN, fake_wan_folder(tmp_path / "served" / "wan"))
    fake.serve(DEPTH, fake_depth_folder(tmp_path / "served" / "depth"), licence="apache-2.0")
    return fake


@pytest.fixture
def user_settings():
    """The (test session's sandboxed) user settings, emptied before and after the test."""
    store = user_qsettings()
    store.clear()
    store.sync()
    yield store
    store.clear()
    store.sync()


def test_fetch_models_downloads_checks_and_records_the_defaults(hub, user_settings, capsys):
    assert main.main(["fetch-models", "--yes"]) == 0
    out = capsys.readouterr().out
    assert hub.downloads == [WAN, DEPTH], "the Hub is reached although the process is in offline mode"
    assert huggingface_hub.constants.HF_HUB_OFFLINE, "and offline mode is back after the download"
    assert "licence: apache-2.0" in out and "MiB" in out, "licence and size are stated"
    settings = ExplorerSettings.load(user_settings)
    for repo_id, folder in ((WAN, settings.model_dir), (DEPTH, settings.depth_model_dir)):
        assert f"wrote {folder}\n" in out, "the exact folder is printed"
        assert f"models--{repo_id.replace('/', '--')}" in folder
        # run time stays offline: the cached repo id resolves with the library's local-only look-up
        assert resolve_model_ref(repo_id, "--model") == folder
    assert user_settings.fileName() in out
    args = resolve_model_refs(GenerateArgs(out="x.mp4", model=WAN, depth_model=DEPTH, sky_model=None))
    assert (args.model, args.depth_model) == (settings.model_dir, settings.depth_model_dir)


def test_fetch_models_into_a_folder_of_its_own(hub, user_settings, tmp_path, capsys):
    assert main.main(["fetch-models", "--only", "depth", "--dir", str(tmp_path / "models"), "-y"]) == 0
    folder = tmp_path / "models" / DEPTH.split("/")[1]
    assert (folder / "config.json").is_file() and hub.downloads == [DEPTH]
    assert ExplorerSettings.load(user_settings).depth_model_dir == str(folder)
    assert ExplorerSettings.load(user_settings).model_dir == "", "only what was fetched is recorded"


def test_an_interrupted_download_is_exit_2_and_the_next_run_resumes(hub, user_settings, capsys):
    hub.fail_after[WAN] = 3
    assert main.main(["fetch-models", "--yes"]) == 2
    err = capsys.readouterr().err
    assert f"error: {WAN}: download interrupted" in err and "again to resume" in err
    assert ExplorerSettings.load(user_settings).model_dir == "", "nothing is recorded"
    assert main.main(["fetch-models", "--yes"]) == 0
    assert ExplorerSettings.load(user_settings).model_dir.endswith("snapshots/" + "0123456789abcdef" * 2 + "01234567")


def test_a_downloaded_folder_that_fails_its_check_is_exit_2(hub, user_settings, tmp_path, capsys):
    shutil.rmtree(hub.repos[WAN][0] / "vae")
    assert main.main(["fetch-models", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "is not a usable Wan2.2-TI2V-5B diffusers folder" in err and "vae missing" in err
    assert ExplorerSettings.load(user_settings) == ExplorerSettings(), "nothing is recorded"


def test_a_relative_depth_model_fails_the_depth_check(hub, user_settings, tmp_path, capsys):
    fake_depth_folder(hub.repos[DEPTH][0], depth_type="relative")
    assert main.main(["fetch-models", "--only", "depth", "--yes"]) == 2
    assert "predicts relative depth" in capsys.readouterr().err


def test_without_yes_it_asks_and_a_no_downloads_nothing(hub, user_settings):
    questions = []

    def say_no(question: str) -> bool:
        questions.append(question)
        return False

    with pytest.raises(Cancelled):
        fetch_models(["wan", "depth"], None, yes=False, confirm=say_no, record=lambda f: "nowhere", out=lambda s: None)
    assert hub.downloads == [] and "accepting the licences" in questions[0]


def test_without_a_terminal_to_ask_on_yes_is_required(hub, user_settings, capsys):
    assert main.main(["fetch-models"]) == 2  # pytest's stdin is not a terminal
    assert "pass --yes" in capsys.readouterr().err and hub.downloads == []


def test_a_repo_id_not_in_the_cache_names_fetch_models(hub, tmp_path, capsys):
    code = main.main(["generate", "--out", str(tmp_path / "run.mp4"), "--backend", "wan", "--model", WAN])
    err = capsys.readouterr().err
    assert code == 2 and f"--model {WAN}: not a folder, and not in the local Hugging Face cache" in err
    assert "python main.py fetch-models" in err and not (tmp_path / "run.mp4").exists()
    assert resolve_model_ref(str(tmp_path), "--model") == str(tmp_path), "a folder stays as it is"


def test_tests_never_touch_the_users_settings_or_model_cache():
    """tests/conftest.py moves the settings store and the Hugging Face cache into a temporary folder."""
    import tempfile
    from pathlib import Path

    sandbox = Path(os.environ["XDG_CONFIG_HOME"]).parent
    assert sandbox.is_relative_to(Path(tempfile.gettempdir())) and sandbox.name.startswith("mirage-tests-user-")
    assert Path(user_qsettings().fileName()).is_relative_to(sandbox)
    assert Path(huggingface_hub.constants.HF_HUB_CACHE).is_relative_to(sandbox)
