"""Mirage Explorer entry point.

Without a subcommand it opens the explorer (the desktop GUI); subcommands run headless jobs.

Exit status of a headless job: 0 done (``render-batch``: 1 when a job ended in an error record); 2 a
bad input or a file that cannot be written (one line ``error: <file>: <reason>``); 130 Ctrl-C
(SIGINT), 143 SIGTERM: the job stops, removes its temporary files and leaves earlier results as they
were (one line ``interrupted (SIGINT)``).
"""

from __future__ import annotations

import argparse
import signal
import sys

from model.generation.profiles import BACKENDS, backend_summaries, default_backend, model_folders, per_backend
from model.io.atomic import Interrupted, raise_on_signals
from model.io.errors import error_line
from ui.launch import OFFLOAD_CHOICES, add_gui_arguments


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


def _generate(args: argparse.Namespace) -> int:
    from explorer.generate import GenerateArgs, run_generate

    fields = {k: v for k, v in vars(args).items() if k not in ("command", "run") and not k.startswith("gui_")}
    report = run_generate(GenerateArgs(**fields))
    last = report["segments"][-1]
    print(
        f"wrote {args.out} ({report['trajectory']['frames']} frames), {args.out[:-4]}.json, "
        f"{args.out[:-4]}.cameras.txt; "
        f"memory {report['memory']['points']} points; last segment {last['seconds_per_frame']:.2f} s/frame"
    )
    return 0


def _add_generate(sub) -> None:
    from explorer.generate import TRAJECTORIES

    gen = sub.add_parser(
        "generate", help="headless: a photo and a camera path in, OUT.mp4 + OUT.json + OUT.cameras.txt out"
    )
    gen.add_argument("--out", required=True, help="output video OUT.mp4 (OUT.json and OUT.cameras.txt go beside it)")
    gen.add_argument("--image", help="photo (default: the bundled sample scene with its exact depth)")
    gen.add_argument(
        "--scene-seed", dest="scene_seed", type=int, help="instead of a photo: the procedural room of this seed"
    )
    gen.add_argument(
        "--trajectory",
        default="orbit",
        help=f"{' | '.join(TRAJECTORIES)} (with parameters: orbit:degrees=60,radius=1.5) | a RealEstate10K .txt "
        "| a camera-path .json",
    )
    gen.add_argument("--segments", type=int, default=2, help="segments of 33 frames")
    gen.add_argument(
        "--backend",
        choices=BACKENDS,
        help=f"{backend_summaries()} (default: {default_backend(True)} with --model, else {default_backend(False)})",
    )
    gen.add_argument("--model", help=f"model folder ({model_folders()}; mini: another trained mini model folder)")
    gen.add_argument(
        "--memory-weights", dest="memory_weights", help="trained memory branch + LoRA folder (mode branch)"
    )
    gen.add_argument("--mode", choices=("inpaint", "branch"), help=f"default {per_backend(lambda p: p.mode)}")
    gen.add_argument(
        "--steps", type=int, help=f"denoising steps per segment (default {per_backend(lambda p: p.steps)})"
    )
    gen.add_argument("--height", type=int, help=f"frame height (default {per_backend(lambda p: p.generate_size[0])})")
    gen.add_argument("--width", type=int, help=f"frame width (default {per_backend(lambda p: p.generate_size[1])})")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--prompt", default="")
    gen.add_argument("--depth", help="depth file for the photo (.png 16-bit mm or .npy metres)")
    gen.add_argument("--depth-model", dest="depth_model", help="transformers depth-estimation model folder")
    gen.add_argument(
        "--sky-model",
        dest="sky_model",
        help="transformers semantic-segmentation model folder with a "
        "'sky' class (e.g. SegFormer ADE20k): its sky never enters the memory",
    )
    gen.add_argument(
        "--offload",
        choices=OFFLOAD_CHOICES,
        default="auto",
        help="GPU memory profile of the wan backend; auto: the least offloaded one that fits the free GPU memory",
    )
    gen.add_argument("--device", help="torch device (default: cuda when available)")
    gen.add_argument(
        "--inpaint-fraction",
        dest="inpaint_fraction",
        type=float,
        default=None,
        help="inpaint mode: share of the steps during which visible tokens follow the memory "
        f"(default {per_backend(lambda p: p.inpaint_fraction)})",
    )
    gen.add_argument("--save-memory", dest="save_memory", help="write the final memory (.safetensors)")
    gen.add_argument("--load-memory", dest="load_memory", help="start from a saved memory")
    gen.add_argument("--fps", type=float, default=16.0)
    gen.add_argument(
        "--memory",
        choices=("latent", "rgb"),
        default="latent",
        help="latent memory, or the pixel-space RGB point-cloud baseline",
    )
    gen.set_defaults(run=_generate)


