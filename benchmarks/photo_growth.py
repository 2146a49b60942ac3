"""Memory growth of a photo explored without a depth model (issue 11 goal: <= 25 % of the photo's
points added per segment).

Runs ``main.py generate`` on the bundled photo (``resources/sample_scene/image.png``, no depth file,
no depth model: the flat prior) along the ``forward`` trajectory on the tiny backend at its default
size, and reports the memory size after each segment from the run JSON (``segments[i].memory_points``)
with the cells per label. ``--baseline DIR`` runs the same command in another checkout too (e.g. the
code before this change); code whose run JSON has no ``memory.initial_points`` is given the photo's
latent cell count, which is what the flat prior (valid depth everywhere) writes.

    python benchmarks/photo_growth.py --baseline /path/to/main   # -> benchmarks/results/photo_growth-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "resources" / "sample_scene" / "image.png"
STRIDE = 4  # the tiny backend's patch VAE


def run_generate(repo: Path, segments: int, steps: int, trajectory: str, size: tuple[int, int]) -> dict:
    """``main.py generate`` in ``repo`` -> growth per segment (fractions of the photo's points) and cell counts."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.mp4"
        argv = ["generate", "--image", str(PHOTO), "--trajectory", trajectory, "--segments", str(segments)]
        argv += ["--steps", str(steps), "--height", str(size[0]), "--width", str(size[1]), "--out", str(out)]
        subprocess.run([sys.executable, "main.py", *argv], cwd=repo, check=True, stdout=subprocess.DEVNULL)
        report = json.loads(out.with_suffix(".json").read_text())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    initial = report["memory"].get("initial_points", (size[0] // STRIDE) * (size[1] // STRIDE))
    sizes = [initial] + [s["memory_points"] for s in report["segments"]]
    growth = [(b - a) / initial for a, b in zip(sizes, sizes[1:], strict=False)]
    return {
        "commit": commit,
        "command": "main.py " + " ".join(argv[:-2]),
        "depth_source": report["depth_source"],
        "initial_points": initial,
        "memory_points": sizes[1:],
        "growth_per_segment": growth,
        "goal_met": max(growth) <= 0.25,
        "cells_per_segment": [s.get("cells") for s in report["segments"]],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--trajectory", default="forward")
    parser.add_argument("--baseline", type=Path, help="another checkout to run the same command in, for comparison")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "photo_growth-cpu.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    from explorer.machine import cpu_model
    from model.generation.profiles import profile

    size = profile("tiny").generation_size(None, None)
    runs = {"this": run_generate(ROOT, args.segments, args.steps, args.trajectory, size)}
    if args.baseline is not None:
        runs["baseline"] = run_generate(args.baseline, args.segments, args.steps, args.trajectory, size)
    result = {
        "benchmark": "memory growth of the bundled photo explored without a depth model (main.py generate, tiny)",
        "size": list(size),
        "goal": "growth per segment <= 0.25 of the initial points",
        "runs": runs,
        "machine": {
            "platform": platform.platform(),
            "processor": cpu_model(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, run in runs.items():
        points = [run["initial_points"], *run["memory_points"]]
        print(name, run["commit"][:7], "points", points, "goal met", run["goal_met"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
