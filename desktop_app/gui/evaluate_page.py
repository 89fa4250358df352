"""Evaluate: compare two policies on held-out prompts, blind by the person and by a reward
model on the same responses; see the verdicts and how each round of feedback moved them.

Tabs: New evaluation (``ml.evaluate.run_evaluation`` on a Job), Judge blind (``BlindView``),
Results (one evaluation's verdicts, chart, and adding its judgments to the training data),
Rounds (``RoundsView``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QMessageBox, QProgressBar,
                               QPushButton, QRadioButton, QScrollArea, QSplitter, QTableWidget,
                               QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from ..core.config import EvalConfig
from ..core.eval_runs import EvalSummary, eval_summary
from ..core.events import Log, Progress
from ..core.store import Store
from ..core.workspace import Workspace
from .blind_view import BlindView
from .charts import PALETTE  # noqa: F401 - also sets pyqtgraph's light theme, as on every chart
from .config_form import ConfigForm
from .jobs import Job
from .prompts_page import FILE_FILTER
from .rounds_view import RoundsView

PAGE_STYLE = """
#evalWarning { background: #fdecea; border: 1px solid #e57373; border-radius: 4px;
               color: #7f1d1d; padding: 8px; }
#runWarnings { background: #fff4ce; border: 1px solid #e6c44f; border-radius: 4px; padding: 6px; }
#verdict { background: white; border: 1px solid #d0d4dc; border-radius: 6px; padding: 8px; }
#resultTitle { font-size: 12pt; font-weight: bold; color: #1f2937; }
#hint, #blindExplain, #roundsExplain { color: #4b5563; }
"""
HUMAN_COLOUR, RM_COLOUR = "#2563eb", "#ea580c"
EVAL_COLUMNS = ("#", "Policy A vs policy B", "Judged by", "Status", "You: A over B",
                "Reward model: A over B")


def policy_label(run: dict) -> str:
    return f"PPO run {run['id']} (reward run {run['parent_run_id']})"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


class WinRateChart(pg.PlotWidget):
    """The person's and the reward model's win rate of A over B as points with 95% intervals,
    on a 0–100% axis with a dashed line at 50% (no difference)."""

    ROWS = ((1, "You", HUMAN_COLOUR), (0, "Reward model", RM_COLOUR))

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="w")
        self.setObjectName("winRateChart")
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.setMinimumHeight(170)
        self.setMaximumHeight(230)
        plot = self.getPlotItem()
        plot.showGrid(x=True, y=False, alpha=0.25)
        plot.setXRange(0, 1, padding=0.02)
        plot.setYRange(-0.6, 1.6, padding=0)
        plot.setLabel("bottom", "win rate of A over B (ties count half), with 95% interval")
        plot.getAxis("bottom").setTicks([[(x / 4, f"{x * 25}%") for x in range(5)]])
        plot.getAxis("left").setTicks([[(y, name) for y, name, _ in self.ROWS]])
        plot.getAxis("left").setWidth(100)
        plot.addItem(pg.InfiniteLine(0.5, angle=90, pen=pg.mkPen("#6b7280", width=1.5,
                                                                  style=Qt.PenStyle.DashLine)))
        self.items: list = []

    def set_results(self, human, automatic, human_hidden: bool = False) -> None:
        """``human``/``automatic``: WinRate or None (that row says why it is empty)."""
        plot = self.getPlotItem()
        for item in self.items:
            plot.removeItem(item)
        self.items = []
        for (y, _, colour), result in zip(self.ROWS, (human, automatic)):
            if result is None or result.win_rate is None:
                why = "hidden until you finish judging" if human_hidden and y == 1 else (
                    "no verdict")
                text = pg.TextItem(why, color="#6b7280", anchor=(0.5, 0.5),
                                   fill=pg.mkBrush("#ffffff"))
                text.setPos(0.5, y)
                self.items.append(text)
                continue
            p = result.win_rate
            bars = pg.ErrorBarItem(x=np.array([p]), y=np.array([float(y)]),
                                   left=np.array([p - result.ci_low]),
                                   right=np.array([result.ci_high - p]), beam=0.18,
                                   pen=pg.mkPen(colour, width=2.5))
            point = pg.ScatterPlotItem([p], [y], size=13, brush=pg.mkBrush(colour),
                                       pen=pg.mkPen("white", width=1.5))
            label = pg.TextItem(f"{p:.0%}  (n = {result.n})", color=colour, anchor=(0.5, 1.25))
            label.setPos(p, y)
            self.items += [bars, point, label]
        for item in self.items:
            plot.addItem(item)


class ResultsPane(QWidget):
    """One evaluation's verdicts: the person's, the reward model's, the warning, the chart."""

    resume_requested = Signal(int)
    added_to_training = Signal(int)

    def __init__(self, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.summary: EvalSummary | None = None
        self.run_warnings: dict[int, list[str]] = {}   # what each evaluation job warned of
        self.title = QLabel("Pick an evaluation on the left.")
        self.title.setObjectName("resultTitle")
        self.title.setWordWrap(True)
        self.details = QLabel("")
        self.details.setObjectName("hint")
        self.details.setWordWrap(True)
        self.human_label = QLabel("")
        self.rm_label = QLabel("")
        for label in (self.human_label, self.rm_label):
            label.setObjectName("verdict")
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.warning = QLabel("")
        self.warning.setObjectName("evalWarning")
        self.warning.setWordWrap(True)
        self.job_warnings = QLabel("")
        self.job_warnings.setObjectName("runWarnings")
        self.job_warnings.setWordWrap(True)
        self.chart = WinRateChart()
        self.resume_button = QPushButton("Resume judging")
        self.resume_button.clicked.connect(
            lambda: self.summary and self.resume_requested.emit(self.summary.run_id))
        self.add_button = QPushButton("Add these judgments to the training data…")
        self.add_button.setToolTip("By default, blind-evaluation judgments are kept apart from "
                                   "the training data.")
        self.add_button.clicked.connect(lambda: self.add_to_training())
        self.training_note = QLabel("")
        self.training_note.setObjectName("hint")
        self.training_note.setWordWrap(True)

        verdicts = QHBoxLayout()
        verdicts.addWidget(self.human_label, 1)
        verdicts.addWidget(self.rm_label, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.details)
        layout.addLayout(verdicts)
        layout.addWidget(self.warning)
        layout.addWidget(self.job_warnings)
        layout.addWidget(self.chart)
        layout.addLayout(buttons)
        layout.addWidget(self.training_note)
        layout.addStretch(1)
        self.show_run(None)

    def show_run(self, run_id: int | None) -> None:
        run = self.store.get_run(run_id) if run_id is not None else None
        has = run is not None
        for widget in (self.details, self.human_label, self.rm_label, self.chart,
                       self.resume_button, self.add_button, self.training_note):
            widget.setVisible(has)
        self.warning.hide()
        notes = self.run_warnings.get(run_id, []) if has else []
        self.job_warnings.setText("\n".join(f"⚠  {text}" for text in notes))
        self.job_warnings.setVisible(bool(notes))
        if not has:
            self.summary = None
            self.title.setText("Pick an evaluation on the left, or start one under "
                               "“New evaluation”.")
            return
        s = self.summary = eval_summary(self.store, run)
        config = run["config"]
        a, b = s.a.get("label", "A"), s.b.get("label", "B")
        self.title.setText(f"Evaluation #{s.run_id}:  A = {a}   vs   B = {b}")
        blind = config.get("mode") == "human"
        tally = self.store.eval_tally(s.run_id)
        total = sum(tally.values())
        judged = total - tally["pending"]
        parts = [f"{config.get('prompts', '?')} prompts ({config.get('prompt_source', '?')})",
                 "judged blind by you and by a reward model" if blind and s.automatic
                 else "judged blind by you" if blind else "judged by a reward model only",
                 f"status: {s.status}"]
        if blind:
            parts.append(f"{judged} of {total} pairs judged"
                         + (f" ({tally['skip']} skipped)" if tally["skip"] else ""))
        self.details.setText("   ·   ".join(parts))

        if s.status == "judging" and s.pending:
            # Watching the verdict move after each judgment would tell which side was A.
            self.human_label.setText(
                f"<span style='color:{HUMAN_COLOUR}'><b>You</b></span><br>hidden until you "
                "finish judging: seeing it move after each judgment would tell you which "
                "response was A's")
        elif s.human is not None:
            self.human_label.setText(
                f"<span style='color:{HUMAN_COLOUR}'><b>You</b></span><br>"
                f"<span style='font-size:16pt'><b>{s.human.win_rate:.0%}</b></span> "
                f"A over B<br>95% CI {s.human.ci_low:.0%}–{s.human.ci_high:.0%}<br>"
                f"{s.human.wins} wins · {s.human.losses} losses · {s.human.ties} ties "
                f"(n = {s.human.n})")
        else:
            self.human_label.setText(f"<span style='color:{HUMAN_COLOUR}'><b>You</b></span><br>"
                                     + ("no judged pairs yet" if blind else "not judged blind"))
        metrics = self.store.final_metrics(s.run_id)
        if s.automatic is not None:
            extra = ""
            if "eval/rm_reward_a" in metrics:
                extra = (f"<br>mean reward A {metrics['eval/rm_reward_a']:+.2f} · "
                         f"B {metrics['eval/rm_reward_b']:+.2f}<br>mean length A "
                         f"{metrics.get('eval/length_a', 0):.0f} · B "
                         f"{metrics.get('eval/length_b', 0):.0f} characters")
            self.rm_label.setText(
                f"<span style='color:{RM_COLOUR}'><b>Reward model</b> (run "
                f"#{config.get('reward_run_id')}, same responses)</span><br>"
                f"<span style='font-size:16pt'><b>{s.automatic.win_rate:.0%}</b></span> "
                f"A over B<br>95% CI {s.automatic.ci_low:.0%}–{s.automatic.ci_high:.0%} "
                f"(n = {s.automatic.n}){extra}")
        else:
            self.rm_label.setText(f"<span style='color:{RM_COLOUR}'><b>Reward model</b></span>"
                                  "<br>no reward model judged this evaluation")
        warning = s.warning
        self.warning.setText(f"⚠  Possible reward hacking. {warning}" if warning else "")
        self.warning.setVisible(bool(warning))
        hidden = s.status == "judging" and s.pending
        self.chart.set_results(None if hidden else s.human, s.automatic, bool(hidden))
        self.resume_button.setVisible(s.status == "judging" and s.pending > 0)
        added = self.training_count(s.run_id)
        judged_usable = tally["a"] + tally["b"] + tally["tie"]
        self.add_button.setVisible(blind)
        self.add_button.setEnabled(judged_usable > added and not hidden)
        self.training_note.setVisible(blind)
        self.training_note.setText(
            f"{added} of these judgments are in the training data; their prompts are no longer "
            "held out." if added else
            "These judgments are kept apart from the training data, so the prompts stay held "
            "out for later evaluations.")

    def training_count(self, run_id: int) -> int:
        return self.store.db.execute(
            "SELECT COUNT(*) FROM comparisons WHERE eval_run_id = ? AND training = 1",
            [run_id]).fetchone()[0]

    def add_to_training(self, confirm: bool = True) -> int:
        s = self.summary
        if s is None:
            return 0
        tally = self.store.eval_tally(s.run_id)
        usable = tally["a"] + tally["b"] + tally["tie"] - self.training_count(s.run_id)
        if confirm and QMessageBox.question(
                self, "Add to the training data?",
                f"Add {usable} judgment(s) of evaluation #{s.run_id} to the training data?\n\n"
                "Reward models trained from now on learn from them. Their prompts stop being "
                "held out: a prompt the reward model was trained on can no longer measure a "
                "policy fairly, so later evaluations will not use them.\n\nBy default, "
                "evaluation judgments are kept apart.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return 0
        added = self.store.add_eval_to_training(s.run_id)
        self.show_run(s.run_id)
        self.added_to_training.emit(added)
        return added


class EvaluatePage(QWidget):
    training_started = Signal()    # an evaluation is generating: background generation pauses
    training_finished = Signal()
    next_round_requested = Signal(str, str)   # base model folder, policy adapter folder
    prompts_changed = Signal()     # held-out status changed (judgments added to training)

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.base_model: str | None = workspace.load_settings().get("last_model")
        self.job: Job | None = None
        self.last_outcome = None
        self.prompt_file: str | None = None
        self.setStyleSheet(PAGE_STYLE)

        self.blind = BlindView(store)
        self.blind.judged.connect(lambda _: self._refresh_results())
        self.blind.finished.connect(self._on_blind_finished)
        self.results = ResultsPane(store)
        self.results.resume_requested.connect(self.resume_judging)
        self.results.added_to_training.connect(lambda _: self._after_training_change())
        self.rounds = RoundsView(store)
        self.rounds.next_round_requested.connect(self.next_round_requested)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_setup(), "New evaluation")
        self.tabs.addTab(self.blind, "Judge blind")
        self.tabs.addTab(self._build_results(), "Results")
        self.tabs.addTab(self.rounds, "Rounds")
        self.tabs.currentChanged.connect(self._on_tab)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.set_base_model(self.base_model)
        self.refresh()

    # -- building ----------------------------------------------------------------------------

    def _build_setup(self) -> QWidget:
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
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress_label = QLabel("No evaluation running.")
        self.progress_label.setWordWrap(True)
        self.warnings_label = QLabel("")
        self.warnings_label.setObjectName("runWarnings")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.hide()

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
        v.addWidget(self.hint)
        v.addWidget(self.progress)
        v.addWidget(self.progress_label)
        v.addWidget(self.warnings_label)
        v.addWidget(self.settings_toggle)
        v.addWidget(self.form)
        v.addStretch(1)
        page = QWidget()
        outer = QHBoxLayout(page)
        outer.addWidget(column, 1)
        outer.addStretch(0)
        scroll = QScrollArea()
        scroll.setWidget(page)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        return scroll

    def _build_results(self) -> QWidget:
        self.eval_table = QTableWidget(0, len(EVAL_COLUMNS))
        self.eval_table.setObjectName("evalTable")
        self.eval_table.setHorizontalHeaderLabels(EVAL_COLUMNS)
        self.eval_table.verticalHeader().hide()
        self.eval_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.eval_table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.eval_table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        header = self.eval_table.horizontalHeader()
        for col in range(len(EVAL_COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.eval_table.itemSelectionChanged.connect(
            lambda: self.results.show_run(self.selected_eval()))
        self.eval_table.doubleClicked.connect(lambda _: self._resume_selected())
        scroll = QScrollArea()
        scroll.setWidget(self.results)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.eval_table)
        split.addWidget(scroll)
        split.setSizes([150, 600])
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setChildrenCollapsible(False)
        self.eval_table.setMinimumHeight(110)
        return split

    # -- state -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def set_base_model(self, path: str | None) -> None:
        self.base_model = path
        self.base_label.setText(
            f"Base model: {Path(path).name}" if path else
            "Base model: none loaded (the PPO runs' own base model is used).")

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        runs = self.store.list_runs()
        ppo = [r for r in reversed(runs) if r["kind"] == "ppo" and r["status"] == "completed"
               and r["artifact"]]
        rewards = [r for r in reversed(runs) if r["kind"] == "reward"
                   and r["status"] == "completed" and r["artifact"]]
        for box, default in ((self.a_box, ppo[0]["id"] if ppo else None), (self.b_box, None)):
            current = box.currentData() if box.count() > 1 else default
            box.blockSignals(True)
            box.clear()
            box.addItem("Base model", None)
            for run in ppo:
                box.addItem(policy_label(run), run["id"])
            index = box.findData(current)
            box.setCurrentIndex(index if index >= 0 else max(0, box.findData(default)))
            box.blockSignals(False)
        current = self.reward_box.currentData()
        self.reward_box.blockSignals(True)
        self.reward_box.clear()
        for run in rewards:
            acc = self.store.final_metrics(run["id"]).get("eval/accuracy")
            self.reward_box.addItem(f"Reward run {run['id']}" + (
                f" (validation accuracy {acc:.0%})" if acc is not None else ""), run["id"])
        if not rewards:
            self.reward_box.addItem("None: train a reward model first", None)
        elif self.reward_box.findData(current) >= 0:
            self.reward_box.setCurrentIndex(self.reward_box.findData(current))
        self.reward_box.blockSignals(False)
        self._update_prompt_label()
        self.refresh_evaluations()
        self.blind.refresh()
        self.rounds.refresh()
        self._update_buttons()

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

    def refresh_evaluations(self) -> None:
        selected = self.selected_eval()
        evals = [r for r in reversed(self.store.list_runs()) if r["kind"] == "eval"]
        self.eval_table.blockSignals(True)
        self.eval_table.setRowCount(len(evals))
        for i, run in enumerate(evals):
            s = eval_summary(self.store, run)
            judge = "blind + RM" if run["config"].get("mode") == "human" and s.automatic else (
                "blind" if run["config"].get("mode") == "human" else "reward model")
            status = run["status"] + (f" ({s.pending} left)" if s.status == "judging" else "")
            hidden = s.status == "judging" and s.pending
            values = [str(run["id"]), f"{s.a.get('label', '?')} vs {s.b.get('label', '?')}",
                      judge, status,
                      "hidden" if hidden else _pct(s.human.win_rate if s.human else None),
                      _pct(s.automatic.win_rate if s.automatic else None)]
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, run["id"])
                if s.warning and col == 5:
                    item.setToolTip(s.warning)
                    item.setText(value + "  ⚠")
                self.eval_table.setItem(i, col, item)
        self.eval_table.blockSignals(False)
        ids = [r["id"] for r in evals]
        if selected in ids:
            self.eval_table.selectRow(ids.index(selected))
        elif ids:
            self.eval_table.selectRow(0)
        self.results.show_run(self.selected_eval())

    def selected_eval(self) -> int | None:
        rows = self.eval_table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.eval_table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def select_eval(self, run_id: int) -> None:
        for row in range(self.eval_table.rowCount()):
            if self.eval_table.item(row, 0).data(Qt.ItemDataRole.UserRole) == run_id:
                self.eval_table.selectRow(row)
                return

    def _refresh_results(self) -> None:
        self.refresh_evaluations()

    def _update_buttons(self) -> None:
        running = self.running
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

    def _on_tab(self, index: int) -> None:
        if self.tabs.widget(index) is self.blind:
            self.blind.refresh()
            self.blind.view.setFocus()
        elif self.tabs.widget(index) is self.rounds:
            self.rounds.refresh()

    # -- running an evaluation ---------------------------------------------------------------

    def start(self) -> None:
        from ..ml.evaluate import resolve_policy, run_evaluation
        if self.running or not self.start_button.isEnabled():
            return
        a_id, b_id = self.a_box.currentData(), self.b_box.currentData()
        human, reward = self.human_radio.isChecked(), self.reward_box.currentData()
        prompt_file = self.prompt_file if self.file_radio.isChecked() else None
        cfg, workspace = self.form.value(), self.workspace
        # PPO policies carry their own base model; one given here would have to match it.
        base = self.base_model if a_id is None and b_id is None else None

        def work(emit, stop):
            with Store(workspace.db_path) as store:   # this thread's own connection
                return run_evaluation(
                    workspace, store, cfg, a=resolve_policy(store, a_id),
                    b=resolve_policy(store, b_id), base_model=base, human=human,
                    reward_run_id=reward, automatic=reward is not None,
                    prompt_file=prompt_file, emit=emit, stop=stop)

        self.warnings_label.clear()
        self.warnings_label.hide()
        self.job = Job(work, self, name="evaluate")
        self.job.event.connect(self._on_event)
        self.job.succeeded.connect(self._on_result)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._on_finished)
        self.progress.setRange(0, 0)
        self.progress_label.setText("Loading the policies…")
        self.job.start()
        self._update_buttons()
        self.training_started.emit()

    def cancel(self) -> None:
        if self.running:
            self.job.cancel()
            self.progress_label.setText("Stopping… (nothing is stored for a cancelled "
                                        "evaluation)")

    def _on_event(self, event) -> None:
        if isinstance(event, Progress):
            if event.total:
                self.progress.setRange(0, event.total)
                self.progress.setValue(event.done)
                self.progress.setFormat("%v / %m")
            self.progress_label.setText(event.message)
        elif isinstance(event, Log):
            if event.level in ("warning", "error"):
                shown = self.warnings_label.text()
                self.warnings_label.setText((shown + "\n" if shown else "") + "⚠  "
                                            + event.message)
                self.warnings_label.show()
            else:
                self.progress_label.setText(event.message)

    def _on_result(self, outcome) -> None:
        self.last_outcome = outcome
        self.results.run_warnings[outcome.run_id] = list(outcome.warnings)
        if outcome.status == "cancelled":
            self.progress_label.setText(f"Evaluation #{outcome.run_id} cancelled; nothing was "
                                        "stored.")
            return
        self.refresh()
        if outcome.status == "judging":
            self.progress_label.setText(f"Evaluation #{outcome.run_id}: {outcome.pairs} blind "
                                        "pairs are ready to judge.")
            self.resume_judging(outcome.run_id)
        else:
            self.progress_label.setText(f"Evaluation #{outcome.run_id} is complete.")
            self.select_eval(outcome.run_id)
            self.tabs.setCurrentWidget(self.tabs.widget(2))

    def _on_failed(self, message: str) -> None:
        self.progress_label.setText(f"<span style='color:#b00020'>{message}</span>")
        QMessageBox.warning(self, "Evaluation failed", message)

    def _on_finished(self) -> None:
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.refresh()
        self.training_finished.emit()

    # -- judging and results -----------------------------------------------------------------

    def resume_judging(self, run_id: int) -> None:
        self.blind.open_run(run_id)
        self.tabs.setCurrentWidget(self.blind)
        self.blind.view.setFocus()

    def _resume_selected(self) -> None:
        run_id = self.selected_eval()
        run = self.store.get_run(run_id) if run_id is not None else None
        if run and run["status"] == "judging":
            self.resume_judging(run_id)

    def _on_blind_finished(self, run_id: int) -> None:
        self.refresh_evaluations()
        self.select_eval(run_id)
        self.tabs.setCurrentWidget(self.tabs.widget(2))

    def _after_training_change(self) -> None:
        self.refresh()
        self.prompts_changed.emit()

    def shutdown(self) -> None:
        if self.running:
            self.job.cancel()
            self.job.wait(120000)
