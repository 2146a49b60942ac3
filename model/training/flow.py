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
* **Sampler levels** (optional, :class:`SamplerLevels`): a share of the samples is drawn as a few-step
  sampler meets them instead: every noisy frame at one sigma the sampler visits (all frames of a
  segment share their sigma while sampling). With ``rollout``, a sample at a later level does not
  start from the true clean latents but from the model's own prediction one level earlier
  (:func:`roll_out`, no gradient), so the model trains on the inputs its later steps really see.

Shapes: latents ``[B, C, F, h, w]`` (the transformer's layout), per-token timesteps ``[B, L]``
with ``L = F * (h / ph) * (w / pw)`` for the patch size ``(1, ph, pw)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class SamplerLevels:
    """Draw a share of the training samples at the sigmas a few-step sampler visits.

    Attributes:
        sigmas: the sampler's sigmas before each step, descending in ``(0, 1]`` (already shifted: used
            as they are), e.g. ``(1.0, 0.5005)`` for the pipeline's 2-step UniPC at shift 1.
        share: probability in ``(0, 1]`` that a sample is drawn at one of them (picked uniformly; every
            noisy frame of the sample gets it); the others draw per-frame sigmas as usual.
        rollout: a sample at level ``k > 0`` starts from the model's own clean-latent prediction at level
            ``k - 1`` (:func:`roll_out`): one step deep, which is exactly the sampler's input when there
            are two levels and the first is 1 (pure noise).
    """

    sigmas: tuple[float, ...]
    share: float
    rollout: bool = False

    def __post_init__(self) -> None:
        sigmas = tuple(float(s) for s in self.sigmas)
        if not sigmas or any(not 0.0 < s <= 1.0 for s in sigmas) or list(sigmas) != sorted(set(sigmas), reverse=True):
            raise ValueError(f"sampler sigmas must be distinct, descending and in (0, 1], got {list(sigmas)}")
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"sampler share must be in (0, 1], got {self.share}")
        if self.rollout and len(sigmas) < 2:
            raise ValueError("rollout needs at least two sampler sigmas (a later level starts from an earlier one)")
        object.__setattr__(self, "sigmas", sigmas)


