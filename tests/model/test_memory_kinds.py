"""The memory kinds behind one protocol: chosen by name in model.baselines.kinds, injected into the pipeline."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.baselines.kinds import MEMORY_KINDS, load_memory, make_memory, point_stride
from model.generation.backbone import BackboneConfig, load_backbone
from model.generation.patch_vae import PatchVAE
from model.generation.pipeline import MiragePipeline, PipelineConfig
from model.geometry.camera import intrinsics_from_fov
from model.memory.base import SpatialMemory
from model.memory.latent import LatentSpatialMemory, MemoryConfig

H, W = 32, 64


def written(kind: str) -> SpatialMemory:
    """A memory of ``kind`` holding one frame of a flat wall 3 m away (PatchVAE: 48 channels, stride 4)."""
    memory = make_memory(kind, MemoryConfig(view_tolerance=0.03), vae=PatchVAE())
    image = torch.randint(0, 255, (H, W, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    memory.initialize(
        torch.zeros(48, H // 4, W // 4),
        torch.full((H, W), 3.0),
        intrinsics_from_fov(60.0, W, H),
        torch.eye(4),
        image=image,
    )
    return memory


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_make_and_load_a_memory_by_kind(kind, tmp_path):
    memory = written(kind)
    assert memory.kind == kind and memory.config.view_tolerance == 0.03 and len(memory) > 0
    memory.save(tmp_path / "memory.safetensors")
    loaded = load_memory(tmp_path / "memory.safetensors", kind, vae=PatchVAE())
    assert (
        type(loaded) is type(memory)
        and loaded.stats() == memory.stats()
        and torch.equal(loaded.positions, memory.positions)
    )
    other = next(k for k in MEMORY_KINDS if k != kind)
    with pytest.raises(ValueError, match="not a mirage-"):
        load_memory(tmp_path / "memory.safetensors", other)
    with pytest.raises(ValueError, match="memory kind"):
        make_memory("voxels")


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_every_kind_has_the_data_the_protocol_promises(kind):
    memory = written(kind)
    n = len(memory)
    assert (
        memory.positions.shape == (n, 3)
        and memory.colors.shape == (n, 3)
        and memory.segments.shape == memory.frames.shape == (n,)
    )
    assert (memory.features is None) == (kind == "rgb") and (memory.sizes is None) == (kind == "latent")
    assert memory.rejected_positions.shape[1:] == (3,) and memory.rejected_labels.ndim == 1
    assert point_stride(kind, PatchVAE()) == (4 if kind == "latent" else 1)


def test_the_pipeline_takes_its_memory_and_refuses_one_of_another_kind():
    backbone = load_backbone(BackboneConfig(backend="tiny", device="cpu"))
    assert isinstance(MiragePipeline(backbone, PipelineConfig()).memory, LatentSpatialMemory)
    rgb = make_memory("rgb", vae=backbone.vae)
    assert MiragePipeline(backbone, PipelineConfig(memory_kind="rgb"), memory=rgb).memory is rgb
    with pytest.raises(ValueError, match="'rgb' memory cannot serve memory_kind 'latent'"):
        MiragePipeline(backbone, PipelineConfig(), memory=rgb)


def test_the_pipeline_does_not_import_the_rgb_baseline():
    code = "import sys, model.generation.pipeline; print('model.baselines.rgb_memory' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert (
        subprocess.run(
            [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
