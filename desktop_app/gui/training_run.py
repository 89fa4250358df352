"""What the Reward model and PPO pages share: one background training run at a time, with a
progress bar, a status line, cancel, resume and a one-line result.

A page mixes ``TrainingRun`` in, declares ``training_started`` / ``training_finished`` signals,
calls ``_init_run_widgets()``, starts work with ``_launch`` and describes a completed result in
``_completed_text``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from PySide6.QtWidgets import QLabel, QProgressBar

from ..core.events import Log, Metric, Progress
from ..core.store import RESUMABLE
from .jobs import Job


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class TrainingRun:
    job: Job | None = None
    last_result = None

    def _init_run_widgets(self, idle_text: str) -> None:
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress_label = QLabel(idle_text)
        self.progress_label.setWordWrap(True)
        self.progress_label.setObjectName("progressLabel")

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def _launch(self, work: Callable, name: str, loading_text: str) -> None:
        """Run ``work(emit, stop)`` on a worker thread; events go to ``_on_event``."""
        self.started_at = time.monotonic()
        self.job = Job(work, self, name=name)
        self.job.event.connect(self._on_event)
        self.job.succeeded.connect(self._on_result)
        self.job.failed.connect(self._show_error)
        self.job.finished.connect(self._on_finished)
        self.progress.setRange(0, 0)
        self.progress_label.setText(loading_text)
        self.job.start()
        self._update_buttons()
        self.training_started.emit()

    def cancel(self) -> None:
        if self.running:
            self.job.cancel()
            self.progress_label.setText("Stopping after this step and saving a checkpoint…")

    def _resumable(self, kind: str, run_dir_for: Callable) -> dict | None:
        """The newest run of ``kind`` if it stopped early and kept a checkpoint."""
        for run in reversed(self.store.list_runs()):
            if run["kind"] == kind:
                checkpoint = Path(run_dir_for(self.workspace, run["id"])) / "checkpoint"
                if run["status"] in RESUMABLE and checkpoint.is_dir():
                    return run
                return None
        return None

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event) -> None:
        if isinstance(event, Metric):
            self.charts.add_point(event.name, event.step, event.value)
        elif isinstance(event, Progress):
            if event.total:
                self.progress.setRange(0, event.total)
                self.progress.setValue(event.done)
                self.progress.setFormat("step %v / %m")
            extra = event.extra
            parts = [event.message]
            if "eta_s" in extra:
                parts.append(f"ETA {duration(extra['eta_s'])}")
            parts += self._progress_details(extra)
            if "memory_gib" in extra:
                parts.append(f"{extra['memory_gib']:.2f} GiB")
            self.progress_label.setText("   ·   ".join(parts))
        elif isinstance(event, Log) and event.level in ("info", "warning", "error"):
            self.progress_label.setText(event.message)
        else:
            self._on_other_event(event)

    def _progress_details(self, extra: dict) -> list[str]:
        return []

    def _on_other_event(self, event) -> None:
        pass

    def _on_result(self, result) -> None:
        self.last_result = result
        if result.status == "completed":
            self.progress_label.setText(
                f"Run #{result.run_id} finished in "
                f"{duration(time.monotonic() - self.started_at)}: {self._completed_text(result)}")
        elif result.status == "cancelled":
            self.progress_label.setText(f"Run #{result.run_id} cancelled at step {result.step}; "
                                        "its checkpoint is kept — press Resume to continue.")
        else:
            self._show_error(result.error or "The run failed.")

    def _completed_text(self, result) -> str:
        raise NotImplementedError

    def _show_error(self, message: str) -> None:
        self.progress_label.setText(f"<span style='color:#b00020'>{message}</span>")

    def _on_finished(self) -> None:
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.refresh()
        self.training_finished.emit()

    def _stop_jobs(self, *jobs: Job | None) -> None:
        for job in jobs:
            if job is not None and job.running:
                job.cancel()
                job.wait(120000)
