"""Model folders that ship Python code (``auto_map``): refused with a clear error, no prompt, nothing run.

Each folder holds ``custom_code.py``, whose import writes a marker file; its configs point
``transformers`` at classes in it. Two layers are checked separately: the folder checks refuse such a
folder before any loader runs, and every loader passes ``trust_remote_code=False``, so with the check
bypassed the loader refuses too, instead of asking "Do you wish to run the custom code? [y/N]".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import model.generation.backbone as backbone_module
import model.generation.depth as depth_module
from model.generation.backbone import BackboneConfig, load_backbone, validate_wan_folder
from model.generation.depth import TransformersDepthEstimator
from model.generation.tiny import tiny_tokenizer
from model.io.folders import ModelFolderError
from model.memory.masks import SemanticSkySegmenter

REPO = Path(__file__).resolve().parents[2]
PROMPT = "Do you wish to run the custom code"


def write_custom_code(folder: Path, marker: Path) -> None:
    """``folder/custom_code.py``: importing it creates ``marker``; it defines the classes the configs name."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "custom_code.py").write_text(
        textwrap.dedent(
            f"""\
            import pathlib
            pathlib.Path({str(marker)!r}).write_text("the folder's code ran")
            from transformers import PretrainedConfig, PreTrainedTokenizerFast

            class CustomTokenizer(PreTrainedTokenizerFast):
                pass

            class CustomConfig(PretrainedConfig):
                model_type = "mirage-custom"
            """
        )
    )


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def fake_wan_folder(root: Path) -> Path:
    """A folder that passes :func:`validate_wan_folder` (real tokenizer; configs and empty weight files)."""
    write_json(root / "model_index.json", {"_class_name": "WanPipeline"})
    write_json(root / "scheduler" / "scheduler_config.json", {"_class_name": "UniPCMultistepScheduler"})
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    configs = {
        "text_encoder": {"model_type": "umt5"},
        "transformer": {"_class_name": "WanTransformer3DModel", "in_channels": 48},
        "vae": {"_class_name": "AutoencoderKLWan", "z_dim": 48},
    }
    for name, config in configs.items():
        write_json(root / name / "config.json", config)
        (root / name / "model.safetensors").write_bytes(b"")  # never read: refused before any weight
    return root


def add_auto_map(config_path: Path, auto_map: dict, **fields) -> None:
    """Point ``config_path``'s ``auto_map`` at ``custom_code.py`` (which must sit in the same folder)."""
    config = json.loads(config_path.read_text())
    config.update(fields, auto_map=auto_map)
    config_path.write_text(json.dumps(config))


def custom_tokenizer_folder(tmp_path: Path, marker: Path) -> Path:
    """A Wan folder whose tokenizer can only be built by the folder's own ``CustomTokenizer``."""
    root = fake_wan_folder(tmp_path / "wan")
    write_custom_code(root / "tokenizer", marker)
    add_auto_map(
        root / "tokenizer" / "tokenizer_config.json",
        {"AutoTokenizer": [None, "custom_code.CustomTokenizer"]},
        tokenizer_class="CustomTokenizer",  # no class of transformers' own to fall back on
    )
    return root


@pytest.fixture
def prompts(monkeypatch) -> list[str]:
    """Every terminal prompt shown (``input()``), answered as a closed stdin would (EOFError)."""
    shown: list[str] = []

    def closed_stdin(prompt: str = "") -> str:
        shown.append(prompt)
        raise EOFError

    monkeypatch.setattr("builtins.input", closed_stdin)
    return shown


def test_the_fake_wan_folder_is_valid_without_custom_code(tmp_path):
    """Precondition of the tests below: the only problem they meet is the custom code."""
    assert validate_wan_folder(fake_wan_folder(tmp_path / "wan")) == tmp_path / "wan"


@pytest.mark.parametrize(
    ("config_file", "auto_map"),
    [
        ("tokenizer/tokenizer_config.json", {"AutoTokenizer": [None, "custom_code.CustomTokenizer"]}),
        ("text_encoder/config.json", {"AutoConfig": "custom_code.CustomConfig"}),
    ],
)
def test_wan_folder_with_custom_code_is_refused_before_loading(tmp_path, prompts, config_file, auto_map):
    marker = tmp_path / "marker"
    root = fake_wan_folder(tmp_path / "wan")
    config_path = root / config_file
    write_custom_code(config_path.parent, marker)
    add_auto_map(config_path, auto_map)
    messages: list[str] = []
    with pytest.raises(ModelFolderError) as caught:
        load_backbone(BackboneConfig(backend="wan", model_dir=str(root), device="cpu"), on_status=messages.append)
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(f"{config_path}: ships custom code")
    assert "custom_code.Custom" in caught.value.problems[0] and str(caught.value).startswith(str(root))
    assert messages == ["Checking model folder…"], "refused before any loader ran"
    assert prompts == [] and not marker.exists()


