"""The pipelines of the systems :mod:`explorer.eval_world.systems` names, on stacks loaded once per backend."""

from __future__ import annotations

from collections.abc import Callable

from explorer.eval_world.systems import System
from model.baselines.blind_memory import BlindMemory
from model.baselines.kinds import make_memory
from model.baselines.readout_inpaint import ReadoutInpaintPipeline
from model.generation.backbone import BackboneConfig
from model.generation.pipeline import MiragePipeline, PipelineConfig
from model.generation.profiles import profile
from model.generation.stack import GenerationStack, load_generation_stack


def load_stacks(
    systems: list[System], frame_hw: tuple[int, int], device: str | None, on_status: Callable[[str], None]
) -> dict[str, GenerationStack]:
    """One generation stack per backend the systems use, with the backend profile's defaults."""
    stacks = {}
    for backend in dict.fromkeys(s.backend for s in systems):
        stacks[backend] = load_generation_stack(
            BackboneConfig(backend=backend, device=device), frame_hw=frame_hw, on_status=on_status
        )
    return stacks


def make_pipeline(system: System, stack: GenerationStack, steps: int | None, seed: int) -> MiragePipeline:
    """A fresh pipeline of ``system`` on its backend's ``stack``, with an empty memory of the system's kind.

    Args:
        steps: denoising steps per segment; None: the backend profile's.
        seed: the noise seed.
    """
    backend = profile(system.backend)
    config = PipelineConfig(
        steps=steps or backend.steps,
        mode="branch" if stack.branch is not None else "inpaint",
        inpaint_fraction=backend.inpaint_fraction,
        seed=seed,
        memory_kind=system.memory_kind,
    )
    device, vae = stack.backbone.device, stack.backbone.vae
    if system.memory == "blind":
        memory = BlindMemory(config.memory, device)
    else:
        memory = make_memory(system.memory_kind, config.memory, device, vae)
    pipeline = ReadoutInpaintPipeline if system.model_free else MiragePipeline
    return pipeline(stack.backbone, config, stack.branch, memory)
