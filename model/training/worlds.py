"""Training samples of the ``mini`` stage: varied procedural worlds, memories built as the pipeline builds them.

One world per scene seed (:func:`model.eval.scenes.world.world_config`) and a camera path of
``segments`` segments through it (:func:`model.eval.scenes.paths.world_path`: it leaves known space
and often comes back). Each segment is one sample, made exactly as :class:`MiragePipeline` makes a
segment, with the true frames in place of generated ones:

1. the memory is initialised from frame 0 (its latent encoded alone, exact depth);
2. per segment: the readout at the segment's latent-frame poses (latent frame ``k`` <-> RGB frame
   ``4k``) is the condition; the VAE encoding of the segment's 33 rendered frames is the target
   (latent frame 0, the segment's first frame encoded alone, is the clean conditioning frame);
3. the segment's latent frames 1..8 are written back with exact depth and the pipeline's write masks
   (sky by depth, dynamic cells by :func:`~model.memory.masks.dynamic_mask`), so the next segment's
   readout holds what the camera has seen so far.

Everything is computed once per world and cached in ``<cache>/world-<seed>-<key>.safetensors``
(target latents float32, readouts float16 as the memory stores them, visibility, the readouts' cell
mapping float16); a sample is one file read.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.eval.scenes import ProceduralScene, SceneRenderer
from model.eval.scenes.paths import world_path
from model.eval.scenes.world import world_config
from model.generation.vae import VideoVAE
from model.geometry.camera import intrinsics_from_fov
from model.io.atomic import atomic_path
from model.io.frames import frames_to_tensor
from model.memory.latent import LatentSpatialMemory, MemoryConfig
from model.memory.masks import DEFAULT_DYNAMIC_THRESHOLD, DEFAULT_SKY_FAR_M, dynamic_mask, write_masks
from model.training.clips import PROCEDURAL_FOV_Y_DEG, PROCEDURAL_FPS
from model.training.samples import TrainingSample

WORLD_CACHE_VERSION = 2  # 2: the readouts' cell mapping


@dataclass(frozen=True)
class WorldSpec:
    """Geometry of the world samples."""

    height: int  # frame height in pixels
    width: int  # frame width in pixels
    segments: int = 2  # segments per world path (samples per world)
    segment_frames: int = 33  # RGB frames per segment (4k+1), the pipeline's
    context_frames: int = 0  # the pipeline feeds none: only the segment's clean frame 0

    @property
    def clean_frames(self) -> int:
        """Leading clean latent frames of a sample: the segment's frame 0."""
        return 1


def world_segments(
    seed: int, spec: WorldSpec, vae: VideoVAE, renderer: SceneRenderer, memory_config: MemoryConfig | None = None
) -> dict[str, torch.Tensor]:
    """The samples of world ``seed`` (see the module docstring).

    Returns:
        ``latents [S, F, C, h, w]`` float32 targets, ``readout [S, F, C, h, w]`` in the memory's
        feature dtype, ``visible [S, F, h, w]`` bool, ``mapping [S, F, 6, h, w]`` float16
        (:attr:`~model.memory.base.Readout.mapping`), ``w2c [T, 4, 4]`` float64 path and ``K [3, 3]``
        float64 pixel intrinsics, with ``S = spec.segments`` and ``F`` latent frames per segment.
    """
    scene = ProceduralScene(world_config(seed))
    _, w2c = world_path(scene, seed, spec.segments, spec.segment_frames)
    height, width = spec.height, spec.width
    K = intrinsics_from_fov(PROCEDURAL_FOV_Y_DEG, width, height).to(torch.float64)
    rendered = [renderer.render(scene, w2c[i], K, width, height, t=i / PROCEDURAL_FPS) for i in range(len(w2c))]
    frames = torch.stack([torch.from_numpy(rgb) for rgb, _ in rendered])  # [T, H, W, 3] uint8
    depth = torch.stack([torch.from_numpy(d) for _, d in rendered])  # [T, H, W] metres
    memory = LatentSpatialMemory(memory_config or MemoryConfig())
    first = vae.encode(frames_to_tensor(frames[0].numpy(), vae.device))[0].cpu()
    memory.initialize(first, depth[0], K, w2c[0], image=frames[0])
    stride, latents, readouts, visibles, mappings = spec.segment_frames - 1, [], [], [], []
    h, w = first.shape[-2:]
    for s in range(spec.segments):
        span = slice(s * stride, s * stride + spec.segment_frames)
        key = torch.arange(span.start, span.stop, 4)  # RGB frames of the latent frames
        readout = memory.readout(w2c[key], K, h, w, image_hw=(height, width), mapping=True)
        target = vae.encode(frames_to_tensor(frames[span].numpy(), vae.device)).float().cpu()
        target[0] = vae.encode(frames_to_tensor(frames[span.start].numpy(), vae.device))[0].float().cpu()
        latents.append(target)
        readouts.append(readout.latent.cpu())
        visibles.append(readout.visible.cpu())
        mappings.append(readout.mapping.to(torch.float16).cpu())
        # the pipeline's steps 5-6 with the true latents and exact depth
        written_depth = depth[key[1:]]
        moving = dynamic_mask(target[1:], readout.latent[1:].float().cpu(), readout.visible[1:].cpu())
        keep, labels = write_masks(written_depth, (h, w), far_m=DEFAULT_SKY_FAR_M, dynamic=moving)
        memory.update(
            target[1:], written_depth, w2c[key[1:]], K, keep=keep, labels=labels, frames=frames[key[1:]],
            frame_ids=key[1:],
        )  # fmt: skip
    return {
        "latents": torch.stack(latents),
        "readout": torch.stack(readouts),
        "visible": torch.stack(visibles),
        "mapping": torch.stack(mappings),
        "w2c": w2c,
        "K": K,
    }