def test_the_tokenizer_loader_itself_refuses_custom_code_without_asking(tmp_path, prompts, monkeypatch):
    """With the folder check bypassed, ``trust_remote_code=False`` still refuses (left out, it would ask)."""
    marker = tmp_path / "marker"
    root = custom_tokenizer_folder(tmp_path, marker)
    monkeypatch.setattr(backbone_module, "validate_wan_folder", Path)
    with pytest.raises(ValueError, match="contains custom code") as caught:
        load_backbone(BackboneConfig(backend="wan", model_dir=str(root), device="cpu"))
    assert str(root / "tokenizer") in str(caught.value)
    assert prompts == [] and not marker.exists()


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with stdin closed and its own transformers module cache."""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_loading_with_stdin_closed_asks_nothing_and_runs_nothing(tmp_path):
    """As the CLI loads a model folder: a refusal naming the file, no prompt; and the marker is live (a
    loader told to trust the folder does run its code), so its absence above means nothing ran."""
    marker = tmp_path / "marker"
    root = custom_tokenizer_folder(tmp_path, marker)
    load = (
        "from model.generation.backbone import BackboneConfig, load_backbone\n"
        f"load_backbone(BackboneConfig(backend='wan', model_dir={str(root)!r}, device='cpu'))"
    )
    refused = run_python(load, tmp_path)
    assert refused.returncode == 1 and "ModelFolderError" in refused.stderr
    assert (
        f"{root / 'tokenizer' / 'tokenizer_config.json'}: ships custom code (auto_map: custom_code.CustomTokenizer)"
        in refused.stderr
    )
    assert PROMPT not in refused.stdout + refused.stderr
    assert not marker.exists() and not list(tmp_path.glob("modules/**/custom_code.py")), "nothing imported or copied"
    trusted = run_python(
        f"from transformers import AutoTokenizer\nAutoTokenizer.from_pretrained({str(root / 'tokenizer')!r}, "
        "trust_remote_code=True)",
        tmp_path,
    )
    assert trusted.returncode == 0, trusted.stderr
    assert marker.read_text() == "the folder's code ran"


def custom_transformers_folder(folder: Path, marker: Path) -> Path:
    """A depth / segmentation model folder whose config and image processor are the folder's own classes."""
    write_custom_code(folder, marker)
    write_json(
        folder / "config.json", {"model_type": "mirage-custom", "auto_map": {"AutoConfig": "custom_code.CustomConfig"}}
    )
    write_json(
        folder / "preprocessor_config.json",
        {"image_processor_type": "CustomProcessor", "auto_map": {"AutoImageProcessor": "custom_code.CustomProcessor"}},
    )
    (folder / "model.safetensors").write_bytes(b"")
    return folder


LOADERS = [(TransformersDepthEstimator, "depth model"), (SemanticSkySegmenter, "sky segmentation model")]


@pytest.mark.parametrize(("loader", "what"), LOADERS)
def test_depth_and_sky_folders_with_custom_code_are_refused(tmp_path, prompts, loader, what):
    marker = tmp_path / "marker"
    folder = custom_transformers_folder(tmp_path / "m", marker)
    with pytest.raises(ModelFolderError) as caught:
        loader(folder)
    assert str(caught.value).startswith(f"{folder} is not a usable {what} folder:")
    refusal = f"{folder / 'config.json'}: ships custom code (auto_map: custom_code.CustomConfig)"
    assert caught.value.problems[0].startswith(refusal)
    assert prompts == [] and not marker.exists()


@pytest.mark.parametrize(("loader", "what"), LOADERS)
def test_depth_and_sky_loaders_themselves_refuse_custom_code_without_asking(
    tmp_path, prompts, monkeypatch, loader, what
):
    """With the folder check bypassed, their ``from_pretrained`` calls refuse too: nothing asked, nothing run."""
    marker = tmp_path / "marker"
    folder = custom_transformers_folder(tmp_path / "m", marker)
    monkeypatch.setattr(depth_module, "check_model_folder", lambda model_dir, what: Path(model_dir))
    monkeypatch.setattr("model.memory.masks.check_model_folder", lambda model_dir, what: Path(model_dir))
    with pytest.raises(ModelFolderError, match="contains custom code") as caught:
        loader(folder)
    assert caught.value.folder == folder and caught.value.problems[0].startswith("cannot load the ")
    assert prompts == [] and not marker.exists()
