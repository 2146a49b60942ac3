"""The latent memory lifted from an RGB-D view with exact pixel-patch features, as several test modules need it."""

import torch

from model.generation.patch_vae import PatchVAE
from model.io.frames import frames_to_tensor
from model.memory.latent import LatentSpatialMemory


def memory_from_view(view) -> LatentSpatialMemory:
    """A default :class:`LatentSpatialMemory` initialised from ``view`` (an :class:`~model.io.rgbd.RGBDView`)."""
    memory = LatentSpatialMemory()
    memory.initialize(
        PatchVAE().encode(frames_to_tensor(view.image))[0],
        torch.from_numpy(view.depth.copy()),
        torch.from_numpy(view.K.copy()),
        torch.from_numpy(view.w2c.copy()),
        image=torch.from_numpy(view.image.copy()),
    )
    return memory
