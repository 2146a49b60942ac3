"""The no-model baseline: the memory's readout decoded, its holes filled by classical inpainting.

:class:`ReadoutInpaintPipeline` is a :class:`~model.generation.pipeline.MiragePipeline` whose denoiser
is replaced by :func:`~model.generation.hole_fill.telea_filled_latents`: each target latent frame's
readout is decoded alone by the VAE, the pixels of cells the memory did not cover are filled by OpenCV's
Telea inpainting, and the filled frame is encoded again. Everything else is the
pipeline's: readout, clean latent frame 0, decode of the segment, depth, write masks and the
write-back of the filled latents, so the memory grows along the path as a model's would. No network
weights are used (the backbone only lends its VAE and device).
"""

from __future__ import annotations

import torch

from model.generation.hole_fill import telea_filled_latents
from model.generation.pipeline import GenerationCancelled, MiragePipeline


class ReadoutInpaintPipeline(MiragePipeline):
    """:class:`MiragePipeline` with the denoiser replaced by :func:`~model.generation.hole_fill.telea_filled_latents`
    (no model).

    Use it like the pipeline (``start``, ``generate``); ``config.steps`` and the mode are not used, and
    ``on_step`` is told once per segment that all steps are done.
    """

    def _denoise(
        self, first: torch.Tensor, readout: torch.Tensor, visible: torch.Tensor, on_step, should_cancel
    ) -> torch.Tensor:
        """``[F, C, h, w]``: the clean latent frame 0, then the filled readouts of latent frames 1..F-1."""
        if should_cancel is not None and should_cancel():
            raise GenerationCancelled(f"segment {self.segments_done} cancelled")
        vae = self.backbone.vae
        filled = telea_filled_latents(vae, readout[1:], visible[1:])
        if on_step is not None:
            on_step(self.segments_done, self.config.steps, self.config.steps)
        return torch.cat([first.to(vae.device, torch.float32)[None], filled])
