"""User settings persisted with QSettings: key bindings, mouse sensitivity, speed, mouse capture, model folders.

:func:`user_qsettings` is the real store (organisation :data:`ORGANIZATION`, application
:data:`APPLICATION`, the platform's native format); tests pass their own ``QSettings`` on a
temporary INI file instead. Stored values that do not parse fall back to the defaults and are
reported in :attr:`ExplorerSettings.problems`, so a damaged config never stops the app.

The main window keeps its own state in the same store: geometry and dock layout (``window/…``),
the cache panel's colour mode, and per file dialog the folder it last chose in
(:func:`last_folder` / :func:`remember_folder`), whether the help overlay opens at start
(:func:`help_at_start`), and the recent photos and sessions (:mod:`ui.recent_files`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QSettings

from explorer.fly_camera import KeyBindings

ORGANIZATION = "MirageExplorer"
APPLICATION = "Mirage Explorer"


def user_qsettings() -> QSettings:
    """The user's settings store."""
    return QSettings(ORGANIZATION, APPLICATION)


def last_folder(store: QSettings, dialog: str) -> str:
    """The folder the file dialog ``dialog`` last chose in; ``""`` when none was, or it is gone."""
    folder = store.value(f"folders/{dialog}")
    return str(folder) if folder and Path(str(folder)).is_dir() else ""


def remember_folder(store: QSettings, dialog: str, chosen: str) -> None:
    """Remember the folder that holds ``chosen`` (a file or a folder) for the next ``dialog``."""
    store.setValue(f"folders/{dialog}", str(Path(chosen).parent))


def help_at_start(store: QSettings) -> bool:
    """Whether the help overlay opens when the explorer starts (yes until the user says otherwise)."""
    return str(store.value("help/show_at_start", "true")).lower() in ("true", "1")


def set_help_at_start(store: QSettings, show: bool) -> None:
    """Remember whether the help overlay opens at start."""
    store.setValue("help/show_at_start", bool(show))
    store.sync()


@dataclass
class ExplorerSettings:
    """What the settings dialog edits (one comment per field)."""

    bindings: KeyBindings = field(default_factory=KeyBindings)  # key per action
    sensitivity_deg_per_px: float = 0.15  # mouse-look degrees per pixel
    speed_mps: float = 1.0  # fly speed in metres per second (Shift x4, Ctrl x0.25)
    capture_mouse: bool = False  # mouse-look without dragging: the cursor is hidden and re-centred (X11/Windows)
    model_dir: str = ""  # Wan2.2-TI2V-5B diffusers folder; empty: the tiny backend
    sky_model_dir: str = ""  # segmentation folder with a "sky" class (its sky never enters the memory); empty: none
    problems: list[str] = field(default_factory=list, compare=False)  # stored values that were ignored

    def __post_init__(self) -> None:
        for name in ("sensitivity_deg_per_px", "speed_mps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    @classmethod
    def load(cls, store: QSettings) -> ExplorerSettings:
        """Read the settings; unreadable entries keep their defaults and are listed in ``problems``."""
        values, problems = {}, []
        raw = store.value("bindings")
        if raw is not None:
            try:
                values["bindings"] = KeyBindings.from_dict(json.loads(raw))
            except (ValueError, TypeError) as error:
                problems.append(f"key bindings ignored: {error}")
        scalars = (("sensitivity_deg_per_px", float), ("speed_mps", float), ("model_dir", str), ("sky_model_dir", str))
        for name, kind in scalars:
            raw = store.value(name)
            if raw is None:
                continue
            try:
                values[name] = kind(raw)
            except (ValueError, TypeError):
                problems.append(f"{name} ignored: {raw!r} is not a {kind.__name__}")
        raw = store.value("capture_mouse")
        if raw is not None:
            values["capture_mouse"] = str(raw).lower() in ("true", "1")
        try:
            settings = cls(**values)
        except ValueError as error:
            problems.append(f"settings reset to defaults: {error}")
            settings = cls()
        settings.problems = problems
        return settings

    def save(self, store: QSettings) -> None:
        """Write every field and flush to disk."""
        store.setValue("bindings", json.dumps(self.bindings.to_dict()))
        store.setValue("sensitivity_deg_per_px", self.sensitivity_deg_per_px)
        store.setValue("speed_mps", self.speed_mps)
        store.setValue("capture_mouse", self.capture_mouse)
        store.setValue("model_dir", self.model_dir)
        store.setValue("sky_model_dir", self.sky_model_dir)
        store.sync()
