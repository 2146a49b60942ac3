"""Training samples: cached latents / depth per clip, memory readouts per target chunk.

A sample is one window of a clip (see :class:`SampleSpec`)::

    RGB frame:  0        s-4P  ...  s-4    s   s+4  ...  s+32
                memory   context (P)       target chunk (33 frames = N = 9 latent frames)

* the **memory** is built from the clip's frame 0: its latent (encoded alone) lifted with its depth
  (the configured :class:`~model.generation.depth.DepthEstimator`, or exact for procedural clips);
* **context** frame ``j`` is the latent of RGB frame ``s - 4(P - j)`` encoded alone as an image,
  the way the pipeline encodes a segment's clean frame 0, so inference can make them from the
  previous segment's frames;
* the **target** latents are the VAE encoding of the 33-frame chunk; with the causal Wan VAE its
  latent 0 equals frame ``s`` encoded alone (the pipeline's clean frame 0);
* **readouts** and **visibility** of the memory at the poses of all ``P + N`` latent frames
  (latent frame ``k`` <-> RGB frame ``4k`` of its chunk) are computed per sample (cheap).

:class:`ClipCache` writes everything that needs the VAE, the depth model or the text encoder into
one safetensors file per clip (``<clip_id>-<key>.safetensors``, the key hashing the clip's files,
the sizes and the encoders), so epochs never re-encode. :class:`SampleSet` prepares all clips up
front and skips (and logs) clips that are too short or fail to load: a long run never crashes on
one bad clip, and the list of samples (hence the data order) is fixed before step 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import safetensors
import torch
from safetensors.torch import load_file, save_file

from model.generation.depth import DepthEstimator
from model.generation.vae import VideoVAE
from model.io.atomic import atomic_path
from model.io.frames import frames_to_tensor
from model.memory.latent import LatentSpatialMemory, MemoryConfig
from model.training.clips import ClipError, ClipSource

logger = logging.getLogger(__name__)

CACHE_FORMAT = "mirage-training-clip-cache"
CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SampleSpec:
    """Geometry of the training samples."""

    height: int  # frame height in pixels (multiple of the backbone's expected_image_multiple)
    width: int  # frame width in pixels
    context_frames: int = 0  # P: preceding clean latent frames (0-2); 0 matches the current pipeline
    chunk_frames: int = 33  # RGB frames of the target chunk (4k+1; 33 = 9 latent frames)
    window_stride: int = 32  # RGB frames between the chunk starts of consecutive windows of a clip

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"sample size must be positive, got {self.width}x{self.height}")
        if not 0 <= self.context_frames <= 2:
            raise ValueError(f"context_frames must be 0, 1 or 2, got {self.context_frames}")
        if self.chunk_frames < 5 or (self.chunk_frames - 1) % 4:
            raise ValueError(f"chunk_frames must be 4k+1 with k >= 1, got {self.chunk_frames}")
        if self.window_stride < 1:
            raise ValueError(f"window_stride must be >= 1, got {self.window_stride}")

    @property
    def clean_frames(self) -> int:
        """Leading clean frames of a training sequence: ``P`` context frames + target frame 0."""
        return self.context_frames + 1

    @property
    def min_clip_frames(self) -> int:
        """Shortest usable clip: ``4P`` frames of context before one chunk."""
        return 4 * self.context_frames + self.chunk_frames

    def window_starts(self, num_frames: int) -> list[int]:
        """RGB index ``s`` of the target chunk's frame 0 of every window of a ``num_frames`` clip."""
        return list(range(4 * self.context_frames, num_frames - self.chunk_frames + 1, self.window_stride))

    def sequence_poses(self, w2c: torch.Tensor, start: int) -> torch.Tensor:
        """``[P + N, 4, 4]`` poses of the context and target latent frames of the window at ``start``."""
        first = start - 4 * self.context_frames
        return w2c[first : start + self.chunk_frames : 4]


