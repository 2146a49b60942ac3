"""The pipelines of the systems :mod:`explorer.eval_world.systems` names, on stacks loaded once per backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from explorer.eval_world.systems import System
from model.baselines.blind_memory import BlindMemory
from model.baselines.kinds import make_memory
from model.baselines.readout_inpaint import ReadoutInpaintPipeline
from model.generation.backbone import BackboneConfig
from model.generation.memory_branch import MemoryBranch
from model.generation.pipeline import MiragePipeline, PipelineConfig
from model.generation.profiles import profile
from model.generation.stack import GenerationStack, load_generation_stack
from model.memory.base import SpatialMemory


def load_stacks(
    systems: list[System],
    frame_hw: tuple[int, int],
    device: str | None,
    on_status: Callable[[str], None],
    mini_folder: str | None = None,
) -> dict[str, GenerationStack]:
    """One generation stack per backend the systems use, with the backend profile's defaults.

    Args:
        mini_folder: the mini model folder; None: the shipped one.
    """
    stacks = {}
    for backend in dict.fromkeys(s.backend for s in systems):
        stacks[backend] = load_generation_stack(
            BackboneConfig(backend=backend, device=device, model_dir=mini_folder if backend == "mini" else None),
            frame_hw=frame_hw,
            mode=profile(backend).mode,
            on_status=on_status,
        )
    return stacks


def make_pipeline(
    system: System, stack: GenerationStack, steps: int | None, seed: int, inpaint_fraction: float | None = None
) -> MiragePipeline:
    """A fresh pipeline of ``system`` on its backend's ``stack``, with an empty memory of the system's kind.

    A trained branch refuses a memory that reads out otherwise than it was trained on
    (:meth:`~model.generation.memory_branch.MemoryBranch.check_readout`); ``mini-rgb`` is exactly that
    comparison (the branch fed the RGB memory's VAE-encoded rasterisations), so for a memory of another
    kind the check is waived while the pipeline is built, and only the kind may differ.

    Args:
        steps: denoising steps per segment; None: the backend profile's (as every other setting:
            :meth:`~model.generation.pipeline.PipelineConfig.for_backend`).
        seed: the noise seed.
        inpaint_fraction: share of the steps in which visible tokens follow the readout; None: the profile's.
    """
    config = PipelineConfig.for_backend(
        system.backend, steps=steps, seed=seed, memory_kind=system.memory_kind, inpaint_fraction=inpaint_fraction
    )
    device, vae = stack.backbone.device, stack.backbone.vae
    if system.memory == "blind":
        memory = BlindMemory(config.memory, device)
    else:
        memory = make_memory(system.memory_kind, config.memory, device, vae)
    pipeline = ReadoutInpaintPipeline if system.model_free else MiragePipeline
    with _other_kind_allowed(stack.branch, memory):
        return pipeline(stack.backbone, config, stack.branch, memory)


@contextmanager
def _other_kind_allowed(branch: MemoryBranch | None, memory: SpatialMemory) -> Iterator[None]:
    """While the block runs, ``branch`` accepts ``memory`` if their readouts differ in the memory kind alone."""
    trained = None if branch is None else branch.readout
    if trained is None or trained.memory_kind == memory.kind:
        yield
        return
    branch.readout = replace(trained, memory_kind=memory.kind)  # every other setting is still checked
    try:
        yield
    finally:
        branch.readout = trained
