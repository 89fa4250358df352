"""Start the GUI on a workspace."""

from __future__ import annotations

import logging
import sys

from ..core.store import Store
from ..core.workspace import Workspace


def create_app():
    from PySide6.QtWidgets import QApplication

    from .style import STYLESHEET
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("RLHF Desk")
    app.setOrganizationName("rlhf-desk")
    app.setStyle("Fusion")
    app.setStyleSheet(STYLESHEET)
    return app


def run_gui(workspace: Workspace, model: str | None = None) -> int:
    """Open the main window; load ``model`` (or the workspace's last model) in the background."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app()
    from .main_window import MainWindow
    store = Store(workspace.db_path)
    store.mark_interrupted_runs()
    window = MainWindow(workspace, store)
    window.show()
    model = model or workspace.load_settings().get("last_model")
    if model:
        window.models_page.select_path(model)
        if window.models_page.info is not None:
            window.models_page.load_path(model)
    try:
        return app.exec()
    finally:
        store.close()
