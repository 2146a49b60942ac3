"""The offload profile chosen against free GPU memory (the CUDA query replaced: runs on any CPU machine)."""

from __future__ import annotations

import pytest
import torch

from model.generation.backbone import BackboneConfig, load_backbone
from model.generation.gpu_fit import GIB, GpuMemoryError, choose_offload, fit_offload
from model.generation.profiles import WAN

NEEDS = (("none", 30.0), ("model", 16.0), ("group", 10.0))


@pytest.mark.parametrize("free, chosen", [(79.0, "none"), (30.0, "none"), (22.0, "model"), (12.0, "group")])
def test_auto_takes_the_least_offloaded_profile_that_fits(free, chosen):
    assert choose_offload("auto", NEEDS, free) == chosen


def test_nothing_fits_is_refused_with_every_need():
    with pytest.raises(GpuMemoryError, match=r"cuda:0 has 6.0 GiB free, less than any .*'group' 10.0"):
        choose_offload("auto", NEEDS, 6.0, "cuda:0")


def test_a_named_profile_that_does_not_fit_is_refused_with_the_numbers_and_what_would_fit():
    with pytest.raises(GpuMemoryError) as error:
        choose_offload("none", NEEDS, 22.5, "cuda:0")
    message = str(error.value)
    assert "22.5 GiB free" in message and "'none' needs about 30.0 GiB" in message and "--offload model" in message
    assert choose_offload("group", NEEDS, 79.0) == "group", "a named profile that fits is kept"


def test_a_backend_without_needs_is_not_checked():
    assert choose_offload("auto", (), 0.5) == "none" and choose_offload("group", (), 0.5) == "group"


def test_fit_offload_asks_cuda_only_on_cuda():
    config = BackboneConfig(backend="wan", model_dir="/models/wan", offload="auto")
    asked = []

    def free_20_of_24(device):
        asked.append(device)
        return 20 * GIB, 24 * GIB

    assert fit_offload(config, torch.device("cuda:0"), free_20_of_24).offload == "model"
    assert asked == [torch.device("cuda:0")]
    assert fit_offload(config, torch.device("cpu"), free_20_of_24).offload == "none" and len(asked) == 1
    assert WAN.device_gib, "the wan profile states what each offload profile needs"


def test_load_backbone_refuses_before_reading_the_model_folder(monkeypatch):
    """The free-memory check comes first: the folder (which does not exist) is never looked at."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * GIB, 24 * GIB))
    config = BackboneConfig(backend="wan", model_dir="/nonexistent/wan", offload="auto", device="cuda")
    with pytest.raises(GpuMemoryError, match="8.0 GiB free"):
        load_backbone(config)
