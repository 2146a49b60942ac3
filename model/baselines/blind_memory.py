"""A latent memory that is never read or written: the "memory off" ablation of a memory-conditioned model.

:class:`BlindMemory` is a :class:`~model.memory.latent.LatentSpatialMemory` (same kind, settings and
channels, so a trained memory branch accepts it) whose readout shows nothing (every cell invisible,
zero features) and whose update stores nothing. A pipeline given one runs exactly its usual steps, but
the memory branch, or the inpainting, never sees a visible cell: what is left is the model conditioned
on the clean first frame of each segment alone.
"""

from __future__ import annotations

import torch

from model.memory.base import MemoryStats, Readout, check_cameras
from model.memory.latent import LatentSpatialMemory


class BlindMemory(LatentSpatialMemory):
    """A latent memory whose readout is always empty and whose updates are dropped.

    ``initialize`` works as usual (it fixes the channel count the readout's zeros need); the start
    view's points are held but never shown.

    Example:
        >>> from model.geometry.camera import intrinsics_from_fov
        >>> mem = BlindMemory()
        >>> K = intrinsics_from_fov(60.0, 64, 32)
        >>> mem.initialize(torch.randn(48, 2, 4), torch.full((32, 64), 3.0), K, torch.eye(4))
        >>> out = mem.readout(torch.eye(4)[None], K, 2, 4, image_hw=(32, 64))
        >>> out.latent.shape, bool(out.visible.any())
        (torch.Size([1, 48, 2, 4]), False)
    """

    def readout(
        self,
        w2c: torch.Tensor,
        K: torch.Tensor,
        h: int,
        w: int,
        image_hw: tuple[int, int] | None = None,
        mapping: bool = False,
    ) -> Readout:
        """An empty readout of :meth:`LatentSpatialMemory.readout`'s shapes: ``latent [F, C, h, w]`` zeros,
        ``visible [F, h, w]`` False, ``depth`` 0, ``index`` -1 (``F`` poses in ``w2c``), no ``mapping``."""
        w2c, K = check_cameras(w2c, K, self.device)
        if h <= 0 or w <= 0:
            raise ValueError(f"readout grid must be positive, got {h}x{w}")
        n_frames = w2c.shape[0]
        return Readout(
            torch.zeros(n_frames, self.channels or 0, h, w, dtype=self.feature_dtype, device=self.device),
            torch.zeros(n_frames, h, w, dtype=torch.bool, device=self.device),
            torch.zeros(n_frames, h, w, dtype=torch.float32, device=self.device),
            torch.full((n_frames, h, w), -1, dtype=torch.int64, device=self.device),
        )

    def update(self, latents: torch.Tensor, *args, **kwargs) -> MemoryStats:
        """Store nothing; returns the unchanged :meth:`stats`."""
        return self.stats()
