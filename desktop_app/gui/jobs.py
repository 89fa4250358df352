"""Run an ``ml``/``core`` job off the UI thread and turn its events into Qt signals.

A job is any ``fn(emit, stop) -> result``. ``Job`` moves a small runner object onto its own
QThread (napari/superqt style); the runner calls ``fn`` and reports through signals, which Qt
delivers on the UI thread. A failure is logged with its traceback once, kept as ``Job.error``
and announced as one readable sentence (``core.errors.describe``), never a traceback dialog.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from desktop_app.core.errors import describe
from desktop_app.core.events import Cancelled, StopToken

log = logging.getLogger(__name__)

JobFn = Callable[[Callable[[Any], None], StopToken], Any]


def friendly_error(exc: BaseException) -> str:
    """``core.errors.describe``'s sentence as the window says it: a bug is an "Unexpected
    error (Type: first line)."."""
    sentence, is_bug = describe(exc)
    return f"Unexpected error ({sentence})." if is_bug else sentence


class _Runner(QObject):
    event = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)      # the exception itself; Job turns it into a sentence
    cancelled = Signal()

    def __init__(self, fn: JobFn, stop: StopToken, needs_stack: bool):
        super().__init__()
        self._fn, self._stop, self._needs_stack = fn, stop, needs_stack

    @Slot()
    def run(self) -> None:
        try:
            self._run()
        finally:
            # End the thread's event loop from inside it, so Job.wait() returns even while
            # the UI thread is blocked in it (the queued result signals arrive afterwards).
            QThread.currentThread().quit()

    def _run(self) -> None:
        yield_to_the_ui_thread()
        try:
            if self._needs_stack:
                # The first import of transformers must not race another thread's (ml.models.stack).
                from desktop_app.ml.models.stack import import_stack
                import_stack()  # a stop asked for meanwhile is the function's to notice
            result = self._fn(self.event.emit, self._stop)
        except Cancelled:
            self.cancelled.emit()
        except Exception as exc:  # noqa: BLE001 - reported to the UI as a message
            log.error("job failed:\n%s", traceback.format_exc())
            self.failed.emit(exc)
        else:
            # A job that notices the stop token and returns (rather than raising Cancelled)
            # has a result worth showing, e.g. "cancelled at step 40, checkpoint kept".
            self.succeeded.emit(result)


# How much lower than the UI thread a job's thread runs (Linux nice steps).
JOB_NICENESS = 5


def yield_to_the_ui_thread() -> None:
    """Lower the calling job thread's CPU priority below the UI thread's. A training job's
    torch threads keep every core busy, and the UI thread competed with them for a core: on
    two cores the window stalled up to 124 ms while DPO ran (83-86 ms with this; the rest is
    the GIL). With the job a few nice steps lower the scheduler runs the UI thread first
    whenever it has work; the job loses nothing while the window is idle. The torch (OpenMP)
    threads this thread starts inherit its priority. Linux sets priorities per thread (nice);
    elsewhere Qt's thread priority does the same."""
    import os
    import sys
    import threading
    if sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid)
                           + JOB_NICENESS)
        except OSError:  # a sandbox may forbid it; the job still runs
            pass
    else:
        QThread.currentThread().setPriority(QThread.Priority.LowPriority)


_running: set[Job] = set()


def running_jobs() -> list[Job]:
    """Jobs started and not yet ended (their threads may still be working)."""
    return [job for job in _running if job.running]


class Job(QObject):
    """One background job. Connect the signals, then ``start()``; ``cancel()`` asks it to stop.

    ``needs_stack`` (the default) imports the ML stack first, through ``ml.models.stack``; a job
    that only touches files and the database can say False and start at once."""

    event = Signal(object)       # core.events.Progress / Log / Metric
    succeeded = Signal(object)   # the function's return value
    failed = Signal(str)         # a one-line message (the exception is kept as ``error``)
    cancelled = Signal()
    finished = Signal()          # after any of the three above
    error: BaseException | None = None   # what the job failed with

    def __init__(self, fn: JobFn, parent: QObject | None = None, name: str = "job",
                 needs_stack: bool = True):
        super().__init__(parent)
        self.name = name
        self.stop_token = StopToken()
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._runner = _Runner(fn, self.stop_token, needs_stack)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.event.connect(self.event)
        self._runner.succeeded.connect(self._on_succeeded)
        self._runner.failed.connect(self._on_failed)
        self._runner.cancelled.connect(self._on_cancelled)
        self._running = False

    def start(self) -> None:
        self._running = True
        _running.add(self)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._running

    def cancel(self) -> None:
        self.stop_token.stop()

    def wait(self, msecs: int = 30000) -> bool:
        return self._thread.wait(msecs)

    def _end(self) -> None:
        # The runner has returned; let the thread's event loop end before anyone reuses it.
        self._thread.quit()
        self._thread.wait()
        self._running = False
        _running.discard(self)

    def _on_succeeded(self, result: object) -> None:
        self._end()
        self.succeeded.emit(result)
        self.finished.emit()

    def _on_failed(self, exc: BaseException) -> None:
        self._end()
        self.error = exc
        self.failed.emit(friendly_error(exc))
        self.finished.emit()

    def _on_cancelled(self) -> None:
        self._end()
        self.cancelled.emit()
        self.finished.emit()
