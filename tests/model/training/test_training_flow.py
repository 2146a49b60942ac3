"""The flow-matching objective: shift, per-frame noising, clean frames, loss support, hole weight, sampler
levels, rollout."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from model.generation.backbone import TI2V_SCHEDULER
from model.training.flow import SamplerLevels, add_flow_noise, flow_loss, roll_out, shift_sigmas

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


def test_hole_weight_is_a_weighted_mean_over_cells_the_readout_missed():
    x0 = latents()
    noised = add_flow_noise(x0, clean_frames=1, patch_size=PATCH, generator=torch.Generator().manual_seed(6))
    prediction = noised.target.clone()
    visible = torch.ones(2, 5, 4, 6, dtype=torch.bool)
    visible[:, :, :, :2] = False  # a third of the cells are holes
    prediction[:, :, :, :, :2] += 1.0  # off by 1 on the holes only
    plain = flow_loss(prediction, noised)
    assert plain.item() == pytest.approx(1 / 3, rel=1e-5)
    assert flow_loss(prediction, noised, visible=visible, hole_weight=1.0).item() == plain.item()  # same path
    # weight 3: holes count 3 * (1/3) against 1 * (2/3) -> 1 / (1 + 2/3)
    assert flow_loss(prediction, noised, visible=visible, hole_weight=3.0).item() == pytest.approx(0.6, rel=1e-5)
    covered = noised.target.clone()
    covered[:, :, :, :, 2:] += 1.0  # off by 1 on the covered cells only: weighting holes lowers the loss
    assert flow_loss(covered, noised, visible=visible, hole_weight=3.0).item() == pytest.approx(0.4, rel=1e-5)
    assert flow_loss(noised.target, noised, visible=visible, hole_weight=3.0).item() == 0.0  # exact: all-zero error
    with pytest.raises(ValueError, match="needs visible"):
        flow_loss(prediction, noised, hole_weight=3.0)
    with pytest.raises(ValueError, match="needs visible"):
        flow_loss(prediction, noised, visible=visible[:, :4], hole_weight=3.0)
    with pytest.raises(ValueError, match="hole_weight must be positive"):
        flow_loss(prediction, noised, visible=visible, hole_weight=float("nan"))


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


def test_sampler_levels_put_every_noisy_frame_of_a_sample_at_one_sampler_sigma():
    levels = SamplerLevels((1.0, 0.5), share=1.0, rollout=True)
    noised = add_flow_noise(latents(batch=32, frames=4), 1, PATCH, torch.Generator().manual_seed(2), 1.0, levels)
    assert (noised.sigmas[:, 0] == 0).all(), "the clean frame stays clean"
    at = noised.sigmas[:, 1:]
    assert (at == at[:, :1]).all(), "all noisy frames of a sample share its level"
    assert set(at[:, 0].tolist()) == {1.0, 0.5}, "both levels are drawn"
    # rollout: a sample at the second level starts from the first; one at the first has nothing before it
    assert torch.equal(noised.previous, torch.where(at[:, 0] == 0.5, 1.0, 0.0))
    half = add_flow_noise(
        latents(batch=64, frames=4), 1, PATCH, torch.Generator().manual_seed(2), 1.0, SamplerLevels((1.0, 0.5), 0.5)
    )
    on_level = torch.isin(half.sigmas[:, 1], torch.tensor([1.0, 0.5])) & (
        half.sigmas[:, 1:] == half.sigmas[:, 1:2]
    ).all(1)
    assert 16 < int(on_level.sum()) < 48, "about half of the samples at a level, the rest per-frame sigmas"
    assert (half.previous == 0).all(), "no rollout unless asked"
    for bad, match in (
        (dict(sigmas=(0.5, 1.0), share=0.5), "descending"),
        (dict(sigmas=(1.0, 0.0), share=0.5), r"in \(0, 1\]"),
        (dict(sigmas=(), share=0.5), "descending"),
        (dict(sigmas=(1.0,), share=0.0), "share"),
        (dict(sigmas=(1.0,), share=0.5, rollout=True), "at least two"),
    ):
        with pytest.raises(ValueError, match=match):
            SamplerLevels(**bad)


def test_rollout_feeds_a_later_level_what_the_unipc_sampler_feeds_it():
    """From sigma 1, the rolled-out input at the second level is the UniPC scheduler's state after its first
    step with the same noise and the same model, and the target still scores the clean latents."""
    scheduler = UniPCMultistepScheduler(**{**TI2V_SCHEDULER, "flow_shift": 1.0})
    scheduler.set_timesteps(2)
    levels = SamplerLevels(tuple(float(s) for s in scheduler.sigmas[:-1]), share=1.0, rollout=True)
    x0 = latents(batch=16, frames=4)
    noised = add_flow_noise(x0, 1, PATCH, torch.Generator().manual_seed(4), 1.0, levels)
    weight = torch.linspace(0.2, 0.9, 48)[None, :, None, None, None]

    def velocity(x):  # a fixed "model": any deterministic function of the input will do
        return weight * x - 0.1

    calls = []

    def predict(index, model_input, timestep):
        calls.append((index.clone(), timestep.clone()))
        return velocity(model_input)

    rolled = roll_out(noised, x0, predict)
    index = calls[0][0]
    assert len(calls) == 1 and torch.equal(index, torch.nonzero(noised.previous > 0).flatten()) and len(index) > 0
    tokens = noised.timestep.shape[1] // 4
    assert (calls[0][1][:, :tokens] == 0).all() and torch.allclose(calls[0][1][:, tokens:], torch.tensor(1000.0))
    for i in index.tolist():
        noise = noised.noise[i : i + 1, :, 1:]
        scheduler.set_timesteps(2)
        expected = scheduler.step(velocity(noise), scheduler.timesteps[0], noise).prev_sample
        torch.testing.assert_close(rolled.model_input[i : i + 1, :, 1:], expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(rolled.model_input[i, :, 0], x0[i, :, 0]), "the clean frame stays clean"
    implied = rolled.model_input - rolled.sigmas[:, None, :, None, None] * rolled.target
    torch.testing.assert_close(implied[:, :, 1:], x0[:, :, 1:], atol=1e-5, rtol=1e-5)
    others = noised.previous == 0
    assert torch.equal(rolled.model_input[others], noised.model_input[others]), "samples at sigma 1 unchanged"
    plain = add_flow_noise(x0, 1, PATCH, torch.Generator().manual_seed(4))
    assert roll_out(plain, x0, predict) is plain and len(calls) == 1, "nothing to roll out: the model is not called"


def test_rollout_from_a_level_below_one_is_an_euler_step_of_the_flow():
    """Three levels: a sample at the third starts from the true latents noised to the second and takes the
    flow's Euler step to its own sigma (what FlowMatchEulerDiscreteScheduler does from there)."""
    levels = SamplerLevels((1.0, 0.6, 0.3), share=1.0, rollout=True)
    x0 = latents(batch=24, frames=3)
    noised = add_flow_noise(x0, 1, PATCH, torch.Generator().manual_seed(6), 1.0, levels)
    rolled = roll_out(noised, x0, lambda index, x, t: 0.5 * x + 0.2)
    third = torch.nonzero(noised.previous == 0.6).flatten().tolist()
    assert third, "some samples at the third level"
    for i in third:
        earlier = 0.4 * x0[i : i + 1, :, 1:] + 0.6 * noised.noise[i : i + 1, :, 1:]
        euler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        euler.set_timesteps(sigmas=[0.6, 0.3])
        expected = euler.step(0.5 * earlier + 0.2, euler.timesteps[0], earlier).prev_sample
        torch.testing.assert_close(rolled.model_input[i : i + 1, :, 1:], expected, atol=1e-5, rtol=1e-5)
