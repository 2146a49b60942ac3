"""One model-folder check: every problem of a folder listed in one ModelFolderError."""

import json

import pytest

from model.io.folders import FolderCheck, ModelFolderError, check_model_folder


def test_a_missing_folder_is_refused_at_once(tmp_path):
    with pytest.raises(ModelFolderError) as caught:
        FolderCheck(tmp_path / "nowhere", "test model")
    assert caught.value.folder == tmp_path / "nowhere" and caught.value.what == "test model"
    assert str(caught.value) == f"{tmp_path / 'nowhere'}: test model folder not found"
    assert caught.value.problems == [f"{tmp_path / 'nowhere'} not found or not a folder"]


def test_every_problem_is_listed(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoConfig": "mine.Config"}}))
    (tmp_path / "preprocessor_config.json").write_text("[1]")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-1.safetensors"}}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelFolderError) as caught:
        check_model_folder(tmp_path, "depth model")
    assert caught.value.problems == [
        f"{tmp_path / 'config.json'}: ships custom code (auto_map: mine.Config); code from a model folder is never run "
        "(trust_remote_code=False): use a folder saved with the library's own classes",
        f"{tmp_path / 'preprocessor_config.json'}: expected a JSON object, got a list",
        f"{tmp_path / 'model-1.safetensors'} missing (listed in model.safetensors.index.json)",
        f"no weight files in {tmp_path} (only pickle files pytorch_model.bin, never loaded: "
        "convert them to safetensors)",
    ]
    assert str(caught.value).splitlines()[0] == f"{tmp_path} is not a usable depth model folder:"


def test_components_and_a_bad_index(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    (tmp_path / "vae" / "x.safetensors.index.json").write_text(json.dumps({"weight_map": []}))
    (tmp_path / "vae" / "x.safetensors").write_bytes(b"")
    check = FolderCheck(tmp_path, "test model")
    assert check.component("vae") == {} and check.component("unet") is None
    assert check.problems == [
        f"{tmp_path / 'vae' / 'x.safetensors.index.json'}: weight_map is not an object",
        f"{tmp_path / 'unet'} missing (config.json and *.safetensors weights)",
    ]
    with pytest.raises(ModelFolderError):
        check.done()
    assert FolderCheck(tmp_path / "vae", "test model").done() == tmp_path / "vae"
