"""What ``main.py eval-world`` writes: the summary (JSON), its markdown table and the contact sheet.

``summary.json`` = ``{"systems": {name: {"psnr", "ssim", "psnr_visible", "psnr_holes", "psnr_c",
"s_per_frame", ...}}, "seeds": [...], "trajectories": [...], ...}``: each system's scores are means
over its runs (one run = one seed x one trajectory), PSNRs averaged in dB with identical frames
counted as 100 dB; ``psnr_c`` is the mean closed-loop PSNR over the runs whose path returns to its
start pose (null when the run has none); NaN is written as null. Also per trajectory
(``by_trajectory``), every run (``runs``), the settings and the machine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from explorer.eval_world.systems import SYSTEMS
from explorer.evaluate import json_safe
from model.eval.frame_scores import SCORES, mean_scores
from model.eval.metrics import mean_psnr

if TYPE_CHECKING:
    from explorer.eval_world.run import Plan

SUMMARY, TABLE, CONTACT_SHEET = "summary.json", "table.md", "contact_sheet.png"
#: Contact-sheet tiles are enlarged by a whole factor until at least this wide, pixels.
SHEET_MIN_WIDTH = 256
#: Run figures averaged per system besides :data:`model.eval.frame_scores.SCORES`.
RUN_FIGURES = ("s_per_frame", "cache_mib_per_segment", "memory_visible_fraction")
#: Table columns: (header, summary key, format).
COLUMNS = (
    ("PSNR", "psnr", "{:.2f}"),
    ("SSIM", "ssim", "{:.3f}"),
    ("PSNR visible", "psnr_visible", "{:.2f}"),
    ("PSNR holes", "psnr_holes", "{:.2f}"),
    ("PSNR_C", "psnr_c", "{:.2f}"),
    ("s/frame", "s_per_frame", "{:.3f}"),
    ("cache MiB/segment", "cache_mib_per_segment", "{:.3f}"),
)


def system_means(runs: list[dict]) -> dict:
    """The mean of every score and figure over ``runs`` of one system (see the module docstring)."""
    means = mean_scores([{key: run[key] for key in SCORES} for run in runs])
    for key in RUN_FIGURES:
        means[key] = float(np.mean([run[key] for run in runs]))
    closed = [run["psnr_c"] for run in runs if run["psnr_c"] is not None]
    means["psnr_c"] = mean_psnr(closed) if closed else None
    means["closed_loop_runs"] = len(closed)
    return means


def summarize(runs: list[dict], plan: Plan, settings: dict, machine: str, wall_s: float) -> dict:
    """The contents of ``summary.json`` (JSON-safe: NaN as null)."""
    names = [s.name for s in plan.systems]
    summary = {
        "systems": {n: system_means([r for r in runs if r["system"] == n]) for n in names},
        "seeds": plan.seeds,
        "trajectories": plan.trajectories,
        "by_trajectory": {
            t: {n: system_means([r for r in runs if r["system"] == n and r["trajectory"] == t]) for n in names}
            for t in plan.trajectories
        },
        "system_descriptions": {n: SYSTEMS[n].summary for n in names},
        "settings": settings,
        "machine": machine,
        "wall_s": wall_s,
        "split": "visible = pixels of latent cells that a latent memory written with the exact renders covers "
        "at each frame's camera (the same for every system); holes = the rest",
        "runs": runs,
    }
    return json_safe(summary)


def _cell(value, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def table_rows(systems: dict) -> list[str]:
    """The markdown table lines of ``{system: means}`` (:data:`COLUMNS`; – for null)."""
    header = "| system | " + " | ".join(h for h, _, _ in COLUMNS) + " |"
    rule = "|---" * (len(COLUMNS) + 1) + "|"
    lines = [header, rule]
    for name, means in systems.items():
        lines.append(f"| {name} | " + " | ".join(_cell(means.get(key), fmt) for _, key, fmt in COLUMNS) + " |")
    return lines


def reproduce_command(settings: dict) -> str:
    """The ``main.py eval-world`` command line of a run's settings (unset flags left out)."""
    flags = [
        "seeds",
        "trajectories",
        "systems",
        "segments",
        "steps",
        "height",
        "width",
        "seed",
        "model",
        "device",
        "out",
    ]
    parts = [".venv/bin/python main.py eval-world"]
    parts += [f"--{flag} {settings[flag]}" for flag in flags if settings.get(flag) is not None]
    return " ".join(parts)


