"""Reward model: configure, train in the background with live charts, then inspect.

Training is ``ml.reward.train.train_reward_model`` on a Job thread; its Metric events feed the
ChartBoard (redrawn on a timer) and its Progress events the progress line. Every metric is
also stored by the job, so the run can be charted again later.

A validation accuracy is shown with how many pairs it is out of and Wilson's 95% interval, and
with a warning under ``FEW_VALIDATION_PAIRS``: 0.333 on 3 pairs says almost nothing.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.config import RewardConfig
from desktop_app.core.data.store import Store
from desktop_app.core.evaluation.win_rate import win_rate
from desktop_app.core.runs.record import Run, RunKind
from desktop_app.core.wording import count
from desktop_app.core.workspace import Workspace
from desktop_app.gui.jobs import Job
from desktop_app.gui.training.controller import Checkpoints, training_controller
from desktop_app.gui.training.gpus import GpuChoice, on_gpus
from desktop_app.gui.widgets.charts import ChartBoard
from desktop_app.gui.widgets.config_form import ConfigForm
from desktop_app.gui.widgets.memory_plan import MemoryPlanLabel
from desktop_app.gui.widgets.panes import settings_column, side_by_side

CHARTS = [
    ("Loss", [("train/loss", "train"), ("eval/loss", "validation")]),
    ("Accuracy", [("train/accuracy", "train"), ("eval/accuracy", "validation")]),
    ("Margin (r_chosen − r_rejected)", [("train/margin", "train"), ("eval/margin", "validation")]),
    ("Learning rate", [("train/lr", "lr")]),
]
FEW_VALIDATION_PAIRS = 20   # fewer, and a validation accuracy is mostly noise
WARNING = "<span style='color:#b45309'>⚠ {}</span>"


def accuracy_text(accuracy: float | None, pairs: float | None) -> str:
    """"validation accuracy 33% on 3 pairs (95% CI 6%–79%)", with a warning when the pairs are
    too few to say much; without a known number of pairs, the accuracy alone."""
    if accuracy is None:
        return "validation accuracy –"
    if not pairs:
        return f"validation accuracy {accuracy:.3f}"
    n = round(pairs)
    correct = round(accuracy * n)
    ci = win_rate(correct, n - correct)
    text = (f"validation accuracy {accuracy:.0%} on {count(n, 'pair')} "
            f"(95% CI {ci.ci_low:.0%}–{ci.ci_high:.0%})")
    if n < FEW_VALIDATION_PAIRS:
        text += " " + WARNING.format(f"{count(n, 'pair')} say little: judge more pairs before "
                                     "trusting this number")
    return text


class RewardPage(QWidget):
    training_started = Signal()    # a training run began: background generation pauses
    training_finished = Signal()

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.base_model: str | None = workspace.load_settings().get("last_model")
        self.inspect_job: Job | None = None
        self._scorers: dict = {}   # one loaded reward model, kept so repeated scoring is instant

        # -- left: data, settings, actions ---------------------------------------------------
        self.base_label = QLabel()
        self.base_label.setWordWrap(True)
        self.data_label = QLabel()
        self.data_label.setWordWrap(True)
        self.data_label.setObjectName("dataSummary")
        self.form = ConfigForm(RewardConfig())
        self.form.changed.connect(self.refresh_data_summary)
        self.train_button = QPushButton("Train reward model")
        self.train_button.setObjectName("primary")
        self.train_button.clicked.connect(lambda: self.start_training())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.run.cancel())
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(
            "Continue the last cancelled, failed or interrupted run from its checkpoint.")
        self.resume_button.clicked.connect(self.resume_last)

        self.plan_label = MemoryPlanLabel(self._plan_job, "Training")
        self.form.changed.connect(self.plan_label.refresh)
        self.gpus = GpuChoice()
        left = settings_column([self.base_label, self.data_label], self.form, [
            (self.train_button, 2), (self.resume_button, 1), (self.cancel_button, 1)],
            [self.gpus, self.plan_label])

        # -- right: progress + charts, and the inspector --------------------------------------
        self.charts = ChartBoard(CHARTS)
        self.run = training_controller(
            self, "No training yet.", self._completed_text, self._progress_details, self.charts,
            Checkpoints(store, workspace.runs_dir, RunKind.REWARD))
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 95)
        self.smoothing.setValue(60)
        self.smoothing.setMaximumWidth(160)
        self.smoothing.valueChanged.connect(lambda v: self.charts.set_smoothing(v / 100))
        self.charts.set_smoothing(0.6)
        top = QHBoxLayout()
        top.addWidget(self.run.progress, 1)
        top.addWidget(QLabel("Smoothing"))
        top.addWidget(self.smoothing)
        training = QWidget()
        tv = QVBoxLayout(training)
        tv.addLayout(top)
        tv.addWidget(self.run.status)
        tv.addWidget(self.charts, 1)

        self.tabs = QTabWidget()
        self.tabs.addTab(training, "Training")
        self.tabs.addTab(self._build_inspector(), "Inspect")

        side_by_side(self, left, self.tabs)
        self.set_base_model(self.base_model)
        self.refresh()
        self.run_box.currentIndexChanged.connect(lambda _: self._chart_selected_run())
        self._chart_selected_run()

    # -- inspector ---------------------------------------------------------------------------

    def _build_inspector(self) -> QWidget:
        self.run_box = QComboBox()
        self.score_prompt = QLineEdit()
        self.score_prompt.setPlaceholderText("Prompt")
        self.score_response = QPlainTextEdit()
        self.score_response.setPlaceholderText("Response to score")
        self.score_response.setMaximumHeight(90)
        self.score_button = QPushButton("Score")
        self.score_button.clicked.connect(self.score_text)
        self.score_label = QLabel("")
        self.wrong_button = QPushButton("Show validation pairs it gets wrong")
        self.wrong_button.clicked.connect(self.show_wrong_pairs)
        self.wrong_table = QTableWidget(0, 4)
        self.wrong_table.setHorizontalHeaderLabels(["Margin", "Prompt", "Chosen (by you)",
                                                    "Rejected"])
        self.wrong_table.verticalHeader().hide()
        self.wrong_table.setWordWrap(True)
        header = self.wrong_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        self.inspect_status = QLabel("")
        self.inspect_status.setWordWrap(True)

        box = QGroupBox("Score a response")
        form = QFormLayout(box)
        form.addRow("Prompt", self.score_prompt)
        form.addRow("Response", self.score_response)
        row = QHBoxLayout()
        row.addWidget(self.score_button)
        row.addWidget(self.score_label, 1)
        form.addRow(row)
        page = QWidget()
        v = QVBoxLayout(page)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Reward model"))
        pick.addWidget(self.run_box, 1)
        v.addLayout(pick)
        v.addWidget(box)
        v.addWidget(self.wrong_button)
        v.addWidget(self.wrong_table, 1)
        v.addWidget(self.inspect_status)
        return page

    def show_run_charts(self, run_id: int) -> None:
        """Draw a stored run's charts from the metrics table (any run, finished or not)."""
        self.charts.clear()
        for point in self.store.metrics(run_id):
            self.charts.add_point(point["name"], point["step"], point["value"])
        self.charts.redraw_all()

    def _chart_selected_run(self) -> None:
        # A live run owns the charts; otherwise they show the run picked in the inspector.
        if not self.run.running and self.run_box.currentData() is not None:
            run_id = self.run_box.currentData()
            self.show_run_charts(run_id)
            self.run.say(f"Showing the stored charts of run #{run_id}.")

    def _finished_runs(self) -> list[Run]:
        return self.store.finished_runs(RunKind.REWARD)

    def _selected_run(self) -> Run | None:
        run_id = self.run_box.currentData()
        return self.store.get_run(run_id) if run_id is not None else None

    def _run_inspect_job(self, work, on_done) -> None:
        if self.inspect_job is not None and self.inspect_job.running:
            return
        self.inspect_job = Job(work, self, name="reward-inspect")
        self.inspect_job.succeeded.connect(on_done)
        self.inspect_job.failed.connect(self.inspect_status.setText)
        self.inspect_job.finished.connect(lambda: self.score_button.setEnabled(True))
        self.score_button.setEnabled(False)
        self.inspect_status.setText("Loading the reward model…")
        self.inspect_job.start()

    def _scorer(self, run: Run):
        """The reward model of ``run``, loaded once (only the latest one stays in memory)."""
        from desktop_app.ml.reward.model import RewardScorer
        cache = self._scorers
        if run.id not in cache:
            adapter = run.require_artifact(RunKind.REWARD, "scoring a response")
            cache.clear()  # keep one in memory
            cache[run.id] = RewardScorer.load(run.config["base_model"], adapter,
                                              device=run.config.get("device", "auto"))
        return cache[run.id]

    def score_text(self) -> None:
        run = self._selected_run()
        prompt, response = self.score_prompt.text().strip(), self.score_response.toPlainText()
        if run is None or not prompt:
            self.score_label.setText("Pick a reward model and type a prompt.")
            return
        def work(emit, stop):
            scorer = self._scorer(run)
            return scorer.score(prompt, [response])[0], scorer.stats

        self._run_inspect_job(work, self._on_scored)

    def _on_scored(self, result) -> None:
        score, stats = result
        self.inspect_status.setText("")
        text = f"reward {score:+.3f}"
        if stats and stats.get("std"):
            # Relative to the training responses: what PPO will see after normalisation.
            z = (score - stats["mean"]) / stats["std"]
            text += f"   ({z:+.2f} standard deviations from the mean training response)"
        self.score_label.setText(text)

    def show_wrong_pairs(self) -> None:
        from desktop_app.ml.reward.model import wrong_validation_pairs
        run = self._selected_run()
        if run is None:
            self.inspect_status.setText("Train a reward model first.")
            return
        workspace = self.workspace
        self._run_inspect_job(lambda emit, stop: wrong_validation_pairs(workspace, run.id),
                              self._on_wrong_pairs)

    def _on_wrong_pairs(self, rows: list[dict]) -> None:
        self.wrong_table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            values = [f"{row['margin']:+.2f}", row["prompt"], row["chosen"], row["rejected"]]
            for col, value in enumerate(values):
                item = QTableWidgetItem(value[:600])
                item.setToolTip(value[:3000])
                self.wrong_table.setItem(i, col, item)
        self.wrong_table.resizeRowsToContents()
        self.inspect_status.setText(
            f"{count(len(rows), 'validation pair')} ranked wrong, most confident first: check "
            "whether the model is missing something or your labels disagree with each other."
            if rows else "The reward model ranks every validation pair the way you did.")

    # -- state -------------------------------------------------------------------------------

    def set_base_model(self, path: str | None) -> None:
        self.base_model = path
        self.base_label.setText(
            f"<b>Base model:</b> {Path(path).name}<br><span style='color:#666'>{path}</span>"
            if path else "<b>Base model:</b> none — load one on the Models page.")
        self._update_buttons()
        self.plan_label.refresh()

    def activate(self) -> None:
        """The page is shown: runs may have changed elsewhere."""
        self.refresh()
        self.gpus.refresh()

    def refresh(self) -> None:
        self.plan_label.refresh()  # the judgments may have changed (their longest pair)
        self.refresh_data_summary()
        current = self.run_box.currentData()
        # Refilling the list must not redraw the charts (they may hold a live or just-finished run).
        self.run_box.blockSignals(True)
        self.run_box.clear()
        for run in reversed(self._finished_runs()):
            final = self.store.final_metrics(run.id)
            acc, pairs = final.get("eval/accuracy"), final.get("eval/pairs")
            label = f"#{run.id} · {Path(run.config.get('base_model', '')).name}"
            if acc is not None:
                label += f" · val acc {acc:.2f}" + (f" on {count(pairs, 'pair')}" if pairs else "")
            self.run_box.addItem(label, run.id)
        if current is not None and self.run_box.findData(current) >= 0:
            self.run_box.setCurrentIndex(self.run_box.findData(current))
        self.run_box.blockSignals(False)
        self._update_buttons()

    def refresh_data_summary(self) -> None:
        from desktop_app.ml.reward.pairs import RewardTrainingError, check_reward_data
        try:
            counts = check_reward_data(self.store, self.form.value())
        except RewardTrainingError as exc:
            self.data_label.setText(f"<span style='color:#b00020'>{exc}</span>")
            self._data_ok = False
        else:
            ties = count(counts["ties"], "tie") if counts["ties"] else "no ties"
            text = (f"{count(counts['train_pairs'], 'training pair')} and "
                    f"{count(counts['val_pairs'], 'validation pair')} from your judgments "
                    f"({ties}).")
            if counts["val_pairs"] < FEW_VALIDATION_PAIRS:
                moves = 100 / max(1, counts["val_pairs"])
                text += "<br>" + WARNING.format(
                    f"Only {count(counts['val_pairs'], 'validation pair')}: one pair moves the "
                    f"validation accuracy by {moves:.0f} points, so it says little. Judge more "
                    f"pairs (at least {FEW_VALIDATION_PAIRS} for validation) or raise the "
                    "validation share.")
            self.data_label.setText(text)
            self._data_ok = True
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.run.running
        ok = getattr(self, "_data_ok", False) and bool(self.base_model)
        self.train_button.setEnabled(ok and not running)
        self.cancel_button.setEnabled(running)
        resumable = self.run.resumable_run()
        self.resume_button.setEnabled(resumable is not None and not running)
        self.resume_button.setText(f"Resume #{resumable.id}" if resumable else "Resume")

    # -- training ----------------------------------------------------------------------------

    def start_training(self, resume_run_id: int | None = None) -> None:
        from desktop_app.core.jobs.torchrun import config_options
        from desktop_app.ml.reward.train import RewardResult, train_reward_model
        if self.run.running:
            return
        cfg = self.form.value()
        base = self.base_model
        if resume_run_id is not None:
            run = self.store.get_run(resume_run_id)
            cfg = RewardConfig.from_dict(run.config)
            base = run.config["base_model"]
            self.form.set_value(cfg)
        elif not self.plan_label.confirm_start(self):
            return
        workspace = self.workspace

        def work(emit, stop):
            return train_reward_model(workspace, cfg, base_model=base,
                                      resume_run_id=resume_run_id, emit=emit, stop=stop)

        work = on_gpus(work, self.gpus.count(), workspace, "train-reward", kind=RunKind.REWARD,
                       result_type=RewardResult, resume_run_id=resume_run_id,
                       options=lambda: config_options(cfg) + ["--model", base])

        self.charts.clear()
        if resume_run_id is not None:
            self.show_run_charts(resume_run_id)
        self.tabs.setCurrentIndex(0)
        self.run.launch(work, "train-reward", "Loading the base model…")

    def _plan_job(self):
        """The memory plan's job: this form's settings on the base model and the judgments."""
        from desktop_app.ml.planning.plan import Job, pair_tokens
        if not self.base_model:
            return None
        return Job("train-reward", self.base_model, self.form.value(),
                   pair_tokens=pair_tokens(self.store, self.base_model))

    def resume_last(self) -> None:
        run = self.run.resumable_run()
        if run is not None:
            self.start_training(resume_run_id=run.id)

    def _progress_details(self, extra: dict) -> list[str]:
        return [f"{extra['samples_per_s']:.1f} pairs/s"] if "samples_per_s" in extra else []

    def _completed_text(self, result) -> str:
        pairs = self.store.final_metrics(result.run_id).get("eval/pairs")
        return (f"{accuracy_text(result.val_accuracy, pairs)}. Adapter saved to "
                f"{result.artifact}")

    def free_gpu_memory(self) -> None:
        """A training job is starting: drop the inspector's reward model if it sits on a GPU
        (it is a cache; the next score loads it again). Not while it is scoring."""
        if self.inspect_job is not None and self.inspect_job.running:
            return
        if any(s.device.on_accelerator for s in self._scorers.values()):
            from desktop_app.ml.models.loader import free_memory

            device = next(iter(self._scorers.values())).device
            self._scorers.clear()
            free_memory(device)

    def shutdown(self) -> None:
        """At application exit: the training run saves its checkpoint; a score finishes."""
        self.run.shutdown()
        if self.inspect_job is not None and self.inspect_job.running:
            self.inspect_job.cancel()
            self.inspect_job.wait(120000)
