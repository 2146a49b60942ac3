"""What machine a measurement ran on (benchmarks and ``eval-world`` record it with every number)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()`` or the architecture."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    found = (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    return next(found, "") or platform.processor() or platform.machine()


def device_label(device: str | torch.device) -> str:
    """The GPU's name for a CUDA device; ``"<CPU model>, <n> threads"`` (torch's threads) for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def machine_description(device: str | torch.device = "cpu") -> str:
    """``"<CPU model>, <n> logical CPUs visible, torch <version> (CPU), Linux <release>"``; on a CUDA
    device the GPU's name is added."""
    device = torch.device(device)
    accelerator = f"{torch.cuda.get_device_name(device)}, " if device.type == "cuda" else ""
    return (
        f"{accelerator}{cpu_model()}, {os.cpu_count()} logical CPUs visible, torch {torch.__version__} "
        f"({'CUDA' if device.type == 'cuda' else 'CPU'}), {platform.system()} {platform.release()}"
    )