def markdown_table(summary: dict) -> str:
    """The summary as markdown: settings and machine, the systems table, one table per trajectory."""
    s = summary["settings"]
    lines = [
        "# World benchmark (`main.py eval-world`)",
        "",
        f"Machine: {summary['machine']}. Wall time {summary['wall_s'] / 60:.1f} min; 1-minute load average "
        f"{s['load_average'][0]:.1f} at the start, {s['load_average'][1]:.1f} at the end (other jobs share the "
        "CPUs: wall-clock timings are upper bounds).",
        f"Scene seeds {', '.join(map(str, summary['seeds']))}; trajectories {', '.join(summary['trajectories'])} "
        f"(`generate`'s builders and defaults), {s['segments']} segments of 33 frames each; "
        f"{s['width']}x{s['height']} (WxH), vertical FOV {s['fov_y_deg']:g} deg; "
        f"steps {s['steps'] or 'of each backend profile'}; noise seed {s['seed']}.",
        "",
        "```bash",
        reproduce_command(s),
        "```",
        "",
        "Means over runs (seed x trajectory) of the per-frame scores of frames 1..N-1 against the exact render "
        "of the same camera (PSNR in dB, identical frames as 100 dB). PSNR visible / holes: over the pixels a "
        "latent memory written with the exact renders covers at that camera, and over the rest (the same pixels "
        "for every system). PSNR_C: the return frame against frame 0 on the closed-loop trajectories (– without "
        "one). s/frame: generation wall time per new frame (the write-back's exact depth is looked up, not estimated). "
        "cache MiB/segment: memory growth per segment.",
        "",
        *table_rows(summary["systems"]),
        "",
        "Systems: " + "; ".join(f"`{n}`: {d}" for n, d in summary["system_descriptions"].items()) + ".",
        "",
    ]
    goals = goal_lines(summary["systems"])
    if goals:
        lines += ["## Issue 12 goals for `mini`", "", *goals, ""]
    for trajectory, systems in summary["by_trajectory"].items():
        lines += [f"## {trajectory}", "", *table_rows(systems), ""]
    return "\n".join(lines)


#: Issue 12's goals for the shipped model: visible-region PSNR, closed-loop PSNR (dB), one segment's seconds.
GOAL_PSNR_VISIBLE_DB, GOAL_PSNR_C_DB, GOAL_SEGMENT_S = 28.0, 25.0, 15.0
#: Scores on which ``mini`` must beat ``mini-nomem`` (the memory must matter).
QUALITY = ("psnr", "ssim", "psnr_visible", "psnr_holes", "ssim_visible", "ssim_holes", "psnr_c")


def _verdict(margin: float | None, unit: str) -> str:
    if margin is None:
        return "not measured"
    return f"met (by {margin:.2f}{unit})" if margin >= 0 else f"**missed** by {-margin:.2f}{unit}"


