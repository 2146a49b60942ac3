"""The help overlay: keys, mouse and what each part of the window shows, over the viewport.

Shown on first start (until the user ticks "Don't show at start", stored with
:func:`ui.settings.set_help_at_start`) and on ``?`` / F1 (Help → Controls). The key table is built
from the live key bindings (:class:`explorer.fly_camera.KeyBindings`) and the shortcuts of the
window's menu actions each time the overlay opens, so rebinding a key in Settings changes the help.
Esc, a click on "Close" or the help key again closes it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QCheckBox, QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from explorer.fly_camera import KeyBindings

#: What each bound action does (the help table's wording), in the table's order.
ACTION_HELP = {
    "forward": "fly forward",
    "back": "fly back",
    "left": "strafe left",
    "right": "strafe right",
    "down": "fly down",
    "up": "fly up",
    "fast": "hold: 4× speed",
    "slow": "hold: ¼ speed",
    "pause": "pause / release the mouse",
    "reset": "back to the start pose",
    "generate_now": "generate a segment now",
    "step_forward": "steps mode: step forward",
    "step_back": "steps mode: step back",
    "turn_left": "steps mode: turn left",
    "turn_right": "steps mode: turn right",
    "orbit_left": "steps mode: orbit left",
    "orbit_right": "steps mode: orbit right",
}

MOUSE_HELP = (
    ("drag in the view", "look around (or captured mouse-look: View → Captured mouse-look)"),
    ("wheel in the view", "fly speed up / down (shown in the HUD)"),
    ("click the view while paused", "resume"),
    ("cache panel: drag / wheel / Ctrl+drag", "orbit / zoom / pan the 3D view; click a point to inspect it"),
    ("Shift+click / Shift+drag on the timeline", "select a frame range (Save video writes it); a click clears it"),
    ("drop a photo or a session folder", "open it"),
)

PANEL_HELP = (
    (
        "Viewport",
        "the memory seen from the camera (holes checkered) until generated frames arrive; they play "
        "at the target fps; the timeline scrubs back. HUD bottom-left: mode, speed, progress, depth; REC top-right.",
    ),
    ("Controls (left)", "driving mode, denoising steps, seed, prompt, inpaint fraction; Generate, Cancel, Record."),
    (
        "Latent cache (right)",
        "the 3D memory coloured by display RGB, latent PCA, labels or provenance, with "
        "the camera path, a legend, per-label counts and picking.",
    ),
)


def key_rows(bindings: KeyBindings, actions: Iterable[QAction]) -> list[tuple[str, str]]:
    """``(key, what it does)`` for every bound action, then every menu action with a shortcut."""
    rows = [(bindings.key_for(name), text) for name, text in ACTION_HELP.items()]
    for action in actions:
        keys = [s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts() if not s.isEmpty()]
        if keys:
            rows.append((" / ".join(keys), action.text().replace("&", "").rstrip("…").strip()))
    return rows


def help_html(bindings: KeyBindings, actions: Iterable[QAction]) -> str:
    """The overlay's rich text: keys (two columns), mouse, and what the panels show."""

    def table(rows: list[tuple[str, str]], columns: int) -> str:
        per = -(-len(rows) // columns)
        cells = []
        for c in range(columns):
            part = rows[c * per : (c + 1) * per]
            inner = "".join(
                f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(v)}</td></tr>" for k, v in part
            )
            cells.append(f"<td valign='top'><table cellspacing='2'>{inner}</table></td>")
        return f"<table cellspacing='12'><tr>{''.join(cells)}</tr></table>"

    mouse = table(list(MOUSE_HELP), 1)
    panels = table(list(PANEL_HELP), 1)
    return (
        "<h2>Mirage Explorer — controls</h2><h3>Keys</h3>"
        + table(key_rows(bindings, actions), 3)
        + "<table cellspacing='0'><tr>"
        + f"<td valign='top' width='45%'><h3>Mouse</h3>{mouse}</td>"
        + f"<td valign='top'><h3>What you see</h3>{panels}</td>"
        + "</tr></table>"
    )


class HelpOverlay(QFrame):
    """A translucent panel covering ``parent`` with the controls help.

    Signals:
        show_at_start_changed(bool): the user (un)ticked "Don't show at start" (emits whether to show).
    """

    show_at_start_changed = Signal(bool)

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("helpOverlay")
        self.setAutoFillBackground(False)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setStyleSheet(
            "#helpOverlay { background: rgba(10, 12, 18, 250); border-radius: 8px; }"
            "#helpOverlay QLabel, #helpOverlay QCheckBox { color: rgb(235, 235, 235); }"
        )
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()  # a small window scrolls the help instead of cutting it off
        scroll.setWidget(self.text)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setStyleSheet("QScrollArea, QScrollArea > QWidget > QWidget { background: transparent; }")
        self.hide_at_start = QCheckBox("Don't show at start")
        self.hide_at_start.setToolTip("open this help with ? or F1 (Help → Controls) instead")
        self.hide_at_start.toggled.connect(lambda hide: self.show_at_start_changed.emit(not hide))
        self.close_button = QPushButton("Close (Esc)")
        self.close_button.setToolTip("close the help (Esc, ? or F1)")
        self.close_button.clicked.connect(self.hide)
        row = QHBoxLayout()
        row.addWidget(self.hide_at_start)
        row.addStretch(1)
        row.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 16, 24, 16)
        layout.addWidget(scroll, stretch=1)
        layout.addLayout(row)
        parent.installEventFilter(self)
        self.hide()

    def open(self, bindings: KeyBindings, actions: Iterable[QAction]) -> None:
        """Show the help built from the live ``bindings`` and window ``actions`` over the whole parent."""
        self.text.setText(help_html(bindings, actions))
        self._fit()
        self.show()
        self.raise_()
        self.close_button.setFocus()

    def _fit(self) -> None:
        self.setGeometry(self.parentWidget().rect().adjusted(12, 12, -12, -12))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize:
            self._fit()
        return False

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.key() == Qt.Key.Key_Escape:
            self.hide()
            event.accept()
            return
        super().keyPressEvent(event)
