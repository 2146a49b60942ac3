"""What machine a benchmark ran on, for its results file (every number is quoted with its machine)."""

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


def device_label(device: torch.device) -> str:
    """``"NVIDIA H100 80GB HBM3"`` for a CUDA device, ``"<CPU model>, N threads"`` (torch's threads) for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def machine_description() -> str:
    """One line: CPU model, logical CPUs, torch version, OS and kernel."""
    return (
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{platform.system()} {platform.release()}"
    )