@dataclass
class NoisedBatch:
    """A batch prepared for one flow-matching step.

    Attributes:
        model_input: ``[B, C, F, h, w]`` clean frames where ``noisy`` is False, ``x_t`` elsewhere.
        timestep: ``[B, L]`` per-token timesteps (0 on clean frames, ``1000 * sigma'`` on noisy ones).
        target: ``[B, C, F, h, w]`` velocity target ``(x_t - x_0) / sigma`` (``noise - x_0`` unless rolled
            out; meaningful where ``noisy``).
        sigmas: ``[B, F]`` shifted sigma per frame (0 on clean frames).
        noisy: ``[F]`` bool, the frames that are noised and scored.
        noise: ``[B, C, F, h, w]`` the Gaussian noise drawn.
        previous: ``[B]`` the sampler level before a sample's own where it is to be rolled out
            (:func:`roll_out`), 0 for every other sample.
    """

    model_input: torch.Tensor
    timestep: torch.Tensor
    target: torch.Tensor
    sigmas: torch.Tensor
    noisy: torch.Tensor
    noise: torch.Tensor
    previous: torch.Tensor


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
    levels: SamplerLevels | None = None,
) -> NoisedBatch:
    """Noise the target frames of ``latents`` ``[B, C, F, h, w]``, each frame with its own sigma.

    Args:
        clean_frames: leading frames kept clean with timestep 0 (``P`` context frames + target frame 0).
        patch_size: the transformer's ``(pt, ph, pw)``; ``pt`` must be 1 (one token row per frame).
        generator: source of the sigmas and the noise (a CPU generator; its state is checkpointed,
            so a resumed run draws the same numbers), or one generator per sample: sample ``i`` then
            draws its ``F`` sigmas and then its noise from ``generator[i]``, so its noise does not depend
            on which batch (or process) it lands in.
        levels: draw a share of the samples at a sampler's sigmas (:class:`SamplerLevels`; two more
            uniform numbers per sample, drawn after the sigmas and before the noise); None: none.
    """
    if latents.ndim != 5:
        raise ValueError(f"latents must be [B, C, F, h, w], got {tuple(latents.shape)}")
    pt, ph, pw = patch_size
    b, _, f, h, w = latents.shape
    if pt != 1 or h % ph or w % pw:
        raise ValueError(f"latent grid {f}x{h}x{w} does not fit the patch size {tuple(patch_size)}")
    noisy = noisy_frames(f, clean_frames, latents.device)
    picks = 2 if levels is not None else 0
    if isinstance(generator, torch.Generator):
        sigma = torch.rand(b, f, generator=generator)
        pick = torch.rand(b, picks, generator=generator)
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    else:
        if len(generator) != b:
            raise ValueError(f"{len(generator)} generators for a batch of {b}")
        draws = [
            (torch.rand(f, generator=g), torch.rand(picks, generator=g), torch.randn(latents.shape[1:], generator=g))
            for g in generator
        ]
        sigma, pick, noise = (torch.stack([d[i] for d in draws]) for i in range(3))
    sigma = shift_sigmas(sigma, shift)
    previous = torch.zeros(b)
    if levels is not None:
        at_level = pick[:, 0] < levels.share
        index = (pick[:, 1] * len(levels.sigmas)).long().clamp(max=len(levels.sigmas) - 1)
        table = torch.tensor(levels.sigmas, dtype=sigma.dtype)
        sigma = torch.where(at_level[:, None], table[index][:, None].expand(b, f), sigma)
        if levels.rollout:
            before = torch.cat([torch.zeros(1, dtype=sigma.dtype), table[:-1]])[index]
            previous = torch.where(at_level, before, previous)
    sigma = sigma.to(latents.device, torch.float32) * noisy  # clean frames: sigma 0
    noise = noise.to(latents.device)
    x0 = latents.float()
    s = sigma[:, None, :, None, None]
    model_input = (1.0 - s) * x0 + s * noise  # sigma 0 leaves clean frames exactly as they are
    timestep = _timesteps(sigma, (h // ph) * (w // pw))
    return NoisedBatch(model_input, timestep, noise - x0, sigma, noisy, noise, previous.to(latents.device))


def _timesteps(sigma: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """``[B, F]`` sigmas -> ``[B, F * tokens_per_frame]`` per-token timesteps ``1000 * sigma``."""
    return (sigma * NUM_TRAIN_TIMESTEPS).repeat_interleave(tokens_per_frame, dim=1)


def roll_out(
    noised: NoisedBatch,
    latents: torch.Tensor,
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> NoisedBatch:
    """Replace the inputs of the samples marked in ``noised.previous`` by what a sampler would feed them.

    For each such sample (sigma ``s`` on its noisy frames, earlier level ``p``): its latents are noised to
    ``p`` with the same noise, the model predicts the velocity there (``predict``, no gradient), and the
    implied clean latents ``x0_hat = x_p - p * v`` take one first-order step to ``s``:
    ``x_s = (s / p) * x_p + (1 - s / p) * x0_hat`` (Euler on the flow, equal to DDIM and to UniPC's
    first step; from ``p = 1`` it is ``(1 - s) * x0_hat + s * noise``). The target becomes
    ``(x_s - x_0) / s``, so the x0 loss still scores the predicted clean latents against the true ones.

    Args:
        noised: from :func:`add_flow_noise` with rollout levels.
        latents: ``[B, C, F, h, w]`` the clean latents ``noised`` was made from.
        predict: ``(index [R], model_input [R, C, F, h, w], timestep [R, L]) -> velocity [R, C, F, h, w]``
            for the samples ``index`` of the batch.

    Returns:
        ``noised`` with new ``model_input`` and ``target`` rows for the rolled-out samples (a copy; the
        others unchanged).
    """
    index = torch.nonzero(noised.previous > 0).flatten()
    if index.numel() == 0:
        return noised
    x0 = latents[index].float()
    noise = noised.noise[index]
    before = noised.previous[index][:, None] * noised.noisy  # [R, F], clean frames 0
    p = before[:, None, :, None, None]
    earlier = (1.0 - p) * x0 + p * noise
    tokens_per_frame = noised.timestep.shape[1] // noised.sigmas.shape[1]
    with torch.no_grad():
        velocity = predict(index, earlier, _timesteps(before, tokens_per_frame)).float()
    x0_hat = earlier - p * velocity  # clean frames (p = 0): exactly the clean latents
    s = noised.sigmas[index][:, None, :, None, None]
    ratio = s / p.clamp(min=1e-12)  # clean frames: 0 (x0_hat is the clean latents there)
    rolled = ratio * earlier + (1.0 - ratio) * x0_hat
    model_input, target = noised.model_input.clone(), noised.target.clone()
    model_input[index] = rolled
    target[index] = torch.where(s > 0, (rolled - x0) / s.clamp(min=1e-12), target[index])
    return replace(noised, model_input=model_input, target=target)


#: Loss weightings of :func:`flow_loss`.
LOSS_WEIGHTINGS = ("velocity", "x0")


def flow_loss(
    prediction: torch.Tensor,
    batch: NoisedBatch,
    weighting: str = "velocity",
    visible: torch.Tensor | None = None,
    hole_weight: float = 1.0,
) -> torch.Tensor:
    """MSE between the predicted velocity ``[B, C, F, h, w]`` and ``noise - x_0``, noisy frames only.

    Args:
        weighting: ``"velocity"``: the plain velocity MSE; ``"x0"``: each frame's squared error weighted
            by ``sigma**2``, which is the MSE of the implied clean latents ``x_t - sigma * v`` (the same
            objective with its weight moved from low-noise to high-noise frames; the natural loss of an
            ``x0``-parametrised model such as the ``"readout_x0"`` memory branch).
        visible: ``[B, F, h, w]`` bool, the latent cells the memory readout covered; needed when
            ``hole_weight != 1``.
        hole_weight: the weight of a cell the readout did not cover (a visible cell weighs 1); the loss is
            the weighted mean, so 1 is the plain mean and the loss keeps its scale.

    Clean frames (context and target frame 0) do not enter the loss: changing the prediction there
    changes nothing.
    """
    if prediction.shape != batch.target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} != target {tuple(batch.target.shape)}")
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {LOSS_WEIGHTINGS}, got {weighting!r}")
    if not (math.isfinite(hole_weight) and hole_weight > 0):
        raise ValueError(f"hole_weight must be positive, got {hole_weight}")
    error = (prediction[:, :, batch.noisy].float() - batch.target[:, :, batch.noisy]) ** 2
    if weighting == "x0":
        error = error * batch.sigmas[:, None, batch.noisy, None, None] ** 2
    if hole_weight == 1.0:
        return error.mean()
    if visible is None or visible.shape != (error.shape[0], prediction.shape[2], *error.shape[3:]):
        shape = None if visible is None else list(visible.shape)
        raise ValueError(f"hole_weight {hole_weight} needs visible [B, F, h, w] of the prediction, got {shape}")
    cell_weight = torch.where(visible[:, batch.noisy].to(error.device), 1.0, hole_weight)[:, None]
    return (error * cell_weight).sum() / (cell_weight.sum() * error.shape[1])
