"""An exact pixel-patch autoencoder that implements :class:`model.generation.vae.VideoVAE`.

:class:`PatchVAE` is the ``tiny`` backend's default VAE. It has no weights: a latent frame is the
4x4 pixel patches of one video frame stacked on channels (3 x 4 x 4 = 48, like Wan2.2's 48 latent
channels), so memory and reprojection tests can check latents against ground-truth pixels exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.generation.vae import check_frames, check_latents


class PatchVAE:
    """Exact pixel-patch "autoencoder": latent = 4x4 pixel patches of every 4th frame.

    * ``encode`` keeps frames ``0, 4, 8, ...`` and stacks each 4x4x3 patch on channels with
      :func:`torch.nn.functional.pixel_unshuffle` (channel ``c * 16 + dy * 4 + dx``). Pixel values go
      into the channels unchanged (no normalisation).
    * ``decode`` inverts that with :func:`torch.nn.functional.pixel_shuffle`, so frame ``4k`` is
      reproduced exactly; frame ``4k + j`` (``j = 1..3``) is ``lerp(frame 4k, frame 4k+4, j / 4)``.

    So ``encode(decode(z)) == z`` and ``decode(encode(x))[::4] == x[::4]`` bit for bit. ``decode``
    does not clamp (that would break the first identity); latents in ``[-1, 1]`` give frames in it.

    Example:
        >>> vae = PatchVAE()
        >>> vae.encode(torch.zeros(9, 3, 16, 32)).shape
        torch.Size([3, 48, 4, 8])
    """

    latent_channels = 48
    spatial_stride = 4
    temporal_stride = 4

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, 3, H, W]`` (T = 4k+1) -> ``[k+1, 48, H/4, W/4]`` float32 on ``self.device``."""
        check_frames(frames, self.spatial_stride, self.temporal_stride)
        keyframes = frames[:: self.temporal_stride].to(self.device, torch.float32)
        return F.pixel_unshuffle(keyframes, self.spatial_stride)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[F, 48, h, w]`` -> ``[4(F-1)+1, 3, 4h, 4w]`` float32 on ``self.device``."""
        check_latents(latents, self.latent_channels)
        keyframes = F.pixel_shuffle(latents.to(self.device, torch.float32), self.spatial_stride)
        weights = torch.arange(self.temporal_stride, device=self.device, dtype=torch.float32) / self.temporal_stride
        # [F-1, stride, 3, H, W]: keyframe k blended towards keyframe k+1 with weights 0, 1/4, 2/4, 3/4
        between = torch.lerp(keyframes[:-1, None], keyframes[1:, None], weights.view(1, -1, 1, 1, 1))
        return torch.cat([between.flatten(0, 1), keyframes[-1:]])
