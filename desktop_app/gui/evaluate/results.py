"""The Evaluate page's Results pane: one evaluation's verdicts, by the person and by the reward
model, the reward-hacking warning, the win-rate chart, and adding its judgments to training.

Kept apart from the page because it reads one evaluation and knows nothing of the others: the
page picks which evaluation to show (``show_run``) and listens for ``resume_requested`` and
``added_to_training``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QVBoxLayout, QWidget

from desktop_app.core.data.store import Store
from desktop_app.core.evaluation.results import EvalSummary, eval_summary
from desktop_app.core.runs.record import RunStatus
from desktop_app.gui.widgets.charts import PALETTE  # noqa: F401 - also sets pyqtgraph's light theme, as on every chart

HUMAN_COLOUR, RM_COLOUR = "#2563eb", "#ea580c"


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
        notes = run.config.get("warnings", []) if has else []  # what the job warned of
        self.job_warnings.setText("\n".join(f"⚠  {text}" for text in notes))
        self.job_warnings.setVisible(bool(notes))
        if not has:
            self.summary = None
            self.title.setText("Pick an evaluation on the left, or start one under "
                               "“New evaluation”.")
            return
        s = self.summary = eval_summary(self.store, run)
        config = run.config
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

        if s.status == RunStatus.JUDGING and s.pending:
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
                f"{s.human.counts(' · ')} (n = {s.human.n})")
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
        hidden = s.status == RunStatus.JUDGING and s.pending
        self.chart.set_results(None if hidden else s.human, s.automatic, bool(hidden))
        self.resume_button.setVisible(s.status == RunStatus.JUDGING and s.pending > 0)
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
