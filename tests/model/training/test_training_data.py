"""Training data: RealEstate10K-layout parsing, skipping bad clips, the per-clip cache, samples."""

import logging
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from model.generation.depth import PriorDepth
from model.generation.patch_vae import PatchVAE
from model.geometry.trajectories import orbit
from model.io.cameras import write_re10k
from model.io.frames import frames_to_tensor
from model.io.video import Mp4Writer
from model.training.clips import ClipError, FolderClip, ProceduralClip, crop_intrinsics, discover_clips
from model.training.samples import ClipCache, SampleSet, SampleSpec

SRC_H, SRC_W = 40, 48  # source frames: wider than the 32x32 training frames, so they get cropped
SPEC = SampleSpec(32, 32, context_frames=0, chunk_frames=9, window_stride=8)


class CountingVAE(PatchVAE):
    """PatchVAE that counts encode calls."""

    def __init__(self):
        super().__init__()
        self.encode_calls = 0

    def encode(self, frames):
        self.encode_calls += 1
        return super().encode(frames)


def frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, SRC_H, SRC_W, 3), dtype=np.uint8)


def write_cameras(folder, n):
    K = torch.tensor([[30.0, 0, SRC_W / 2], [0, 30.0, SRC_H / 2], [0, 0, 1]], dtype=torch.float64)
    write_re10k(folder / "cameras.txt", orbit(n, 2.0, 20.0), K, SRC_W, SRC_H)


def image_clip(root, name, n_frames, n_cameras=None, prompt=None):
    folder = root / name
    (folder / "frames").mkdir(parents=True)
    for i, frame in enumerate(frames(n_frames)):
        Image.fromarray(frame).save(folder / "frames" / f"{i:05d}.png")
    write_cameras(folder, n_cameras or n_frames)
    if prompt is not None:
        (folder / "prompt.txt").write_text(prompt)
    return folder


def video_clip(root, name, n_frames, n_cameras=None):
    folder = root / name
    folder.mkdir(parents=True)
    with Mp4Writer(folder / "video.mp4", SRC_W, SRC_H, 16) as video:
        for frame in frames(n_frames):
            video.append(frame)
    write_cameras(folder, n_cameras or n_frames)
    return folder


def make_cache(tmp_path, vae, spec=SPEC):
    return ClipCache(
        tmp_path / "cache",
        spec,
        vae,
        lambda prompt: torch.full((1, 4, 8), float(len(prompt))),
        PriorDepth(),
        {"vae": "patch"},
    )


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    image_clip(root, "good", 17, prompt="a red room")
    video_clip(root, "video", 9)
    image_clip(root, "short", 6)
    image_clip(root, "mismatch", 9, n_cameras=8)
    bad = image_clip(root, "bad_image", 9)
    (bad / "frames" / "00003.png").write_bytes(b"not a png")
    video_clip(root, "video_short", 8, n_cameras=9)
    broken = root / "broken_camera"
    (broken / "frames").mkdir(parents=True)
    (broken / "cameras.txt").write_text("url\n1 2 3\n")
    (root / "no_frames").mkdir()
    write_cameras(root / "no_frames", 9)
    (root / ".cache").mkdir()  # hidden folders are not clips
    return root


def test_layout_parsing_and_skipping(data_dir, tmp_path, caplog):
    clips, problems = discover_clips(data_dir)
    assert [c.clip_id for c in clips] == ["bad_image", "good", "short", "video", "video_short"]
    assert len(problems) == 3
    assert any("broken_camera" in p and "19 columns" in p for p in problems)
    assert any("mismatch" in p and "9 frames" in p and "8 camera lines" in p for p in problems)
    assert any("no_frames" in p and "exactly one of" in p for p in problems)
    vae = CountingVAE()
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="model.training.samples"):
        warnings.simplefilter("ignore")
        samples = SampleSet(clips, make_cache(tmp_path, vae))
    assert samples.clip_ids == ["good", "video"]
    assert len(samples) == 2 + 1  # windows of 9 frames every 8: good has 17 frames (starts 0, 8), video 9 (start 0)
    reasons = " | ".join(samples.skipped)
    assert "bad_image" in reasons and "00003.png" in reasons
    assert "short: too short: 6 frames, needs >= 9" in reasons
    assert "video_short" in reasons and "8 frames but 9 camera lines" in reasons
    assert "skipping clip short" in caplog.text
    with pytest.raises(ValueError, match="not a folder"):
        discover_clips(tmp_path / "missing")


