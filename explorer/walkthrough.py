"""Headless walkthrough: build the memory from the bundled scene, fly a closed-loop orbit, and write a
preview video of what the memory shows along the way (no diffusion model involved).

Features are exact 4x4 pixel patches (:class:`model.generation.patch_vae.PatchVAE`, 48 channels like Wan's
latent), so the preview shows the memory's real content, its holes and its occlusions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from model.generation.patch_vae import PatchVAE
from model.geometry.camera import invert_pose
from model.geometry.trajectories import closed_loop, orbit
from model.io.atomic import OutputSet, write_json_atomic
from model.io.cameras import write_re10k
from model.io.frames import frames_to_tensor, tensor_to_frames
from model.io.rgbd import SAMPLE_SCENE_DIR, load_rgbd_folder
from model.io.video import Mp4Writer, min_video_bytes
from model.memory.latent import LatentSpatialMemory, MemoryConfig


@dataclass
class WalkthroughConfig:
    """Settings of :func:`run_walkthrough`."""

    scene_dir: str = str(SAMPLE_SCENE_DIR)  # RGB-D view folder (image.png, depth.png, camera.json)
    frames_per_direction: int = 48  # frames of the orbit out; the video is twice as long (out and back)
    degrees: float = 40.0  # orbit sweep in degrees about the point the photo looks at
    fps: float = 16.0  # frames per second of preview.mp4
    chunk: int = 9  # target frames read out per call (one segment's latent frames)


def run_walkthrough(out_dir: str | Path, config: WalkthroughConfig | None = None) -> dict:
    """Write ``out_dir/preview.mp4``, ``out_dir/session.json`` and ``out_dir/cameras.txt``.

    The three files are one :class:`model.io.atomic.OutputSet`: checked before the memory is built and
    renamed into place together, so a failure leaves none of them and earlier ones untouched.

    Returns:
        The session dictionary written to ``session.json``.
    """
    config = config or WalkthroughConfig()
    out_dir = Path(out_dir)
    view = load_rgbd_folder(config.scene_dir)
    n_frames = 2 * config.frames_per_direction  # closed_loop: out and back
    outputs = OutputSet()
    outputs.add(out_dir / "preview.mp4", size=min_video_bytes(n_frames, view.height, view.width))
    outputs.add(out_dir / "session.json")
    outputs.add(out_dir / "cameras.txt")
    K = torch.from_numpy(view.K)
    w2c0 = torch.from_numpy(view.w2c)
    vae = PatchVAE()
    h, w = view.height // vae.spatial_stride, view.width // vae.spatial_stride

    t0 = time.perf_counter()
    memory = LatentSpatialMemory(MemoryConfig())
    latent = vae.encode(frames_to_tensor(view.image))[0]
    memory.initialize(latent, torch.from_numpy(view.depth), K, w2c0, image=torch.from_numpy(view.image))
    build_s = time.perf_counter() - t0

    # orbit about the point the photo looks at: the median depth of the central region
    centre = view.depth[view.height // 3 : 2 * view.height // 3, view.width // 3 : 2 * view.width // 3]
    radius = float(np.median(centre[np.isfinite(centre)])) if np.isfinite(centre).any() else 2.0
    path = closed_loop(orbit(config.frames_per_direction, radius, config.degrees, start_w2c=w2c0))

    with outputs:
        visible_fraction, readout_ms = [], []
        with Mp4Writer(
            out_dir / "preview.mp4",
            view.width,
            view.height,
            config.fps,
            metadata={"generator": "mirage-explorer walkthrough"},
            outputs=outputs,
        ) as video:
            for start in range(0, len(path), config.chunk):
                poses = path[start : start + config.chunk]
                t = time.perf_counter()
                readout = memory.readout(poses, K, h, w, image_hw=(view.height, view.width))
                readout_ms.append(1000 * (time.perf_counter() - t))
                for latent_frame, visible in zip(readout.latent, readout.visible, strict=True):
                    video.append(tensor_to_frames(vae.decode(latent_frame[None].float()))[0])
                    visible_fraction.append(float(visible.float().mean()))

        outputs.write(
            out_dir / "cameras.txt",
            lambda tmp: write_re10k(
                tmp, path, K, view.width, view.height, fps=config.fps, url="mirage-explorer walkthrough"
            ),
        )
        stats = memory.stats()
        session = {
            "kind": "walkthrough",
            "settings": asdict(config),
            "scene": {"dir": config.scene_dir, "width": view.width, "height": view.height, "source": view.source},
            "memory": {
                "config": asdict(memory.config),
                "points": stats.points,
                "bytes": stats.bytes,
                "grid": [h, w],
                "features": "4x4 pixel patches (48 channels)",
            },
            "orbit_radius_m": radius,
            "frames": len(path),
            "camera_to_world": invert_pose(path).reshape(len(path), 16).tolist(),
            "visible_fraction": visible_fraction,
            "timings": {"build_memory_s": build_s, "readout_ms_per_chunk": readout_ms},
        }
        outputs.write(out_dir / "session.json", lambda tmp: write_json_atomic(tmp, session))
    return session
