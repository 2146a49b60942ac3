"""Conversions between uint8 RGB frames (what users and files see) and model tensors in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch


def frames_to_tensor(frames: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """``[T, H, W, 3]`` (or ``[H, W, 3]``) uint8 RGB -> ``[T, 3, H, W]`` float32 in ``[-1, 1]``."""
    frames = (
        frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.array(frames))
    )  # copy: inputs may be read-only
    if frames.dtype != torch.uint8 or frames.shape[-1] != 3 or frames.ndim not in (3, 4):
        raise ValueError(f"frames: expected uint8 [T,H,W,3] or [H,W,3], got {frames.dtype} {list(frames.shape)}")
    if frames.ndim == 3:
        frames = frames[None]
    return frames.to(device).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0


def tensor_to_frames(frames: torch.Tensor) -> np.ndarray:
    """``[T, 3, H, W]`` float in ``[-1, 1]`` -> ``[T, H, W, 3]`` uint8 RGB (values outside are clipped)."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames: expected [T,3,H,W], got shape {list(frames.shape)}")
    out = ((frames.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()
