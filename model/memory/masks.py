"""Masks applied before every memory write: what is sky, what moves, what the user excluded.

Every latent cell gets one :class:`~model.memory.latent.CellLabel`; only STATIC cells are written. When a
cell qualifies for several labels, the first of this order wins:

1. **INVALID**: the memory's own depth sample of the cell (:func:`model.memory.latent.downsample_depth`,
   bilinear at the cell centre, invalid if it touches an invalid pixel) is invalid. There is no
   position to write, so nothing else about the cell matters.
2. **SKY**: more than half of the cell's pixels are sky (depth invalid or beyond ``far_m``, or the
   semantic segmenter says sky), or the cell's depth sample itself lies beyond ``far_m`` (so a cell
   whose centre falls on the sky is never written at the sky's depth). Sky has no stable 3D position.
3. **DYNAMIC**: the generated latent departs from the memory readout (:func:`dynamic_mask`), or any
   pixel of the cell is excluded by the user. A moving object has geometry, but not a static one.
4. **STATIC** otherwise.

Pixel masks go to the latent grid by area: a cell's *fraction* is the share of its pixels that are
set (``adaptive_avg_pool2d``; exact pixel blocks when ``H, W`` are multiples of ``h, w``, as on the
VAE grid). Sky uses a strict majority (``> 0.5``): sky edges keep the foreground. User masks use
"any pixel": the user asked for that object to be gone, so no sliver of it may leak into the memory.
"""

from __future__ import annotations

import os
import re

import torch
import torch.nn.functional as F

from model.io.folders import ModelFolderError, check_model_folder
from model.memory.latent import CellLabel, downsample_depth

#: Depth beyond which a pixel counts as sky, in metres. Metric models put the sky at their range cap
#: (Depth Anything V2 outdoor: 80 m) or far beyond (Depth Pro); at 60 m a 1 m camera move shifts a
#: point by ~1 latent cell at 1280 px and 65 degrees, so little real geometry is lost.
DEFAULT_SKY_FAR_M = 60.0
#: Default threshold on :func:`change_score`. On procedural rooms with a moving box, over generator-noise
#: levels 0-0.3 (``benchmarks/tune_dynamic_threshold.py`` -> ``benchmarks/results/dynamic_threshold.json``)
#: it gives mean F1 0.627 (precision 0.63, recall 0.63); the F1 peak, 0.630 at 0.65, has recall 0.58.
#: The lower value is preferred: a missed moving object leaves a ghost in the memory for good, while a
#: false alarm only leaves a static cell to be written by a later segment.
DEFAULT_DYNAMIC_THRESHOLD = 0.6
#: What a :class:`SemanticSkySegmenter` folder is, in :class:`~model.io.folders.ModelFolderError` messages.
SKY_FOLDER = "sky segmentation model"
#: A cell is sky when more than this share of its pixels are sky.
SKY_MAJORITY = 0.5
#: Floor of the change-score normaliser, as a share of the readout's RMS (see :func:`change_score`).
_SCALE_FLOOR = 0.1


# --------------------------------------------------------------------------------------------
# Sky
# --------------------------------------------------------------------------------------------


def sky_mask(depth: torch.Tensor, far_m: float = DEFAULT_SKY_FAR_M) -> torch.Tensor:
    """Pixels that are sky by depth: invalid (non-finite or ``<= 0``) or farther than ``far_m``.

    Args:
        depth: ``[T, H, W]`` z-depth in metres.
        far_m: metres.

    Returns:
        ``[T, H, W]`` bool.
    """
    if not far_m > 0:
        raise ValueError(f"far_m must be positive, got {far_m}")
    depth = torch.as_tensor(depth)
    return ~(torch.isfinite(depth) & (depth > 0)) | (depth > far_m)


def sky_label_ids(id2label: dict) -> list[int]:
    """Class ids whose label has the word "sky" (case-insensitive): ``[2]`` for ADE20k, whose
    "skyscraper" (48) is not sky."""
    return sorted(int(i) for i, label in id2label.items() if re.search(r"\bsky\b", str(label).lower()))


