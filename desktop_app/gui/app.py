"""Start the GUI on a workspace."""

from __future__ import annotations

import logging
import os
import sys

from desktop_app import __version__
from desktop_app.core.data.store import Store
from desktop_app.core.workspace import Workspace
from desktop_app.gui.jobs import running_jobs

log = logging.getLogger("rlhf-desk")

APP_ID = "io.github.rlhfdesk.RLHFDesk"


def create_app():
    from PySide6.QtWidgets import QApplication

    from desktop_app.gui.widgets.style import STYLESHEET
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("RLHF Desk")
    app.setOrganizationName("rlhf-desk")
    # Matches packaging/io.github.rlhfdesk.RLHFDesk.desktop: Wayland compositors and docks
    # find the menu entry (and its icon) through it.
    app.setDesktopFileName(APP_ID)
    if app.styleSheet() != STYLESHEET:  # once: restyling repolishes every widget there is
        app.setStyle("Fusion")
        app.setStyleSheet(STYLESHEET)
    icon = app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    from desktop_app.gui.gc_guard import collect_on_ui_thread
    collect_on_ui_thread(app)  # never on a worker thread: see gc_guard
    return app


def app_icon():
    """The app icon (resources/icons, shipped in wheels and frozen builds); None if missing."""
    from PySide6.QtGui import QIcon

    from desktop_app.core.resources import icon_path

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
    terminal = logging.StreamHandler()
    terminal.setFormatter(_OneLine("%(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler, terminal])


class _OneLine(logging.Formatter):
    """The terminal gets one line per record; tracebacks stay in the log file."""

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = ""
        saved, record.exc_info = record.exc_info, None
        try:
            return super().format(record)
        finally:
            record.exc_info = saved


def _install_excepthook(workspace: Workspace) -> None:
    """An unexpected error in a slot becomes a message box, never a silent traceback."""
    from PySide6.QtWidgets import QMessageBox

    from desktop_app.gui.jobs import friendly_error

    def hook(exc_type, exc, tb):
        logging.getLogger("rlhf-desk").error("unexpected error", exc_info=(exc_type, exc, tb))
        QMessageBox.critical(None, "Something went wrong",
                             f"{friendly_error(exc)}\n\nDetails are in "
                             f"{workspace.root / 'logs' / 'rlhf-desk.log'}. Your judgments are "
                             "saved; you can keep working.")

    sys.excepthook = hook


def warm_up_imports():
    """Import the training stack on a background thread while the app is idle.

    A first import executes module code and initialises C extensions while holding the GIL
    (torch + transformers + peft: seconds on a small machine); done on the UI thread it would
    freeze the window. It goes through ``ml.models.stack`` so it never races the first model's
    inspection and loading, which start at the same moment."""
    import threading

    def work() -> None:
        from desktop_app.ml.models import stack
        try:
            stack.import_stack()
            log.info("ML stack imported in %.1f s", stack.seconds)
        except Exception:  # noqa: BLE001 - each job that needs the stack reports it, with a message
            log.exception("importing the ML stack failed")

    thread = threading.Thread(target=work, name="warm-up-imports", daemon=True)
    thread.start()
    return thread


def _close_on_ctrl_c(window) -> None:
    """Ctrl+C in the terminal closes the window the normal way (current batch kept, runs
    closed). Python only runs signal handlers between bytecodes, so a timer gives it a turn.
    The close is queued: a Ctrl+C that arrives before the event loop runs closes the window as
    soon as it does, and closing the last window ends the loop."""
    import signal

    from PySide6.QtCore import QTimer

    def on_sigint(*_) -> None:
        log.info("Ctrl+C: closing the window")
        QTimer.singleShot(0, window.close)

    signal.signal(signal.SIGINT, on_sigint)
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def run_gui(workspace: Workspace, model: str | None = None) -> int:
    """Open the main window at once; import the ML stack and load ``model`` (or the workspace's
    last model) in the background, so the window paints and stays responsive meanwhile.
    (cli.py has called ``gui.start.exit_on_ctrl_c`` before importing this module.)"""
    from desktop_app.gui.start import exit_on_ctrl_c
    exit_on_ctrl_c()
    _log_to_workspace(workspace)
    log.info("RLHF Desk %s starting on %s", __version__, workspace.root)
    try:
        app = create_app()
        _install_excepthook(workspace)
        from desktop_app.gui.main_window import MainWindow
        store = Store(workspace.db_path)
        store.mark_interrupted_runs()
        window = MainWindow(workspace, store)
    except Exception as exc:
        log.exception("start-up failed")
        if running_jobs():
            # A page had started a background job: Qt would abort on tearing its thread
            # down, so say the one line here and end now.
            from desktop_app.cli import _message
            print(f"rlhf-desk: error: {_message(exc)}".splitlines()[0], file=sys.stderr,
                  flush=True)
            logging.shutdown()
            os._exit(1)
        exc.logged = True  # cli.main need not log it again
        raise
    _close_on_ctrl_c(window)
    window.show()
    app.processEvents()  # paint the window before anything else happens
    warm_up = warm_up_imports()
    model = model or workspace.load_settings().get("last_model")
    if model:
        window.models_page.open_at_start(model)
    code = 1
    try:
        # A Ctrl+C handled inside processEvents above closed the window before the event loop
        # ran: Qt's quit-on-last-window-closed does nothing then, and exec() would wait
        # forever behind no window.
        code = app.exec() if window.isVisible() else 0
    finally:
        _leave(store, warm_up, code)
    return code  # not reached: _leave ends the process


def _leave(store: Store, warm_up, code: int = 0) -> None:
    """After the window closed, end the process at once. Pages have stopped their jobs by now
    (training saved what it had, generation kept its finished pairs and closed its run), and
    every judgment was committed when it was made. What may still run holds no data worth
    waiting for: a model still loading, the first import of the ML stack. Qt aborts when a
    running thread is torn down, and the interpreter's own teardown of Qt and torch took 11 s
    on a busy machine, so the process exits here instead of returning."""
    busy = [job.name for job in running_jobs()]
    if warm_up is not None and warm_up.is_alive():
        busy.append("warm-up-imports")
    store.close()
    if busy:
        log.info("leaving while %s still run(s)", ", ".join(busy))
    log.info("RLHF Desk closed")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
