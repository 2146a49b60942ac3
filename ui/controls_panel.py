"""The controls panel: driving mode, generation settings, and the Generate / Cancel / Record / step buttons."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from explorer.fly_camera import Action, KeyBindings

MODES = {"flight": "Free flight", "steps": "Steps"}
RECORD_TEXT = {
    False: "● Record",
    True: "■ Stop",
}  # the record button's text, by recording state (no wider than the first)
STEP_BUTTONS = (  # (action, label, grid row, grid column)
    (Action.TURN_LEFT, "↶ Turn", 0, 0),
    (Action.STEP_FORWARD, "↑ Forward", 0, 1),
    (Action.TURN_RIGHT, "Turn ↷", 0, 2),
    (Action.ORBIT_LEFT, "◐ Orbit", 1, 0),
    (Action.STEP_BACK, "↓ Back", 1, 1),
    (Action.ORBIT_RIGHT, "Orbit ◑", 1, 2),
)


@dataclass
class GenerationOptions:
    """What the panel sets for the next segments (one comment per field)."""

    steps: int  # denoising steps per segment
    seed: int  # noise seed
    prompt: str  # text prompt
    inpaint_fraction: float  # share of the steps in which visible tokens follow the memory readout


class ControlsPanel(QWidget):
    """Mode, steps, seed, prompt, inpaint fraction and the action buttons.

    Signals:
        mode_changed(str): ``"flight"`` or ``"steps"``.
        generate_clicked(): generate a segment from the motion so far (free flight) now.
        cancel_clicked(): cancel the running segment.
        record_toggled(bool): start / stop recording.
        step_clicked(Action): a steps-mode action.
        options_changed(): any of steps / seed / prompt / inpaint fraction changed.
    """

    mode_changed = Signal(str)
    generate_clicked = Signal()
    cancel_clicked = Signal()
    record_toggled = Signal(bool)
    step_clicked = Signal(object)
    options_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode_box = QComboBox()
        for key, text in MODES.items():
            self.mode_box.addItem(text, key)
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.steps = QSpinBox(minimum=1, maximum=100, value=20)
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("optional text prompt")
        self.inpaint = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=2, value=0.6)
        self.inpaint.setToolTip("share of the denoising steps in which cells the memory shows follow it")
        for signal in (
            self.steps.valueChanged,
            self.seed.valueChanged,
            self.prompt.editingFinished,
            self.inpaint.valueChanged,
        ):
            signal.connect(self.options_changed)

        self.generate_button = QPushButton("Generate (Space)")
        self.generate_button.clicked.connect(self.generate_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self.record_button = QPushButton(RECORD_TEXT[False])
        self.record_button.setCheckable(True)
        self.record_button.setStyleSheet(
            "QPushButton:checked { background-color: rgb(200, 30, 30); color: white; font-weight: bold; }"
        )
        self.record_button.toggled.connect(self.record_toggled)
        self.step_buttons: dict[Action, QPushButton] = {}
        grid = QGridLayout()
        for action, label, row, column in STEP_BUTTONS:
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, a=action: self.step_clicked.emit(a))
            self.step_buttons[action] = button
            grid.addWidget(button, row, column)
        self.steps_box = QGroupBox("Steps (one segment each)")
        self.steps_box.setLayout(grid)
        for button in (self.generate_button, self.cancel_button, self.record_button, *self.step_buttons.values()):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys keep driving the camera after a click

        form = QFormLayout()
        form.addRow("Mode", self.mode_box)
        form.addRow("Steps", self.steps)
        form.addRow("Seed", self.seed)
        form.addRow("Prompt", self.prompt)
        form.addRow("Inpaint fraction", self.inpaint)
        buttons = QHBoxLayout()
        for button in (self.generate_button, self.cancel_button, self.record_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.steps_box)
        layout.addStretch(1)
        self._mode_changed()
        self.mode_box.setToolTip("free flight: segments follow the flown path; steps: one segment per action")
        self.steps.setToolTip("denoising steps per segment (from the next segment on)")
        self.seed.setToolTip("noise seed of the next segments")
        self.prompt.setToolTip("text prompt of the next segments (Ctrl+P to type; Enter applies)")
        self.set_key_hints(KeyBindings())

    def set_key_hints(self, bindings: KeyBindings) -> None:
        """Tooltips of the buttons, naming the keys that do the same (the live ``bindings``)."""
        self.generate_button.setToolTip(f"queue a segment from the motion so far ({bindings.generate_now}, Ctrl+G)")
        self.cancel_button.setToolTip("cancel the running segment within one step; the memory keeps what was written")
        self.record_button.setToolTip("record into a session folder / stop recording (Ctrl+R)")
        for action, button in self.step_buttons.items():
            words = action.value.replace("_", " ")
            button.setToolTip(f"one segment: {words} ({bindings.key_for(action)})")

    @property
    def mode(self) -> str:
        return self.mode_box.currentData()

    def set_mode(self, mode: str) -> None:
        """``"flight"`` or ``"steps"``."""
        index = self.mode_box.findData(mode)
        if index < 0:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        self.mode_box.setCurrentIndex(index)

    def _mode_changed(self) -> None:
        self.steps_box.setEnabled(self.mode == "steps")
        self.generate_button.setEnabled(self.mode == "flight")
        self.mode_changed.emit(self.mode)

    def options(self) -> GenerationOptions:
        return GenerationOptions(
            self.steps.value(), self.seed.value(), self.prompt.text().strip(), self.inpaint.value()
        )

    def set_recording(self, on: bool) -> None:
        """Show the recording state (a red "■ Stop" while on) without emitting ``record_toggled``."""
        self.record_button.blockSignals(True)
        self.record_button.setChecked(on)
        self.record_button.blockSignals(False)
        self.record_button.setText(RECORD_TEXT[on])

    def set_busy(self, busy: bool) -> None:
        """A segment is running or queued: Cancel is available."""
        self.cancel_button.setEnabled(busy)
