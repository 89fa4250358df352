"""The round overview: how each round of feedback moved the model, counted from the database
by ``core.runs.rounds.round_overview``, and the step into the next round."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.data.store import Store
from desktop_app.core.runs.record import POLICY_KINDS, Run, RunStatus
from desktop_app.core.runs.rounds import Round, round_overview

COLUMNS = ("Round", "Judgments\nnew / total", "Reward model\naccuracy", "PPO runs",
           "You: tuned vs base\n(95% CI)", "Reward model:\ntuned vs base", "Evaluation")

EXPLAIN = (
    "<b>A round</b> is: judge pairs → train a reward model → tune a policy with PPO → evaluate it "
    "blind against the base model. For the next round, generate new pairs from the tuned "
    "policy: your judgments of <i>its</i> responses teach the next reward model what the "
    "current one gets wrong. Train that reward model on all judgments so far, then run PPO "
    "again. Held-out prompts are never used for pairs, so evaluations stay fair.")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def round_cells(r: Round, judging: bool = False) -> list[str]:
    """The table row of one round, as text. ``judging``: its evaluation still waits for
    judgments, so the person's verdict stays hidden (as on the Results tab)."""
    in_progress = r.reward_run_id is None
    number = f"{r.number} (in progress)" if in_progress else str(r.number)
    accuracy = "–" if r.rm_accuracy is None else f"{r.rm_accuracy:.1%}"
    ppo = ", ".join(f"#{i}" for i in r.ppo_run_ids) or "–"
    if r.human_win_rate is None:
        human = "–"
    elif judging:
        human = "hidden until judged"
    else:
        low, high = r.human_ci or (None, None)
        ci = f" ({low:.0%}–{high:.0%})" if low is not None else ""
        human = f"{r.human_win_rate:.0%}{ci}, n = {r.human_n}"
    if in_progress:
        evaluation = (f"{r.pending} pair{'s' if r.pending != 1 else ''} waiting for you"
                      if r.pending else "collecting judgments")
    else:
        evaluation = ("not evaluated yet" if r.eval_run_id is None else
                      f"#{r.eval_run_id} (judging)" if judging else f"#{r.eval_run_id}")
    return [number, f"{r.new_judgments} / {r.judgments}", accuracy, ppo, human,
            _pct(r.rm_win_rate), evaluation]


class RoundsView(QWidget):
    next_round_requested = Signal(str, str)   # base model folder, policy adapter folder

    def __init__(self, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.rounds: list[Round] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("roundsTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.explain = QLabel(EXPLAIN)
        self.explain.setWordWrap(True)
        self.explain.setObjectName("roundsExplain")
        self.next_button = QPushButton("Generate next-round pairs from policy…")
        self.next_button.setToolTip("Load a tuned policy on the Judge page, so new pairs compare "
                                    "its responses (recorded with its adapter).")
        self.next_button.clicked.connect(lambda: self.request_next_round())
        row = QHBoxLayout()
        row.addWidget(self.next_button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.explain)
        layout.addLayout(row)

    def refresh(self) -> None:
        self.rounds = round_overview(self.store)
        self.table.setRowCount(len(self.rounds))
        for i, r in enumerate(self.rounds):
            run = self.store.get_run(r.eval_run_id) if r.eval_run_id is not None else None
            judging = run is not None and run.status == RunStatus.JUDGING
            for col, text in enumerate(round_cells(r, judging)):
                item = QTableWidgetItem(text)
                if r.reward_run_id is None:
                    item.setForeground(QBrush(QColor("#6b7280")))
                    font = item.font()
                    font.setItalic(True)
                    item.setFont(font)
                if col in (0, 2, 4, 5):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(i, col, item)
        self.next_button.setEnabled(bool(self.policies()))

    def policies(self) -> list[Run]:
        """Completed policy runs (PPO, DPO) with a saved policy, newest first."""
        return self.store.finished_runs(POLICY_KINDS)[::-1]

    def request_next_round(self, run_id: int | None = None) -> None:
        """Ask which tuned policy generates the next pairs (newest first), then hand it on."""
        runs = self.policies()
        if not runs:
            QMessageBox.information(self, "No tuned policy", "Train a policy first (PPO or "
                                    "DPO): the next round's pairs come from a tuned policy.")
            return
        if run_id is None:
            labels = [f"PPO run {r.id} (reward run {r.parent_run_id})" for r in runs]
            label, ok = QInputDialog.getItem(self, "Next round", "Generate new pairs from:",
                                             labels, 0, False)
            if not ok:
                return
            run = runs[labels.index(label)]
        else:
            run = next((r for r in runs if r.id == run_id), None)
            if run is None:
                return
        self.next_round_requested.emit(run.config.get("base_model", ""), run.artifact)
