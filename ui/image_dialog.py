"""File → Open image: a file dialog with a preview of the highlighted photo and its size.

Qt's own (non-native) dialog, so the preview pane can sit beside the file list on every platform.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImageReader, QPixmap
from PySide6.QtWidgets import QFileDialog, QLabel, QWidget

PREVIEW_SIZE = 240  # pixels of the preview's longer side
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"


class ImageFileDialog(QFileDialog):
    """An open-file dialog for photos with a preview pane (:attr:`preview`) that follows the highlighted file."""

    def __init__(self, parent: QWidget | None, folder: str) -> None:
        super().__init__(parent, "Open a photo", folder, IMAGE_FILTER)
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self.setFileMode(QFileDialog.FileMode.ExistingFile)
        self.preview = QLabel("no preview")
        self.preview.setObjectName("imagePreview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE + 40)
        self.preview.setWordWrap(True)
        self.preview.setToolTip("preview of the highlighted photo")
        layout = self.layout()
        layout.addWidget(self.preview, 0, layout.columnCount(), layout.rowCount(), 1)
        self.currentChanged.connect(self.show_preview)

    def show_preview(self, path: str) -> None:
        """Show ``path`` scaled into the preview pane with its size (or why it cannot be shown)."""
        reader = QImageReader(path)
        reader.setAutoTransform(True)
        if not path or Path(path).is_dir() or not reader.canRead():
            self.preview.setPixmap(QPixmap())
            self.preview.setText("no preview" if not path or Path(path).is_dir() else "not an image Qt can read")
            return
        size = reader.size()
        if size.isValid():
            reader.setScaledSize(size.scaled(PREVIEW_SIZE, PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if image.isNull():
            self.preview.setPixmap(QPixmap())
            self.preview.setText(f"cannot read: {reader.errorString()}")
            return
        self.preview.setPixmap(QPixmap.fromImage(image))
        self.preview.setToolTip(f"{Path(path).name}: {size.width()} × {size.height()} pixels")

    def chosen(self) -> str | None:
        """Run the dialog; the chosen file, or None."""
        if self.exec() and self.selectedFiles():
            return self.selectedFiles()[0]
        return None
