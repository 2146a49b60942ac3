"""Scoring generate runs against exact renders: procedural rooms (seeded or bundled) have ground truth, photos not."""

import numpy as np
import pytest
import torch

from explorer.evaluate import load_run
from explorer.generate import GenerateArgs, run_generate
from explorer.scene_inputs import seeded_room
from explorer.truth import truth_metrics
from model.eval.metrics import psnr
from model.eval.scenes import SceneRenderer

SMALL = dict(backend="tiny", height=64, width=64, steps=1, segments=1, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_seeded_room_run_starts_from_its_exact_render_and_is_scored_on_every_new_frame(tmp_path):
    out = tmp_path / "room.mp4"
    run_generate(GenerateArgs(out=str(out), scene_seed=5, **SMALL))
    run = load_run(out)
    with SceneRenderer() as renderer:
        truth0 = renderer.render(seeded_room(5), run.w2c[0], run.K, 64, 64)[0]
    assert psnr(run.frames[0], truth0) > 30, "frame 0 is the room's render (through H.264 only)"
    metrics = truth_metrics(out)
    assert metrics["frames"] == 32 and np.isfinite(metrics["psnr_db"]) and -1 <= metrics["ssim"] <= 1
    # random tiny weights generate noise where the memory is blind: well below the input frame's fidelity
    assert metrics["psnr_db"] < psnr(run.frames[0], truth0)


def test_a_photo_run_has_no_ground_truth_and_a_seed_with_a_photo_is_refused(tmp_path):
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(photo)
    out = tmp_path / "photo.mp4"
    run_generate(GenerateArgs(out=str(out), image=str(photo), **SMALL))
    assert truth_metrics(out) is None
    with pytest.raises(ValueError, match="--scene-seed 2: given with --image"):
        run_generate(GenerateArgs(out=str(tmp_path / "x.mp4"), image=str(photo), scene_seed=2, **SMALL))
