"""The systems ``main.py eval-world`` compares, and how each becomes a pipeline.

Every system is a :class:`~model.generation.pipeline.MiragePipeline` (or a subclass) on a generation
stack loaded once per backend and shared by the systems of that backend
(:mod:`explorer.eval_world.pipelines` builds them; this module imports nothing heavy, so parsers can
list the systems):

* ``mini``: the shipped mini model (``resources/models/mirage-mini/``) with its latent memory;
* ``mini-nomem``: the same stack with a :class:`~model.baselines.blind_memory.BlindMemory`, a memory
  that is never read or written, so the memory branch sees no visible cell;
* ``mini-rgb``: the same stack with the pixel-space RGB point-cloud memory (rasterise + VAE-encode);
* ``readout-inpaint``: no model: the latent memory's readout decoded by the patch VAE and its holes
  filled by OpenCV Telea inpainting (:class:`~model.baselines.readout_inpaint.ReadoutInpaintPipeline`;
  the tiny backend lends its VAE, its transformer is never called);
* ``tiny``: the tiny backend's random weights, inpaint mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.generation.profiles import PROFILES

#: The shipped mini model's folder (the mini profile's), and the files a mini model folder must hold.
MINI_FOLDER = Path(__file__).resolve().parents[2] / PROFILES["mini"].bundled_folder
MINI_FILES = ("model.safetensors", "config.json")


@dataclass(frozen=True)
class System:
    """One compared system.

    Attributes:
        name: its name on the command line and in the summary.
        backend: the backend whose stack it runs on (``"mini"`` or ``"tiny"``).
        memory: ``"latent"``, ``"rgb"`` (the RGB point-cloud baseline) or ``"blind"`` (never read or written).
        summary: one line for the table and ``--help``.
        model_free: True: the readout-inpaint pipeline, which calls no network.
    """

    name: str
    backend: str
    memory: str
    summary: str
    model_free: bool = False

    @property
    def memory_kind(self) -> str:
        """``PipelineConfig.memory_kind`` of the system (a blind memory is a latent one)."""
        return "rgb" if self.memory == "rgb" else "latent"


#: Every system by name, in table order.
SYSTEMS = {
    s.name: s
    for s in (
        System("mini", "mini", "latent", "the shipped mini model, latent memory"),
        System("mini-nomem", "mini", "blind", "the mini model, memory never read or written"),
        System("mini-rgb", "mini", "rgb", "the mini model, RGB point-cloud memory"),
        System(
            "readout-inpaint",
            "tiny",
            "latent",
            "no model: latent-memory readout, patch-VAE decoded, holes filled by Telea (r = 3 px)",
            model_free=True,
        ),
        System("tiny", "tiny", "latent", "tiny backend, random weights, inpaint mode"),
    )
}


def check_mini_model(folder: str | Path | None = None) -> None:
    """Refuse the mini systems when the mini model is not there.

    Args:
        folder: a mini model folder (``--model``); None: the shipped one, :data:`MINI_FOLDER`.

    Raises:
        ValueError: ``"<folder>: ..."`` naming what is missing and which systems need no model.
    """
    folder = Path(folder or MINI_FOLDER)
    missing = [name for name in MINI_FILES if not (folder / name).is_file()]
    if missing or "mini" not in PROFILES:
        what = f"missing {', '.join(missing)}" if missing else "the 'mini' backend is not part of this build"
        no_model = ", ".join(s.name for s in SYSTEMS.values() if s.backend != "mini")
        raise ValueError(f"{folder}: the mini model is not available ({what}); systems that need no model: {no_model}")


def check_systems(names: list[str], mini_folder: str | Path | None = None) -> list[System]:
    """The systems of ``names``, their models checked (before anything loads); ``mini_folder`` as for
    :func:`check_mini_model`.

    Raises:
        ValueError: ``"--systems: ..."`` for an unknown name; :func:`check_mini_model`'s error.
    """
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise ValueError(f"--systems: {', '.join(map(repr, unknown))}: not one of {', '.join(SYSTEMS)}")
    systems = [SYSTEMS[n] for n in names]
    if any(s.backend == "mini" for s in systems):
        check_mini_model(mini_folder)
    return systems