@dataclass
class CachedClip:
    """What :class:`ClipCache` stores for one clip (CPU tensors).

    Attributes:
        starts: ``[W]`` int64 window starts (RGB index of each target chunk's frame 0).
        chunks: ``[W, N, C, h, w]`` float32 target latents per window.
        context: ``[W, P, C, h, w]`` float32 context latents per window (P may be 0).
        memory_latent: ``[C, h, w]`` float32 latent of frame 0 encoded alone.
        memory_depth: ``[H, W]`` float32 depth of frame 0 in metres (+inf invalid).
        w2c: ``[T, 4, 4]`` float64 poses of every frame. K: ``[3, 3]`` float64 pixel intrinsics.
        prompt_embeds: ``[L, D]`` float32 text embeddings of the clip's prompt.
    """

    starts: torch.Tensor
    chunks: torch.Tensor
    context: torch.Tensor
    memory_latent: torch.Tensor
    memory_depth: torch.Tensor
    w2c: torch.Tensor
    K: torch.Tensor
    prompt_embeds: torch.Tensor


@dataclass
class TrainingSample:
    """One training sequence of ``F = P + N`` latent frames (context first, then the target chunk).

    Attributes:
        latents: ``[F, C, h, w]`` float32 clean latents.
        readout: ``[F, C, h, w]`` float32 memory readout (zeros where nothing is visible).
        visible: ``[F, h, w]`` bool memory coverage.
        mapping: ``[F, 6, h, w]`` float32 where each cell samples its point's patch
            (:attr:`~model.memory.base.Readout.mapping`).
        prompt_embeds: ``[L, D]`` float32.
        clip_id, start: where it comes from (``start``: RGB index of the target's frame 0).
    """

    latents: torch.Tensor
    readout: torch.Tensor
    visible: torch.Tensor
    mapping: torch.Tensor
    prompt_embeds: torch.Tensor
    clip_id: str
    start: int


@dataclass
class Batch:
    """Stacked samples in the transformer's layout: latents / readout ``[B, C, F, h, w]``,
    visible ``[B, F, h, w]``, mapping ``[B, 6, F, h, w]``, prompt_embeds ``[B, L, D]``."""

    latents: torch.Tensor
    readout: torch.Tensor
    visible: torch.Tensor
    mapping: torch.Tensor
    prompt_embeds: torch.Tensor


def collate(samples: list[TrainingSample]) -> Batch:
    """Stack samples of equal shapes into a :class:`Batch`."""
    return Batch(
        latents=torch.stack([s.latents.permute(1, 0, 2, 3) for s in samples]),
        readout=torch.stack([s.readout.permute(1, 0, 2, 3) for s in samples]),
        visible=torch.stack([s.visible for s in samples]),
        mapping=torch.stack([s.mapping.permute(1, 0, 2, 3) for s in samples]),
        prompt_embeds=torch.stack([s.prompt_embeds for s in samples]),
    )


