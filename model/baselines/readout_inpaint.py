"""The no-model baseline: the memory's readout decoded, its holes filled by classical inpainting.

:class:`ReadoutInpaintPipeline` is a :class:`~model.generation.pipeline.MiragePipeline` whose denoiser
is replaced by :func:`readout_inpaint_latents`: each target latent frame's readout is decoded alone
by the VAE, the pixels of cells the memory did not cover are filled by OpenCV's Telea inpainting
(radius :data:`TELEA_RADIUS_PX`), and the filled frame is encoded again. Everything else is the
pipeline's: readout, clean latent frame 0, decode of the segment, depth, write masks and the
write-back of the filled latents, so the memory grows along the path as a model's would. No network
weights are used (the backbone only lends its VAE and device).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from model.generation.pipeline import GenerationCancelled, MiragePipeline
from model.generation.vae import VideoVAE
from model.io.frames import frames_to_tensor, tensor_to_frames

#: Radius of the Telea inpainting in pixels (what ``../shared/research/mini-probe.md`` measured).
TELEA_RADIUS_PX = 3


def cell_mask_to_pixels(cells: torch.Tensor, stride: int) -> torch.Tensor:
    """``[..., h, w]`` bool per latent cell -> ``[..., h * stride, w * stride]`` bool per pixel (each cell's block)."""
    return cells.repeat_interleave(stride, dim=-2).repeat_interleave(stride, dim=-1)


def telea_fill(image: np.ndarray, holes: np.ndarray, radius: int = TELEA_RADIUS_PX) -> np.ndarray:
    """Fill the ``holes`` of an image with OpenCV's Telea inpainting (``cv2.INPAINT_TELEA``).

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        holes: ``[H, W]`` bool, True where the image has no content.
        radius: inpainting neighbourhood in pixels.

    Returns:
        ``[H, W, 3]`` uint8; pixels outside ``holes`` unchanged. With no content at all (every pixel
        a hole) there is nothing to propagate and the image is returned as it is.
    """
    image, holes = np.ascontiguousarray(image), np.asarray(holes, dtype=bool)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or holes.shape != image.shape[:2]:
        raise ValueError(f"expected a uint8 [H,W,3] image and an [H,W] mask, got {image.shape} and {holes.shape}")
    if not holes.any() or holes.all():
        return image.copy()
    filled = cv2.inpaint(image, holes.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return np.where(holes[..., None], filled, image)


def readout_inpaint_latents(
    vae: VideoVAE, readout: torch.Tensor, visible: torch.Tensor, radius: int = TELEA_RADIUS_PX
) -> torch.Tensor:
    """Decode each readout latent frame alone, Telea-fill its uncovered cells, encode it again.

    Args:
        vae: the VAE the memory's latents belong to.
        readout: ``[F, C, h, w]`` readout latents (zeros where not visible).
        visible: ``[F, h, w]`` bool, the cells the memory covered.

    Returns:
        ``[F, C, h, w]`` float32 latents of the filled frames, on ``vae.device``.
    """
    frames = tensor_to_frames(torch.cat([vae.decode(latent[None]) for latent in readout.to(torch.float32)]))
    holes = ~cell_mask_to_pixels(visible.cpu(), vae.spatial_stride).numpy()
    filled = np.stack([telea_fill(frame, hole, radius) for frame, hole in zip(frames, holes, strict=True)])
    return torch.cat([vae.encode(frames_to_tensor(frame, vae.device)) for frame in filled])


class ReadoutInpaintPipeline(MiragePipeline):
    """:class:`MiragePipeline` with the denoiser replaced by :func:`readout_inpaint_latents` (no model).

    Use it like the pipeline (``start``, ``generate``); ``config.steps`` and the mode are not used, and
    ``on_step`` is told once per segment that all steps are done.
    """

    def _denoise(
        self,
        first: torch.Tensor,
        readout: torch.Tensor,
        visible: torch.Tensor,
        mapping: torch.Tensor | None,
        on_step,
        should_cancel,
    ) -> torch.Tensor:
        """``[F, C, h, w]``: the clean latent frame 0, then the filled readouts of latent frames 1..F-1
        (the readout as it is: its cell ``mapping`` is not used)."""
        if should_cancel is not None and should_cancel():
            raise GenerationCancelled(f"segment {self.segments_done} cancelled")
        vae = self.backbone.vae
        filled = readout_inpaint_latents(vae, readout[1:], visible[1:])
        if on_step is not None:
            on_step(self.segments_done, self.config.steps, self.config.steps)
        return torch.cat([first.to(vae.device, torch.float32)[None], filled])
