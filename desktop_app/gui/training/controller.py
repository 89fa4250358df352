"""One background training or evaluation run of a page: ``RunController``.

The Reward model, PPO and Evaluate pages each hold one controller (``self.run``) and place its
widgets (``progress``, ``status`` and, for an evaluation, ``warnings``) in their layouts. The
controller owns the rest: launching the ``Job``, turning its events into the progress bar, the
status line and chart points, cancel, finding the run to resume, and the line that says how
the run ended. What only the page knows it passes to the constructor (how to describe a result,
its own progress fields, its charts); what happened it learns from the signals. No page
inherits any of this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel, QProgressBar

from desktop_app.core.data.store import Store
from desktop_app.core.errors import describe as describe_error
from desktop_app.core.events import Log, Metric, Progress
from desktop_app.core.runs.record import Run, RunKind, RunStatus
from desktop_app.gui.jobs import Job, JobFn

Describe = Callable[[Any, float], str]
"""(the job's return value, the seconds it ran) -> the status line saying how the run ended."""
Details = Callable[[dict], list[str]]
"""A ``Progress`` event's ``extra`` -> the page's own fields for the status line (after the ETA)."""

SAVING_CHECKPOINT = "Stopping after this step and saving a checkpoint…"
SEPARATOR = "   ·   "


class ChartFeed(Protocol):
    """Where ``Metric`` events go (``charts.ChartBoard``)."""

    def add_point(self, name: str, step: float, value: float) -> None: ...


@dataclass(frozen=True)
class Checkpoints:
    """Where a run to resume is looked for: the newest run of ``kind`` in ``store``, when it
    stopped early (cancelled, failed, interrupted) and kept ``runs_dir/NNNN-kind/checkpoint``."""

    store: Store
    runs_dir: Path
    kind: RunKind


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def error_text(message: str) -> str:
    return f"<span style='color:#b00020'>{message}</span>"


def no_details(extra: dict) -> list[str]:
    return []


def training_outcome(completed_text: Callable[[Any], str]) -> Describe:
    """How a training run ended (a result with ``status``, ``run_id``, ``step``, ``error``);
    ``completed_text(result)`` says what a completed one made."""
    def describe(result: Any, seconds: float) -> str:
        if result.status == RunStatus.COMPLETED:
            return (f"Run #{result.run_id} finished in {duration(seconds)}: "
                    f"{completed_text(result)}")
        if result.status == RunStatus.CANCELLED:
            return (f"Run #{result.run_id} cancelled at step {result.step}; its checkpoint is "
                    "kept — press Resume to continue.")
        return error_text(result.error or "The run failed.")
    return describe


class RunController(QObject):
    """One background run at a time, with its progress bar, status line, cancel and resume.

    Signals, all on the UI thread:

    - ``started``: a job was launched (``running`` is True from now on);
    - ``event(object)``: each event of the job, after the controller showed it (a page picks out
      its own kinds, e.g. PPO's samples);
    - ``result(object)``: the job's return value, after the status line says how it ended;
    - ``failed(str)``: the job raised; one sentence, already on the status line;
    - ``finished``: the job ended, however (``running`` is False again).
    """

    started = Signal()
    event = Signal(object)
    result = Signal(object)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, parent: QObject, idle_text: str, describe: Describe, *,
                 details: Details = no_details, charts: ChartFeed | None = None,
                 stopping_text: str = SAVING_CHECKPOINT, step_format: str = "step %v / %m",
                 warnings: bool = False, checkpoints: Checkpoints | None = None):
        """``idle_text``: the status line before the first run. ``describe``: the status line
        for a result. ``details``: extra progress fields. ``charts``: where metrics go.
        ``stopping_text``: the status line once cancel is pressed. ``step_format``: the
        progress bar's text. ``warnings``: Log warnings and errors collect in ``warnings``
        instead of replacing the status line. ``checkpoints``: where ``resumable_run`` looks."""
        super().__init__(parent)
        self._describe, self._details, self._charts = describe, details, charts
        self._stopping_text, self._step_format = stopping_text, step_format
        self._checkpoints = checkpoints
        self.job: Job | None = None
        self.last_result: Any = None
        self.started_at = 0.0

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status = QLabel(idle_text)
        self.status.setWordWrap(True)
        self.status.setObjectName("progressLabel")
        self.warnings: QLabel | None = None
        if warnings:
            self.warnings = QLabel("")
            self.warnings.setObjectName("runWarnings")
            self.warnings.setWordWrap(True)
            self.warnings.hide()

    # -- what a page asks --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def launch(self, work: JobFn, name: str, loading_text: str,
               needs_stack: bool = True) -> bool:
        """Run ``work(emit, stop)`` on a worker thread; False (and nothing happens) while a run
        is still going."""
        if self.running:
            return False
        self.started_at = time.monotonic()
        if self.warnings is not None:
            self.warnings.clear()
            self.warnings.hide()
        self.job = Job(work, self, name=name, needs_stack=needs_stack)
        self.job.event.connect(self._on_event)
        self.job.succeeded.connect(self._on_result)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._on_finished)
        self.progress.setRange(0, 0)
        self.status.setText(loading_text)
        self.job.start()
        self.started.emit()
        return True

    def cancel(self) -> None:
        """Ask the run to stop; ``finished`` follows once it has (a checkpoint saved first)."""
        if self.running:
            self.job.cancel()
            self.status.setText(self._stopping_text)

    def say(self, text: str) -> None:
        """Put ``text`` on the status line (e.g. which stored run the charts show)."""
        self.status.setText(text)

    def resumable_run(self) -> Run | None:
        """The newest run of the page's kind if it stopped early and kept a checkpoint."""
        if self._checkpoints is None:
            return None
        where = self._checkpoints
        for run in reversed(where.store.list_runs()):
            if run.kind == where.kind:
                checkpoint = run.folder(where.runs_dir) / "checkpoint"
                return run if run.resumable and checkpoint.is_dir() else None
        return None

    def shutdown(self, wait_ms: int = 120_000) -> None:
        """At application exit only: ask the run to stop and wait for it on this thread, so a
        training run has saved its checkpoint before the process ends."""
        if self.running:
            self.job.cancel()
            self.job.wait(wait_ms)

    # -- the job's signals -------------------------------------------------------------------

    def _on_event(self, event) -> None:
        if isinstance(event, Metric):
            if self._charts is not None:
                self._charts.add_point(event.name, event.step, event.value)
        elif isinstance(event, Progress):
            if event.total:
                self.progress.setRange(0, event.total)
                self.progress.setValue(event.done)
                self.progress.setFormat(self._step_format)
            self.status.setText(self._progress_text(event))
        elif isinstance(event, Log) and event.level in ("info", "warning", "error"):
            if self.warnings is not None and event.level != "info":
                shown = self.warnings.text()
                self.warnings.setText((shown + "\n" if shown else "") + "⚠  " + event.message)
                self.warnings.show()
            else:
                self.status.setText(event.message)
        self.event.emit(event)

    def _progress_text(self, event: Progress) -> str:
        extra = event.extra
        parts = [event.message]
        if "eta_s" in extra:
            parts.append(f"ETA {duration(extra['eta_s'])}")
        parts += self._details(extra)
        if "memory_gib" in extra:
            parts.append(f"{extra['memory_gib']:.2f} GiB")
        return SEPARATOR.join(parts)

    def _on_result(self, result) -> None:
        self.last_result = result
        self.status.setText(self._describe(result, time.monotonic() - self.started_at))
        self.result.emit(result)

    def _on_failed(self, error: str | BaseException) -> None:
        message = error if isinstance(error, str) else describe_error(error)[0]
        self.status.setText(error_text(message))
        self.failed.emit(message)

    def _on_finished(self) -> None:
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.finished.emit()


class TrainingPage(Protocol):
    """What ``training_controller`` wires a page's controller to."""

    training_started: Signal
    training_finished: Signal

    def _update_buttons(self) -> None: ...

    def refresh(self) -> None: ...


def training_controller(page: TrainingPage, idle_text: str, completed_text: Callable[[Any], str],
                        details: Details, charts: ChartFeed,
                        checkpoints: Checkpoints) -> RunController:
    """The controller of a training page (reward model, PPO, any later method), wired the same
    way on each: its buttons follow the run, and the page says when training starts and ends
    (the main window pauses pair generation meanwhile)."""
    run = RunController(page, idle_text, training_outcome(completed_text), details=details,
                        charts=charts, checkpoints=checkpoints)
    run.started.connect(page._update_buttons)
    run.started.connect(page.training_started)
    run.finished.connect(page.refresh)
    run.finished.connect(page.training_finished)
    return run

