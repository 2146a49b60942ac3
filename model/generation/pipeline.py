"""The Mirage segment pipeline: image + camera trajectory (+ prompt) -> video, segment by segment.

One segment is ``segment_frames`` RGB frames (33 = 9 latent frames); consecutive segments share
one frame (the last frame of a segment is the first of the next). Per segment:

1. read the memory out at each target latent frame's pose (latent frame ``k`` <-> RGB frame ``4k``);
2. encode the segment's first RGB frame as a single image: the clean latent frame 0 (timestep 0);
3. denoise the other latent frames with UniPC flow matching and per-token timesteps ``(B, L)``,
   conditioned on the readout either by the trained memory branch (``branch``) or, training-free,
   by replacing visible tokens with the readout noised to the current sigma (``inpaint``);
4. decode the latents to RGB frames;
5. estimate depth of the written latent frames, make it agree with the memory
   (:mod:`model.memory.alignment`: a depth model's depth is fitted per frame to the readout's depth,
   and visible cells that still disagree are not written; without a depth model visible cells take
   the readout's depth and cells with no memory behind them are not written), and build the write
   masks (sky by depth and, with a semantic segmenter, by class; dynamic; user);
6. write the latents (or re-encoded decoded frames) back into the memory.

The memory is only touched in step 6 and ``update`` is all-or-nothing, so a segment cancelled
between denoising steps (:class:`GenerationCancelled`) leaves the memory and the pipeline state
exactly as they were before it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from model.generation.backbone import Backbone
from model.generation.depth import DepthSource, depth_source_label
from model.generation.memory_branch import MemoryBranch
from model.generation.profiles import profile
from model.geometry.camera import scale_intrinsics, validate_intrinsics, validate_poses
from model.io.frames import frames_to_tensor, tensor_to_frames
from model.memory.alignment import (
    DEFAULT_DISAGREE_TOLERANCE,
    align_depth,
    anchor_to_readout,
    landed_cells,
    reject_cells,
)
from model.memory.base import MEMORY_KINDS, CellLabel, MemoryConfig, Readout, SpatialMemory
from model.memory.latent import LatentSpatialMemory
from model.memory.masks import (
    DEFAULT_DYNAMIC_THRESHOLD,
    DEFAULT_SKY_FAR_M,
    SemanticSkySegmenter,
    confident_cells,
    dynamic_mask,
    write_masks,
)

MODES = ("inpaint", "branch")
WRITE_PATHS = ("latents", "reencode")


def check_branch_weights(mode: str, has_weights: bool) -> None:
    """Refuse mode ``"branch"`` without trained memory weights (the stack loader checks before
    loading, the pipeline on construction: one wording for the CLI and the GUI).

    Raises:
        ValueError: ``"mode 'branch' needs trained memory weights (...); use mode 'inpaint' ..."``.
    """
    if mode == "branch" and not has_weights:
        raise ValueError(
            "mode 'branch' needs trained memory weights (--memory-weights DIR: a memory branch + LoRA folder); "
            "use mode 'inpaint' with stock weights"
        )


def check_memory_channels(memory: SpatialMemory, latent_channels: int, source: str | os.PathLike = "memory") -> None:
    """Refuse a memory whose features have another channel count than the backbone's latent.

    Args:
        latent_channels: the backbone's (``backbone.vae.latent_channels``, or before the backbone is
            built :attr:`model.generation.backbone.BackboneConfig.latent_channels`).
        source: the memory's file, named in the error.

    Raises:
        ValueError: ``"<source>: channels: memory holds 16-channel features, the backbone's latent has 48"``.
    """
    if memory.channels not in (None, latent_channels):
        raise ValueError(
            f"{source}: channels: memory holds {memory.channels}-channel features, the backbone's latent has "
            f"{latent_channels}"
        )


class GenerationCancelled(Exception):
    """Raised between denoising steps when the cancel check says so; nothing was written."""


@dataclass
class PipelineConfig:
    """Settings of :class:`MiragePipeline` (CLI flags map onto these)."""

    segment_frames: int = 33  # RGB frames per segment, 4k+1; consecutive segments share one frame
    steps: int = 20  # denoising steps per segment (UniPC flow matching)
    mode: str = "inpaint"  # "branch": trained memory branch + LoRA; "inpaint": training-free token replacement
    inpaint_fraction: float = 0.6  # inpaint: share of the steps during which visible tokens follow the readout
    # branch: visible tokens also follow the readout for inpaint_fraction of the steps (the branch conditions
    # every step); False: the branch alone (the paper's setting); None: the backend profile's (True for mini)
    branch_follow: bool | None = None
    write_path: str = "latents"  # "latents": write denoised latents; "reencode": VAE-encode decoded frames (paper)
    seed: int = 0  # seeds the noise of every segment (segment s uses seed * 1_000_003 + s)
    sky_far_m: float = DEFAULT_SKY_FAR_M  # depth beyond which a cell is sky and never written, metres
    dynamic_threshold: float = DEFAULT_DYNAMIC_THRESHOLD  # change score above which a visible cell is dynamic
    # relative depth difference beyond which an aligned depth model's visible cell disagrees with the memory
    depth_tolerance: float = DEFAULT_DISAGREE_TOLERANCE
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # memory settings (de-duplication, near plane)
    memory_kind: str = (
        "latent"  # "latent": LatentSpatialMemory; "rgb": the pixel-space RGB baseline (model.baselines.kinds)
    )

    def __post_init__(self) -> None:
        if self.segment_frames < 5 or (self.segment_frames - 1) % 4:
            raise ValueError(f"segment_frames must be 4k+1 with k >= 1, got {self.segment_frames}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.inpaint_fraction <= 1.0:
            raise ValueError(f"inpaint_fraction must be in [0, 1], got {self.inpaint_fraction}")
        if self.write_path not in WRITE_PATHS:
            raise ValueError(f"write_path must be one of {WRITE_PATHS}, got {self.write_path!r}")
        if not self.depth_tolerance > 0:
            raise ValueError(f"depth_tolerance must be positive, got {self.depth_tolerance}")
        if self.memory_kind not in MEMORY_KINDS:
            raise ValueError(f"memory_kind must be one of {MEMORY_KINDS}, got {self.memory_kind!r}")

    @property
    def latent_frames(self) -> int:
        return (self.segment_frames - 1) // 4 + 1

    @classmethod
    def for_backend(cls, backend: str, **changes) -> PipelineConfig:
        """The settings a backend generates with by default (its profile's steps, mode, inpaint
        fraction and branch following), with ``changes`` (fields set to None keep the profile's).

        Example:
            >>> PipelineConfig.for_backend("mini", seed=3).mode
            'branch'
        """
        p = profile(backend)
        defaults = dict(steps=p.steps, mode=p.mode, inpaint_fraction=p.inpaint_fraction, branch_follow=p.branch_follow)
        return cls(**{**defaults, **{k: v for k, v in changes.items() if v is not None}})


@dataclass
class SegmentResult:
    """One generated segment, yielded as soon as it exists.

    Attributes:
        index: segment number (0-based).
        frames: ``[T, H, W, 3]`` uint8, all ``segment_frames`` frames (frame 0 repeats the previous last frame).
        frame_ids: ``[T]`` global RGB frame numbers of ``frames``.
        w2c: ``[T, 4, 4]`` poses of ``frames``.
        latents: ``[F, C, h, w]`` denoised latents (frame 0 is the clean conditioning frame).
        visible: ``[F, h, w]`` memory readout visibility per latent frame.
        labels: ``[F-1, h, w]`` :class:`~model.memory.latent.CellLabel` of the written latent frames 1..F-1.
        timings: seconds per stage (readout, encode, denoise, decode, depth, masks, update, total).
        memory_points, memory_bytes: memory size after the write.
        depth_source: where the written depth came from (:func:`~model.generation.depth.depth_source_label`:
            ``"exact"``, the depth model's name, or ``"prior"``).
        depth_residual: relative residual of the depth model's alignment to the memory (median
            ``|log(aligned / memory)|`` over the fitted cells, :func:`~model.memory.alignment.align_depth`);
            None when nothing was fitted (exact depth, the prior, no memory in view).
        action: what asked for the segment (e.g. the explorer's ``"step_forward"``); empty for the pipeline,
            set by the caller that knows it (the explorer's worker, for session recording).
        readout: ``[F, C, h, w]`` float32 memory readout (zero where not ``visible``) the segment was
            conditioned on, on the CPU (the explorer's memory-vs-model view decodes it).
    """

    index: int
    frames: np.ndarray
    frame_ids: np.ndarray
    w2c: torch.Tensor
    latents: torch.Tensor
    visible: torch.Tensor
    labels: torch.Tensor
    timings: dict[str, float]
    memory_points: int
    memory_bytes: int
    depth_source: str = ""
    depth_residual: float | None = None
    action: str = ""
    readout: torch.Tensor | None = None

    def label_counts(self) -> dict[str, int]:
        """Cells of the written latent frames per :class:`~model.memory.base.CellLabel` name (lower case);
        ``static`` cells were offered to the memory, whose de-duplication drops those it already holds."""
        counts = torch.bincount(self.labels.reshape(-1).to(torch.int64), minlength=len(CellLabel))
        return {label.name.lower(): int(counts[label]) for label in CellLabel}


StepCallback = Callable[[int, int, int], None]  # (segment, step, steps)


class MiragePipeline:
    """Image + trajectory (+ prompt) -> video with a latent spatial memory.

    Args:
        backbone: the loaded backbone. config: settings. branch: trained memory branch (mode ``"branch"``).
        memory: the memory that :meth:`start` builds and every segment reads and extends, of kind
            ``config.memory_kind`` (:func:`model.baselines.kinds.make_memory`); moved to the backbone's
            device. Default: an empty :class:`~model.memory.latent.LatentSpatialMemory` with ``config.memory``.
        sky: a semantic sky segmenter: its sky pixels of the written frames are never written to the
            memory, like sky by depth (:func:`model.memory.masks.write_masks`). None: sky by depth only.

    Example:
        >>> pipe = MiragePipeline(load_backbone(BackboneConfig()), PipelineConfig(steps=4))  # doctest: +SKIP
        >>> pipe.start(image, depth, K, w2c0, prompt="a room")  # doctest: +SKIP
        >>> for segment in pipe.generate(trajectory_w2c, depth_source):  # doctest: +SKIP
        ...     show(segment.frames)
    """

    def __init__(
        self,
        backbone: Backbone,
        config: PipelineConfig | None = None,
        branch: MemoryBranch | None = None,
        memory: SpatialMemory | None = None,
        sky: SemanticSkySegmenter | None = None,
    ) -> None:
        self.backbone = backbone
        self.sky = sky
        self.config = config or PipelineConfig()
        check_branch_weights(self.config.mode, branch is not None)
        self.branch = branch
        if memory is None and self.config.memory_kind != LatentSpatialMemory.kind:
            raise ValueError(
                f"memory_kind {self.config.memory_kind!r}: pass its memory (model.baselines.kinds.make_memory)"
            )
        self.load_memory(LatentSpatialMemory(self.config.memory, backbone.device) if memory is None else memory)
        self.segments_done = 0
        self._last_frame: np.ndarray | None = None
        self._prompt_embeds: torch.Tensor | None = None
        self._K: torch.Tensor | None = None
        self._size: tuple[int, int] | None = None

    # ---- set-up --------------------------------------------------------------------------

    def start(
        self,
        image: np.ndarray,
        depth: torch.Tensor,
        K: torch.Tensor,
        w2c: torch.Tensor | None = None,
        prompt: str = "",
        keep=None,
    ) -> None:
        """Reset the memory (keeping its kind and settings) and build it from the first frame.

        Args:
            image: ``[H, W, 3]`` uint8, already at the generation size (multiples of
                ``backbone.expected_image_multiple``).
            depth: ``[H, W]`` metres (+inf invalid). K: ``[3, 3]`` pixels. w2c: ``[4, 4]`` (identity by default).
            prompt: text prompt. keep: optional ``[H, W]`` bool pixels allowed into the memory.
        """
        image = self._check_frame(image, "image")
        height, width = image.shape[:2]
        depth = torch.as_tensor(depth, dtype=torch.float32)
        if depth.shape != (height, width):
            raise ValueError(f"depth: expected [{height},{width}], got {list(depth.shape)}")
        K = validate_intrinsics(torch.as_tensor(K, dtype=torch.float64), "K")
        w2c = validate_poses(
            torch.eye(4, dtype=torch.float64) if w2c is None else torch.as_tensor(w2c, dtype=torch.float64), "w2c"
        )
        latent = self.backbone.vae.encode(frames_to_tensor(image, self.backbone.device))[0]
        self.memory.initialize(latent, depth, K, w2c, keep=keep, image=torch.from_numpy(image.copy()))
        self._prompt_embeds = self.backbone.encode_prompt(prompt)
        self._last_frame, self._K, self._size = image, K, (height, width)
        self.segments_done = 0

    def _check_frame(self, frame: np.ndarray, name: str) -> np.ndarray:
        """A ``[H, W, 3]`` uint8 frame whose size the backbone accepts (multiples of ``expected_image_multiple``)."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{name}: expected uint8 [H,W,3], got {frame.dtype} {list(frame.shape)}")
        self.backbone.check_image_size(*frame.shape[:2], name)
        return frame

    def load_memory(self, memory: SpatialMemory, source: str | os.PathLike = "memory") -> None:
        """Continue from a saved memory (call after :meth:`start`, which sets image, K and prompt).

        Args:
            source: the memory's file, named in errors.

        Raises:
            ValueError: the memory is not of ``config.memory_kind``, holds features of other channels
                (:func:`check_memory_channels`), or in mode ``"branch"`` reads out other than the memory
                weights were trained on (:meth:`~model.generation.memory_branch.MemoryBranch.check_readout`).
        """
        if memory.kind != self.config.memory_kind:
            raise ValueError(f"{source}: a {memory.kind!r} memory cannot serve memory_kind {self.config.memory_kind!r}")
        check_memory_channels(memory, self.backbone.vae.latent_channels, source)
        if self.config.mode == "branch":
            self.branch.check_readout(memory, source)
        self.memory = memory.to(self.backbone.device)

    def resume(
        self, last_frame: np.ndarray, K: torch.Tensor, prompt: str, memory: SpatialMemory, segments_done: int
    ) -> None:
        """Continue a recorded session: the state :meth:`run_segment` needs, without re-encoding a photo.

        Args:
            last_frame: ``[H, W, 3]`` uint8, the last generated frame (the next segment's frame 0).
            K: ``[3, 3]`` pixel intrinsics of the frames. prompt: the session's prompt.
            memory: the memory after the last segment. segments_done: segments generated so far
                (numbers the next segment and seeds its noise, so a resumed run equals an unbroken one).
        """
        last_frame = self._check_frame(last_frame, "last_frame")
        height, width = last_frame.shape[:2]
        if segments_done < 0:
            raise ValueError(f"segments_done must be >= 0, got {segments_done}")
        K = validate_intrinsics(torch.as_tensor(K, dtype=torch.float64), "K")
        self.load_memory(memory)
        self._prompt_embeds = self.backbone.encode_prompt(prompt)
        self._last_frame, self._K, self._size = last_frame.copy(), K, (height, width)
        self.segments_done = int(segments_done)

    def update_config(self, prompt: str | None = None, **changes) -> None:
        """Change generation settings between segments without reloading anything.

        Args:
            prompt: a new text prompt (re-encoded once), or None to keep the current one.
            changes: :class:`PipelineConfig` fields such as ``steps``, ``seed``, ``inpaint_fraction``,
                ``dynamic_threshold``. ``mode``, ``segment_frames`` and the memory settings are fixed
                for a scene (they change what the memory holds or needs trained weights).
        """
        fixed = sorted({"mode", "segment_frames", "memory", "memory_kind"} & changes.keys())
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot change during a scene; open the scene again with the new setting"
            )
        self.config = replace(self.config, **changes)  # validates in __post_init__
        if prompt is not None:
            self._prompt_embeds = self.backbone.encode_prompt(prompt)

    @property
    def K(self) -> torch.Tensor:
        """``[3, 3]`` pixel intrinsics of the generated frames."""
        self._require_started()
        return self._K

    @property
    def last_frame(self) -> np.ndarray:
        """``[H, W, 3]`` uint8, the last frame so far (the next segment's frame 0): a copy."""
        self._require_started()
        return self._last_frame.copy()

    @property
    def frame_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the generated frames in pixels."""
        return self._require_started()

    @property
    def latent_hw(self) -> tuple[int, int]:
        height, width = self.frame_hw
        stride = self.backbone.vae.spatial_stride
        return height // stride, width // stride

    def _require_started(self) -> tuple[int, int]:
        if self._size is None:
            raise RuntimeError("call start(image, depth, K) first")
        return self._size

    # ---- generation ----------------------------------------------------------------------

    def segment_count(self, n_frames: int) -> int:
        """Whole segments in a trajectory of ``n_frames`` frames (frame 0 is the start image)."""
        return (n_frames - 1) // (self.config.segment_frames - 1)

    def generate(
        self,
        w2c: torch.Tensor,
        depth_source: DepthSource,
        segments: int | None = None,
        on_step: StepCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        user_mask: torch.Tensor | None = None,
    ) -> Iterator[SegmentResult]:
        """Generate the video of a trajectory, yielding each segment as soon as it exists.

        Args:
            w2c: ``[T, 4, 4]`` poses of every RGB frame; frame 0 is the start image's pose. Needs at
                least one segment: ``T >= segment_frames``.
            depth_source: depth of generated frames for the write-back.
            segments: how many segments to generate (default: all whole segments of the trajectory).
            on_step: called after every denoising step with ``(segment, step, steps)``.
            should_cancel: polled between steps; True raises :class:`GenerationCancelled`.
            user_mask: optional ``[H, W]`` bool pixels never written to the memory.
        """
        self._require_started()
        w2c = validate_poses(torch.as_tensor(w2c, dtype=torch.float64), "trajectory")
        if w2c.ndim != 3 or len(w2c) < self.config.segment_frames:
            raise ValueError(
                f"trajectory has {len(w2c) if w2c.ndim == 3 else 1} frames, shorter than one segment "
                f"({self.config.segment_frames} frames)"
            )
        available = self.segment_count(len(w2c))
        segments = available if segments is None else segments
        if not 1 <= segments <= available:
            raise ValueError(
                f"segments must be in 1..{available} for a trajectory of {len(w2c)} frames, got {segments}"
            )
        stride = self.config.segment_frames - 1
        for s in range(segments):
            yield self.run_segment(
                w2c[s * stride : s * stride + self.config.segment_frames],
                depth_source,
                on_step,
                should_cancel,
                user_mask,
            )

    def run_segment(
        self,
        w2c: torch.Tensor,
        depth_source: DepthSource,
        on_step: StepCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        user_mask: torch.Tensor | None = None,
    ) -> SegmentResult:
        """Generate the next segment along ``w2c`` (``[segment_frames, 4, 4]``; frame 0 = the last frame so far)."""
        height, width = self._require_started()
        cfg, vae, device = self.config, self.backbone.vae, self.backbone.device
        w2c = validate_poses(torch.as_tensor(w2c, dtype=torch.float64), "segment poses")
        if w2c.shape != (cfg.segment_frames, 4, 4):
            raise ValueError(f"segment poses: expected [{cfg.segment_frames},4,4], got {list(w2c.shape)}")
        h, w = self.latent_hw
        key_poses = w2c[::4]  # latent frame k <-> RGB frame 4k
        timings: dict[str, float] = {}
        clock = _Clock(timings, device)

        # 1. memory readout at every target latent frame's pose
        with clock("readout"):
            refiner = self.config.mode == "branch" and getattr(self.branch, "refiner", None) is not None
            readout = self.memory.readout(key_poses, self._K, h, w, image_hw=(height, width), mapping=refiner)
            readout_latent = readout.latent.to(torch.float32)
        # 2. clean latent frame 0 from the segment's first RGB frame (a single image)
        with clock("encode"):
            first = vae.encode(frames_to_tensor(self._last_frame, device))
        # 3. denoising with per-token timesteps
        with clock("denoise"):
            latents = self._denoise(first[0], readout_latent, readout.visible, readout.mapping, on_step, should_cancel)
        # 4. decode
        with clock("decode"):
            frames = tensor_to_frames(vae.decode(latents))
            frames[0] = self._last_frame  # frame 0 is the conditioning frame itself, not its VAE round trip
        # 5. depth of the written latent frames, then the write masks
        written = slice(1, None)
        key_frames = frames[::4][written]
        with clock("depth"):
            depth = torch.as_tensor(depth_source(key_frames, key_poses[written], self._K), dtype=torch.float32)
            K_grid = scale_intrinsics(self._K, (height, width), (h, w))
            agreed = agree_with_memory(
                depth, depth_source, readout, self.memory.positions, key_poses, K_grid, written, cfg.depth_tolerance
            )
            depth = agreed.depth
        with clock("masks"):
            write_latents = (
                latents[written]
                if cfg.write_path == "latents"
                else vae.encode(frames_to_tensor(frames, device))[written]
            )
            moving = dynamic_mask(
                write_latents.cpu(),
                readout_latent[written].cpu(),
                readout.visible[written].cpu(),
                cfg.dynamic_threshold,
            )
            semantic_sky = None if self.sky is None else self.sky.segment(torch.from_numpy(key_frames))
            keep, labels = write_masks(
                depth, (h, w), far_m=cfg.sky_far_m, semantic_sky=semantic_sky, dynamic=moving, user_mask=user_mask
            )
            for label, cells in agreed.rejected.items():
                reject_cells(keep, labels, cells, label)
        # 6. write back (all-or-nothing)
        frame_ids = self.segments_done * (cfg.segment_frames - 1) + np.arange(cfg.segment_frames)
        with clock("update"):
            stats = self.memory.update(
                write_latents,
                depth,
                key_poses[written],
                self._K,
                keep=keep,
                labels=labels,
                frames=torch.from_numpy(key_frames),
                frame_ids=torch.as_tensor(frame_ids[::4][written]),
            )
        timings["total"] = sum(timings.values())
        result = SegmentResult(
            self.segments_done,
            frames,
            frame_ids,
            w2c,
            latents.cpu(),
            readout.visible.cpu(),
            labels.cpu(),
            timings,
            stats.points,
            stats.bytes,
            depth_source_label(depth_source),
            agreed.residual,
            readout=readout_latent.cpu(),
        )
        self._last_frame = frames[-1]
        self.segments_done += 1
        return result

    def _denoise(
        self,
        first: torch.Tensor,
        readout: torch.Tensor,
        visible: torch.Tensor,
        mapping: torch.Tensor | None,
        on_step,
        should_cancel,
    ) -> torch.Tensor:
        """Denoise one segment's latents ``[F, C, h, w]`` (frame 0 clean and fixed) from the readout
        ``[F, C, h, w]``, its ``visible [F, h, w]`` and cell ``mapping [F, 6, h, w]`` (None: per-pixel readout)."""
        cfg, backbone = self.config, self.backbone
        n_latent = cfg.latent_frames
        channels, h, w = first.shape
        device, dtype = backbone.device, backbone.dtype
        generator = torch.Generator("cpu").manual_seed(cfg.seed * 1_000_003 + self.segments_done)
        noise = torch.randn(1, channels, n_latent, h, w, generator=generator).to(device)
        first = first.to(device, torch.float32)[None, :, None]  # [1, C, 1, h, w]
        target = readout.permute(1, 0, 2, 3)[None].to(device)  # [1, C, F, h, w]
        follow = visible.to(device)[None, None].clone()  # [1, 1, F, h, w]
        follow[:, :, 0] = False  # frame 0 is the clean image anyway
        scheduler = backbone.make_scheduler()
        scheduler.set_timesteps(cfg.steps, device=device)
        sigmas = scheduler.sigmas.to(device, torch.float32)
        branch_follow = (
            profile(backbone.config.backend).branch_follow if cfg.branch_follow is None else cfg.branch_follow
        )
        following = cfg.mode == "inpaint" or branch_follow
        n_follow = round(cfg.inpaint_fraction * cfg.steps) if following else 0
        patch_h, patch_w = backbone.transformer.config.patch_size[1:]
        tokens_per_frame = (h // patch_h) * (w // patch_w)
        frame_is_noisy = torch.ones(n_latent, device=device)
        frame_is_noisy[0] = 0.0
        token_mask = frame_is_noisy.repeat_interleave(tokens_per_frame)[None]  # [1, L]: 0 for frame-0 tokens

        latents = noise.clone()
        if n_follow:
            latents = torch.where(follow, (1 - sigmas[0]) * target + sigmas[0] * noise, latents)
        condition = self._branch_condition(target, visible, mapping)
        for i, t in enumerate(scheduler.timesteps):
            if should_cancel is not None and should_cancel():
                raise GenerationCancelled(f"segment {self.segments_done} cancelled at step {i}/{cfg.steps}")
            model_input = torch.cat([first, latents[:, :, 1:]], dim=2)
            timestep = token_mask * t.to(device, torch.float32)
            with condition, torch.no_grad():
                velocity = backbone.transformer(
                    hidden_states=model_input.to(dtype),
                    timestep=timestep,
                    encoder_hidden_states=self._prompt_embeds,
                    return_dict=False,
                )[0]
            latents = scheduler.step(velocity.float(), t, latents, return_dict=False)[0]
            if i < n_follow:  # RePaint-style: visible tokens follow the readout at the next noise level
                sigma = sigmas[i + 1]
                latents = torch.where(follow, (1 - sigma) * target + sigma * noise, latents)
            if on_step is not None:
                on_step(self.segments_done, i + 1, cfg.steps)
        latents = torch.cat([first, latents[:, :, 1:]], dim=2)
        return latents[0].permute(1, 0, 2, 3).contiguous()  # [F, C, h, w]

    def _branch_condition(self, target: torch.Tensor, visible: torch.Tensor, mapping: torch.Tensor | None):
        """The memory branch's condition for one segment (a no-op context in inpaint mode)."""
        if self.config.mode != "branch":
            return contextlib.nullcontext()
        if mapping is not None:
            mapping = mapping.permute(1, 0, 2, 3)[None].to(target.device)  # [1, 6, F, h, w]
        return _Reusable(
            lambda: self.branch.condition(target.to(self.backbone.dtype), visible[None].to(target.device), mapping)
        )

    def describe(self) -> dict:
        """Settings for reports and session files."""
        return {
            "pipeline": asdict(self.config),
            "backbone": self.backbone.describe(),
            "branch": self.branch is not None,
        }


@dataclass
class AgreedDepth:
    """Depth of the written frames made to agree with the memory (:func:`agree_with_memory`).

    Attributes:
        depth: ``[T, H, W]`` float32 metres to write with.
        rejected: ``{label: [T, h, w] bool}`` cells never to be written, by the label they get
            (``DISAGREE``, ``UNANCHORED``).
        residual: relative alignment residual, or None when nothing was fitted.
    """

    depth: torch.Tensor
    rejected: dict[CellLabel, torch.Tensor]
    residual: float | None


def agree_with_memory(
    depth: torch.Tensor,
    source: DepthSource,
    readout: Readout,
    positions: torch.Tensor,
    w2c: torch.Tensor,
    K_grid: torch.Tensor,
    written: slice,
    tolerance: float,
) -> AgreedDepth:
    """Make the depth of the written frames agree with the memory, by the kind of ``source``.

    * the flat prior (``source.is_prior``): visible cells take the readout's depth, the others are
      ``UNANCHORED`` (:func:`~model.memory.alignment.anchor_to_readout`);
    * ``source.alignment`` ``"scale"`` / ``"affine"``: fitted per frame on the readout's confident
      cells that hold their point's own sample (:func:`~model.memory.alignment.landed_cells`); visible
      cells that still disagree are ``DISAGREE`` (:func:`~model.memory.alignment.align_depth`);
    * ``"none"`` (exact depth; also a source without the attribute): written as is.

    Args:
        depth: ``[T, H, W]`` metres from ``source``. readout: the segment's readout (all ``F`` latent frames).
        positions: ``[N, 3]`` the memory's points (``readout.index`` indexes them). w2c: ``[F, 4, 4]`` the
            readout's cameras. K_grid: ``[3, 3]`` intrinsics of the latent grid.
        written: which latent frames of ``readout`` are written (``T`` of them). tolerance: relative.
    """
    visible = readout.visible[written].cpu()
    readout_depth = readout.depth[written].cpu().to(torch.float32)
    if getattr(source, "is_prior", False):
        anchored, unanchored = anchor_to_readout(depth, readout_depth, visible)
        return AgreedDepth(anchored, {CellLabel.UNANCHORED: unanchored}, None)
    mode = getattr(source, "alignment", "none")
    if mode == "none":
        return AgreedDepth(depth, {}, None)
    landed = landed_cells(positions, readout.index[written], w2c[written], K_grid)
    aligned = align_depth(depth, readout_depth, visible, confident_cells(visible) & landed, mode, tolerance)
    return AgreedDepth(aligned.depth, {CellLabel.DISAGREE: aligned.disagree}, aligned.residual)


class _Reusable:
    """A context manager that builds a fresh inner context on every ``with`` (one per denoising step)."""

    def __init__(self, factory) -> None:
        self._factory, self._inner = factory, None

    def __enter__(self):
        self._inner = self._factory()
        return self._inner.__enter__()

    def __exit__(self, *exc):
        return self._inner.__exit__(*exc)


class _Clock:
    """Adds the wall time of ``with clock(name):`` blocks to ``timings[name]`` (CUDA-synchronised)."""

    def __init__(self, timings: dict[str, float], device: torch.device) -> None:
        self.timings, self.device = timings, device

    @contextlib.contextmanager
    def __call__(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
