"""Tests of the backend profiles: one per backend, the source of every parser's choices and defaults."""

import subprocess
import sys
from pathlib import Path

import pytest

import main
from model.generation.profiles import (
    APP_BACKEND,
    BACKENDS,
    DEFAULT_BACKEND,
    PROFILES,
    default_backend,
    model_folders,
    per_backend,
    profile,
)

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--stage", "branch", "--data", "procedural", "--out", "o"]


def test_every_backend_has_one_profile_and_other_names_are_refused():
    assert BACKENDS == tuple(PROFILES) == ("wan", "tiny", "mini")
    assert all(profile(name).name == name for name in BACKENDS)
    with pytest.raises(ValueError, match="backend must be one of 'wan', 'tiny', 'mini'; got 'huge'"):
        profile("huge")


def test_sizes_fill_in_only_what_is_not_given():
    tiny, wan = profile("tiny"), profile("wan")
    assert tiny.generation_size() == (176, 320) and tiny.generation_size(64, None) == (64, 320)
    assert tiny.training_size() == (64, 128) and wan.training_size(width=640) == (704, 640)


def test_the_default_backend_follows_a_known_model_folder():
    # the app runs the shipped mini model unless a Wan folder is known; configs default to the tiny stand-in
    assert default_backend(False) == APP_BACKEND == "mini" and DEFAULT_BACKEND == "tiny"
    assert default_backend(True) == "wan" and profile("wan").needs_model_dir
    assert not profile(APP_BACKEND).needs_model_dir and profile(APP_BACKEND).mode == "branch"
    assert profile("mini").photo_notice and "synthetic" in profile("mini").photo_notice


def test_every_parser_takes_its_backends_and_defaults_from_the_profiles(capsys):
    parser = main.build_parser()
    assert parser.parse_args(["generate", "--out", "x.mp4"]).backend is None  # default_backend(--model given)
    assert parser.parse_args(TRAIN).backend == DEFAULT_BACKEND
    assert parser.parse_args([]).gui_backend is None  # the GUI picks by the model folder
    for name in BACKENDS:
        assert parser.parse_args(["generate", "--out", "x.mp4", "--backend", name]).backend == name
        assert parser.parse_args([*TRAIN, "--backend", name]).backend == name
        assert parser.parse_args(["--backend", name]).gui_backend == name
    for argv in (["generate", "--out", "x.mp4"], TRAIN, []):
        with pytest.raises(SystemExit):
            parser.parse_args([*argv, "--backend", "huge"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--help"])
    assert f"(default {per_backend(lambda p: p.generate_size[0])})" in " ".join(capsys.readouterr().out.split())
    assert per_backend(lambda p: p.steps) == "20 wan / 4 tiny / 2 mini"
    assert model_folders() == "wan: a local Wan2.2-TI2V-5B diffusers folder"


def test_the_profiles_and_the_parser_modules_import_no_torch():
    code = "import sys, main, model.generation.profiles, model.training.cli, ui.launch; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", "importing the parsers would load torch"
