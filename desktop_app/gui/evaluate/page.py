"""Evaluate: compare two policies on held-out prompts, blind by the person and by a reward
model on the same responses; see the verdicts and how each round of feedback moved them.

Tabs: New evaluation (``ml.evaluation.run.run_evaluation`` on a Job), Judge blind (``BlindView``),
Results (one evaluation's verdicts, chart, and adding its judgments to the training data),
Rounds (``RoundsView``).

This module is the page itself: the tabs, the list of evaluations and moving between them.
The tabs' contents live beside it: ``eval_setup`` (the New evaluation form and its job, a
widget the page holds as ``setup`` and follows through its ``RunController``, ``setup.run``),
``eval_results`` (one evaluation's verdicts and win-rate chart), ``blind_view`` and
``rounds_view``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QHeaderView,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.data.store import Store
from desktop_app.core.evaluation.results import eval_summary
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.workspace import Workspace
from desktop_app.gui.evaluate.blind_view import BlindView
from desktop_app.gui.evaluate.results import ResultsPane
from desktop_app.gui.evaluate.rounds_view import RoundsView
from desktop_app.gui.evaluate.setup import EvalSetup

PAGE_STYLE = """
#evalWarning { background: #fdecea; border: 1px solid #e57373; border-radius: 4px;
               color: #7f1d1d; padding: 8px; }
#runWarnings { background: #fff4ce; border: 1px solid #e6c44f; border-radius: 4px; padding: 6px; }
#verdict { background: white; border: 1px solid #d0d4dc; border-radius: 6px; padding: 8px; }
#resultTitle { font-size: 12pt; font-weight: bold; color: #1f2937; }
#hint, #blindExplain, #roundsExplain { color: #4b5563; }
"""
EVAL_COLUMNS = ("#", "Policy A vs policy B", "Judged by", "Status", "You: A over B",
                "Reward model: A over B")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


class EvaluatePage(QWidget):
    training_started = Signal()    # an evaluation is generating: background generation pauses
    training_finished = Signal()
    next_round_requested = Signal(str, str)   # base model folder, policy adapter folder
    prompts_changed = Signal()     # held-out status changed (judgments added to training)

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.setStyleSheet(PAGE_STYLE)

        self.setup = EvalSetup(workspace, store, workspace.load_settings().get("last_model"))
        self.setup.run.started.connect(self.training_started)
        self.setup.run.result.connect(self._on_outcome)
        self.setup.run.finished.connect(self.refresh)
        self.setup.run.finished.connect(self.training_finished)

        self.blind = BlindView(store)
        self.blind.judged.connect(lambda _: self._refresh_results())
        self.blind.finished.connect(self._on_blind_finished)
        self.results = ResultsPane(store)
        self.results.resume_requested.connect(self.resume_judging)
        self.results.added_to_training.connect(lambda _: self._after_training_change())
        self.rounds = RoundsView(store)
        self.rounds.next_round_requested.connect(self.next_round_requested)

        self.tabs = QTabWidget()
        self.tabs.addTab(self.setup, "New evaluation")
        self.tabs.addTab(self.blind, "Judge blind")
        self.tabs.addTab(self._build_results(), "Results")
        self.tabs.addTab(self.rounds, "Rounds")
        self.tabs.currentChanged.connect(self._on_tab)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.refresh()

    # -- building ----------------------------------------------------------------------------

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

    # -- refreshing and the list of evaluations ---------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    def set_base_model(self, path: str | None) -> None:
        self.setup.set_base_model(path)

    def refresh(self) -> None:
        self.setup.refresh()
        self.refresh_evaluations()
        self.blind.refresh()
        self.rounds.refresh()

    def refresh_evaluations(self) -> None:
        selected = self.selected_eval()
        evals = [r for r in reversed(self.store.list_runs()) if r.kind == RunKind.EVAL]
        self.eval_table.blockSignals(True)
        self.eval_table.setRowCount(len(evals))
        for i, run in enumerate(evals):
            s = eval_summary(self.store, run)
            judge = "blind + RM" if run.config.get("mode") == "human" and s.automatic else (
                "blind" if run.config.get("mode") == "human" else "reward model")
            judging = s.status == RunStatus.JUDGING
            status = f"{run.status}" + (f" ({s.pending} left)" if judging else "")
            hidden = judging and s.pending
            values = [str(run.id), f"{s.a.get('label', '?')} vs {s.b.get('label', '?')}",
                      judge, status,
                      "hidden" if hidden else _pct(s.human.win_rate if s.human else None),
                      _pct(s.automatic.win_rate if s.automatic else None)]
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, run.id)
                if s.warning and col == 5:
                    item.setToolTip(s.warning)
                    item.setText(value + "  ⚠")
                self.eval_table.setItem(i, col, item)
        self.eval_table.blockSignals(False)
        ids = [r.id for r in evals]
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

    def _on_tab(self, index: int) -> None:
        if self.tabs.widget(index) is self.blind:
            self.blind.refresh()
            self.blind.view.setFocus()
        elif self.tabs.widget(index) is self.rounds:
            self.rounds.refresh()

    # -- judging and results -----------------------------------------------------------------

    def resume_judging(self, run_id: int) -> None:
        self.blind.open_run(run_id)
        self.tabs.setCurrentWidget(self.blind)
        self.blind.view.setFocus()

    def _resume_selected(self) -> None:
        run_id = self.selected_eval()
        run = self.store.get_run(run_id) if run_id is not None else None
        if run and run.status == RunStatus.JUDGING:
            self.resume_judging(run_id)

    def _on_blind_finished(self, run_id: int) -> None:
        self.refresh_evaluations()
        self.select_eval(run_id)
        self.tabs.setCurrentWidget(self.tabs.widget(2))

    def _on_outcome(self, outcome) -> None:
        """An evaluation ended (the setup tab says how): show it where it continues."""
        if outcome.status == RunStatus.CANCELLED:
            return
        self.refresh()
        if outcome.status == RunStatus.JUDGING:
            self.resume_judging(outcome.run_id)
        else:
            self.select_eval(outcome.run_id)
            self.tabs.setCurrentWidget(self.tabs.widget(2))

    def _after_training_change(self) -> None:
        self.refresh()
        self.prompts_changed.emit()

    def shutdown(self) -> None:
        """At application exit."""
        self.setup.run.shutdown()
