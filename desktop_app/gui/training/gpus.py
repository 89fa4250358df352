"""The training pages' "GPUs" choice. It shows only when more than one GPU is visible. Above
one, a run goes to torchrun as a subprocess of the app (``core/jobs/torchrun.py``) instead of
a thread. The page's controller, charts, cancel and resume work the same either way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QWidget

from desktop_app.core.runs.record import RunKind
from desktop_app.gui.jobs import JobFn


def visible_gpus() -> int:
    """CUDA devices this process sees; 0 until the ML stack has been imported in the
    background (the UI thread never imports torch itself)."""
    from desktop_app.ml.models.stack import is_ready
    if not is_ready():
        return 0
    import torch
    return torch.cuda.device_count()


class GpuChoice(QWidget):
    """"GPUs: [N]" (1 to every visible GPU), hidden on a machine with one or none."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.spin = QSpinBox()
        self.spin.setRange(1, 1)
        self.spin.setToolTip("Train on this many GPUs at once (torchrun, one process per GPU, "
                             "data-parallel). The batch size stays the whole step's.")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("GPUs"))
        row.addWidget(self.spin)
        row.addStretch(1)
        self.offered = False
        self.hide()

    def refresh(self) -> None:
        """Look again (the page is shown): the count is known once the ML stack is imported."""
        n = visible_gpus()
        if n > 1:
            was_max = self.spin.value() == self.spin.maximum()
            self.spin.setRange(1, n)
            self.spin.setSuffix(f" of {n}")
            if was_max:
                self.spin.setValue(n)  # every GPU by default
        self.offered = n > 1
        self.setVisible(self.offered)

    def count(self) -> int:
        return self.spin.value() if self.offered else 1


def on_gpus(local: JobFn, gpus: int, workspace, command: str, *, kind: RunKind,
            result_type: Callable[..., Any], options: Callable[[], list[str]],
            resume_run_id: int | None) -> JobFn:
    """``local`` (the run on a thread) for one GPU; for several, the same command under
    torchrun, with ``options()`` (the config and inputs as CLI options) or ``--resume``."""
    if gpus <= 1:
        return local
    from desktop_app.core.jobs.torchrun import run_under_torchrun
    args = ["--resume", str(resume_run_id)] if resume_run_id is not None else options()

    def work(emit, stop):
        return run_under_torchrun(workspace, command, args, nproc=gpus, kind=kind,
                                  result_type=result_type, emit=emit, stop=stop,
                                  resume_run_id=resume_run_id)
    return work