class ClipCache:
    """Builds and reuses the per-clip cache files in ``folder``.

    Args:
        folder: cache folder (created when needed).
        spec: sample geometry.
        vae: the backbone's VAE (``encode`` is only called while building a clip's file).
        encode_prompt: ``str -> [1, L, D]`` (the backbone's text encoder).
        depth: depth of frame 0 for clips without exact depth (None: such clips are skipped).
        encoder_id: identifies VAE + text encoder (part of the cache key).
        device: where the VAE runs.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        spec: SampleSpec,
        vae: VideoVAE,
        encode_prompt: Callable[[str], torch.Tensor],
        depth: DepthEstimator | None,
        encoder_id: dict,
        device: torch.device | str = "cpu",
    ) -> None:
        self.folder, self.spec, self.vae, self.encode_prompt = Path(folder), spec, vae, encode_prompt
        self.depth, self.encoder_id, self.device = depth, encoder_id, torch.device(device)

    def path(self, clip: ClipSource) -> Path:
        """The cache file of ``clip`` (its name changes whenever the clip's files or settings do)."""
        key = {
            "clip": clip.describe(),
            "spec": asdict(self.spec),
            "encoder": self.encoder_id,
            "depth": self.depth.name if self.depth else None,
            "version": CACHE_FORMAT_VERSION,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.folder / f"{clip.clip_id}-{digest}.safetensors"

    def load(self, clip: ClipSource) -> CachedClip:
        """The cached tensors of ``clip``, built (and written atomically) on first use.

        Raises:
            ClipError: the clip is too short or its files cannot be read; nothing is written then.
        """
        path = self.path(clip)
        if path.is_file():
            try:
                return CachedClip(**load_file(str(path)))
            except (safetensors.SafetensorError, OSError, TypeError) as exc:
                logger.warning("cache file %s unreadable (%s): rebuilding", path, exc)
        cached = self._build(clip)
        with atomic_path(path) as tmp:
            save_file(
                {k: v.contiguous() for k, v in asdict(cached).items()},
                str(tmp),
                metadata={"format": CACHE_FORMAT, "clip_id": clip.clip_id},
            )
        return cached

    def _encode(self, frames) -> torch.Tensor:
        return self.vae.encode(frames_to_tensor(frames, self.device)).float().cpu()

    def _build(self, clip: ClipSource) -> CachedClip:
        spec, (height, width) = self.spec, (self.spec.height, self.spec.width)
        w2c, K = clip.cameras(height, width)
        starts = spec.window_starts(len(w2c))
        if not starts:
            raise ClipError(f"clip {clip.clip_id}: too short: {len(w2c)} frames, needs >= {spec.min_clip_frames}")
        first = clip.read_frames([0], height, width)
        depth = clip.exact_depth(0, height, width)
        if depth is None and self.depth is None:
            raise ClipError(f"clip {clip.clip_id}: no exact depth and no depth estimator")
        if depth is None:
            depth = self.depth.estimate(first).depth[0]
        chunks, context = [], []
        for s in starts:
            chunks.append(self._encode(clip.read_frames(list(range(s, s + spec.chunk_frames)), height, width)))
            singles = [
                self._encode(clip.read_frames([s - 4 * (spec.context_frames - j)], height, width))
                for j in range(spec.context_frames)
            ]
            context.append(torch.cat(singles) if singles else chunks[-1][:0])
        return CachedClip(
            starts=torch.tensor(starts, dtype=torch.int64),
            chunks=torch.stack(chunks),
            context=torch.stack(context),
            memory_latent=self._encode(first)[0],
            memory_depth=depth.float(),
            w2c=w2c.to(torch.float64),
            K=K.to(torch.float64),
            prompt_embeds=self.encode_prompt(clip.prompt())[0].float().cpu(),
        )


class SampleSet:
    """All windows of all usable clips, in a fixed order; ``sample(i)`` builds sample ``i``.

    Every clip's cache is prepared on construction; clips that are too short or fail to load are
    skipped, each with one line in :attr:`skipped` (and a log warning) naming the clip and why.

    Raises:
        ValueError: no usable sample is left.
    """

    def __init__(
        self,
        clips: list[ClipSource],
        cache: ClipCache,
        memory_config: MemoryConfig | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.cache, self.spec = cache, cache.spec
        self.memory_config = memory_config or MemoryConfig()
        self.skipped: list[str] = []
        self._clips: list[tuple[ClipSource, Path]] = []
        self._index: list[tuple[int, int]] = []  # (clip, window)
        status = on_status or (lambda message: None)
        for n, clip in enumerate(clips):
            status(f"Preparing clip {n + 1}/{len(clips)}: {clip.clip_id}")
            try:
                cached = cache.load(clip)
            except ClipError as exc:
                self.skip(str(exc))
                continue
            self._index += [(len(self._clips), w) for w in range(len(cached.starts))]
            self._clips.append((clip, cache.path(clip)))
        if not self._index:
            raise ValueError(
                f"no usable training clips ({len(clips)} given, {len(self.skipped)} skipped: {self.skipped[:3]})"
            )

    def skip(self, reason: str) -> None:
        """Record and log a skipped clip."""
        logger.warning("skipping %s", reason)
        self.skipped.append(reason)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def clip_ids(self) -> list[str]:
        return [clip.clip_id for clip, _ in self._clips]

    def sample(self, i: int) -> TrainingSample:
        """Sample ``i``: latents from the cache file, readouts of a memory built from frame 0."""
        clip_index, window = self._index[i]
        clip, path = self._clips[clip_index]
        cached = CachedClip(**load_file(str(path)))
        spec = self.spec
        _, _, h, w = cached.memory_latent[None].shape
        memory = LatentSpatialMemory(self.memory_config)
        memory.initialize(cached.memory_latent, cached.memory_depth, cached.K, cached.w2c[0])
        start = int(cached.starts[window])
        readout = memory.readout(
            spec.sequence_poses(cached.w2c, start), cached.K, h, w, image_hw=(spec.height, spec.width), mapping=True
        )
        return TrainingSample(
            latents=torch.cat([cached.context[window], cached.chunks[window]]),
            readout=readout.latent.float(),
            visible=readout.visible,
            mapping=readout.mapping,
            prompt_embeds=cached.prompt_embeds,
            clip_id=clip.clip_id,
            start=start,
        )