def goal_lines(systems: dict, new_frames_per_segment: int = 32) -> list[str]:
    """Markdown bullets: issue 12's goals for ``mini`` against the other systems of the run, each met or missed
    by how much (the goals that need a system the run left out are not listed); empty without ``mini``."""
    mini = systems.get("mini")
    if mini is None:
        return []
    lines = []
    others = {n: m for n, m in systems.items() if n != "mini"}
    for key, label in (("psnr", "whole-frame PSNR"), ("psnr_holes", "hole PSNR")):
        if others:
            best, value = max(((n, m[key]) for n, m in others.items()), key=lambda item: item[1] or -math.inf)
            margin = None if mini[key] is None or value is None else mini[key] - value
            lines.append(
                f"- `mini` beats every other system on {label}: {_verdict(margin, ' dB')} (best other: `{best}`)"
            )
    nomem = systems.get("mini-nomem")
    if nomem is not None:
        lost = [k for k in QUALITY if mini.get(k) is not None and nomem.get(k) is not None and mini[k] <= nomem[k]]
        verdict = "met" if not lost else "**missed** on " + ", ".join(lost)
        lines.append(f"- `mini` beats `mini-nomem` on every quality metric: {verdict}")
    lines.append(
        f"- visible-region PSNR >= {GOAL_PSNR_VISIBLE_DB:g} dB: "
        f"{_verdict(None if mini['psnr_visible'] is None else mini['psnr_visible'] - GOAL_PSNR_VISIBLE_DB, ' dB')}"
    )
    lines.append(
        f"- closed-loop PSNR_C >= {GOAL_PSNR_C_DB:g} dB: "
        f"{_verdict(None if mini['psnr_c'] is None else mini['psnr_c'] - GOAL_PSNR_C_DB, ' dB')}"
    )
    segment_s = mini["s_per_frame"] * new_frames_per_segment
    lines.append(
        f"- one 33-frame segment <= {GOAL_SEGMENT_S:g} s on this machine: {segment_s:.2f} s, "
        f"{_verdict(GOAL_SEGMENT_S - segment_s, ' s')}"
    )
    return lines


def sheet_frame_ids(n_frames: int, count: int = 3) -> list[int]:
    """``count`` frame numbers spread over frames 1..N-1, the last frame last (the contact sheet's columns)."""
    return sorted({round(1 + (n_frames - 2) * (k + 1) / count) for k in range(count)})


def contact_sheet(sheet: dict[str, dict[str, np.ndarray]], frame_ids: list[int], gap: int = 2) -> np.ndarray:
    """One image: per trajectory a block of rows (ground truth, then each system) by frames.

    Frames narrower than :data:`SHEET_MIN_WIDTH` pixels are enlarged by a whole factor (nearest neighbour,
    so pixels stay as generated). The ground-truth tiles name the trajectory and frame, the others the system.

    Args:
        sheet: ``{trajectory: {row name: [len(frame_ids), H, W, 3] uint8}}``, every block with the same rows.
        frame_ids: the frame numbers of the columns.
        gap: white pixels between tiles.

    Returns:
        ``[rows * (z H + gap), blocks * columns * (z W + gap), 3]`` uint8 (``z`` the enlargement); blocks
        side by side.
    """
    blocks = []
    for trajectory, rows in sheet.items():
        block_rows = []
        for row, (name, frames) in enumerate(rows.items()):
            zoom = max(1, SHEET_MIN_WIDTH // frames.shape[2])
            tiles = [
                _labelled(
                    np.kron(frame, np.ones((zoom, zoom, 1), np.uint8)), f"{trajectory} #{i}" if row == 0 else name, gap
                )
                for frame, i in zip(frames, frame_ids, strict=True)
            ]
            block_rows.append(np.concatenate(tiles, axis=1))
        blocks.append(np.concatenate(block_rows, axis=0))
    return np.concatenate(blocks, axis=1)


def _labelled(frame: np.ndarray, text: str, gap: int) -> np.ndarray:
    """The frame with ``text`` on a dark band at its top, and a white ``gap`` on its right and bottom."""
    tile = np.full((frame.shape[0] + gap, frame.shape[1] + gap, 3), 255, np.uint8)
    tile[: frame.shape[0], : frame.shape[1]] = frame
    scale = max(0.35, frame.shape[1] / 800)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    tile[: h + base + 4, : min(w + 4, frame.shape[1])] //= 3
    cv2.putText(tile, text, (2, h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile
