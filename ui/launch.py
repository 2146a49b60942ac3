"""Command-line options of the GUI (``python main.py`` without a subcommand); Qt-free so the
headless subcommands never import Qt.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from model.generation.profiles import BACKENDS, backend_summaries, default_backend, model_folders, per_backend

#: ``--offload`` values (``model.generation.backbone.OFFLOADS``, which this Qt- and torch-free module cannot import).
OFFLOAD_CHOICES = ("auto", "none", "model", "group")

#: Exit code of ``python main.py`` when there is no display to open a window on (``make demo``
#: then runs the headless walkthrough instead).
EXIT_NO_DISPLAY = 3


@dataclass
class LaunchOptions:
    """What the explorer starts with (one field per flag)."""

    # one of model.generation.profiles.BACKENDS; None: model.generation.profiles.default_backend (wan if a folder)
    backend: str | None = None
    model: str | None = None  # Wan2.2-TI2V-5B diffusers folder (overrides the one in the settings)
    image: str | None = None  # photo to open at start; None: the bundled sample scene
    session: str | None = None  # recorded session folder to open at start (replay)
    device: str | None = None  # torch device; None: cuda when available
    offload: str = "auto"  # auto | none | model | group (memory profiles for the wan backend; auto: what fits)
    steps: int | None = None  # denoising steps per segment (None: the backend profile's)
    fps: float = 16.0  # playback frame rate of generated frames
    height: int | None = None  # frame height in pixels (None: the backend profile's generate_size)
    width: int | None = None  # frame width in pixels (None: the backend profile's generate_size)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LaunchOptions:
        """From the namespace of :func:`add_gui_arguments` (dests are prefixed ``gui_`` so they never
        collide with a subcommand's flags of the same name)."""
        return cls(**{name: getattr(args, f"gui_{name}") for name in cls.__dataclass_fields__})


def add_gui_arguments(parser: argparse.ArgumentParser) -> None:
    """The GUI's flags, on the top-level parser (they apply when no subcommand is given)."""
    gui = parser.add_argument_group("explorer (no subcommand: open the desktop GUI)")
    gui.add_argument(
        "--backend",
        dest="gui_backend",
        choices=BACKENDS,
        default=None,
        help=f"{backend_summaries()} (default: {default_backend(True)} when a model folder is known, "
        f"else {default_backend(False)})",
    )
    gui.add_argument(
        "--model",
        dest="gui_model",
        default=None,
        help=f"model folder ({model_folders()}; remembered in the settings dialog too)",
    )
    gui.add_argument(
        "--image", dest="gui_image", default=None, help="photo to open at start (default: the bundled sample scene)"
    )
    gui.add_argument("--session", dest="gui_session", default=None, help="recorded session folder to replay at start")
    gui.add_argument("--device", dest="gui_device", default=None, help="torch device (default: cuda when available)")
    gui.add_argument(
        "--offload",
        dest="gui_offload",
        choices=OFFLOAD_CHOICES,
        default="auto",
        help="GPU memory profile of the wan backend; auto: the least offloaded one that fits the free GPU memory",
    )
    gui.add_argument(
        "--steps",
        dest="gui_steps",
        type=int,
        default=None,
        help=f"denoising steps per segment (default {per_backend(lambda p: p.steps)})",
    )
    gui.add_argument("--fps", dest="gui_fps", type=float, default=16.0, help="playback frame rate")
    gui.add_argument(
        "--height",
        dest="gui_height",
        type=int,
        default=None,
        help=f"frame height (default {per_backend(lambda p: p.generate_size[0])})",
    )
    gui.add_argument(
        "--width",
        dest="gui_width",
        type=int,
        default=None,
        help=f"frame width (default {per_backend(lambda p: p.generate_size[1])})",
    )


def display_problem() -> str | None:
    """Why no window can open here (None when a display is available or Qt's platform is forced)."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return None
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display found (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    return None
