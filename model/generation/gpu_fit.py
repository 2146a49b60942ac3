"""The offload profile that fits the GPU: checked against free memory before any weight is read.

A backend's :attr:`~model.generation.profiles.BackendProfile.device_gib` says how much free GPU memory
each offload profile needs (``none`` > ``model`` > ``group``). :func:`choose_offload` is the pure rule:
``"auto"`` takes the least offloaded profile that fits; a named profile that does not fit is refused
with the numbers (needed vs free GiB) and the profile that would fit. :func:`fit_offload` asks CUDA
for the free memory (``torch.cuda.mem_get_info``, replaceable in tests) and returns the config to
load with. Off CUDA, or for a backend with no needs listed (``tiny``), ``"auto"`` means ``"none"``
and nothing is checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from model.generation.profiles import profile

#: Offload value that lets :func:`choose_offload` pick.
AUTO = "auto"
GIB = 2**30

#: ``device -> (free bytes, total bytes)``, as ``torch.cuda.mem_get_info``.
MemoryQuery = Callable[[torch.device], tuple[int, int]]


class GpuMemoryError(ValueError):
    """No offload profile (or not the one asked for) fits the free GPU memory; the message has the numbers."""


def choose_offload(
    requested: str, needs_gib: tuple[tuple[str, float], ...], free_gib: float, device: str = "cuda"
) -> str:
    """The offload profile to load with.

    Args:
        requested: ``"auto"`` or a profile name (``"none"``, ``"model"``, ``"group"``).
        needs_gib: ``((profile, GiB needed), ...)``, least offloaded first; empty: no check.
        free_gib: free memory on ``device`` in GiB.
        device: named in messages.

    Returns:
        ``requested`` when it is a profile that fits (or nothing is checked); for ``"auto"`` the first
        profile of ``needs_gib`` that fits (``"none"`` when nothing is checked).

    Raises:
        GpuMemoryError: e.g. ``"cuda:0 has 20.0 GiB free; offload 'none' needs about 30.0 GiB: use
            --offload group (needs about 10.0 GiB) or auto"``, or, when nothing fits, every profile's need.
    """
    needs = dict(needs_gib)
    if not needs:
        return "none" if requested == AUTO else requested
    fitting = [name for name, gib in needs_gib if gib <= free_gib]
    if requested == AUTO:
        if fitting:
            return fitting[0]
    elif requested not in needs or requested in fitting:
        return requested
    listing = ", ".join(f"'{name}' {gib:.1f}" for name, gib in needs_gib)
    if fitting:
        raise GpuMemoryError(
            f"{device} has {free_gib:.1f} GiB free; offload {requested!r} needs about {needs[requested]:.1f} GiB: "
            f"use --offload {fitting[0]} (needs about {needs[fitting[0]]:.1f} GiB) or auto"
        )
    raise GpuMemoryError(
        f"{device} has {free_gib:.1f} GiB free, less than any offload profile needs (GiB: {listing}); "
        "close other programs using the GPU or use a card with more memory"
    )


def fit_offload(config, device: torch.device, mem_get_info: MemoryQuery | None = None):
    """``config`` (a :class:`~model.generation.backbone.BackboneConfig`) with a concrete offload profile
    that fits ``device``'s free memory.

    Args:
        mem_get_info: the free-memory query; None: ``torch.cuda.mem_get_info`` (only called on CUDA).

    Raises:
        GpuMemoryError: see :func:`choose_offload`.
    """
    needs = profile(config.backend).device_gib
    if device.type != "cuda" or not needs:
        return config if config.offload != AUTO else dataclasses.replace(config, offload="none")
    free, _total = (mem_get_info or torch.cuda.mem_get_info)(device)
    chosen = choose_offload(config.offload, needs, free / GIB, str(device))
    return config if chosen == config.offload else dataclasses.replace(config, offload=chosen)
