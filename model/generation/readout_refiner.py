"""The memory's prior of the clean latents: a latent-resolution conv net that resamples the readout.

A latent readout pastes each winning point's whole latent cell into the target cell
(:meth:`~model.memory.latent.LatentSpatialMemory.readout`), but the target cell usually sees another part
of the point's patch: shifted by a fraction of a cell, magnified when the camera came closer, rotated
around it. :func:`~model.memory.footprint.cell_mapping` says where: ``s, t`` (the cell centre in the
point's own cell, source cells) and the 2x2 Jacobian per target cell. :class:`ReadoutRefiner` learns to
resample from that, on the latent grid, one latent frame at a time::

    m'  = mapping - visible * IDENTITY_MAPPING                       [B*F, 6, h, w]  (0: pasted as written)
    in  = readout ++ readout (x) m' ++ visible ++ m'                 [B*F, C + 6C + 1 + 6, h, w]
    x   = GELU(conv3x3(in))  ->  blocks x (x + conv3x3(GELU(conv3x3(x))))                 [B*F, width, h, w]
    prior = visible * readout + linear3x3(in) + conv3x3(GELU(x))                          [B, C, F, h, w]

The products ``readout (x) m'`` make a first-order resampling linear in them: a cell's content moved
by ``s, t`` or stretched by the Jacobian is, to first order, the content plus those offsets times its
spatial derivatives, which a 3x3 conv takes from the cell and its neighbours. ``linear3x3`` (no
activation) can represent exactly that; the conv net learns what is not linear (edges, holes). Both
output convs start at zero, so an untrained refiner's prior is the readout itself; it predicts holes
too (from their neighbourhood). A readout with no mapping (a per-pixel readout, the RGB memory's)
reads as ``m' = 0``.

It is the ``refiner`` of :class:`~model.generation.memory_branch.MemoryBranch` (``refiner_width``):
the branch embeds the prior and a ``"readout_x0"`` output corrects it.
"""

from __future__ import annotations

import torch
from torch import nn

from model.memory.footprint import IDENTITY_MAPPING, MAPPING_CHANNELS


class _Residual(nn.Module):
    """``x + conv(GELU(conv(GELU(x))))``, 3x3 convs at constant width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ReadoutRefiner(nn.Module):
    """Readout + cell mapping -> prior of the clean latents (see the module docstring).

    Args:
        channels: latent channels ``C``. width: hidden channels. blocks: residual blocks.
    """

    def __init__(self, channels: int, width: int = 64, blocks: int = 3) -> None:
        super().__init__()
        if width <= 0 or blocks < 0:
            raise ValueError(f"ReadoutRefiner needs width > 0 and blocks >= 0, got width {width}, blocks {blocks}")
        inputs = channels * (1 + MAPPING_CHANNELS) + 1 + MAPPING_CHANNELS
        self.stem = nn.Conv2d(inputs, width, 3, padding=1)
        self.blocks = nn.Sequential(*(_Residual(width) for _ in range(blocks)))
        self.head = nn.Sequential(nn.GELU(), nn.Conv2d(width, channels, 3, padding=1))
        self.linear = nn.Conv2d(inputs, channels, 3, padding=1)
        for conv in (self.head[1], self.linear):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, readout: torch.Tensor, visible: torch.Tensor, mapping: torch.Tensor | None) -> torch.Tensor:
        """The prior.

        Args:
            readout: ``[B, C, F, h, w]`` (zero where not visible). visible: ``[B, F, h, w]`` bool or float.
            mapping: ``[B, 6, F, h, w]`` (:func:`~model.memory.footprint.cell_mapping`) or None (per-pixel readout).

        Returns:
            ``[B, C, F, h, w]`` in the refiner's dtype.
        """
        weight = self.stem.weight
        b, c, f, h, w = readout.shape
        frames = readout.to(weight.device, weight.dtype).permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        mask = visible.to(weight.device, weight.dtype).expand(b, f, h, w).reshape(b * f, 1, h, w)
        if mapping is None:
            offset = frames.new_zeros(b * f, MAPPING_CHANNELS, h, w)
        else:
            mapping = mapping.to(weight.device, weight.dtype).expand(b, -1, f, h, w)
            identity = torch.tensor(IDENTITY_MAPPING, device=weight.device, dtype=weight.dtype).view(1, -1, 1, 1)
            offset = mapping.permute(0, 2, 1, 3, 4).reshape(b * f, MAPPING_CHANNELS, h, w) - mask * identity
        products = (frames[:, None] * offset[:, :, None]).flatten(1, 2)  # [B*F, 6C, h, w]
        features = torch.cat([frames, products, mask, offset], dim=1)
        prior = mask * frames + self.linear(features) + self.head(self.blocks(self.stem(features)))
        return prior.view(b, f, c, h, w).permute(0, 2, 1, 3, 4)