class SemanticSkySegmenter:
    """Sky pixels from a ``transformers`` semantic-segmentation model in a local folder.

    Any model with a class labelled "sky" works (e.g. SegFormer on ADE20k or Cityscapes). Loaded
    offline: ``local_files_only=True``, safetensors only, no remote code.

    Args:
        model_dir: folder written by ``save_pretrained`` (see :func:`model.io.folders.check_model_folder`).
        device: where the model runs. batch_size: frames per forward pass.

    Raises:
        ModelFolderError: folder missing or incomplete, or no class labelled "sky".
    """

    def __init__(self, model_dir: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 4) -> None:
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        folder = check_model_folder(model_dir, SKY_FOLDER)
        try:
            self.processor = AutoImageProcessor.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False
            )
            model = AutoModelForSemanticSegmentation.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False, use_safetensors=True
            )
        except (ImportError, OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"cannot load the sky segmentation model: {exc}"
            raise ModelFolderError(folder, SKY_FOLDER, [problem]) from exc
        self.sky_ids = sky_label_ids(model.config.id2label)
        if not self.sky_ids:
            problem = "the segmentation model has no class labelled 'sky'"
            raise ModelFolderError(folder, SKY_FOLDER, [problem])
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))

    @torch.inference_mode()
    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Sky pixels of ``images`` ``[T, H, W, 3]`` uint8 RGB -> ``[T, H, W]`` bool (CPU)."""
        images = torch.as_tensor(images).cpu()
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images: expected uint8 [T,H,W,3], got {images.dtype} {list(images.shape)}")
        size = (int(images.shape[1]), int(images.shape[2]))
        sky_ids = torch.tensor(self.sky_ids)
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = [frame.numpy() for frame in images[start : start + self.batch_size]]
            inputs = self.processor(images=batch, return_tensors="pt")
            outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device))
            maps = self.processor.post_process_semantic_segmentation(outputs, target_sizes=[size] * len(batch))
            out += [torch.isin(m.cpu(), sky_ids) for m in maps]
        return torch.stack(out)


# --------------------------------------------------------------------------------------------
# Dynamic content
# --------------------------------------------------------------------------------------------


def confident_cells(visible: torch.Tensor) -> torch.Tensor:
    """Visible cells whose whole 3x3 neighbourhood is visible.

    Readout cells next to holes sit on disocclusion edges, where the z-buffer mixes foreground and
    background and the readout is least reliable (``dynamic_mask(..., confident_only=True)``).
    Neighbours outside the grid do not count against a cell (the image border is not a hole).

    Args:
        visible: ``[T, h, w]`` bool readout visibility.

    Returns:
        ``[T, h, w]`` bool.
    """
    hidden = (~visible.to(torch.bool)).to(torch.float32)[:, None]
    return ~(F.max_pool2d(hidden, 3, stride=1, padding=1)[:, 0] > 0)


def change_score(latents: torch.Tensor, readout: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Scale-free change of each generated latent cell against the memory readout around it.

    Two distances, both divided by ``s_t``, the spread of frame ``t``'s visible readout features (RMS
    deviation from their per-channel mean, floored at 10 % of their RMS):

    * *match*: ``min_n rms_c(latents[:, u, v] - readout[:, n])`` over the visible cells ``n`` of the 3x3
      neighbourhood, so a reprojection off by up to one cell is not a change;
    * *context*: ``rms_c(mean_3x3 latents - mean_3x3 readout)`` with the readout mean over its visible
      cells, which is insensitive to sub-cell misregistration of texture.

    The score is the smaller of the two: a cell counts as changed only when no nearby readout cell
    matches it *and* its neighbourhood differs on average. On procedural rooms with a moving box
    this doubles precision at equal recall over either distance alone
    (``benchmarks/tune_dynamic_threshold.py``). Scaling all features, or shifting a channel by a
    constant, leaves the score unchanged; a faithful regeneration scores near 0. A coherent change
    (an object of another colour) scores high; incoherent per-cell changes partly cancel in the
    context term.

    Args:
        latents: ``[T, C, h, w]`` generated latents. readout: ``[T, C, h, w]`` memory readout.
        visible: ``[T, h, w]`` bool readout visibility.

    Returns:
        ``[T, h, w]`` float32; ``+inf`` where no neighbour is visible.
    """
    latents, readout = latents.to(torch.float32), readout.to(torch.float32)
    visible = visible.to(torch.bool)
    n_frames, channels, h, w = latents.shape
    neighbours = F.unfold(readout, 3, padding=1).view(n_frames, channels, 9, h, w)
    neighbour_visible = F.unfold(visible[:, None].to(torch.float32), 3, padding=1).view(n_frames, 9, h, w) > 0.5
    match = torch.where(
        neighbour_visible, (latents[:, :, None] - neighbours).square().mean(dim=1).sqrt(), torch.inf
    ).amin(dim=1)
    weight = visible[:, None].to(torch.float32)
    readout_mean = F.avg_pool2d(readout * weight, 3, 1, 1) / F.avg_pool2d(weight, 3, 1, 1).clamp(min=1e-6)
    context = (F.avg_pool2d(latents, 3, 1, 1) - readout_mean).square().mean(dim=1).sqrt()
    return torch.minimum(match, context) / _readout_spread(readout, visible)[:, None, None]


