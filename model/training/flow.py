"""Flow-matching objective of Mirage training (paper §2.6, §4): per-frame sigmas, clean context.

One training sequence of ``F = P + N`` latent frames per sample, in time order::

    [ context_0 .. context_{P-1} | target_0 | target_1 .. target_{N-1} ]
      clean (t = 0)                clean      noisy, each frame its own sigma

* ``P`` preceding context frames (0-2) and the target's frame 0 (the clean first / overlap frame
  of the segment) enter clean with timestep 0 on all their tokens, exactly as TI2V-5B's clean
  first frame (``expand_timesteps``).
* Every other target frame ``j`` gets its own ``sigma_j ~ U(0, 1)``, shifted as the TI2V scheduler
  shifts (``shift = 5``): ``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``; its tokens get
  timestep ``1000 * sigma'``, and ``x_t = (1 - sigma') x_0 + sigma' * noise`` (diffusers'
  ``FlowMatchEulerDiscreteScheduler.scale_noise``, per frame).
* The model predicts the velocity; the loss is the MSE to ``noise - x_0`` over the noisy target
  frames only (clean frames are neither noised nor scored), optionally weighted by ``sigma**2`` (the
  MSE of the implied clean latents).

Shapes: latents ``[B, C, F, h, w]`` (the transformer's layout), per-token timesteps ``[B, L]``
with ``L = F * (h / ph) * (w / pw)`` for the patch size ``(1, ph, pw)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: Timestep shift of Wan2.2-TI2V-5B at 704x1280 (diffusers' converter; paper code ``timestep_shift``).
DEFAULT_SHIFT = 5.0
#: ``num_train_timesteps`` of the Wan flow schedulers: timestep = 1000 * sigma.
NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(sigma: torch.Tensor, shift: float = DEFAULT_SHIFT) -> torch.Tensor:
    """``sigma' = shift * sigma / (1 + (shift - 1) * sigma)``: the flow schedulers' static shift.

    Maps ``[0, 1]`` onto itself (0 -> 0, 1 -> 1) and pushes mass towards high noise for ``shift > 1``.
    """
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


@dataclass
class NoisedBatch:
    """A batch prepared for one flow-matching step.

    Attributes:
        model_input: ``[B, C, F, h, w]`` clean frames where ``noisy`` is False, ``x_t`` elsewhere.
        timestep: ``[B, L]`` per-token timesteps (0 on clean frames, ``1000 * sigma'`` on noisy ones).
        target: ``[B, C, F, h, w]`` velocity target ``noise - x_0`` (meaningful where ``noisy``).
        sigmas: ``[B, F]`` shifted sigma per frame (0 on clean frames).
        noisy: ``[F]`` bool, the frames that are noised and scored.
    """

    model_input: torch.Tensor
    timestep: torch.Tensor
    target: torch.Tensor
    sigmas: torch.Tensor
    noisy: torch.Tensor


def noisy_frames(num_frames: int, clean_frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[num_frames]`` bool: False for the first ``clean_frames`` (context + target frame 0), True after."""
    if not 0 < clean_frames < num_frames:
        raise ValueError(f"need 1 <= clean_frames < num_frames, got {clean_frames} of {num_frames}")
    noisy = torch.ones(num_frames, dtype=torch.bool, device=device)
    noisy[:clean_frames] = False
    return noisy


def add_flow_noise(
    latents: torch.Tensor,
    clean_frames: int,
    patch_size: tuple[int, int, int],
    generator: torch.Generator | Sequence[torch.Generator],
    shift: float = DEFAULT_SHIFT,
) -> NoisedBatch:
    """Noise the target frames of ``latents`` ``[B, C, F, h, w]``, each frame with its own sigma.

    Args:
        clean_frames: leading frames kept clean with timestep 0 (``P`` context frames + target frame 0).
        patch_size: the transformer's ``(pt, ph, pw)``; ``pt`` must be 1 (one token row per frame).
        generator: source of the sigmas and the noise (a CPU generator; its state is checkpointed,
            so a resumed run draws the same numbers), or one generator per sample: sample ``i`` then
            draws its ``F`` sigmas and then its noise from ``generator[i]``, so its noise does not depend
            on which batch (or process) it lands in.
    """
    if latents.ndim != 5:
        raise ValueError(f"latents must be [B, C, F, h, w], got {tuple(latents.shape)}")
    pt, ph, pw = patch_size
    b, _, f, h, w = latents.shape
    if pt != 1 or h % ph or w % pw:
        raise ValueError(f"latent grid {f}x{h}x{w} does not fit the patch size {tuple(patch_size)}")
    noisy = noisy_frames(f, clean_frames, latents.device)
    if isinstance(generator, torch.Generator):
        sigma = torch.rand(b, f, generator=generator)
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    else:
        if len(generator) != b:
            raise ValueError(f"{len(generator)} generators for a batch of {b}")
        draws = [(torch.rand(f, generator=g), torch.randn(latents.shape[1:], generator=g)) for g in generator]
        sigma, noise = torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws])
    sigma = shift_sigmas(sigma, shift).to(latents.device, torch.float32) * noisy  # clean frames: sigma 0
    noise = noise.to(latents.device)
    x0 = latents.float()
    s = sigma[:, None, :, None, None]
    model_input = (1.0 - s) * x0 + s * noise  # sigma 0 leaves clean frames exactly as they are
    tokens_per_frame = (h // ph) * (w // pw)
    timestep = (sigma * NUM_TRAIN_TIMESTEPS).repeat_interleave(tokens_per_frame, dim=1)
    return NoisedBatch(model_input, timestep, noise - x0, sigma, noisy)


#: Loss weightings of :func:`flow_loss`.
LOSS_WEIGHTINGS = ("velocity", "x0")


def flow_loss(prediction: torch.Tensor, batch: NoisedBatch, weighting: str = "velocity") -> torch.Tensor:
    """MSE between the predicted velocity ``[B, C, F, h, w]`` and ``noise - x_0``, noisy frames only.

    Args:
        weighting: ``"velocity"``: the plain velocity MSE; ``"x0"``: each frame's squared error weighted
            by ``sigma**2``, which is the MSE of the implied clean latents ``x_t - sigma * v`` (the same
            objective with its weight moved from low-noise to high-noise frames; the natural loss of an
            ``x0``-parametrised model such as the ``"readout_x0"`` memory branch).

    Clean frames (context and target frame 0) do not enter the loss: changing the prediction there
    changes nothing.
    """
    if prediction.shape != batch.target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} != target {tuple(batch.target.shape)}")
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {LOSS_WEIGHTINGS}, got {weighting!r}")
    error = (prediction[:, :, batch.noisy].float() - batch.target[:, :, batch.noisy]) ** 2
    if weighting == "x0":
        error = error * batch.sigmas[:, None, batch.noisy, None, None] ** 2
    return error.mean()
