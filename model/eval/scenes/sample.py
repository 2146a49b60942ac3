"""The bundled sample scene: its start view written as an RGB-D folder, and the ``write-sample`` command."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from model.eval.scenes.renderer import SceneRenderer
from model.eval.scenes.world import SAMPLE_CONFIG, SAMPLE_FOV_Y_DEG, SAMPLE_SIZE, ProceduralScene, SceneConfig
from model.geometry.camera import intrinsics_from_fov

# --------------------------------------------------------------------------------------------
# The bundled sample scene
# --------------------------------------------------------------------------------------------


def write_sample(out_dir, config: SceneConfig = SAMPLE_CONFIG, size=SAMPLE_SIZE, fov_y_deg=SAMPLE_FOV_Y_DEG) -> None:
    """Render the start view of ``config`` at ``size = (width, height)`` and write it as an RGB-D
    folder (``image.png``, ``depth.png`` in millimetres, ``camera.json``), each file atomically."""
    from model.io.rgbd import RGBDView, write_rgbd_folder

    width, height = size
    scene = ProceduralScene(config)
    K = intrinsics_from_fov(fov_y_deg, width, height).numpy()
    with SceneRenderer() as renderer:
        rgb, depth = renderer.render(scene, scene.start_w2c(), K, width, height, t=0.0)
    source = {"generator": "model.eval.scenes", "config": asdict(config), "t": 0.0, "fov_y_deg": fov_y_deg}
    write_rgbd_folder(out_dir, RGBDView(image=rgb, depth=depth, K=K, w2c=scene.start_w2c(), source=source))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.eval.scenes", description="Procedural ground-truth scenes.")
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("write-sample", help="render the sample scene's start view into a folder")
    sample.add_argument("out_dir", help="output folder, e.g. resources/sample_scene")
    sample.add_argument("--seed", type=int, default=SAMPLE_CONFIG.seed, help="scene seed")
    sample.add_argument("--width", type=int, default=SAMPLE_SIZE[0], help="image width, pixels")
    sample.add_argument("--height", type=int, default=SAMPLE_SIZE[1], help="image height, pixels")
    sample.add_argument("--fov", type=float, default=SAMPLE_FOV_Y_DEG, help="vertical field of view, degrees")
    args = parser.parse_args(argv)
    config = SceneConfig(**{**asdict(SAMPLE_CONFIG), "seed": args.seed})
    try:
        write_sample(args.out_dir, config, (args.width, args.height), args.fov)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}")
    return 0
