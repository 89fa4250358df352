import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

LINES = ["Tell me about cats.", "Cats like to sleep in the sun.", "Write a poem about rain.",
         "Rain falls softly on the roof.", "How do I boil an egg?", "Put the egg in hot water."]


@pytest.fixture(autouse=True)
def _delete_closed_widgets():
    """Stops the jobs a test left running, then deletes its closed widgets.

    A job left running (a page's evaluation or playground job, say) would work on, and emit
    into, the next test. pytest-qt closes each test's widgets and asks Qt to delete them later,
    but that happens only once some later test runs an event loop: until then they pile up
    (thousands) and slow down every test after them. Deleted here instead, after the test's
    own fixtures have ended (jobs waited for)."""
    yield
    stop_jobs()
    from PySide6.QtCore import QCoreApplication, QEvent
    if QCoreApplication.instance() is not None:
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory):
    """A tiny Llama with a chat template and no pad token, saved like a real checkpoint."""
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    path = tmp_path_factory.mktemp("gui-models") / "tiny-llama"
    tokenizer = train_tokenizer(LINES * 3, vocab_size=300, chat_template=True, pad_token=False)
    build_tiny_model("llama", tokenizer, path, hidden=32, heads=2)
    return path


def flush_events() -> None:
    """Deliver what is already queued on the UI thread: posted events (layout requests,
    queued signals from finished jobs) and zero-delay timers, and what those post in turn.
    After it, whatever an event set in motion here has happened; it waits for no time."""
    from PySide6.QtCore import QCoreApplication
    for _ in range(3):  # a zero-delay timer fires once per pass, and may post more
        QCoreApplication.sendPostedEvents()
        QCoreApplication.processEvents()


def open_main_window(qtbot, workspace, store):
    from desktop_app.gui.app import create_app
    from desktop_app.gui.main_window import MainWindow
    create_app()
    win = MainWindow(workspace, store)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def stop_jobs(timeout: float = 120.0) -> None:
    """Cancel every running job and wait until each has ended. A job ends on the UI thread
    (its finishing signal is queued there), so this delivers events while it waits."""
    from PySide6.QtCore import QCoreApplication

    from desktop_app.gui.jobs import running_jobs
    for job in running_jobs():
        job.cancel()
    deadline = time.monotonic() + timeout
    while running_jobs() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def close_main_window(win) -> None:
    win.close()
    # Closing leaves loading and scanning jobs behind (the app then ends its process); a test
    # process goes on, so it waits for them before Qt deletes their threads.
    stop_jobs()


@pytest.fixture
def window(qtbot, workspace, store):
    win = open_main_window(qtbot, workspace, store)
    yield win
    close_main_window(win)
