"""The memory plan next to a start button: "Training needs about 3.1 GiB; 7.6 GiB free on
CUDA.",
in red with what to change when the job would not fit, and a question before such a job
starts. The plan itself (``ml.planning.plan``) is computed on a worker thread: it sizes the
model on the meta device, which needs the ML stack, and the page must not wait for that."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QMessageBox, QWidget

from desktop_app.gui.jobs import Job

JobSpec = Callable[[], object]  # -> a ml.planning.plan.Job, or None when nothing to plan yet


class MemoryPlanLabel(QLabel):
    """Shows the plan of the job ``spec()`` describes (``what`` names it: "Training"); call
    ``refresh()`` when its settings change (calls within half a second make one plan)."""

    def __init__(self, spec: JobSpec, what: str, parent: QWidget | None = None):
        super().__init__(parent)
        self._what = what
        self.setObjectName("memoryPlan")
        self.setWordWrap(True)
        self._spec = spec
        self.plan = None  # the last plan, or None before the first / when it failed
        self._job: Job | None = None
        self._again = False
        self._timer = QTimer(self, singleShot=True, interval=500)
        self._timer.timeout.connect(self._compute)

    def refresh(self) -> None:
        self._timer.start()

    def _compute(self) -> None:
        if self._job is not None and self._job.running:
            self._again = True  # the settings changed while planning: plan once more after
            return
        try:
            job = self._spec()
        except Exception as exc:  # noqa: BLE001 - a form value that cannot be planned yet
            self._show_failure(str(exc))
            return
        if job is None:
            self.plan = None
            self.setText("")
            return
        from desktop_app.ml.planning.plan import plan_job

        self._job = Job(lambda emit, stop: plan_job(job), self, name="memory-plan")
        self._job.succeeded.connect(self._show)
        self._job.failed.connect(self._show_failure)
        self._job.finished.connect(self._after)
        self._job.start()

    def _after(self) -> None:
        if self._again:
            self._again = False
            self._compute()

    def _show(self, plan) -> None:
        from desktop_app.ml.planning.plan import gib

        self.plan = plan
        where = "the CPU" if plan.device == "cpu" else plan.device.upper()
        free = (f"; {gib(plan.available_bytes)} free on {where}"
                if plan.available_bytes is not None else f" on {where}")
        needs = f"{self._what} needs about {gib(plan.peak_bytes)}{free}."
        if plan.fits:
            self.setText(needs)
            self.setStyleSheet("color: #166534;")
        else:
            first = f" Try {plan.advice[0]}." if plan.advice else ""
            self.setText(f"<b>Will not fit:</b> {needs}{first}")
            self.setStyleSheet("color: #b00020;")
        parts = "".join(f"<tr><td>{name}</td><td align='right'>{gib(size)}</td></tr>"
                        for name, size in plan.breakdown.items())
        advice = "".join(f"<li>{line}</li>" for line in plan.advice)
        self.setToolTip(f"<b>Estimated peak memory</b><table>{parts}</table>"
                        + "".join(f"<p>{note}</p>" for note in plan.notes)
                        + (f"<p><b>To make it fit:</b><ul>{advice}</ul></p>" if advice else ""))

    def _show_failure(self, message: str) -> None:
        self.plan = None
        self.setText(f"No memory estimate: {message}")
        self.setStyleSheet("color: #6b7280;")
        self.setToolTip("")

    def confirm_start(self, parent: QWidget) -> bool:
        """True to go ahead: the job fits, or its plan is unknown, or the person chose to start
        it anyway after reading what would make it fit."""
        plan = self.plan
        if plan is None or plan.fits:
            return True
        from desktop_app.ml.planning.plan import gib

        advice = "\n".join(f"• {line}" for line in plan.advice) or "• a smaller model"
        box = QMessageBox(QMessageBox.Icon.Warning, "This job will probably not fit",
                          f"It needs about {gib(plan.peak_bytes)} at its peak, and "
                          f"{gib(plan.available_bytes or 0)} is free. It would likely stop "
                          f"with an out-of-memory error.\n\nChanges that help:\n{advice}",
                          parent=parent)
        start = box.addButton("Start anyway", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Change settings", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return box.clickedButton() is start
