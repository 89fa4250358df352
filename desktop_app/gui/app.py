"""Start the GUI on a workspace."""

from __future__ import annotations

import logging
import sys

from ..core.store import Store
from ..core.workspace import Workspace

APP_ID = "io.github.rlhfdesk.RLHFDesk"


def create_app():
    from PySide6.QtWidgets import QApplication

    from .style import STYLESHEET
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("RLHF Desk")
    app.setOrganizationName("rlhf-desk")
    # Matches packaging/io.github.rlhfdesk.RLHFDesk.desktop: Wayland compositors and docks
    # find the menu entry (and its icon) through it.
    app.setDesktopFileName(APP_ID)
    app.setStyle("Fusion")
    app.setStyleSheet(STYLESHEET)
    icon = app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    return app


def app_icon():
    """The app icon (resources/icons, shipped in wheels and frozen builds); None if missing."""
    from PySide6.QtGui import QIcon

    from ..core.resources import icon_path

    icon = QIcon()
    for size in (48, 64, 128, 256):
        path = icon_path(size)
        if path is not None:
            icon.addFile(str(path))
    return None if icon.isNull() else icon


def _log_to_workspace(workspace: Workspace) -> None:
    """Full details (tracebacks included) go to a log file; the user sees one sentence."""
    logs = workspace.root / "logs"
    logs.mkdir(exist_ok=True)
    handler = logging.FileHandler(logs / "rlhf-desk.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler, logging.StreamHandler()])


def _install_excepthook(workspace: Workspace) -> None:
    """An unexpected error in a slot becomes a message box, never a silent traceback."""
    from PySide6.QtWidgets import QMessageBox

    from .jobs import friendly_error

    def hook(exc_type, exc, tb):
        logging.getLogger("rlhf-desk").error("unexpected error", exc_info=(exc_type, exc, tb))
        QMessageBox.critical(None, "Something went wrong",
                             f"{friendly_error(exc)}\n\nDetails are in "
                             f"{workspace.root / 'logs' / 'rlhf-desk.log'}. Your judgments are "
                             "saved; you can keep working.")

    sys.excepthook = hook


def warm_up_imports() -> None:
    """Import the training stack on a background thread while the app is idle.

    A first import executes module code and initialises C extensions while holding the GIL
    (transformers + peft: ~150 ms here); done lazily when the user presses "Train", that would
    freeze the UI thread for that long."""
    import threading

    def work() -> None:
        try:
            import peft  # noqa: F401
            from transformers import (  # noqa: F401
                AutoModelForCausalLM,
                AutoModelForSequenceClassification,
            )
        except Exception:  # noqa: BLE001, S110 - a failure here resurfaces, with a message, on use
            pass

    threading.Thread(target=work, name="warm-up-imports", daemon=True).start()


def _close_on_ctrl_c(window) -> None:
    """Ctrl+C in the terminal closes the window the normal way (current batch kept, runs
    closed). Python only runs signal handlers between bytecodes, so a timer gives it a turn."""
    import signal

    from PySide6.QtCore import QTimer

    signal.signal(signal.SIGINT, lambda *_: window.close())
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def run_gui(workspace: Workspace, model: str | None = None) -> int:
    """Open the main window; load ``model`` (or the workspace's last model) in the background."""
    _log_to_workspace(workspace)
    app = create_app()
    _install_excepthook(workspace)
    from .main_window import MainWindow
    store = Store(workspace.db_path)
    store.mark_interrupted_runs()
    window = MainWindow(workspace, store)
    window.show()
    _close_on_ctrl_c(window)
    warm_up_imports()
    model = model or workspace.load_settings().get("last_model")
    if model:
        window.models_page.select_path(model)
        if window.models_page.info is not None:
            window.models_page.load_path(model)
    try:
        return app.exec()
    finally:
        store.close()
