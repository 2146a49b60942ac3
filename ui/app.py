"""The GUI entry point: ``python main.py [--backend tiny|wan] [--model DIR] [--image PHOTO] ...``."""

from __future__ import annotations

import sys

from ui.launch import EXIT_NO_DISPLAY, LaunchOptions, display_problem


def run(args) -> int:
    """Open the explorer and run Qt's event loop; returns the exit code.

    Without a display it says so and returns :data:`~ui.launch.EXIT_NO_DISPLAY`; a ``--model`` repo id
    that is not in the local Hugging Face cache returns 2 with a message naming ``fetch-models``.
    """
    problem = display_problem()
    if problem:
        print(
            f"error: {problem}; the explorer needs a desktop. Headless demo: python main.py walkthrough --out "
            "out/walkthrough",
            file=sys.stderr,
        )
        return EXIT_NO_DISPLAY
    options = LaunchOptions.from_args(args)
    if options.model:
        from model.io.hub import resolve_model_ref

        try:
            options.model = resolve_model_ref(options.model, "--model")  # a repo id in the local cache
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtWidgets import QApplication

    from ui.main_window import MainWindow
    from ui.settings import APPLICATION, ORGANIZATION, user_qsettings

    # pyqtgraph caches its GL shader programs class-wide: every GL context must share objects
    # (a floated dock re-creates the cache panel's context)
    QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    window = MainWindow(user_qsettings(), options)
    window.show()
    window.start()
    code = app.exec()
    window.shutdown()
    return code