def test_frames_are_cropped_and_intrinsics_follow(data_dir):
    clip = FolderClip(data_dir / "good")
    w2c, K = clip.cameras(32, 32)
    assert w2c.shape == (17, 4, 4)
    # 40x48 -> centre crop 40x40 (x from 4 to 44) -> scale 0.8
    assert torch.allclose(K, torch.tensor([[24.0, 0, 16.0], [0, 24.0, 16.0], [0, 0, 1]], dtype=torch.float64))
    assert torch.allclose(crop_intrinsics(K, (32, 32), (32, 32)), K)
    out = clip.read_frames([0, 3], 32, 32)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(frames(17)[3]).resize((32, 32), Image.Resampling.LANCZOS, box=(4, 0, 44, 40)))
    assert np.array_equal(out[1], expected)  # exact: the same PIL resampling of the same uint8 pixels
    assert clip.prompt() == "a red room"
    with pytest.raises(ClipError, match="outside 0..16"):
        clip.read_frames([17], 32, 32)


def test_cache_is_reused_across_epochs_and_runs(data_dir, tmp_path):
    clips = [FolderClip(data_dir / "good")]
    vae = CountingVAE()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = SampleSet(clips, make_cache(tmp_path, vae))
    built = vae.encode_calls
    assert built == 1 + 2  # frame 0 for the memory + one chunk per window
    for _ in range(2):  # two epochs
        for i in range(len(samples)):
            samples.sample(i)
    assert vae.encode_calls == built, "epochs read the cache, they never re-encode"
    again = SampleSet(clips, make_cache(tmp_path, vae))
    assert vae.encode_calls == built, "a second run over the same cache folder encodes nothing"
    assert torch.equal(again.sample(1).latents, samples.sample(1).latents)  # exact: both read the same cache file
    (data_dir / "good" / "prompt.txt").write_text("a blue room with a longer prompt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SampleSet(clips, make_cache(tmp_path, vae))
    assert vae.encode_calls == 2 * built, "a changed clip file gets a new cache entry"


def test_samples_with_context_from_a_procedural_clip(renderer, tmp_path):
    spec = SampleSpec(32, 32, context_frames=1, chunk_frames=9, window_stride=8)
    clip = ProceduralClip(3, spec.min_clip_frames, renderer)
    vae = CountingVAE()
    samples = SampleSet([clip], ClipCache(tmp_path / "cache", spec, vae, lambda p: torch.zeros(1, 4, 8), None, {}))
    sample = samples.sample(0)
    assert sample.start == 4 and len(samples) == 1
    assert (
        sample.latents.shape == (1 + 3, 48, 8, 8)
        and sample.readout.shape == (4, 48, 8, 8)
        and sample.visible.shape == (4, 8, 8)
    )
    encoded = torch.cat([vae.encode(frames_to_tensor(frame)) for frame in clip.read_frames([0, 4, 8, 12], 32, 32)])
    # exact: the same VAE code on the same rendered uint8 frames
    assert torch.equal(sample.latents, encoded), (
        "context frame = RGB frame s-4 alone, target = the chunk's latent frames"
    )
    # the memory is built from frame 0 with exact depth: read out at frame 0's own pose it is frame 0's latent
    assert sample.visible[0].all()
    assert torch.allclose(sample.readout[0], sample.latents[0], atol=1e-2)
    assert sample.visible[1:].float().mean() > 0.5
