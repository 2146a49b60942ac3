"""Mirage Explorer entry point.

Without a subcommand it opens the explorer (the desktop GUI); subcommands run headless jobs.
"""

from __future__ import annotations

import argparse
import sys


def _walkthrough(args: argparse.Namespace) -> int:
    from explorer.walkthrough import WalkthroughConfig, run_walkthrough

    config = WalkthroughConfig(frames_per_direction=args.frames, degrees=args.degrees, fps=args.fps)
    if args.scene:
        config.scene_dir = args.scene
    session = run_walkthrough(args.out, config)
    mean_visible = sum(session["visible_fraction"]) / len(session["visible_fraction"])
    print(
        f"wrote {args.out}/preview.mp4 ({session['frames']} frames), session.json, cameras.txt; "
        f"memory {session['memory']['points']} points, {session['memory']['bytes'] / 2**20:.2f} MiB; "
        f"mean visible fraction {mean_visible:.2f}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="Mirage Explorer: fly through a photo with a video world model.")
    sub = parser.add_subparsers(dest="command")
    walk = sub.add_parser("walkthrough", help="headless: memory from the bundled scene, closed-loop orbit, preview video")
    walk.add_argument("--out", required=True, help="output folder (preview.mp4, session.json, cameras.txt)")
    walk.add_argument("--scene", default=None, help="RGB-D view folder (default: the bundled sample scene)")
    walk.add_argument("--frames", type=int, default=48, help="frames of the orbit out (the video goes out and back)")
    walk.add_argument("--degrees", type=float, default=40.0, help="orbit sweep in degrees")
    walk.add_argument("--fps", type=float, default=16.0, help="frames per second of the preview")
    walk.set_defaults(run=_walkthrough)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("\nThe desktop explorer is not built yet; run a subcommand.", file=sys.stderr)
        return 2
    try:
        return args.run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
