"""Which pixels of each frame a memory covered: the ``visible`` / ``holes`` split of ``eval-world``.

The split is the same for every compared system, so all of them are scored on the same pixels: it is
the coverage of a :class:`~model.memory.latent.LatentSpatialMemory` (default settings, the pipeline's)
written with the *exact* renders and depths at the cameras the pipeline writes from. The memory starts
from frame 0; before segment ``s`` it holds frame 0 and the written latent frames (RGB frames ``4k``,
``k >= 1``) of segments ``0..s-1``, and each frame of segment ``s`` is covered where that memory's
z-buffered readout at the frame's own camera shows a point. What a system's memory covers differs from
this only by what it wrote (its generated frames carry no geometry: depth is exact for all of them).
"""

from __future__ import annotations

import numpy as np
import torch

from model.baselines.readout_inpaint import cell_mask_to_pixels
from model.generation.patch_vae import PatchVAE
from model.io.frames import frames_to_tensor
from model.memory.latent import LatentSpatialMemory, MemoryConfig
from model.memory.masks import DEFAULT_SKY_FAR_M, write_masks


def reference_coverage(
    frames: np.ndarray,
    depth: np.ndarray,
    w2c: torch.Tensor,
    K: torch.Tensor,
    segment_frames: int = 33,
    config: MemoryConfig | None = None,
) -> np.ndarray:
    """``[N, H, W]`` bool: the pixels of each frame a memory written with the exact frames covered.

    Args:
        frames: ``[N, H, W, 3]`` uint8 exact renders, ``N = 1 + segments * (segment_frames - 1)``.
        depth: ``[N, H, W]`` float32 exact z-depth in metres (+inf: sky).
        w2c: ``[N, 4, 4]`` poses. K: ``[3, 3]`` pixel intrinsics.
        segment_frames: frames per segment (4k+1; consecutive segments share one frame).
        config: the memory's settings (default: the pipeline's).

    Returns:
        ``[N, H, W]`` bool; frame 0 (the start image) is covered everywhere.
    """
    n, height, width = frames.shape[:3]
    stride = segment_frames - 1
    if (n - 1) % stride or n < segment_frames:
        raise ValueError(f"frames: {n} frames are not whole segments of {segment_frames} frames")
    vae = PatchVAE()
    h, w = height // vae.spatial_stride, width // vae.spatial_stride
    depth_t = torch.from_numpy(np.asarray(depth, dtype=np.float32))
    w2c = torch.as_tensor(w2c, dtype=torch.float64)
    memory = LatentSpatialMemory(config or MemoryConfig())
    memory.initialize(vae.encode(frames_to_tensor(frames[0]))[0], depth_t[0], K, w2c[0])
    covered = torch.ones(n, h, w, dtype=torch.bool)
    for start in range(0, n - 1, stride):
        ids = torch.arange(start + 1, start + segment_frames)
        covered[ids] = memory.readout(w2c[ids], K, h, w, image_hw=(height, width)).visible
        written = ids[vae.temporal_stride - 1 :: vae.temporal_stride]  # RGB frames 4k, k >= 1, of the segment
        keep, labels = write_masks(depth_t[written], (h, w), far_m=DEFAULT_SKY_FAR_M)
        latents = torch.cat([vae.encode(frames_to_tensor(frame)) for frame in frames[written.numpy()]])
        memory.update(latents, depth_t[written], w2c[written], K, keep=keep, labels=labels)
    return cell_mask_to_pixels(covered, vae.spatial_stride).numpy()
