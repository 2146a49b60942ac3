"""One line naming the machine a measurement ran on (benchmarks and ``eval-world`` record it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine_description(device: str | torch.device = "cpu") -> str:
    """``"<CPU model>, <n> logical CPUs visible, torch <version> (CPU), Linux <release>"``; on a CUDA
    device the GPU's name is added."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.device(device)
    accelerator = f"{torch.cuda.get_device_name(device)}, " if device.type == "cuda" else ""
    return (
        f"{accelerator}{cpu}, {os.cpu_count()} logical CPUs visible, torch {torch.__version__} "
        f"({'CUDA' if device.type == 'cuda' else 'CPU'}), {platform.system()} {platform.release()}"
    )
