"""Error descriptions for the UI: what went wrong, and how to fix it (``failed(title, message)``)."""

from __future__ import annotations

import traceback

import torch

from model.generation.backbone import WAN_FOLDER
from model.io.folders import ModelFolderError
from model.io.images import ImageLoadError
from model.memory.masks import SKY_FOLDER


def describe_error(exc: BaseException, doing: str) -> tuple[str, str]:
    """``(title, message)`` for the UI: what went wrong while ``doing`` and how to fix it."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return "Out of GPU memory", (
            f"{doing} ran out of GPU memory: {text.splitlines()[0]}\n\n"
            "Fix: lower the resolution or start with --offload group ('model' saves less), "
            "or use fewer denoising steps. Nothing generated so far is lost."
        )
    if isinstance(exc, ModelFolderError) and exc.what == WAN_FOLDER:
        return "Model weights not found", (
            f"{text}\n\nFix: point the model folder at a local Wan2.2-TI2V-5B diffusers download "
            "(model_index.json, scheduler/, tokenizer/, text_encoder/, transformer/, vae/ with *.safetensors), "
            "or choose the tiny backend."
        )
    if isinstance(exc, ModelFolderError) and exc.what == SKY_FOLDER:
        return "Sky segmentation model not usable", (
            f"{text}\n\nFix: choose a local semantic-segmentation model folder with a class labelled 'sky', "
            "or none (sky by depth only)."
        )
    if isinstance(exc, ModelFolderError):  # a depth model
        return (
            "Depth model not usable",
            f"{text}\n\nFix: choose a local metric depth-estimation model folder, or none (flat prior depth).",
        )
    if isinstance(exc, ImageLoadError):
        return "Cannot open image", f"{text}\n\nFix: choose a readable photo (JPEG, PNG, WebP, TIFF ...)."
    if isinstance(exc, FileNotFoundError):
        return "File not found", f"{doing}: {text}"
    if isinstance(exc, ValueError):
        return "Invalid input", f"{doing}: {text}"
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return "Generation error", f"{doing} failed: {last}"
