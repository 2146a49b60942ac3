"""The generation stack in one call: backbone, trained memory weights, then offloading.

The order is the rule this module keeps in one place: LoRA adapters and the memory branch's hooks
go on the bare transformer *before* the models are placed, because group offloading only manages
the modules present when it is applied. :func:`load_generation_stack` builds what generation needs
(``main.py generate``, the GUI worker, benchmarks); :func:`attach_before_offload` gives the same
order to code that attaches modules of its own (the trainer's fresh branch or LoRA).

Example:
    >>> stack = load_generation_stack(BackboneConfig(backend="tiny"), frame_hw=(176, 320))  # doctest: +SKIP
    >>> MiragePipeline(stack.backbone, PipelineConfig(), stack.branch)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from model.generation.backbone import Backbone, BackboneConfig, StatusCallback, load_backbone
from model.generation.lora import backbone_config_for_weights, load_memory_weights
from model.generation.memory_branch import MemoryBranch
from model.generation.pipeline import check_branch_weights
from model.generation.profiles import profile


class GenerationStack(NamedTuple):
    """What :func:`load_generation_stack` returns."""

    # the backbone, models placed per its config's offload
    backbone: Backbone
    # the trained memory branch attached to the transformer (its LoRA added); None without memory weights
    branch: MemoryBranch | None


@contextmanager
def attach_before_offload(config: BackboneConfig, on_status: StatusCallback | None = None) -> Iterator[Backbone]:
    """The backbone of ``config`` with its models placed (``config.offload``) only when the block
    ends: attach LoRA adapters, branches and other submodules inside the block.

    If the block raises, the models are not placed and the exception propagates.
    """
    backbone = load_backbone(config, on_status, apply_offload=False)
    yield backbone
    backbone.apply_offload(on_status)


def load_generation_stack(
    config: BackboneConfig,
    memory_weights: str | os.PathLike | None = None,
    frame_hw: tuple[int, int] | None = None,
    *,
    mode: str = "inpaint",
    on_status: StatusCallback | None = None,
) -> GenerationStack:
    """Load the backbone and, from ``memory_weights``, the memory branch + LoRA, then place the models.

    Args:
        config: the backbone to build; a ``tiny`` transformer takes its sizes from the weights'
            manifest (:func:`model.generation.lora.backbone_config_for_weights`).
        memory_weights: a memory-weights folder (:mod:`model.generation.lora`); None or ``""``: stock
            weights, or the branch the backend carries (mini), which refuses another.
        frame_hw: ``(height, width)`` in pixels of the frames to generate, checked against the
            backbone's image multiple before the weights are attached; None: not checked.
        mode: the pipeline mode (``PipelineConfig.mode``); ``"branch"`` needs ``memory_weights``
            and is refused before anything loads.
        on_status: told a short message at each stage.

    Raises:
        ValueError: mode ``"branch"`` without weights, a frame size the backbone cannot take, or bad
            memory weights; :class:`model.io.folders.ModelFolderError` for a bad model folder.
        FileNotFoundError: a memory-weights file is missing.
    """
    carries_branch = profile(config.backend).mode == "branch"
    if memory_weights and carries_branch:
        raise ValueError(
            f"--memory-weights {memory_weights}: the {config.backend} backend carries its own trained memory branch"
        )
    if carries_branch and mode != "branch":
        raise ValueError(
            f"mode {mode!r}: the {config.backend} backend generates with its trained memory branch (mode 'branch')"
        )
    check_branch_weights(mode, bool(memory_weights) or carries_branch)
    memory_weights = memory_weights or None
    status = on_status or (lambda message: None)
    branch = None
    with attach_before_offload(backbone_config_for_weights(config, memory_weights), status) as backbone:
        if frame_hw is not None:
            backbone.check_image_size(*frame_hw)
        if memory_weights is not None:
            status(f"Loading memory weights from {memory_weights}…")
            branch = load_memory_weights(memory_weights, backbone.transformer).to(backbone.device)
    return GenerationStack(backbone, backbone.branch if branch is None else branch)
