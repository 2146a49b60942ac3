"""The one place that turns a memory kind (``PipelineConfig.memory_kind``) into a memory.

* ``"latent"``: :class:`model.memory.latent.LatentSpatialMemory`, one point per latent cell, read out by a
  z-buffer.
* ``"rgb"``: the pixel-space baseline :class:`model.baselines.rgb_memory.RGBPointCloudMemory`, one point per
  pixel, read out by rasterising and VAE-encoding (it needs the backbone's VAE).

The pipeline receives the memory it works on (``MiragePipeline(..., memory=make_memory(...))``), so
the engine imports no baseline; the CLI, the GUI worker, sessions and benchmarks make and load
memories here.
"""

from __future__ import annotations

import os

import torch

from model.baselines.rgb_memory import RGBPointCloudMemory
from model.generation.vae import VideoVAE
from model.memory.base import MEMORY_KINDS, MemoryConfig, SpatialMemory
from model.memory.latent import LatentSpatialMemory


def _check_kind(kind: str) -> None:
    if kind not in MEMORY_KINDS:
        raise ValueError(f"memory kind must be one of {MEMORY_KINDS}, got {kind!r}")


def make_memory(
    kind: str, config: MemoryConfig | None = None, device: str | torch.device = "cpu", vae: VideoVAE | None = None
) -> SpatialMemory:
    """An empty memory of ``kind`` on ``device``; the RGB memory reads out through ``vae``."""
    _check_kind(kind)
    if kind == RGBPointCloudMemory.kind:
        return RGBPointCloudMemory(config, device, vae=vae)
    return LatentSpatialMemory(config, device)


def load_memory(
    path: str | os.PathLike, kind: str, vae: VideoVAE | None = None, device: str | torch.device = "cpu"
) -> SpatialMemory:
    """A memory of ``kind`` saved with its ``save`` (a file of another kind is refused).

    Raises:
        ValueError: naming the file and what is wrong.
    """
    _check_kind(kind)
    if kind == RGBPointCloudMemory.kind:
        return RGBPointCloudMemory.load(path, device, vae=vae)
    return LatentSpatialMemory.load(path, device)


def point_stride(kind: str, vae: VideoVAE) -> int:
    """Pixels along the edge of the image patch one point of a ``kind`` memory stands for in the view
    that wrote it: the VAE's spatial stride for a latent cell, 1 for the RGB memory's pixel."""
    _check_kind(kind)
    return 1 if kind == RGBPointCloudMemory.kind else int(vae.spatial_stride)