class WorldSampleSet:
    """The samples of the worlds ``seeds``, cached; ``sample(i)`` reads sample ``i`` (world-major order).

    Has the interface the trainer uses of :class:`~model.training.samples.SampleSet`: ``len``,
    ``sample``, ``spec`` (``clean_frames``), ``memory_config``, ``clip_ids``, ``skipped``.

    Args:
        seeds: scene seeds. spec: sample geometry. vae: the backbone's VAE.
        prompt_embeds: ``[L, D]`` embeddings of the prompt every sample carries.
        cache_dir: where the per-world files go. renderer: the scene renderer.
        encoder_id: identifies the VAE (part of the cache key).
        workers: processes that build missing worlds (each with its own renderer; ``vae`` is pickled to them).
        device: keep every sample's tensors there (a GPU run then reads a batch without touching files:
            ~2.8 MB per world at 64x128); None: read each sample from its file.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        spec: WorldSpec,
        vae: VideoVAE,
        prompt_embeds: torch.Tensor,
        cache_dir: str | os.PathLike,
        renderer: SceneRenderer,
        encoder_id: dict | None = None,
        memory_config: MemoryConfig | None = None,
        on_status: Callable[[str], None] | None = None,
        workers: int = 1,
        device: str | torch.device | None = None,
    ) -> None:
        self.spec, self.prompt_embeds = spec, prompt_embeds.float().cpu()
        self.memory_config = memory_config or MemoryConfig()
        self.skipped: list[str] = []
        self.seeds = list(seeds)
        status = on_status or (lambda message: None)
        key = {
            "spec": asdict(spec),
            "encoder": encoder_id or {},
            "memory": asdict(self.memory_config),
            "version": WORLD_CACHE_VERSION,
            "dynamic_threshold": DEFAULT_DYNAMIC_THRESHOLD,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self._paths = [folder / f"world-{seed}-{digest}.safetensors" for seed in self.seeds]
        if not self._paths:
            raise ValueError("no worlds to train on (no seeds given)")
        missing = [(seed, path) for seed, path in zip(self.seeds, self._paths, strict=True) if not path.is_file()]
        jobs = [(seed, path, spec, vae, self.memory_config) for seed, path in missing]
        if workers > 1 and len(missing) > 1:
            status(f"Preparing {len(missing)} worlds with {workers} processes")
            context = multiprocessing.get_context("spawn")  # the renderer's GL context and torch do not fork
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_world_builder) as pool:
                for n, seed in enumerate(pool.map(_build_world, jobs, chunksize=4)):
                    if n % 500 == 0:
                        status(f"Prepared world {n + 1}/{len(missing)} (seed {seed})")
        else:
            for n, job in enumerate(jobs):
                if n % 50 == 0:
                    status(f"Preparing world {n + 1}/{len(missing)} (seed {job[0]})")
                _write_world(*job, renderer)
        #: every sample's tensors on ``device`` (None: read from the cache file per sample)
        self._resident = None
        if device is not None:
            status(f"Loading {len(self._paths)} worlds onto {device}")
            self._resident = [{k: v.to(device) for k, v in load_file(str(p)).items()} for p in self._paths]

    def __len__(self) -> int:
        return len(self._paths) * self.spec.segments

    @property
    def clip_ids(self) -> list[str]:
        return [f"world-{seed}" for seed in self.seeds]

    def sample(self, i: int) -> TrainingSample:
        """Segment ``i % segments`` of world ``i // segments``."""
        world, segment = divmod(i, self.spec.segments)
        tensors = self._resident[world] if self._resident is not None else load_file(str(self._paths[world]))
        return TrainingSample(
            latents=tensors["latents"][segment],
            readout=tensors["readout"][segment].float(),
            visible=tensors["visible"][segment],
            mapping=tensors["mapping"][segment].float(),
            prompt_embeds=self.prompt_embeds,
            clip_id=f"world-{self.seeds[world]}",
            start=segment * (self.spec.segment_frames - 1),
        )


def _write_world(
    seed: int, path: Path, spec: WorldSpec, vae: VideoVAE, memory_config: MemoryConfig, renderer: SceneRenderer
) -> None:
    """Build world ``seed``'s samples (:func:`world_segments`) and write them to ``path`` (atomically)."""
    tensors = world_segments(seed, spec, vae, renderer, memory_config)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))


_BUILDER_RENDERER: SceneRenderer | None = None  # a world-building process's own renderer


def _start_world_builder() -> None:
    """Initialise a world-building process: one thread (the processes share the cores), its own renderer."""
    global _BUILDER_RENDERER
    torch.set_num_threads(1)
    _BUILDER_RENDERER = SceneRenderer()


def _build_world(job: tuple[int, Path, WorldSpec, VideoVAE, MemoryConfig]) -> int:
    """:func:`_write_world` in a world-building process; returns the seed."""
    _write_world(*job, _BUILDER_RENDERER)
    return job[0]
