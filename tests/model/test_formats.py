"""The shared file formats: versioned safetensors files and JSON objects, with errors naming the file."""

import pytest
import torch
from safetensors.torch import save_file

from model.io.formats import check_tensors, read_json_object, read_safetensors, read_versioned, write_versioned


def test_versioned_round_trip_and_refusals(tmp_path):
    path = tmp_path / "x.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)}
    write_versioned(path, tensors, "thing", 3, {"config": {"k": [1, 2]}, "count": 7})
    read, entries = read_versioned(path, "thing", 3, ("config", "count"))
    assert all(torch.equal(read[k], v) for k, v in tensors.items())
    assert entries == {"config": {"k": [1, 2]}, "count": 7}
    with pytest.raises(ValueError, match=r"x\.safetensors: not a other file \(format 'thing'\)"):
        read_versioned(path, "other", 3, ())
    with pytest.raises(ValueError, match=r"x\.safetensors: unsupported thing format version '3' \(this build reads 4"):
        read_versioned(path, "thing", 4, ())
    with pytest.raises(ValueError, match=r"x\.safetensors: invalid thing metadata: 'absent'"):
        read_versioned(path, "thing", 3, ("absent",))
    with pytest.raises(ValueError, match="missing.safetensors: file not found"):
        read_versioned(tmp_path / "missing.safetensors", "thing", 3, ())


def test_every_version_entry_must_match(tmp_path):
    """``format_version`` (the memory branch's key before the formats were merged) counts as a version too."""
    path = tmp_path / "x.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={"format": "thing", "format_version": "1"})
    assert read_versioned(path, "thing", 1, ())[1] == {}
    save_file({"a": torch.zeros(1)}, str(path), metadata={"format": "thing", "version": "1", "format_version": "2"})
    with pytest.raises(ValueError, match="format version '2'"):
        read_versioned(path, "thing", 1, ())
    save_file({"a": torch.zeros(1)}, str(path), metadata={"format": "thing"})
    with pytest.raises(ValueError, match="format version None"):
        read_versioned(path, "thing", 1, ())


def test_unreadable_safetensors_file_is_named(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match="garbage.safetensors: not a readable safetensors file"):
        read_safetensors(path)


def test_check_tensors_names_the_first_difference():
    layout = {"p": (torch.float32, ("N", 3)), "q": (None, ("N",))}
    check_tensors("f", {"p": torch.zeros(4, 3), "q": torch.zeros(4, dtype=torch.int8)}, layout)
    with pytest.raises(ValueError, match=r"f: missing tensors \['q'\], unexpected tensors \['r'\]"):
        check_tensors("f", {"p": torch.zeros(4, 3), "r": torch.zeros(4)}, layout)
    with pytest.raises(ValueError, match=r"f: tensor 'q' is torch.float32 \[5\], expected torch.float32 \[4\]"):
        check_tensors("f", {"p": torch.zeros(4, 3), "q": torch.zeros(5)}, layout)
    with pytest.raises(ValueError, match="f: tensor 'p' contains NaN or Inf"):
        check_tensors("f", {"p": torch.full((1, 3), torch.inf), "q": torch.zeros(1)}, layout, finite=("p",))


def test_read_json_object_names_the_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"x": 1}')
    assert read_json_object(path, "test JSON") == {"x": 1}
    path.write_text("{oops")
    with pytest.raises(ValueError, match=r"a\.json: cannot read test JSON: Expecting"):
        read_json_object(path, "test JSON")
    path.write_text('"text"')
    with pytest.raises(ValueError) as caught:
        read_json_object(path, "test JSON")
    assert str(caught.value) == f"{path}: expected a JSON object, got a string ('text')"
    with pytest.raises(ValueError, match=r"absent\.json: cannot read test JSON: \[Errno 2\]"):
        read_json_object(tmp_path / "absent.json", "test JSON")
