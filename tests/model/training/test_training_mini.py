"""The mini stage: the tiny transformer and a memory branch from scratch on procedural worlds, resumed
bit-exactly, exported as a model folder that loads as the ``mini`` backend and generates."""

import numpy as np
import pytest
import torch

from model.eval.scenes.world import HELD_OUT_SEED
from model.generation.backbone import BackboneConfig
from model.generation.mini import read_mini
from model.generation.pipeline import MiragePipeline, PipelineConfig
from model.generation.stack import load_generation_stack
from model.geometry.camera import intrinsics_from_fov
from model.geometry.trajectories import yaw_pan
from model.memory.base import MemoryConfig
from model.memory.latent import LatentSpatialMemory
from model.training import checkpoint as ckpt
from model.training.losslog import read_loss_csv
from model.training.trainer import MINI_MODEL_DIR, TrainConfig, Trainer, predict_velocity, train

QUIET = dict(on_status=lambda message: None)
# 32x32 frames, 9-frame segments (3 latent frames), one training world and one held-out world keep it fast
COMMON = dict(
    stage="mini",
    steps=4,
    checkpoint_every=2,
    eval_every=2,
    lr=1e-3,
    procedural_scenes=1,
    heldout_scenes=1,
    height=32,
    width=32,
    chunk_frames=9,
    device="cpu",
    branch_layers=(0, 2),
)