def _eval(args: argparse.Namespace) -> int:
    from explorer.evaluate import format_table, run_eval

    metrics, out = run_eval(args.run_path, stride=args.stride)
    print(format_table(metrics))
    print(f"wrote {out}")
    return 0


def _export_worldscore(args: argparse.Namespace) -> int:
    from explorer.evaluate import export_worldscore

    data = export_worldscore(args.run_path, args.out)
    print(f"wrote {args.out}: frames/000.png..{data['frames'] - 1:03d}.png, input_image.png, camera_data.json")
    return 0


def _export_cloud(args: argparse.Namespace) -> int:
    from explorer.cloud_export import export_cloud

    count = export_cloud(args.memory, args.out)
    print(f"wrote {args.out}: {count} points (x, y, z, red, green, blue, label, segment, frame)")
    return 0


def _add_eval(sub) -> None:
    ev = sub.add_parser("eval", help="consistency metrics of a generate run; writes OUT.metrics.json")
    ev.add_argument(
        "run_path",
        metavar="RUN",
        help="a generate run: OUT.mp4 (with OUT.json, OUT.cameras.txt) or a folder holding one",
    )
    ev.add_argument("--stride", type=int, default=4, help="frame step of the camera-error and reprojection pairs")
    ev.set_defaults(run=_eval)
    ws = sub.add_parser(
        "export-worldscore", help="a generate run as WorldScore input: OUT/frames/000.png.. + OUT/camera_data.json"
    )
    ws.add_argument("run_path", metavar="RUN", help="a generate run: OUT.mp4 or a folder holding one")
    ws.add_argument("out", metavar="OUT", help="output folder (new, empty, or an earlier export)")
    ws.set_defaults(run=_export_worldscore)
    cloud = sub.add_parser(
        "export-cloud", help="a saved memory as a binary PLY point cloud (one vertex per stored point)"
    )
    cloud.add_argument("memory", metavar="MEMORY", help="memory file (.safetensors) from --save-memory or Save memory")
    cloud.add_argument("out", metavar="OUT", help="output .ply file")
    cloud.set_defaults(run=_export_cloud)


def _render_batch(args: argparse.Namespace) -> int:
    from explorer.batch.jobs import read_jobs
    from explorer.batch.results import RESULTS_FILE, summary_table

    jobs = read_jobs(args.jobs)  # every line checked before Ray is even imported
    from explorer.batch.ray_runner import run_batch

    records = run_batch(
        jobs,
        args.out,
        address=args.address,
        workers=args.workers,
        cpus_per_job=args.cpus_per_job,
        retries=args.retries,
        progress=not args.no_progress,
    )
    print(summary_table(records))
    print(f"wrote {args.out}/<id>/ per job and {args.out}/{RESULTS_FILE}")
    return 1 if any(r["status"] == "error" for r in records) else 0


def _add_render_batch(sub) -> None:
    batch = sub.add_parser(
        "render-batch",
        help="many generate jobs (one JSON object per line of JOBS) on Ray: DIR/<id>/ per job + DIR/results.jsonl",
    )
    batch.add_argument(
        "jobs", metavar="JOBS", help="JSON-lines job file: id, image, trajectory, segments, steps, seed, ..."
    )
    batch.add_argument("--out", required=True, help="output folder (re-running skips the jobs already complete)")
    batch.add_argument("--address", help="Ray cluster to join: auto | HOST:PORT (default: an embedded local cluster)")
    batch.add_argument("--workers", type=int, help="at most this many workers (default: one per GPU, or per CPUs)")
    batch.add_argument(
        "--cpus-per-job", dest="cpus_per_job", type=int, default=1, help="CPUs (torch threads) of a CPU worker"
    )
    batch.add_argument(
        "--retries", type=int, default=2, help="restarts of a worker that died and retries of its job (default 2)"
    )
    batch.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    batch.set_defaults(run=_render_batch)


def _eval_world(args: argparse.Namespace) -> int:
    from explorer.eval_world.report import table_rows
    from explorer.eval_world.run import EvalWorldArgs, run_eval_world

    fields = {k: v for k, v in vars(args).items() if k not in ("command", "run") and not k.startswith("gui_")}
    summary = run_eval_world(EvalWorldArgs(**fields))
    print("\n".join(table_rows(summary["systems"])))
    print(f"wrote {args.out}/summary.json, table.md, contact_sheet.png")
    return 0


