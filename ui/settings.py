"""User settings persisted with QSettings: key bindings, mouse sensitivity, speed, mouse capture, model folders
(Wan2.2, depth, sky; ``main.py fetch-models`` records the first two: :func:`record_model_folders`).

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
from dataclasses import dataclass, field, replace
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
    depth_model_dir: str = ""  # metric transformers depth-estimation folder for photos; empty: the flat prior depth
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
        scalars = (
            ("sensitivity_deg_per_px", float),
            ("speed_mps", float),
            *((name, str) for name in MODEL_FOLDER_FIELDS),
        )
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
        for name in MODEL_FOLDER_FIELDS:
            store.setValue(name, getattr(self, name))
        store.sync()


#: The model-folder fields of :class:`ExplorerSettings` (also their keys in the store).
MODEL_FOLDER_FIELDS = ("model_dir", "depth_model_dir", "sky_model_dir")


def record_model_folders(store: QSettings, folders: dict[str, str]) -> str:
    """Make ``folders`` (``{field of MODEL_FOLDER_FIELDS: folder}``) the defaults of the next start,
    keeping every other setting; returns where the settings live (``store.fileName()``).

    Raises:
        ValueError: a key that is not one of :data:`MODEL_FOLDER_FIELDS`.
    """
    unknown = set(folders) - set(MODEL_FOLDER_FIELDS)
    if unknown:
        raise ValueError(f"not model-folder settings: {', '.join(sorted(unknown))}")
    settings = ExplorerSettings.load(store)
    for name, folder in folders.items():
        setattr(settings, name, str(folder))
    settings.save(store)
    return store.fileName()


def check_model_settings(settings: ExplorerSettings) -> ExplorerSettings:
    """``settings`` with every model folder checked (without loading weights) and a Hub repo id in the
    local cache replaced by its folder; empty fields are left empty.

    Raises:
        ValueError: one line per bad folder, naming the field and what is wrong.
    """
    from model.generation.backbone import validate_wan_folder
    from model.generation.depth import check_depth_model_folder
    from model.io.folders import check_model_folder
    from model.io.hub import resolve_model_ref
    from model.memory.masks import SKY_FOLDER

    checks = {
        "model_dir": ("Wan2.2 model folder", validate_wan_folder),
        "depth_model_dir": ("Depth model folder", check_depth_model_folder),
        "sky_model_dir": ("Sky segmentation model", lambda folder: check_model_folder(folder, SKY_FOLDER)),
    }
    folders, problems = {}, []
    for name, (label, check) in checks.items():
        value = getattr(settings, name)
        if not value:
            continue
        try:
            folders[name] = str(check(resolve_model_ref(value, label)))
        except ValueError as error:
            problems.append(f"{label}: {error}")
    if problems:
        raise ValueError("\n".join(problems))
    return replace(settings, **folders)
