"""snapshot_memory: numpy copies of any memory kind for the cache panel and the preview, through the memory protocol."""

import numpy as np
import pytest
import torch

from explorer.worker import snapshot_memory
from model.baselines.kinds import MEMORY_KINDS, make_memory, point_stride
from model.generation.patch_vae import PatchVAE
from model.geometry.camera import intrinsics_from_fov


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_snapshot_of_every_memory_kind(kind):
    vae, K = PatchVAE(), intrinsics_from_fov(60.0, 64, 32)
    memory = make_memory(kind, vae=vae)
    memory.initialize(
        torch.zeros(48, 8, 16),
        torch.full((32, 64), 3.0),
        K,
        torch.eye(4),
        image=torch.zeros(32, 64, 3, dtype=torch.uint8),
    )
    snapshot = snapshot_memory(memory, "scene", 0, {0: np.eye(4)}, K, point_stride(kind, vae))
    assert (
        snapshot.points == len(memory) > 0
        and snapshot.positions.shape == (len(memory), 3)
        and (snapshot.footprint_m > 0).all()
    )
    assert (snapshot.features is None) == (kind == "rgb") and snapshot.rejected_labels.shape == (
        snapshot.rejected,
    ) == (0,)
