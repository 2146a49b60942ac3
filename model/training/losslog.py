"""The loss log of a training run: ``loss.csv`` (columns ``step,loss,lr``) and ``loss.png``.

The plot is drawn with PIL (matplotlib is not a dependency): raw loss in light blue, a moving
average in dark blue, step on x, loss on a linear y axis with min / max labels.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from model.io.atomic import atomic_path, write_text_atomic

CSV_COLUMNS = ("step", "loss", "lr")


@dataclass
class LossLog:
    """Per-step records ``(step, loss, lr)``; ``step`` counts from 1."""

    rows: list[tuple[int, float, float]] = field(default_factory=list)

    def append(self, step: int, loss: float, lr: float) -> None:
        self.rows.append((int(step), float(loss), float(lr)))

    @property
    def losses(self) -> list[float]:
        return [r[1] for r in self.rows]

    def to_json(self) -> list[list[float]]:
        return [list(r) for r in self.rows]

    @classmethod
    def from_json(cls, rows: list) -> LossLog:
        return cls([(int(s), float(loss), float(r)) for s, loss, r in rows])

    def write(self, folder: str | os.PathLike) -> None:
        """Write ``loss.csv`` and ``loss.png`` into ``folder`` (each atomically)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows((s, repr(loss), repr(r)) for s, loss, r in self.rows)
        write_text_atomic(Path(folder) / "loss.csv", buffer.getvalue())
        with atomic_path(Path(folder) / "loss.png") as tmp:
            plot_loss([r[0] for r in self.rows], self.losses).save(tmp, format="PNG")


def read_loss_csv(path: str | os.PathLike) -> list[float]:
    """The ``loss`` column of a ``loss.csv``."""
    with open(path, newline="", encoding="utf-8") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def plot_loss(steps: list[int], losses: list[float], size: tuple[int, int] = (640, 360)) -> Image.Image:
    """A line plot of ``losses`` over ``steps`` as a PIL image (white background)."""
    width, height = size
    left, right, top, bottom = 64, 16, 16, 32
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((left, height - bottom + 8), "step", fill="black")
    if not losses:
        draw.text((left + 8, top + 8), "no steps yet", fill="black")
        return image
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = float(x[0]), float(x[-1]) if x[-1] > x[0] else float(x[0]) + 1.0

    def points(values: np.ndarray) -> list[tuple[float, float]]:
        px = left + (x - x0) / (x1 - x0) * (width - left - right)
        py = height - bottom - (values - lo) / (hi - lo) * (height - top - bottom)
        return list(zip(px.tolist(), py.tolist(), strict=True))

    window = max(1, len(y) // 20)
    smooth = np.convolve(y, np.ones(window) / window, mode="full")[: len(y)] / np.minimum(
        np.arange(1, len(y) + 1) / window, 1.0
    )
    if len(y) > 1:
        draw.line(points(y), fill=(150, 190, 240), width=1)
        draw.line(points(smooth), fill=(20, 60, 160), width=2)
    else:
        draw.ellipse([p - 2 for p in points(y)[0]] + [p + 2 for p in points(y)[0]], fill=(20, 60, 160))
    draw.text((4, top), f"{hi:.4g}", fill="black")
    draw.text((4, height - bottom - 12), f"{lo:.4g}", fill="black")
    draw.text((left, 0), "loss", fill="black")
    draw.text((width - right - 60, height - bottom + 8), f"{int(x[-1])}", fill="black")
    return image


def write_heldout_csv(path: str | os.PathLike, rows: list[list[float]]) -> None:
    """Write held-out evaluations ``[step, loss, psnr_db]`` as ``step,loss,psnr_db`` CSV (atomically)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("step", "loss", "psnr_db"))
    writer.writerows((int(step), repr(float(loss)), repr(float(psnr))) for step, loss, psnr in rows)
    write_text_atomic(path, buffer.getvalue())
