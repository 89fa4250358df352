"""The Evaluate page's "New evaluation" tab: the form that says what to compare, on which
prompts and judged by whom, and the background job that runs it.

``EvalSetup`` is a widget of its own: the page builds it (``EvalSetup(workspace, store,
base_model)``), calls ``refresh()`` when runs may have changed and ``set_base_model()`` when
another model is loaded, and follows the evaluation through ``run`` (a ``RunController``): its
``started``/``finished`` signals and ``result`` (the outcome, where the page shows it).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.config import EvalConfig
from desktop_app.core.data.store import Store
from desktop_app.core.runs.record import POLICY_KINDS, Run, RunKind, RunStatus
from desktop_app.core.workspace import Workspace
from desktop_app.gui.prompts_page import FILE_FILTER
from desktop_app.gui.training.controller import RunController
from desktop_app.gui.widgets.config_form import ConfigForm
from desktop_app.gui.widgets.memory_plan import MemoryPlanLabel


def policy_label(run: Run) -> str:
    return run.policy_label


class EvalSetup(QScrollArea):
    def __init__(self, workspace: Workspace, store: Store, base_model: str | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.base_model = base_model
        self.prompt_file: str | None = None
        self.run = RunController(
            self, "No evaluation running.", self._outcome_text,
            stopping_text="Stopping… (nothing is stored for a cancelled evaluation)",
            step_format="%v / %m", warnings=True)
        self.run.started.connect(self._update_buttons)
        self.run.failed.connect(self._on_failed)
        self._build()
        self.set_base_model(base_model)

    # -- building ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.a_box, self.b_box = QComboBox(), QComboBox()
        self.held_radio = QRadioButton("Held-out prompts")
        self.file_radio = QRadioButton("From file…")
        self.held_radio.setChecked(True)
        self.file_radio.clicked.connect(lambda: self.choose_prompt_file())
        self.file_label = QLabel("")
        self.file_label.setObjectName("hint")
        self.human_radio = QRadioButton("Blind, by me (plus the reward model on the same "
                                        "responses)")
        self.auto_radio = QRadioButton("Reward model only")
        self.human_radio.setChecked(True)
        for group in ((self.held_radio, self.file_radio), (self.human_radio, self.auto_radio)):
            buttons = QButtonGroup(self)
            for radio in group:
                buttons.addButton(radio)
                radio.toggled.connect(lambda _: self._update_buttons())
        self.reward_box = QComboBox()
        self.form = ConfigForm(EvalConfig())
        self.form.setVisible(False)
        self.form.changed.connect(self._update_prompt_label)
        self.settings_toggle = QToolButton()
        self.settings_toggle.setText("Sampling settings")
        self.settings_toggle.setCheckable(True)
        self.settings_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.settings_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.settings_toggle.toggled.connect(self._toggle_settings)
        self.a_box.currentIndexChanged.connect(lambda _: self._update_buttons())
        self.b_box.currentIndexChanged.connect(lambda _: self._update_buttons())
        self.reward_box.currentIndexChanged.connect(lambda _: self._update_buttons())

        self.base_label = QLabel()
        self.base_label.setObjectName("hint")
        self.base_label.setWordWrap(True)
        self.start_button = QPushButton("Start evaluation")
        self.start_button.setObjectName("primary")
        self.start_button.clicked.connect(lambda: self.start())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.hint = QLabel("")
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        self.plan_label = MemoryPlanLabel(self._plan_job, "The evaluation")
        self.form.changed.connect(self.plan_label.refresh)

        policies = QGroupBox("What to compare")
        pf = QFormLayout(policies)
        pf.addRow("Policy A", self.a_box)
        pf.addRow("Policy B", self.b_box)
        pf.addRow(self.base_label)
        prompts = QGroupBox("Prompts")
        pv = QVBoxLayout(prompts)
        pv.addWidget(self.held_radio)
        pv.addWidget(self.file_radio)
        pv.addWidget(self.file_label)
        judge = QGroupBox("Judge")
        jv = QFormLayout(judge)
        jv.addRow(self.human_radio)
        jv.addRow(self.auto_radio)
        jv.addRow("Reward model", self.reward_box)
        row = QHBoxLayout()
        row.addWidget(self.start_button, 2)
        row.addWidget(self.cancel_button, 1)

        column = QWidget()
        column.setMaximumWidth(640)
        v = QVBoxLayout(column)
        v.addWidget(QLabel("Compare two policies on prompts that were never trained on. Both "
                           "write one response per prompt with the same seed; you judge the "
                           "pairs without knowing which policy wrote which, and a reward model "
                           "judges the same responses."))
        v.itemAt(0).widget().setWordWrap(True)
        v.addWidget(policies)
        v.addWidget(prompts)
        v.addWidget(judge)
        v.addLayout(row)
        v.addWidget(self.plan_label)
        v.addWidget(self.hint)
        v.addWidget(self.run.progress)
        v.addWidget(self.run.status)
        v.addWidget(self.run.warnings)
        v.addWidget(self.settings_toggle)
        v.addWidget(self.form)
        v.addStretch(1)
        page = QWidget()
        outer = QHBoxLayout(page)
        outer.addWidget(column, 1)
        outer.addStretch(0)
        self.setWidget(page)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)

    # -- state -------------------------------------------------------------------------------

    def set_base_model(self, path: str | None) -> None:
        self.base_model = path
        self.base_label.setText(
            f"Base model: {Path(path).name}" if path else
            "Base model: none loaded (the policy runs' own base model is used).")

    def refresh(self) -> None:
        """Offer the completed policy runs (PPO, DPO) as policies and the completed reward runs
        as judges, keeping what was picked while it is still offered."""
        ppo = self.store.finished_runs(POLICY_KINDS)[::-1]   # newest first
        rewards = self.store.finished_runs(RunKind.REWARD)[::-1]
        for box, default in ((self.a_box, ppo[0].id if ppo else None), (self.b_box, None)):
            current = box.currentData() if box.count() > 1 else default
            box.blockSignals(True)
            box.clear()
            box.addItem("Base model", None)
            for run in ppo:
                box.addItem(policy_label(run), run.id)
            index = box.findData(current)
            box.setCurrentIndex(index if index >= 0 else max(0, box.findData(default)))
            box.blockSignals(False)
        current = self.reward_box.currentData()
        self.reward_box.blockSignals(True)
        self.reward_box.clear()
        for run in rewards:
            acc = self.store.final_metrics(run.id).get("eval/accuracy")
            self.reward_box.addItem(f"Reward run {run.id}" + (
                f" (validation accuracy {acc:.0%})" if acc is not None else ""), run.id)
        if not rewards:
            self.reward_box.addItem("None: train a reward model first", None)
        elif self.reward_box.findData(current) >= 0:
            self.reward_box.setCurrentIndex(self.reward_box.findData(current))
        self.reward_box.blockSignals(False)
        self._update_prompt_label()

    def _update_prompt_label(self) -> None:
        held = len(self.store.held_out_prompts())
        limit = self.form.value().max_prompts
        used = f", {limit} used (max prompts)" if held > limit else ""
        self.held_radio.setText(f"Held-out prompts ({held}{used})")
        name = Path(self.prompt_file).name if self.prompt_file else "no file chosen"
        self.file_label.setText(f"File: {name} (its prompts are added as held out)"
                                if self.prompt_file else "")
        self.file_label.setVisible(bool(self.prompt_file))
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.plan_label.refresh()
        running = self.run.running
        a, b = self.a_box.currentData(), self.b_box.currentData()
        human = self.human_radio.isChecked()
        reward = self.reward_box.currentData()
        problem = ""
        if self.a_box.count() <= 1:
            problem = "Tune a policy with PPO first: there is only the base model to compare."
        elif a == b:
            problem = "Pick two different policies."
        elif not human and reward is None:
            problem = "“Reward model only” needs a trained reward model."
        elif self.file_radio.isChecked() and not self.prompt_file:
            problem = "Choose a prompts file."
        elif self.held_radio.isChecked() and not self.store.held_out_prompts():
            problem = ("No held-out prompts yet: hold some out on the Prompts page (select → "
                       "Hold out for evaluation), or use a file.")
        self.hint.setText(problem)
        self.hint.setVisible(bool(problem))
        self.start_button.setEnabled(not problem and not running)
        self.cancel_button.setEnabled(running)
        self.reward_box.setEnabled(reward is not None or self.reward_box.count() > 1)

    def _toggle_settings(self, shown: bool) -> None:
        self.form.setVisible(shown)
        self.settings_toggle.setArrowType(Qt.ArrowType.DownArrow if shown
                                          else Qt.ArrowType.RightArrow)

    def choose_prompt_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Prompts to evaluate on", "", FILE_FILTER)
        if path:
            self.prompt_file = path
        elif not self.prompt_file:
            self.held_radio.setChecked(True)
        self._update_prompt_label()

    # -- running an evaluation ---------------------------------------------------------------

    def start(self) -> None:
        from desktop_app.ml.evaluation.run import resolve_policy, run_evaluation
        if self.run.running or not self.start_button.isEnabled():
            return
        a_id, b_id = self.a_box.currentData(), self.b_box.currentData()
        human, reward = self.human_radio.isChecked(), self.reward_box.currentData()
        prompt_file = self.prompt_file if self.file_radio.isChecked() else None
        cfg, workspace = self.form.value(), self.workspace
        # PPO policies carry their own base model; one given here would have to match it.
        base = self.base_model if a_id is None and b_id is None else None
        if not self.plan_label.confirm_start(self):
            return

        def work(emit, stop):
            with Store(workspace.db_path) as store:   # this thread's own connection
                return run_evaluation(
                    workspace, store, cfg, a=resolve_policy(store, a_id),
                    b=resolve_policy(store, b_id), base_model=base, human=human,
                    reward_run_id=reward, automatic=reward is not None,
                    prompt_file=prompt_file, emit=emit, stop=stop)

        self.run.launch(work, "evaluate", "Loading the policies…")

    def cancel(self) -> None:
        self.run.cancel()

    def _plan_job(self):
        """The memory plan's job: the policies' base model, these settings, the reward model."""
        from desktop_app.ml.planning.plan import Job, prompt_tokens
        base = self.base_model
        for run_id in (self.a_box.currentData(), self.b_box.currentData()):
            run = self.store.get_run(run_id) if run_id is not None else None
            if run is not None and run.config.get("base_model"):
                base = run.config["base_model"]
        if not base:
            return None
        reward = self.reward_box.currentData()
        reward_run = self.store.get_run(reward) if reward is not None else None
        return Job("evaluate", base, self.form.value(),
                   prompt_tokens=prompt_tokens(self.store, base),
                   reward_rank=int(reward_run.config.get("lora_r") or 16) if reward_run
                   else None)

    @staticmethod
    def _outcome_text(outcome, seconds: float) -> str:
        if outcome.status == RunStatus.CANCELLED:
            return f"Evaluation #{outcome.run_id} cancelled; nothing was stored."
        if outcome.status == RunStatus.JUDGING:
            return (f"Evaluation #{outcome.run_id}: {outcome.pairs} blind pairs are ready to "
                    "judge.")
        return f"Evaluation #{outcome.run_id} is complete."

    def _on_failed(self, message: str) -> None:
        QMessageBox.warning(self, "Evaluation failed", message)
