"""PPO (and RLOO, the same page with its own form and charts): pick a finished reward model,
start on the base model, watch it live.

``ml.ppo.train.train_ppo`` (``ml.rloo.train.train_rloo``) runs on a Job thread; Metric events
feed the charts, Samples events the table of recent rollouts, Progress events the progress line
with the time split.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.config import PPOConfig
from desktop_app.core.data.store import Store
from desktop_app.core.events import Log, Metric, Progress
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.workspace import Workspace
from desktop_app.gui.training.controller import Checkpoints, training_controller
from desktop_app.gui.training.gpus import GpuChoice, on_gpus
from desktop_app.gui.widgets.charts import ChartBoard
from desktop_app.gui.widgets.config_form import ConfigForm
from desktop_app.gui.widgets.memory_plan import MemoryPlanLabel
from desktop_app.gui.widgets.panes import settings_column, side_by_side

CHARTS = [
    ("Reward-model score", [("objective/scores", "score"),
                            ("objective/rlhf_reward", "rlhf reward")]),
    ("KL to the reference", [("objective/kl", "KL")]),
    ("Losses", [("loss/policy", "policy"), ("loss/value", "value")]),
    ("Entropy", [("objective/entropy", "entropy")]),
    ("Clip fraction", [("policy/clipfrac", "policy")]),
    ("Response length", [("response/length_mean", "tokens")]),
]
SAMPLE_ROWS_KEPT = 60


class PPOPage(QWidget):
    training_started = Signal()    # a PPO run began: background generation pauses
    training_finished = Signal()
    policy_ready = Signal(str, str)   # base model folder, policy adapter folder
    # What RLOOPage changes.
    method = "PPO"
    kind = RunKind.PPO
    config_type = PPOConfig
    command = "train-ppo"
    charts_spec = CHARTS

    @staticmethod
    def train_fn():
        from desktop_app.ml.ppo.train import train_ppo
        return train_ppo

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.base_model: str | None = workspace.load_settings().get("last_model")

        self.reward_box = QComboBox()
        self.base_label = QLabel()
        self.base_label.setWordWrap(True)
        self.form = ConfigForm(self.config_type())
        self.start_button = QPushButton(f"Start {self.method}")
        self.start_button.clicked.connect(lambda: self.start())
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self.resume_last)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: self.run.cancel())
        self.use_button = QPushButton("Generate new pairs with this policy")
        self.use_button.setToolTip("Load the tuned policy on the Judge page, so your next "
                                   "judgments compare its responses (the next round).")
        self.use_button.clicked.connect(self._use_policy)
        self.plan_label = MemoryPlanLabel(self._plan_job, self.method)
        self.form.changed.connect(self.plan_label.refresh)
        self.reward_box.currentIndexChanged.connect(self.plan_label.refresh)
        self.gpus = GpuChoice()
        left = settings_column(
            [QLabel("<b>Reward model</b>"), self.reward_box, self.base_label], self.form,
            [(self.start_button, 2), (self.resume_button, 1), (self.cancel_button, 1)],
            [self.gpus, self.plan_label, self.use_button])

        self.charts = ChartBoard(self.charts_spec, columns=3)
        self.run = training_controller(
            self, f"No {self.method} run yet.", self._completed_text, self._progress_details,
            self.charts, Checkpoints(store, workspace.runs_dir, self.kind))
        self.run.event.connect(self._on_event)
        self.samples = QTableWidget(0, 5)
        self.samples.setHorizontalHeaderLabels(["Step", "Prompt", "Response", "Score", "KL"])
        self.samples.verticalHeader().hide()
        self.samples.setWordWrap(True)
        header = self.samples.horizontalHeader()
        for col in (0, 3, 4):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        right_split = QSplitter()
        right_split.setOrientation(right_split.orientation().Vertical)
        right_split.addWidget(self.charts)
        right_split.addWidget(self.samples)
        right_split.setStretchFactor(0, 2)
        right_split.setStretchFactor(1, 1)
        right_split.setChildrenCollapsible(False)
        # Two rows of charts over a table of several samples, not a sliver of two rows.
        right_split.setSizes([440, 220])
        self.samples.setMinimumHeight(130)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.run.progress)
        rv.addWidget(self.run.status)
        rv.addWidget(right_split, 1)

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
        """The page is shown: runs may have changed elsewhere."""
        self.refresh()
        self.gpus.refresh()

    def refresh(self) -> None:
        current = self.reward_box.currentData()
        self.reward_box.clear()
        for run in reversed(self.store.finished_runs(RunKind.REWARD)):
            acc = self.store.final_metrics(run.id).get("eval/accuracy")
            self.reward_box.addItem(
                f"#{run.id} · {Path(run.config.get('base_model', '')).name}"
                + (f" · val acc {acc:.2f}" if acc is not None else ""), run.id)
        if not self.reward_box.count():
            self.reward_box.addItem("Train a reward model first", None)
        elif current is not None and self.reward_box.findData(current) >= 0:
            self.reward_box.setCurrentIndex(self.reward_box.findData(current))
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.run.running
        ready = self.reward_box.currentData() is not None and bool(self.base_model)
        self.start_button.setEnabled(ready and not running)
        self.cancel_button.setEnabled(running)
        resumable = self.run.resumable_run()
        self.resume_button.setEnabled(resumable is not None and not running)
        self.resume_button.setText(f"Resume #{resumable.id}" if resumable else "Resume")
        last = self.run.last_result
        self.use_button.setEnabled(not running and last is not None
                                   and last.status == RunStatus.COMPLETED)

    def _plan_job(self):
        """The memory plan's job: this form's settings, the base model, the reward model's
        rank and the workspace's prompts."""
        from desktop_app.ml.planning.plan import Job, prompt_tokens
        reward = self.reward_box.currentData()
        if not self.base_model or reward is None:
            return None
        run = self.store.get_run(reward)
        return Job(self.command, self.base_model, self.form.value(),
                   prompt_tokens=prompt_tokens(self.store, self.base_model),
                   reward_rank=int(run.config.get("lora_r") or 16) if run else None)

    # -- running -----------------------------------------------------------------------------

    def start(self, resume_run_id: int | None = None) -> None:
        from desktop_app.core.jobs.torchrun import config_options
        from desktop_app.ml.ppo.train import PPOResult
        train_fn = self.train_fn()
        if self.run.running:
            return
        cfg, base, reward = self.form.value(), self.base_model, self.reward_box.currentData()
        if resume_run_id is None and not self.plan_label.confirm_start(self):
            return
        workspace = self.workspace

        def work(emit, stop):
            return train_fn(workspace, cfg, base_model=base, reward_run_id=reward,
                            resume_run_id=resume_run_id, emit=emit, stop=stop)

        work = on_gpus(work, self.gpus.count(), workspace, self.command, kind=self.kind,
                       result_type=PPOResult, resume_run_id=resume_run_id,
                       options=lambda: config_options(cfg) + ["--model", base,
                                                              "--reward", str(reward)])

        self.charts.clear()
        if resume_run_id is not None:
            for point in self.store.metrics(resume_run_id):
                self.charts.add_point(point["name"], point["step"], point["value"])
        self.samples.setRowCount(0)
        self.run.launch(work, self.command,
                        "Loading the base model, the reward model and the adapters…")

    def resume_last(self) -> None:
        run = self.run.resumable_run()
        if run is not None:
            self.start(resume_run_id=run.id)

    def _progress_details(self, extra: dict) -> list[str]:
        parts = []
        if "score" in extra:
            parts.append(f"score {extra['score']:+.3f}   KL {extra['kl']:.3f}")
        if "generation_s" in extra:
            parts.append(f"time: generate {extra['generation_s']:.1f} s · score "
                         f"{extra['scoring_s']:.1f} s · optimise {extra['optimization_s']:.1f} s")
        return parts

    def _on_event(self, event) -> None:
        if isinstance(event, (Progress, Log, Metric)):
            return  # the controller shows these
        from desktop_app.ml.ppo.train import Samples
        if isinstance(event, Samples):
            self._add_samples(event)

    def _add_samples(self, event) -> None:
        for row in event.rows:
            self.samples.insertRow(0)
            values = [str(event.step), row["prompt"], row["response"], f"{row['score']:+.2f}",
                      f"{row['kl']:.2f}"]
            for col, value in enumerate(values):
                item = QTableWidgetItem(value[:400])
                item.setToolTip(value[:3000])
                self.samples.setItem(0, col, item)
        while self.samples.rowCount() > SAMPLE_ROWS_KEPT:
            self.samples.removeRow(self.samples.rowCount() - 1)

    def _completed_text(self, result) -> str:
        first = f"{result.score_first:+.3f}" if result.score_first is not None else "–"
        last = f"{result.score_last:+.3f}" if result.score_last is not None else "–"
        return f"score {first} → {last}, KL {result.kl:.3f}. Policy saved to {result.artifact}"

    def _use_policy(self) -> None:
        last = self.run.last_result
        run = self.store.get_run(last.run_id) if last else None
        if run and run.artifact:
            self.policy_ready.emit(run.config.get("base_model", self.base_model), run.artifact)

    def shutdown(self) -> None:
        """At application exit: the run saves its checkpoint first."""
        self.run.shutdown()
