"""The world benchmark's baselines: a memory never read or written, and the readout filled by Telea inpainting."""

import numpy as np
import torch

from model.baselines.blind_memory import BlindMemory
from model.baselines.readout_inpaint import cell_mask_to_pixels, readout_inpaint_latents, telea_fill
from model.generation.patch_vae import PatchVAE
from model.geometry.camera import intrinsics_from_fov
from model.io.frames import frames_to_tensor, tensor_to_frames
from model.memory.latent import LatentSpatialMemory


def test_a_blind_memory_shows_nothing_and_keeps_nothing():
    K = intrinsics_from_fov(60.0, 32, 16)
    latent, depth = torch.randn(48, 4, 8), torch.full((16, 32), 2.0)
    blind, seeing = BlindMemory(), LatentSpatialMemory()
    for memory in (blind, seeing):
        memory.initialize(latent, depth, K, torch.eye(4))
    poses = torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
    shown, hidden = seeing.readout(poses, K, 4, 8, image_hw=(16, 32)), blind.readout(poses, K, 4, 8, image_hw=(16, 32))
    assert shown.visible.all() and not hidden.visible.any()
    for name in ("latent", "visible", "depth", "index"):
        assert getattr(hidden, name).shape == getattr(shown, name).shape
        assert getattr(hidden, name).dtype == getattr(shown, name).dtype
    assert (hidden.latent == 0).all() and (hidden.index == -1).all()
    before = blind.stats()
    after = blind.update(torch.randn(2, 48, 4, 8), depth.expand(2, 16, 32), poses[:2], K)
    assert after == before == blind.stats()
    assert blind.kind == seeing.kind  # a trained branch accepts it as the memory it was trained with


def test_telea_fills_only_the_holes_and_continues_what_surrounds_them():
    image = np.zeros((24, 24, 3), np.uint8)
    image[:] = (200, 40, 90)
    holes = np.zeros((24, 24), bool)
    holes[8:16, 8:16] = True
    damaged = image.copy()
    damaged[holes] = 0
    filled = telea_fill(damaged, holes)
    assert np.array_equal(filled[~holes], image[~holes])
    assert np.abs(filled[holes].astype(int) - image[holes]).max() <= 2  # a flat colour stays flat
    assert np.array_equal(telea_fill(damaged, np.ones_like(holes)), damaged)  # nothing to propagate from


def test_readout_inpaint_keeps_visible_cells_exactly_and_fills_the_others():
    vae = PatchVAE()
    rng = np.random.default_rng(1)
    truth = np.repeat(np.repeat(rng.integers(60, 200, (2, 4, 8, 3), dtype=np.uint8), 4, 1), 4, 2)  # flat 4x4 cells
    latents = vae.encode(frames_to_tensor(truth[:1]))
    latents = torch.cat([latents, vae.encode(frames_to_tensor(truth[1:]))])
    visible = torch.ones(2, 4, 8, dtype=torch.bool)
    visible[:, 1:3, 3:5] = False
    readout = latents.masked_fill(~visible[:, None], 0.0)
    filled = tensor_to_frames(torch.cat([vae.decode(z[None]) for z in readout_inpaint_latents(vae, readout, visible)]))
    pixels = cell_mask_to_pixels(visible, 4).numpy()
    assert pixels.shape == (2, 16, 32) and pixels.sum() == visible.sum() * 16
    assert np.array_equal(filled[pixels], truth[pixels])  # the patch VAE is exact
    decoded = tensor_to_frames(torch.cat([vae.decode(z[None]) for z in readout]))
    assert (decoded[~pixels] == 128).all()  # a zero latent is mid-grey: the holes before filling
    for frame, hole, out in zip(decoded, ~pixels, filled, strict=True):
        assert np.array_equal(out, telea_fill(frame, hole))  # filled from the visible neighbours, grey ignored
