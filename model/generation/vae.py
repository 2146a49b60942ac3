"""The video-VAE interface of the pipeline: :class:`VideoVAE`, and the checks of its layouts.

Every backbone exposes its VAE through :class:`VideoVAE`: one video in, one latent video out, no batch
dimension, latents already normalised the way Wan pipelines feed them to the transformer.

* Frames are ``[T, 3, H, W]`` float in ``[-1, 1]`` with ``T = temporal_stride * k + 1`` (Wan's causal
  layout: latent frame 0 holds video frame 0 alone, latent frame ``k >= 1`` covers frames
  ``4k-3 .. 4k``), ``H`` and ``W`` multiples of ``spatial_stride``.
* Latents are ``[F, C, h, w]`` with ``F = k + 1``, ``C = latent_channels``, ``h = H / spatial_stride``.

Implementations: :class:`model.generation.backbone.WanVideoVAE` (Wan2.2) and
:class:`model.generation.patch_vae.PatchVAE`
(the ``tiny`` backend's exact pixel-patch autoencoder).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class VideoVAE(Protocol):
    """What the pipeline needs from a video VAE (see the module docstring for the layouts)."""

    #: Latent channels ``C`` (48 for Wan2.2).
    latent_channels: int
    #: Pixels per latent cell along H and W (16 for Wan2.2, 4 for :class:`~model.generation.patch_vae.PatchVAE`).
    spatial_stride: int
    #: Video frames per latent frame after the first (4 for both).
    temporal_stride: int
    #: Device of the latents and frames that ``encode`` / ``decode`` return.
    device: torch.device

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, 3, H, W]`` in ``[-1, 1]`` -> normalised latents ``[F, C, H/s, W/s]`` float32."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[F, C, h, w]`` -> frames ``[4(F-1)+1, 3, h*s, w*s]`` float32."""
        ...


def num_latent_frames(num_frames: int, temporal_stride: int = 4) -> int:
    """Latent frames for a video of ``num_frames`` frames (``temporal_stride * k + 1`` -> ``k + 1``).

    Example:
        >>> num_latent_frames(33), num_latent_frames(1)
        (9, 1)
    """
    if num_frames < 1 or (num_frames - 1) % temporal_stride:
        raise ValueError(
            f"number of frames must be {temporal_stride}k+1 (1, {temporal_stride + 1}, "
            f"{2 * temporal_stride + 1}, ...), got {num_frames}"
        )
    return (num_frames - 1) // temporal_stride + 1


def check_frames(frames: torch.Tensor, spatial_stride: int, temporal_stride: int) -> None:
    """Raise ``ValueError`` unless ``frames`` is a float ``[T, 3, H, W]`` video a VAE can encode."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a [T, 3, H, W] tensor, got {got}")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be float in [-1, 1], got dtype {frames.dtype}")
    num_latent_frames(frames.shape[0], temporal_stride)
    height, width = frames.shape[-2:]
    if height == 0 or width == 0 or height % spatial_stride or width % spatial_stride:
        raise ValueError(f"frame height and width must be positive multiples of {spatial_stride}, got {height}x{width}")


def check_latents(latents: torch.Tensor, latent_channels: int) -> None:
    """Raise ``ValueError`` unless ``latents`` is a float ``[F, latent_channels, h, w]`` tensor with F, h, w > 0."""
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or latents.shape[1] != latent_channels:
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"latents must be a [F, {latent_channels}, h, w] tensor, got {got}")
    if not latents.is_floating_point() or 0 in latents.shape:
        raise ValueError(f"latents must be a non-empty float tensor, got {latents.dtype} {tuple(latents.shape)}")
