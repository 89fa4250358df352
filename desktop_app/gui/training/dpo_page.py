"""DPO: tune the policy straight from the judgments, in the background, with live charts.

``ml.dpo.train.train_dpo`` runs on a Job thread through the page's ``RunController``; Metric
events feed the charts (train and validation side by side, TRL's metric names), Progress
events the progress line. What the run will learn from is shown before it starts: the pairs
with a winner on each side of the split, and the ties and both-bad pairs left out.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_app.core.config import DPOConfig
from desktop_app.core.data.store import Store
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.wording import count
from desktop_app.core.workspace import Workspace
from desktop_app.gui.training.controller import Checkpoints, training_controller
from desktop_app.gui.training.gpus import GpuChoice, on_gpus
from desktop_app.gui.training.reward_page import FEW_VALIDATION_PAIRS, WARNING, accuracy_text
from desktop_app.gui.widgets.charts import ChartBoard
from desktop_app.gui.widgets.config_form import ConfigForm
from desktop_app.gui.widgets.memory_plan import MemoryPlanLabel
from desktop_app.gui.widgets.panes import settings_column, side_by_side

CHARTS = [
    ("Loss", [("train/loss", "train"), ("eval/loss", "validation")]),
    ("Accuracy", [("train/rewards/accuracies", "train"),
                  ("eval/rewards/accuracies", "validation")]),
    ("Margin", [("train/rewards/margins", "train"), ("eval/rewards/margins", "validation")]),
    ("Implicit rewards", [("train/rewards/chosen", "chosen"),
                          ("train/rewards/rejected", "rejected")]),
    ("Log-probs", [("train/logps/chosen", "chosen"),
                           ("train/logps/rejected", "rejected")]),
    ("Learning rate", [("train/lr", "lr")]),
]


class DPOPage(QWidget):
    training_started = Signal()    # a DPO run began: background generation pauses
    training_finished = Signal()
    policy_ready = Signal(str, str)   # base model folder, policy adapter folder

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.base_model: str | None = workspace.load_settings().get("last_model")
        self._data_ok = False

        self.base_label = QLabel()
        self.base_label.setWordWrap(True)
        self.data_label = QLabel()
        self.data_label.setWordWrap(True)
        self.data_label.setObjectName("dataSummary")
        self.form = ConfigForm(DPOConfig())
        self.form.changed.connect(self.refresh_data_summary)
        self.start_button = QPushButton("Start DPO")
        self.start_button.setObjectName("primary")
        self.start_button.clicked.connect(lambda: self.start())
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(
            "Continue the last cancelled, failed or interrupted DPO run from its checkpoint.")
        self.resume_button.clicked.connect(self.resume_last)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: self.run.cancel())
        self.use_button = QPushButton("Generate new pairs with this policy")
        self.use_button.setToolTip("Load the tuned policy on the Judge page, so your next "
                                   "judgments compare its responses (the next round).")
        self.use_button.clicked.connect(self._use_policy)
        self.plan_label = MemoryPlanLabel(self._plan_job, "DPO")
        self.form.changed.connect(self.plan_label.refresh)
        self.gpus = GpuChoice()
        left = settings_column(
            [self.base_label, self.data_label], self.form,
            [(self.start_button, 2), (self.resume_button, 1), (self.cancel_button, 1)],
            [self.gpus, self.plan_label, self.use_button])

        self.charts = ChartBoard(CHARTS, columns=3)
        self.run = training_controller(
            self, "No DPO run yet.", self._completed_text, self._progress_details, self.charts,
            Checkpoints(store, workspace.runs_dir, RunKind.DPO))
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.run.progress)
        rv.addWidget(self.run.status)
        rv.addWidget(self.charts, 1)

        side_by_side(self, left, right)
        self.set_base_model(self.base_model)
        self.refresh()

    # -- state -------------------------------------------------------------------------------

    def set_base_model(self, path: str | None) -> None:
        self.base_model = path
        self.base_label.setText(
            f"<b>Base model:</b> {Path(path).name}" if path else
            "<b>Base model:</b> none — load one on the Models page.")
        self._update_buttons()
        self.plan_label.refresh()

    def activate(self) -> None:
        """The page is shown: judgments and runs may have changed elsewhere."""
        self.refresh()
        self.gpus.refresh()

    def refresh(self) -> None:
        self.plan_label.refresh()  # the judgments may have changed (their longest pair)
        self.refresh_data_summary()

    def refresh_data_summary(self) -> None:
        from desktop_app.ml.dpo.judgments import DPOTrainingError, check_dpo_data
        try:
            counts = check_dpo_data(self.store, self.form.value())
        except DPOTrainingError as exc:
            self.data_label.setText(f"<span style='color:#b00020'>{exc}</span>")
            self._data_ok = False
        else:
            left_out = [count(counts["ties_left_out"], "tie")] if counts["ties_left_out"] else []
            if counts["both_bad_left_out"]:
                left_out.append(f"{counts['both_bad_left_out']} both-bad")
            text = (f"{count(counts['train_pairs'], 'training pair')} and "
                    f"{count(counts['val_pairs'], 'validation pair')} with a winner, from "
                    "your judgments" + (f" ({' and '.join(left_out)} left out: they do not "
                                        "say which response is better)" if left_out else "")
                    + ".")
            if counts["val_pairs"] < FEW_VALIDATION_PAIRS:
                text += "<br>" + WARNING.format(
                    f"Only {count(counts['val_pairs'], 'validation pair')}: the validation "
                    "accuracy will say little. Judge more pairs or raise the validation share.")
            self.data_label.setText(text)
            self._data_ok = True
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.run.running
        self.start_button.setEnabled(self._data_ok and bool(self.base_model) and not running)
        self.cancel_button.setEnabled(running)
        resumable = self.run.resumable_run()
        self.resume_button.setEnabled(resumable is not None and not running)
        self.resume_button.setText(f"Resume #{resumable.id}" if resumable else "Resume")
        last = self.run.last_result
        self.use_button.setEnabled(not running and last is not None
                                   and last.status == RunStatus.COMPLETED)

    def _plan_job(self):
        """The memory plan's job: this form's settings on the base model and the judgments."""
        from desktop_app.ml.planning.plan import Job, pair_tokens
        if not self.base_model:
            return None
        return Job("train-dpo", self.base_model, self.form.value(),
                   pair_tokens=pair_tokens(self.store, self.base_model))

    # -- running -----------------------------------------------------------------------------

    def start(self, resume_run_id: int | None = None) -> None:
        from desktop_app.core.jobs.torchrun import config_options
        from desktop_app.ml.dpo.train import DPOResult, train_dpo
        if self.run.running:
            return
        cfg, base = self.form.value(), self.base_model
        if resume_run_id is not None:
            run = self.store.get_run(resume_run_id)
            self.form.set_value(DPOConfig.from_dict(run.config))
        elif not self.plan_label.confirm_start(self):
            return
        workspace = self.workspace

        def work(emit, stop):
            return train_dpo(workspace, cfg, base_model=base, resume_run_id=resume_run_id,
                             emit=emit, stop=stop)

        work = on_gpus(work, self.gpus.count(), workspace, "train-dpo", kind=RunKind.DPO,
                       result_type=DPOResult, resume_run_id=resume_run_id,
                       options=lambda: config_options(cfg) + ["--model", base])

        self.charts.clear()
        if resume_run_id is not None:
            for point in self.store.metrics(resume_run_id):
                self.charts.add_point(point["name"], point["step"], point["value"])
        self.run.launch(work, "train-dpo", "Loading the base model and the policy…")

    def resume_last(self) -> None:
        run = self.run.resumable_run()
        if run is not None:
            self.start(resume_run_id=run.id)

    def _progress_details(self, extra: dict) -> list[str]:
        parts = [f"{extra['samples_per_s']:.1f} pairs/s"] if "samples_per_s" in extra else []
        if "epoch" in extra:
            parts.append(f"epoch {extra['epoch']:.2f}")
        return parts

    def _completed_text(self, result) -> str:
        pairs = self.store.final_metrics(result.run_id).get("eval/pairs")
        margin = f", margin {result.val_margin:+.3f}" if result.val_margin is not None else ""
        return (f"implicit reward: {accuracy_text(result.val_accuracy, pairs)}{margin}. Policy "
                f"saved to {result.artifact}")

    def _use_policy(self) -> None:
        last = self.run.last_result
        run = self.store.get_run(last.run_id) if last else None
        if run and run.artifact:
            self.policy_ready.emit(run.config.get("base_model", self.base_model), run.artifact)

    def shutdown(self) -> None:
        """At application exit: the run saves its checkpoint first."""
        self.run.shutdown()
