"""PySide6 widgets of Mirage Explorer."""
