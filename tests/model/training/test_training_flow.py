"""The flow-matching objective: shift, per-frame noising, clean frames, loss support."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from model.training.flow import add_flow_noise, flow_loss, shift_sigmas

PATCH = (1, 2, 2)


def latents(batch=2, frames=5, seed=0):
    return torch.randn(batch, 48, frames, 4, 6, generator=torch.Generator().manual_seed(seed))


def test_shift_matches_the_flow_scheduler():
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    unshifted = [1.0, 0.8, 0.5, 0.2, 0.05]
    scheduler.set_timesteps(sigmas=unshifted)  # the scheduler applies its static shift to given sigmas
    assert torch.allclose(shift_sigmas(torch.tensor(unshifted), 5.0), scheduler.sigmas[:-1], atol=1e-6)
    assert shift_sigmas(torch.tensor([0.0, 1.0])).tolist() == [0.0, 1.0]  # exact: 5*0/(1+4*0), 5*1/(1+4*1) in IEEE


def test_noising_equals_scale_noise_and_clean_frames_stay_clean():
    x0 = latents(batch=1)
    noised = add_flow_noise(x0, clean_frames=2, patch_size=PATCH, generator=torch.Generator().manual_seed(1))
    assert noised.noisy.tolist() == [False, False, True, True, True]
    assert torch.equal(noised.model_input[:, :, :2], x0[:, :, :2]), (
        "context and target frame 0 enter clean"
    )  # sigma 0: exact
    assert (noised.sigmas[:, :2] == 0).all() and (noised.sigmas[:, 2:] > 0).all()
    tokens = 2 * 3
    assert noised.timestep.shape == (1, 5 * tokens)
    assert (noised.timestep[:, : 2 * tokens] == 0).all(), "clean frames get t = 0 on every token"
    per_frame = noised.timestep.view(1, 5, tokens)
    assert torch.allclose(per_frame[..., 0], noised.sigmas * 1000) and (per_frame == per_frame[..., :1]).all()
    assert len(set(noised.sigmas[0, 2:].tolist())) == 3, "each noisy frame draws its own sigma"
    noise = noised.target + x0  # target = noise - x0
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    scheduler.set_timesteps(10)
    for f in range(2, 5):  # diffusers' scale_noise at the same sigma gives the same x_t
        sigma = float(noised.sigmas[0, f])
        scheduler.sigmas = torch.tensor([sigma, 0.0])
        scheduler.timesteps = torch.tensor([sigma * 1000])
        expected = scheduler.scale_noise(x0[:, :, f], scheduler.timesteps, noise[:, :, f])
        assert torch.allclose(noised.model_input[:, :, f], expected, atol=1e-6)


def test_loss_ignores_clean_frames_and_uses_the_velocity_target():
    x0 = latents()
    noised = add_flow_noise(x0, clean_frames=1, patch_size=PATCH, generator=torch.Generator().manual_seed(2))
    perfect = noised.target.clone()
    assert flow_loss(perfect, noised).item() == 0.0  # exact: a copy of the target, differences are exactly 0
    perturbed = perfect.clone()
    perturbed[:, :, 0] += 100.0  # the prediction on frame 0 (clean, t = 0) does not count
    assert flow_loss(perturbed, noised).item() == 0.0
    perturbed[:, :, 1] += 1.0
    expected = 1.0 / (x0.shape[2] - 1)  # one of the four scored frames is off by 1 everywhere
    assert flow_loss(perturbed, noised).item() == pytest.approx(expected, rel=1e-5)


def test_x0_weighting_is_the_mse_of_the_implied_clean_latents():
    x0 = latents()
    noised = add_flow_noise(x0, clean_frames=1, patch_size=PATCH, generator=torch.Generator().manual_seed(4))
    prediction = noised.target + torch.randn(noised.target.shape, generator=torch.Generator().manual_seed(5))
    implied = noised.model_input - noised.sigmas[:, None, :, None, None] * prediction
    expected = ((implied - x0)[:, :, noised.noisy] ** 2).mean()
    assert flow_loss(prediction, noised, "x0").item() == pytest.approx(expected.item(), rel=1e-4)
    assert flow_loss(prediction, noised, "x0") < flow_loss(prediction, noised)  # sigma < 1 shrinks every term
    with pytest.raises(ValueError, match="weighting"):
        flow_loss(prediction, noised, "eps")


def test_same_generator_state_same_noise():
    x0 = latents()
    a = add_flow_noise(x0, 1, PATCH, torch.Generator().manual_seed(3))
    b = add_flow_noise(x0, 1, PATCH, torch.Generator().manual_seed(3))
    assert torch.equal(a.model_input, b.model_input) and torch.equal(
        a.timestep, b.timestep
    )  # exact: same draws, same code
    with pytest.raises(ValueError, match="clean_frames"):
        add_flow_noise(x0, 5, PATCH, torch.Generator())
    with pytest.raises(ValueError, match="patch size"):
        add_flow_noise(latents(frames=3)[..., :3], 1, PATCH, torch.Generator())