def _add_eval_world(sub) -> None:
    from explorer.eval_world.systems import SYSTEMS
    from explorer.generate import TRAJECTORIES

    ew = sub.add_parser(
        "eval-world",
        help="benchmark: systems generate procedural worlds, every frame scored against the exact render",
    )
    ew.add_argument("--seeds", required=True, help="comma-separated scene seeds, e.g. 5001,5002 (held out: >= 5000)")
    ew.add_argument(
        "--trajectories", default=",".join(TRAJECTORIES), help=f"comma-separated, of {', '.join(TRAJECTORIES)}"
    )
    ew.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated, of " + "; ".join(f"{n} ({s.summary})" for n, s in SYSTEMS.items()),
    )
    ew.add_argument("--out", required=True, help="output folder: summary.json, table.md, contact_sheet.png")
    ew.add_argument("--segments", type=int, default=3, help="segments of 33 frames per trajectory")
    ew.add_argument(
        "--steps", type=int, help=f"denoising steps (default: each backend's, {per_backend(lambda p: p.steps)})"
    )
    ew.add_argument(
        "--inpaint-fraction",
        dest="inpaint_fraction",
        type=float,
        help="share of the steps during which visible tokens follow the memory readout "
        f"(default: each backend's, {per_backend(lambda p: p.inpaint_fraction)})",
    )
    ew.add_argument("--height", type=int, help="frame height (default: the shipped model's)")
    ew.add_argument("--width", type=int, help="frame width (default: the shipped model's)")
    ew.add_argument("--seed", type=int, default=0, help="noise seed")
    ew.add_argument("--device", help="torch device (default: cuda when available)")
    ew.add_argument("--model", help="mini model folder for the mini systems (default: the shipped one)")
    ew.set_defaults(run=_eval_world)


def _add_train(sub) -> None:
    from model.training.cli import add_train_arguments

    add_train_arguments(
        sub.add_parser("train", help="train the memory branch (--stage branch) or the LoRA (--stage lora)")
    )


def _fetch_models(args: argparse.Namespace) -> int:
    from explorer.fetch_models import MODEL_KEYS, Cancelled, ask_on_terminal, fetch_models
    from ui.settings import record_model_folders, user_qsettings

    try:
        fetch_models(
            args.only or MODEL_KEYS,
            args.dir,
            yes=args.yes,
            confirm=ask_on_terminal,
            record=lambda folders: record_model_folders(user_qsettings(), folders),
        )
    except Cancelled:
        print("nothing downloaded", file=sys.stderr)
        return 1
    return 0


def _add_fetch_models(sub) -> None:
    from explorer.fetch_models import RECOMMENDED

    fetch = sub.add_parser(
        "fetch-models",
        help="download Wan2.2-TI2V-5B and a metric depth model, check them, make them the explorer's defaults",
        description="Downloads "
        + "; ".join(f"{m.key}: {m.repo_id}" for m in RECOMMENDED)
        + ". States each licence and size first and asks (unless --yes); resumable.",
    )
    fetch.add_argument(
        "--only", action="append", choices=[m.key for m in RECOMMENDED], help="fetch only this model (repeatable)"
    )
    fetch.add_argument("--dir", help="download into DIR/<repository name> (default: the standard Hugging Face cache)")
    fetch.add_argument("--yes", "-y", action="store_true", help="download without asking")
    fetch.set_defaults(run=_fetch_models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py", description="Mirage Explorer: fly through a photo with a video world model."
    )
    add_gui_arguments(parser)
    sub = parser.add_subparsers(dest="command")
    walk = sub.add_parser(
        "walkthrough", help="headless: memory from the bundled scene, closed-loop orbit, preview video"
    )
    walk.add_argument("--out", required=True, help="output folder (preview.mp4, session.json, cameras.txt)")
    walk.add_argument("--scene", default=None, help="RGB-D view folder (default: the bundled sample scene)")
    walk.add_argument("--frames", type=int, default=48, help="frames of the orbit out (the video goes out and back)")
    walk.add_argument("--degrees", type=float, default=40.0, help="orbit sweep in degrees")
    walk.add_argument("--fps", type=float, default=16.0, help="frames per second of the preview")
    walk.set_defaults(run=_walkthrough)
    _add_generate(sub)
    _add_render_batch(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_eval_world(sub)
    _add_fetch_models(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from ui.app import run

        return run(args)
    try:
        with raise_on_signals():
            return args.run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"interrupted ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
