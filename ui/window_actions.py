"""The main window's menu actions beyond opening scenes: exports, recent files, view toggles, timeline,
generation and help — each with a shortcut and a tooltip, so everything works from the keyboard.

Shortcuts with Ctrl/Alt win over the fly keys (see :mod:`ui.input_router`); single keys used here
(C, F, H, P, V, Home, comma, period, F1, ?) are not fly-key defaults. :data:`SHORTCUTS` is the one
table of them (the help overlay lists the live ones from the actions themselves).
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QAbstractButton, QMainWindow, QMenu

from ui.recent_files import fill_recent_menu

#: Shortcut per action name (the ``name`` given to :func:`_action`).
SHORTCUTS = {
    "save_video": "Ctrl+S",
    "save_frame": "F12",
    "export_cloud": "Ctrl+Shift+E",
    "save_memory": "Ctrl+Alt+M",
    "generate": "Ctrl+G",
    "cancel": "Ctrl+.",
    "record": "Ctrl+R",
    "toggle_mode": "Ctrl+T",
    "focus_prompt": "Ctrl+P",
    "capture_mouse": "C",
    "hud": "H",
    "play_pause": "P",
    "live": "Home",
    "previous_frame": ",",
    "next_frame": ".",
    "reset_cloud_view": "Ctrl+0",
    "fit_cloud": "F",
    "look_through": "V",
    "help": ("F1", "?"),
}


def _action(window: QMainWindow, menu: QMenu, name: str, text: str, tip: str, slot, checkable: bool = False) -> QAction:
    action = QAction(text, window)
    action.setObjectName(name)
    keys = SHORTCUTS.get(name, ())
    keys = (keys,) if isinstance(keys, str) else keys
    action.setShortcuts([QKeySequence(k) for k in keys])
    shown = " / ".join(keys)
    action.setToolTip(f"{tip} ({shown})" if shown else tip)
    action.setStatusTip(tip)
    action.setCheckable(checkable)
    (action.toggled if checkable else action.triggered).connect(slot)
    menu.addAction(action)
    window.addAction(action)  # shortcuts work while the menu bar is hidden or a dock has focus
    return action


def add_viewer_actions(window, file_menu: QMenu, view_menu: QMenu, help_menu: QMenu) -> dict[str, QAction]:
    """Add the actions to ``window``'s menus; returns them by name."""
    w = window
    actions: dict[str, QAction] = {}
    recent = QMenu("Open &recent", w)
    recent.setToolTipsVisible(True)
    recent.aboutToShow.connect(lambda: fill_recent_menu(recent, w.recent, w.open_image, w.open_session))
    first = file_menu.actions()[3] if len(file_menu.actions()) > 3 else None
    file_menu.insertMenu(first, recent)
    file_menu.insertSeparator(first)
    exports = (
        ("save_video", "Save &video…", "write the generated frames (all, or a range) as MP4", w.exports.save_video),
        ("save_frame", "Save &frame…", "write the picture on screen as PNG", w.exports.save_frame),
        ("export_cloud", "Export &point cloud…", "write the memory as a PLY point cloud", w.exports.export_cloud),
        ("save_memory", "Save &memory…", "write the memory (.safetensors) for --load-memory", w.exports.save_memory),
    )
    for name, text, tip, slot in exports:
        actions[name] = _action(w, file_menu, name, text, tip, slot)
        file_menu.insertAction(first, actions[name])
    file_menu.insertSeparator(first)

    generate = view_menu.addMenu("&Generate")
    actions["generate"] = _action(w, generate, "generate", "Generate &now", "queue a segment now", w.generate_now)
    actions["cancel"] = _action(w, generate, "cancel", "&Cancel", "cancel the running segment", w.cancel)
    actions["record"] = _action(
        w, generate, "record", "&Record", "record into a session folder / stop", w.controls.record_button.click
    )
    actions["toggle_mode"] = _action(
        w,
        generate,
        "toggle_mode",
        "Switch &mode",
        "free flight ↔ steps",
        lambda: w.controls.set_mode("steps" if w.controls.mode == "flight" else "flight"),
    )
    actions["focus_prompt"] = _action(
        w, generate, "focus_prompt", "Edit &prompt", "type the prompt (Tab moves on)", w.controls.prompt.setFocus
    )
    timeline = view_menu.addMenu("&Playback")
    v = w.viewport
    actions["play_pause"] = _action(
        w, timeline, "play_pause", "&Play / pause", "pause or play the frames", v.play_button.click
    )
    actions["live"] = _action(w, timeline, "live", "&Live", "follow the camera and new frames", v.follow)
    actions["previous_frame"] = _action(
        w, timeline, "previous_frame", "P&revious frame", "scrub one frame back", lambda: v.scrub(_here(v) - 1)
    )
    actions["next_frame"] = _action(
        w, timeline, "next_frame", "&Next frame", "scrub one frame on", lambda: v.scrub(_here(v) + 1)
    )
    cloud = view_menu.addMenu("&Latent cache view")
    c = w.cache_panel
    actions["reset_cloud_view"] = _action(
        w, cloud, "reset_cloud_view", "&Reset view", "default orbit view", c.reset_view
    )
    actions["fit_cloud"] = _action(w, cloud, "fit_cloud", "&Fit to cloud", "fit the cloud in the view", c.frame_cloud)
    actions["look_through"] = _action(
        w, cloud, "look_through", "&Look through camera", "the 3D view from the explorer camera", c.look_through_camera
    )
    for number, dock in enumerate((w.controls_dock, w.cache_dock), start=1):
        toggle = dock.toggleViewAction()
        toggle.setShortcut(QKeySequence(f"Ctrl+{number}"))
        toggle.setToolTip(f"show or hide the {dock.windowTitle()} panel (Ctrl+{number})")
        w.addAction(toggle)
        tips = {
            "qt_dockwidget_floatbutton": f"float the {dock.windowTitle()} panel / dock it again",
            "qt_dockwidget_closebutton": f"hide the {dock.windowTitle()} panel (Ctrl+{number} shows it)",
        }
        for button in dock.findChildren(QAbstractButton):
            button.setToolTip(tips.get(button.objectName(), button.toolTip()))
    view_menu.addSeparator()
    actions["hud"] = _action(w, view_menu, "hud", "&HUD", "show the on-canvas HUD", w.hud_overlay.set_visible, True)
    actions["hud"].setChecked(True)
    actions["capture_mouse"] = _action(
        w,
        view_menu,
        "capture_mouse",
        "&Captured mouse-look",
        "look by moving the mouse (Esc releases)",
        w.set_capture_mouse,
        True,
    )
    actions["capture_mouse"].setChecked(w.settings.capture_mouse)
    actions["help"] = _action(
        w, help_menu, "help", "&Controls", "keys, mouse and what the window shows", w.show_controls_help
    )
    for menu in (file_menu, view_menu, help_menu):
        menu.setToolTipsVisible(True)
    return actions


def _here(viewport) -> int:
    """The frame the timeline is on: the one on screen, else the last."""
    return viewport.shown_index if viewport.shown_index >= 0 else viewport.frame_count - 1