def test_mini_stage_trains_everything_resumes_bit_exactly_and_exports_a_loadable_model(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    straight = train(TrainConfig(out=str(tmp_path / "straight"), cache_dir=cache, **COMMON), **QUIET)
    assert all(np.isfinite(straight.losses))

    calls = {"n": 0}
    original = Trainer.train_step

    def crash_on_step_three(self, batch, noise=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return original(self, batch, noise)

    monkeypatch.setattr(Trainer, "train_step", crash_on_step_three)
    with pytest.raises(RuntimeError, match="killed"):
        train(TrainConfig(out=str(tmp_path / "crashed"), cache_dir=cache, **COMMON), **QUIET)
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = train(
        TrainConfig(out=str(tmp_path / "crashed"), cache_dir=cache, **COMMON), resume=str(tmp_path / "crashed"), **QUIET
    )
    assert resumed.start_step == 2 and resumed.steps == 4
    assert read_loss_csv(tmp_path / "crashed" / "loss.csv") == straight.losses
    a, _ = ckpt.read_tensors(tmp_path / "straight" / "checkpoints" / "step-000004" / ckpt.TRAINABLE_FILE)
    b, _ = ckpt.read_tensors(tmp_path / "crashed" / "checkpoints" / "step-000004" / ckpt.TRAINABLE_FILE)
    # exact: weights, optimiser and RNG states restored bit for bit, the same steps on one torch thread
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the whole transformer trains (from random weights), not only the branch
    assert any(k.startswith("transformer.blocks.1.") for k in a) and any(k.startswith("branch.") for k in a)
    # the held-out metric was logged at steps 2 and 4, identically in both runs
    straight_rows = (tmp_path / "straight" / "heldout.csv").read_text().splitlines()
    assert straight_rows == (tmp_path / "crashed" / "heldout.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in straight_rows] == ["step", "2", "4"]

    folder = tmp_path / "crashed" / MINI_MODEL_DIR
    tensors, config = read_mini(folder)
    assert config["training"]["train_seeds"] == [0, 0] and config["training"]["heldout_seeds_from"] == HELD_OUT_SEED
    assert config["branch"]["prediction"] == "readout_x0"  # the default of stage mini, recorded with the weights
    assert torch.equal(tensors["transformer"]["blocks.1.ffn.net.2.weight"], a["transformer.blocks.1.ffn.net.2.weight"])

    # it loads as the mini backend (its own branch, mode branch) and generates a segment
    stack = load_generation_stack(BackboneConfig(backend="mini", model_dir=str(folder), device="cpu"), mode="branch")
    assert stack.branch is not None and stack.branch.readout.splat == MemoryConfig().splat
    with pytest.raises(ValueError, match="carries its own trained memory branch"):
        load_generation_stack(BackboneConfig(backend="mini", model_dir=str(folder)), str(tmp_path), mode="branch")
    pipe = MiragePipeline(stack.backbone, PipelineConfig(segment_frames=9, steps=2, mode="branch"), stack.branch)
    K = intrinsics_from_fov(55.0, 32, 32)
    image = np.full((32, 32, 3), 128, np.uint8)
    pipe.start(image, torch.full((32, 32), 3.0), K)
    segment = pipe.run_segment(yaw_pan(9, 10.0), lambda frames, poses, K: torch.full((len(frames), 32, 32), 3.0))
    assert segment.frames.shape == (9, 32, 32, 3) and torch.isfinite(segment.latents).all()
    assert isinstance(pipe.memory, LatentSpatialMemory)


def test_untrained_readout_x0_model_answers_with_the_readout(tmp_path):
    """Stage mini starts from a zero correction: at step 0 the implied clean latents of every noisy frame
    are the visible readout (zeros elsewhere), whatever the noise; with velocity prediction they are not."""
    for prediction in ("readout_x0", "velocity"):
        out, cache = str(tmp_path / prediction), str(tmp_path / "cache")
        config = TrainConfig(out=out, cache_dir=cache, prediction=prediction, **COMMON)
        trainer = Trainer(config, **QUIET)
        batch = trainer.batch(0)
        velocity, noised = predict_velocity(trainer.model, batch, 1, torch.Generator().manual_seed(0), config.shift)
        x0 = noised.model_input - noised.sigmas[:, None, :, None, None] * velocity
        expected = batch.readout * batch.visible[:, None]
        close = torch.allclose(x0[:, :, 1:], expected[:, :, 1:], atol=1e-4)
        assert close == (prediction == "readout_x0")
        assert trainer.config.loss_weighting == ("x0" if prediction == "readout_x0" else "velocity")
    with pytest.raises(ValueError, match="--prediction readout_x0 is for --stage mini"):
        TrainConfig(stage="branch", prediction="readout_x0")
    with pytest.raises(ValueError, match="--prediction must be one of"):
        TrainConfig(stage="mini", prediction="eps")


def test_mini_stage_refuses_held_out_seeds_and_other_backends():
    with pytest.raises(ValueError, match="below 5000"):
        TrainConfig(stage="mini", procedural_seed=4990, procedural_scenes=20)
    with pytest.raises(ValueError, match="--backend tiny"):
        TrainConfig(stage="mini", backend="wan", model_dir="x")


def test_a_run_from_a_trained_model_with_a_new_refiner_starts_where_that_model_is(tmp_path):
    """``--init FOLDER --refiner-width N``: the folder's weights, a refiner whose zero head leaves the
    model's predictions as they were; the export records the refiner and loads and generates."""
    cache = str(tmp_path / "cache")
    train(TrainConfig(out=str(tmp_path / "base"), cache_dir=cache, **COMMON), **QUIET)
    folder = str(tmp_path / "base" / MINI_MODEL_DIR)
    plain = Trainer(TrainConfig(out=str(tmp_path / "plain"), cache_dir=cache, init_from=folder, **COMMON), **QUIET)
    config = TrainConfig(out=str(tmp_path / "refined"), cache_dir=cache, init_from=folder, refiner_width=8, **COMMON)
    refined = Trainer(config, **QUIET)
    tensors, _ = read_mini(folder)
    for name, value in tensors["transformer"].items():
        assert torch.equal(plain.model.transformer.state_dict()[name], value)
    batch = plain.batch(0)
    assert batch.mapping.shape == (1, 6, *batch.visible.shape[1:])
    before = [predict_velocity(t.model, batch, 1, torch.Generator().manual_seed(0), 1.0)[0] for t in (plain, refined)]
    torch.testing.assert_close(before[0], before[1], rtol=1e-5, atol=1e-5)
    refined.close()
    plain.close()

    train(config, **QUIET)
    exported, saved = read_mini(tmp_path / "refined" / MINI_MODEL_DIR)
    assert saved["branch"]["refiner_width"] == 8 and saved["training"]["init_from"] == folder
    assert any(name.startswith("refiner.") for name in exported["branch"])
    stack = load_generation_stack(
        BackboneConfig(backend="mini", model_dir=str(tmp_path / "refined" / MINI_MODEL_DIR), device="cpu"),
        mode="branch",
    )
    assert stack.branch.refiner is not None
    mappings = []
    refine = stack.branch.refiner.forward
    stack.branch.refiner.forward = lambda readout, visible, mapping: (
        mappings.append(mapping) or refine(readout, visible, mapping)
    )
    pipe = MiragePipeline(stack.backbone, PipelineConfig(segment_frames=9, steps=2, mode="branch"), stack.branch)
    pipe.start(np.full((32, 32, 3), 128, np.uint8), torch.full((32, 32), 3.0), intrinsics_from_fov(55.0, 32, 32))
    segment = pipe.run_segment(yaw_pan(9, 10.0), lambda frames, poses, K: torch.full((len(frames), 32, 32), 3.0))
    assert torch.isfinite(segment.latents).all()
    # the pipeline reads the mapping out for the refiner, once per step: [1, 6, F, h, w]
    assert len(mappings) == 2 and all(m is not None and m.shape[:2] == (1, 6) for m in mappings)

    with pytest.raises(ValueError, match="branch layers"):
        Trainer(
            TrainConfig(
                out=str(tmp_path / "x"), cache_dir=cache, init_from=folder, **{**COMMON, "branch_layers": (0, 1)}
            ),
            **QUIET,
        )
    with pytest.raises(ValueError, match="--refiner-width and --init are for --stage mini"):
        TrainConfig(stage="branch", init_from=folder)


def test_a_deeper_run_from_a_trained_model_grows_blocks_that_start_as_the_identity(tmp_path):
    """``--init FOLDER --layers N+2``: the folder's blocks first, two more with zero outputs, so the grown
    model predicts what the folder's model predicts; it trains and exports with its new depth. Fewer blocks
    than the folder's are refused, naming the file."""
    cache = str(tmp_path / "cache")
    train(TrainConfig(out=str(tmp_path / "base"), cache_dir=cache, **COMMON), **QUIET)
    folder = str(tmp_path / "base" / MINI_MODEL_DIR)
    plain = Trainer(TrainConfig(out=str(tmp_path / "plain"), cache_dir=cache, init_from=folder, **COMMON), **QUIET)
    deeper = dict(COMMON, tiny_num_layers=6)
    config = TrainConfig(out=str(tmp_path / "grown"), cache_dir=cache, init_from=folder, **deeper)
    grown = Trainer(config, **QUIET)
    tensors, _ = read_mini(folder)
    state = grown.model.transformer.state_dict()
    assert len(grown.model.transformer.blocks) == 6
    for name, value in tensors["transformer"].items():
        assert torch.equal(state[name], value)
    for block in grown.model.transformer.blocks[4:]:
        assert not block.ffn.net[-1].weight.any() and not block.attn1.to_out[0].weight.any()
        assert block.attn1.to_q.weight.abs().sum() > 0  # the rest of a new block starts random, not zero
    batch = plain.batch(0)
    before = [predict_velocity(t.model, batch, 1, torch.Generator().manual_seed(0), 1.0)[0] for t in (plain, grown)]
    assert before[0].abs().max() > 0
    torch.testing.assert_close(before[0], before[1], rtol=1e-5, atol=1e-5)
    grown.close()
    plain.close()

    result = train(config, **QUIET)
    assert all(np.isfinite(result.losses))
    exported, saved = read_mini(tmp_path / "grown" / MINI_MODEL_DIR)
    assert saved["transformer"]["tiny_num_layers"] == 6 and saved["training"]["init_from"] == folder
    # the new blocks learned something: their outputs are no longer zero
    assert exported["transformer"]["blocks.5.ffn.net.2.weight"].abs().sum() > 0

    with pytest.raises(ValueError, match=r"model\.safetensors: a 4-block transformer does not fit this run's 3"):
        Trainer(
            TrainConfig(
                out=str(tmp_path / "x"),
                cache_dir=cache,
                init_from=folder,
                **{**COMMON, "tiny_num_layers": 3, "branch_layers": (0, 2)},
            ),
            **QUIET,
        )


def _world_set(folder, **kwargs):
    from model.eval.scenes import SceneRenderer
    from model.generation.patch_vae import PatchVAE
    from model.training.worlds import WorldSampleSet, WorldSpec

    renderer = SceneRenderer()
    try:
        spec = WorldSpec(32, 32, segments=2, segment_frames=9)
        return WorldSampleSet([3, 4, 5], spec, PatchVAE(), torch.zeros(2, 4), folder, renderer, **kwargs)
    finally:
        renderer.close()


def test_worlds_built_by_worker_processes_and_kept_on_the_device_are_the_sequential_samples(tmp_path):
    """``cache_workers`` builds the same world files as one process; ``device`` serves the same samples
    without reading files."""
    sequential = _world_set(tmp_path / "one")
    parallel = _world_set(tmp_path / "two", workers=2)
    resident = _world_set(tmp_path / "two", device="cpu")  # the files are there: loaded, not rebuilt
    assert len(sequential) == len(parallel) == len(resident) == 6
    for i in range(6):
        a, b, c = sequential.sample(i), parallel.sample(i), resident.sample(i)
        # rendered uint8 frames through the exact patch VAE: identical in any process
        assert torch.equal(a.latents, b.latents)
        # readouts: the same memory code on other thread counts (float sums may round differently)
        assert (a.visible != b.visible).float().mean() < 1e-3
        both = a.visible & b.visible
        torch.testing.assert_close(a.readout[:, :, both[0]], b.readout[:, :, both[0]], atol=2e-3, rtol=0)
        # device-resident samples are copies of the file's tensors: exact
        for name in ("latents", "readout", "visible", "mapping"):
            assert torch.equal(getattr(b, name), getattr(c, name))
    with pytest.raises(ValueError, match="--cache-workers must be >= 1"):
        TrainConfig(stage="mini", cache_workers=0)


def test_max_minutes_lowers_the_steps_and_the_schedule_to_the_budget(tmp_path):
    """After timing steps 6-25 the run is cut to what fits the budget (here nothing more: 25 steps) and its
    cosine schedule ends there; a budget that holds every step leaves ``steps`` alone."""
    from model.training.trainer import TIMING_SKIP, TIMING_STEPS

    cache = str(tmp_path / "cache")
    settings = {**COMMON, "steps": 400, "warmup_steps": 30, "checkpoint_every": 1000}
    tight = train(TrainConfig(out=str(tmp_path / "tight"), cache_dir=cache, max_minutes=1e-4, **settings), **QUIET)
    assert tight.steps == TIMING_SKIP + TIMING_STEPS == len(tight.losses)
    rows = (tmp_path / "tight" / "loss.csv").read_text().splitlines()[1:]
    lrs = [float(row.split(",")[2]) for row in rows]
    # warm-up to step 25 of 30: the schedule of a 25-step run, not of a 400-step one
    expected = TrainConfig(**{**settings, "steps": 25})
    assert lrs == pytest.approx([expected.learning_rate_at(s) for s in range(25)])
    settings["steps"] = 30
    roomy = train(TrainConfig(out=str(tmp_path / "roomy"), cache_dir=cache, max_minutes=600.0, **settings), **QUIET)
    assert roomy.steps == 30
    for bad in (0.0, float("nan"), -1.0):
        with pytest.raises(ValueError, match="--max-minutes must be positive"):
            TrainConfig(stage="mini", max_minutes=bad)


def test_sampler_steps_train_at_the_pipelines_sigmas_with_rollout_and_are_recorded(tmp_path):
    """``--sampler-steps 2 --rollout``: the levels are the mini sampler's UniPC sigmas, every step runs the
    rollout pass for the samples at the second level, and the model folder records the setting."""
    config = TrainConfig(stage="mini", shift=1.0, sampler_steps=2, sampler_share=0.75, rollout=True)
    levels = config.sampler_levels()
    assert levels.sigmas == pytest.approx((1.0, 0.5), abs=1e-3)
    assert levels.share == 0.75 and levels.rollout
    assert TrainConfig(stage="mini").sampler_levels() is None
    for bad, match in (
        (dict(rollout=True), "--rollout needs --sampler-steps"),
        (dict(sampler_steps=1, rollout=True), "at least two"),
        (dict(sampler_steps=2, sampler_share=1.5), "share"),
        (dict(sampler_steps=-1), "--sampler-steps must be >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            TrainConfig(stage="mini", **bad)

    import model.training.trainer as trainer_module

    rolled = []
    original = trainer_module.roll_out

    def counting_roll_out(noised, latents, predict):
        rolled.append(int((noised.previous > 0).sum()))
        return original(noised, latents, predict)

    settings = {**COMMON, "steps": 2, "batch_size": 4, "shift": 1.0, "sampler_steps": 2, "sampler_share": 1.0}
    settings["rollout"] = True
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module, "roll_out", counting_roll_out)
        result = train(TrainConfig(out=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), **settings), **QUIET)
    assert all(np.isfinite(result.losses)) and len(result.losses) == 2
    assert len(rolled) >= 2 and sum(rolled) > 0, "training steps rolled some samples out"
    training = read_mini(tmp_path / "run" / MINI_MODEL_DIR)[1]["training"]
    assert (training["sampler_steps"], training["sampler_share"], training["rollout"]) == (2, 1.0, True)


def test_hole_weight_reaches_the_loss_with_the_batchs_coverage_and_is_recorded(tmp_path):
    """``--hole-weight 3``: every training step's loss gets the weight and the batch's readout coverage,
    and the model folder records it."""
    for bad in (0.0, -2.0, float("inf")):
        with pytest.raises(ValueError, match="--hole-weight must be positive"):
            TrainConfig(stage="mini", hole_weight=bad)

    import model.training.trainer as trainer_module

    seen = []
    original = trainer_module.flow_loss

    def recording_flow_loss(prediction, noised, weighting="velocity", visible=None, hole_weight=1.0):
        seen.append((hole_weight, None if visible is None else (tuple(visible.shape), visible.dtype)))
        return original(prediction, noised, weighting, visible, hole_weight)

    settings = {**COMMON, "steps": 2, "eval_every": 10, "batch_size": 2, "hole_weight": 3.0}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module, "flow_loss", recording_flow_loss)
        result = train(TrainConfig(out=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), **settings), **QUIET)
    assert all(np.isfinite(result.losses)) and len(result.losses) == 2
    weighted = [shape for weight, shape in seen if weight == 3.0]
    assert len(weighted) == 2, "both training steps weight the holes"
    assert all(shape == ((2, 3, 8, 8), torch.bool) for shape in weighted), weighted  # 3 latent frames of 32x32
    assert read_mini(tmp_path / "run" / MINI_MODEL_DIR)[1]["training"]["hole_weight"] == 3.0