def _readout_spread(readout: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Per-frame spread ``[T]`` of the visible readout features (see :func:`change_score`)."""
    weight = visible[:, None].to(torch.float32)  # [T, 1, h, w]
    count = weight.sum(dim=(2, 3)).clamp(min=1.0)  # [T, 1]
    mean = (readout * weight).sum(dim=(2, 3)) / count  # [T, C]
    mean_square = (readout.square() * weight).sum(dim=(2, 3)) / count
    variance = (mean_square - mean.square()).clamp(min=0.0).mean(dim=1)
    floor = _SCALE_FLOOR**2 * mean_square.mean(dim=1)
    return torch.maximum(variance, floor).sqrt().clamp(min=1e-12)


def dynamic_mask(
    latents: torch.Tensor,
    readout: torch.Tensor,
    visible: torch.Tensor,
    threshold: float = DEFAULT_DYNAMIC_THRESHOLD,
    confident_only: bool = False,
) -> torch.Tensor:
    """Cells where the generated video departs from the memory: moving (or vanished) content.

    A cell is dynamic when the readout shows it and its :func:`change_score` exceeds ``threshold``.
    Cells the memory did not show (new content) are never dynamic. With ``confident_only`` only
    :func:`confident_cells` may be flagged; it is off by default because the score already ignores
    invisible neighbours, and on the benchmark the rule cost 44 % of the recall (moving objects sit
    next to the holes their parallax opens) for no gain in precision at equal recall.

    Args:
        latents: ``[T, C, h, w]`` generated latents. readout: ``[T, C, h, w]`` memory readout at the
            same cameras. visible: ``[T, h, w]`` bool readout visibility.
        threshold: on the scale-free score (default :data:`DEFAULT_DYNAMIC_THRESHOLD`).
        confident_only: flag only cells whose 3x3 readout neighbourhood is fully visible.

    Returns:
        ``[T, h, w]`` bool.
    """
    latents, readout, visible = (
        torch.as_tensor(latents),
        torch.as_tensor(readout),
        torch.as_tensor(visible).to(torch.bool),
    )
    if latents.ndim != 4 or readout.shape != latents.shape or visible.shape != latents.shape[:1] + latents.shape[2:]:
        raise ValueError(
            f"expected latents and readout [T,C,h,w] and visible [T,h,w], got {list(latents.shape)}, "
            f"{list(readout.shape)}, {list(visible.shape)}"
        )
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    eligible = confident_cells(visible) if confident_only else visible
    return eligible & (change_score(latents, readout, visible) > threshold)


# --------------------------------------------------------------------------------------------
# Pixel masks on the latent grid, and the combined write mask
# --------------------------------------------------------------------------------------------


def cell_fraction(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Share of each cell's pixels that are set: ``[T, H, W]`` bool -> ``[T, h, w]`` float32 in [0, 1]."""
    return F.adaptive_avg_pool2d(mask.to(torch.float32)[:, None], (h, w))[:, 0]


def user_cell_mask(user_mask: torch.Tensor, n_frames: int, h: int, w: int) -> torch.Tensor:
    """Cells excluded by a user mask: those with any excluded pixel.

    Args:
        user_mask: ``[H, W]`` (all frames) or ``[T, H, W]`` bool at pixel resolution, True = exclude.

    Returns:
        ``[n_frames, h, w]`` bool.
    """
    user_mask = torch.as_tensor(user_mask).to(torch.bool)
    if user_mask.ndim == 2:
        user_mask = user_mask[None].expand(n_frames, -1, -1)
    if user_mask.ndim != 3 or user_mask.shape[0] != n_frames:
        raise ValueError(f"user_mask: expected [H,W] or [{n_frames},H,W], got shape {list(user_mask.shape)}")
    return cell_fraction(user_mask, h, w) > 0


def write_masks(
    depth: torch.Tensor,
    latent_hw: tuple[int, int],
    far_m: float = DEFAULT_SKY_FAR_M,
    semantic_sky: torch.Tensor | None = None,
    dynamic: torch.Tensor | None = None,
    user_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label every latent cell of a write and say which cells to keep (see the module docstring).

    Args:
        depth: ``[T, H, W]`` z-depth in metres of the frames being written.
        latent_hw: ``(h, w)`` latent grid.
        far_m: sky distance in metres (:func:`sky_mask`).
        semantic_sky: optional ``[T, H, W]`` bool sky pixels (:class:`SemanticSkySegmenter`).
        dynamic: optional ``[T, h, w]`` bool dynamic cells (:func:`dynamic_mask`).
        user_mask: optional ``[H, W]`` or ``[T, H, W]`` bool pixels the user excluded.

    Returns:
        keep: ``[T, h, w]`` bool, True for STATIC cells.
        labels: ``[T, h, w]`` uint8 :class:`~model.memory.latent.CellLabel` codes.
    """
    depth = torch.as_tensor(depth).to(torch.float32)
    if depth.ndim != 3:
        raise ValueError(f"depth: expected [T,H,W], got shape {list(depth.shape)}")
    n_frames, height, width = depth.shape
    h, w = latent_hw
    if not (0 < h <= height and 0 < w <= width):
        raise ValueError(f"latent grid {h}x{w} must be positive and no larger than the depth map {height}x{width}")
    sky_pixels = sky_mask(depth, far_m)
    if semantic_sky is not None:
        semantic_sky = torch.as_tensor(semantic_sky, device=depth.device).to(torch.bool)
        if semantic_sky.shape != depth.shape:
            raise ValueError(f"semantic_sky: expected {list(depth.shape)}, got {list(semantic_sky.shape)}")
        sky_pixels |= semantic_sky
    cell_depth = downsample_depth(depth, h, w)
    labels = torch.full((n_frames, h, w), int(CellLabel.STATIC), dtype=torch.uint8, device=depth.device)
    moving = torch.zeros(n_frames, h, w, dtype=torch.bool, device=depth.device)
    if dynamic is not None:
        dynamic = torch.as_tensor(dynamic, device=depth.device).to(torch.bool)
        if dynamic.shape != (n_frames, h, w):
            raise ValueError(f"dynamic: expected [{n_frames},{h},{w}], got {list(dynamic.shape)}")
        moving |= dynamic
    if user_mask is not None:
        moving |= user_cell_mask(torch.as_tensor(user_mask, device=depth.device), n_frames, h, w)
    # lowest precedence first, so higher ones overwrite
    labels[moving] = int(CellLabel.DYNAMIC)
    labels[(cell_fraction(sky_pixels, h, w) > SKY_MAJORITY) | (cell_depth > far_m)] = int(CellLabel.SKY)
    labels[~torch.isfinite(cell_depth)] = int(CellLabel.INVALID)
    return labels == CellLabel.STATIC, labels
