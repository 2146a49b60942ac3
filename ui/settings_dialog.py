"""The settings dialog: key bindings, mouse sensitivity, fly speed, mouse capture, model folders."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from explorer.fly_camera import Action, KeyBindings
from ui.keys import KeyCaptureButton
from ui.settings import ExplorerSettings, check_model_settings


class SettingsDialog(QDialog):
    """Edits an :class:`~ui.settings.ExplorerSettings`; :meth:`result_settings` returns the edited copy.

    Accepting with a key bound to two actions, or a model folder that fails its check, shows a message
    saying why and keeps the dialog open.
    """

    def __init__(self, settings: ExplorerSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._result: ExplorerSettings | None = None
        self.key_buttons: dict[Action, KeyCaptureButton] = {}
        keys = QFormLayout()
        for action in Action:
            button = KeyCaptureButton(settings.bindings.key_for(action))
            self.key_buttons[action] = button
            keys.addRow(action.value.replace("_", " "), button)
        defaults = QPushButton("Restore default keys")
        defaults.clicked.connect(self._restore_default_keys)
        keys.addRow(defaults)
        key_box = QGroupBox("Keys (click, then press the new key)")
        key_box.setLayout(keys)

        self.sensitivity = QDoubleSpinBox(decimals=3, minimum=0.005, maximum=2.0, singleStep=0.01, suffix=" °/px")
        self.sensitivity.setValue(settings.sensitivity_deg_per_px)
        self.speed = QDoubleSpinBox(decimals=2, minimum=0.05, maximum=20.0, singleStep=0.1, suffix=" m/s")
        self.speed.setValue(settings.speed_mps)
        self.capture = QCheckBox("Captured mouse-look (hide the cursor; Esc releases it)")
        self.capture.setChecked(settings.capture_mouse)
        self.model_dir = QLineEdit(settings.model_dir)
        self.model_dir.setPlaceholderText("empty: tiny backend (no weights)")
        self.depth_model_dir = QLineEdit(settings.depth_model_dir)
        self.depth_model_dir.setPlaceholderText("empty: flat prior depth for photos")
        self.sky_model_dir = QLineEdit(settings.sky_model_dir)
        self.sky_model_dir.setPlaceholderText("empty: sky by depth only")
        other = QFormLayout()
        other.addRow("Mouse sensitivity", self.sensitivity)
        other.addRow("Fly speed", self.speed)
        other.addRow(self.capture)
        other.addRow("Wan2.2 model folder", self._folder_row(self.model_dir, "Wan2.2-TI2V-5B diffusers folder"))
        depth_title = "Metric depth-estimation model folder (transformers)"
        other.addRow("Depth model folder", self._folder_row(self.depth_model_dir, depth_title))
        sky_title = "Semantic-segmentation model folder with a 'sky' class"
        other.addRow("Sky segmentation model", self._folder_row(self.sky_model_dir, sky_title))

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        columns = QHBoxLayout()
        columns.addWidget(key_box)
        right = QVBoxLayout()
        right.addLayout(other)
        right.addStretch(1)
        columns.addLayout(right)
        layout.addLayout(columns)
        layout.addWidget(buttons)

    def _restore_default_keys(self) -> None:
        defaults = KeyBindings()
        for action, button in self.key_buttons.items():
            button.set_key(defaults.key_for(action))

    def _folder_row(self, edit: QLineEdit, title: str) -> QHBoxLayout:
        """``edit`` with a Browse button that picks a folder into it."""
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse(edit, title))
        row = QHBoxLayout()
        row.addWidget(edit)
        row.addWidget(browse)
        return row

    def _browse(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)

    def edited_settings(self) -> ExplorerSettings:
        """The settings as currently edited.

        Raises:
            ValueError: a key bound twice (the message names both actions).
        """
        bindings = KeyBindings(**{action.value: button.key for action, button in self.key_buttons.items()})
        return ExplorerSettings(
            bindings,
            sensitivity_deg_per_px=self.sensitivity.value(),
            speed_mps=self.speed.value(),
            capture_mouse=self.capture.isChecked(),
            model_dir=self.model_dir.text().strip(),
            depth_model_dir=self.depth_model_dir.text().strip(),
            sky_model_dir=self.sky_model_dir.text().strip(),
        )

    def accept(self) -> None:
        """Validate (keys, then every model folder: :func:`ui.settings.check_model_settings`, which also
        turns a cached Hub repo id into its folder); on a problem show why and stay open."""
        try:
            self._result = check_model_settings(self.edited_settings())
        except ValueError as error:
            QMessageBox.warning(self, "Settings", str(error))
            return
        super().accept()

    def result_settings(self) -> ExplorerSettings | None:
        """The accepted settings (None when cancelled)."""
        return self._result
