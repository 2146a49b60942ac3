"""Backend profiles: every per-backend fact in one place, one :class:`BackendProfile` per backend.

The command-line parsers (``main.py generate``, ``main.py train``, the GUI flags), the backbone
loader, the trainer and the GUI take their backend choices and defaults from here; nothing else
asks which backend it is. Adding a Wan-shaped backend means one profile here and one parts
builder in :mod:`model.generation.backbone` (``_BUILDERS``). A model of another family also needs what is
Wan-specific today: the transformer call (:mod:`model.generation.pipeline`), the block hooks
(:mod:`model.generation.memory_branch`) and the LoRA targets (:mod:`model.generation.lora`).

Imports nothing heavy (no torch), so the parser modules (``main.py``, ``ui/launch.py``,
``model/training/cli.py``) import without loading the numerical stack. Dtypes are therefore names (``"bfloat16"``),
mapped to torch by
:data:`model.generation.backbone.DTYPES`.

Example:
    >>> profile("tiny").generation_size(height=64)
    (64, 320)
    >>> per_backend(lambda p: p.steps)
    '20 wan / 4 tiny / 2 mini'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Latent channels of Wan2.2-TI2V-5B (transformer in/out channels, VAE ``z_dim``).
WAN22_LATENT_CHANNELS = 48


@dataclass(frozen=True)
class BackendProfile:
    """What one backend is and the defaults it brings, known before anything is built."""

    # name on the command line and in BackboneConfig.backend
    name: str
    # one line for --help saying what the backend is
    summary: str
    # what the model folder (--model, BackboneConfig.model_dir) must be; None: the backend reads no model folder
    model_folder: str | None
    # (height, width) in pixels of generated frames when none is given (multiples of the backbone's image multiple)
    generate_size: tuple[int, int]
    # (height, width) in pixels of training frames when none is given
    train_size: tuple[int, int]
    # denoising steps per segment in the explorer GUI when --steps is not given
    steps: int
    # inpaint mode: share of the denoising steps, in [0, 1], during which visible tokens follow the memory readout
    inpaint_fraction: float
    # transformer and text-encoder dtype name ("bfloat16" or "float32") unless BackboneConfig.dtype names one;
    # "bfloat16" also makes training use bf16 mixed precision
    dtype: str
    # prompt length in tokens after padding / truncation unless BackboneConfig.max_sequence_length is set
    max_sequence_length: int
    # channels of the latent (transformer in/out, VAE z_dim)
    latent_channels: int
    # True: the transformer is built from BackboneConfig's tiny_* sizes, so trained memory weights set them
    sized_by_config: bool
    # pipeline mode when none is given: "inpaint" (stock weights) or "branch" (the backend carries a trained branch)
    mode: str = "inpaint"
    # mode branch: visible tokens also follow the readout for inpaint_fraction of the steps
    # (PipelineConfig.branch_follow)
    branch_follow: bool = False
    # folder of weights shipped with the project, read when no model folder is named; None: none shipped
    bundled_folder: str | None = None
    # what the app tells a user who opens their own photo with this backend; None: nothing
    photo_notice: str | None = None
    # free GPU memory in GiB each offload profile needs, least offloaded first (model.generation.gpu_fit picks
    # the first that fits); empty: not checked (small enough for any card)
    device_gib: tuple[tuple[str, float], ...] = ()

    @property
    def needs_model_dir(self) -> bool:
        """True when the backend loads its weights from a model folder the user names."""
        return self.model_folder is not None

    def generation_size(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        """``(height, width)`` in pixels of generated frames: the given ones, this profile's where None (or 0)."""
        return height or self.generate_size[0], width or self.generate_size[1]

    def training_size(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        """``(height, width)`` in pixels of training frames: the given ones, this profile's where None (or 0)."""
        return height or self.train_size[0], width or self.train_size[1]


WAN = BackendProfile(
    name="wan",
    summary="Wan2.2-TI2V-5B from a local diffusers folder (CUDA)",
    model_folder="a local Wan2.2-TI2V-5B diffusers folder",
    generate_size=(704, 1280),
    train_size=(704, 1280),
    steps=20,
    # Wan refines the last 40 % of the schedule freely to blend the memory's content with what it generates
    inpaint_fraction=0.6,
    dtype="bfloat16",
    max_sequence_length=512,  # the Wan pipelines' prompt length
    latent_channels=WAN22_LATENT_CHANNELS,
    sized_by_config=False,
    # estimates (research/wan-diffusers.md), at the default 704x1280, 33 frames: weights are transformer 9.3 GiB
    # bf16 + UMT5 10.6 GiB bf16 + VAE 2.6 GiB fp32; about 6 GiB on top for activations, the tiled VAE decode
    # and the CUDA context. "none" keeps all resident; "model" one model at a time (transformer + work, the
    # 10.6 GiB text encoder alone is less); "group" the VAE + work + the streamed groups in flight
    device_gib=(("none", 30.0), ("model", 16.0), ("group", 10.0)),
)

TINY = BackendProfile(
    name="tiny",
    summary="seeded random weights, no download: tests and the CPU demo",
    model_folder=None,
    generate_size=(176, 320),
    train_size=(64, 128),
    steps=4,
    # random weights turn tokens into noise once they stop following the readout, so on tiny they
    # follow it to the end and frames show what the memory holds
    inpaint_fraction=1.0,
    dtype="float32",
    max_sequence_length=32,
    latent_channels=WAN22_LATENT_CHANNELS,  # the tiny VAEs are built Wan2.2-shaped
    sized_by_config=True,
)

MINI = BackendProfile(
    name="mini",
    summary="mirage-mini, a miniature Mirage model trained by this project on synthetic rooms (CPU, shipped)",
    model_folder=None,
    generate_size=(64, 128),
    train_size=(64, 128),
    # chosen on validation worlds 5100-5109 (benchmarks/mini_sampler.py -> results/mini-sampler-cpu-10worlds.md):
    # the best whole-frame PSNR among the multi-step settings whose closed-loop PSNR meets 25 dB; more steps
    # sharpen holes but score lower there (PSNR rewards the conditional mean)
    steps=2,
    # its trained branch conditions every step and both steps are the model's own: its refiner resamples the readout
    # with the cell mapping, which tokens following the raw readout would undo (-0.24 dB whole-frame at 0.5 on
    # validation); --inpaint-fraction 1 pins visible cells to the memory (branch_follow)
    inpaint_fraction=0.0,
    dtype="float32",
    max_sequence_length=32,
    latent_channels=WAN22_LATENT_CHANNELS,
    sized_by_config=False,  # its sizes come from its own config.json
    mode="branch",
    branch_follow=True,
    bundled_folder="resources/models/mirage-mini",
    photo_notice=(
        "mirage-mini is a miniature model (64x128 pixels) trained only on synthetic procedural rooms: on a real "
        "photo it shows what its memory holds and fills the rest with room-like colours, not the photo's world. "
        "Use --backend wan with a Wan2.2-TI2V-5B folder for real photos."
    ),
)

#: Every backend's profile by name, in the order parsers list them.
PROFILES = {p.name: p for p in (WAN, TINY, MINI)}
#: Backend names (parser choices).
BACKENDS = tuple(PROFILES)
#: Backend of configs (BackboneConfig, TrainConfig) when none is named: the tiny random stand-in, for tests.
DEFAULT_BACKEND = TINY.name
#: Backend of the app (``python main.py``, ``main.py generate``) when no model folder is known: the shipped model.
APP_BACKEND = MINI.name


def profile(backend: str) -> BackendProfile:
    """The profile of ``backend``.

    Raises:
        ValueError: ``"backend must be one of 'wan', 'tiny'; got 'x'"``.
    """
    if backend not in PROFILES:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    return PROFILES[backend]


def default_backend(model_dir_known: bool) -> str:
    """The app's backend when none is named: the first that reads a model folder when one is known
    (a flag or the settings), else :data:`APP_BACKEND` (the shipped mini model)."""
    if model_dir_known:
        return next(p.name for p in PROFILES.values() if p.needs_model_dir)
    return APP_BACKEND


def per_backend(value: Callable[[BackendProfile], object]) -> str:
    """A per-backend default for ``--help``: ``per_backend(lambda p: p.steps)`` -> ``"20 wan / 4 tiny / 10 mini"``."""
    return " / ".join(f"{value(p)} {p.name}" for p in PROFILES.values())


def model_folders() -> str:
    """What ``--model`` must be, per backend that reads a model folder, for its help:
    ``"wan: a local Wan2.2-TI2V-5B diffusers folder"``."""
    return "; ".join(f"{p.name}: {p.model_folder}" for p in PROFILES.values() if p.needs_model_dir)


def backend_summaries() -> str:
    """Each backend with its summary, for ``--backend`` help: ``"wan: Wan2.2-TI2V-5B ...; tiny: ..."``."""
    return "; ".join(f"{p.name}: {p.summary}" for p in PROFILES.values())
