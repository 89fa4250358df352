"""Blind judging of one evaluation: its pending pairs in the usual comparison view.

The sides were drawn at random when the pairs were stored, and nothing here says which
policy wrote which response: no policy names, no model or adapter paths, no source tags.
After every judgment (and every undo) the person's verdict is recomputed and stored with
``core.evaluation.results.record_human_result``; when no pair is left the evaluation is complete.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QVBoxLayout, QWidget

from desktop_app.core.data.store import PairView, Store
from desktop_app.core.evaluation.results import record_human_result
from desktop_app.gui.judge.compare_view import CompareView
from desktop_app.gui.judge.loop import JudgingLoop

IDLE_TEXT = ("No blind evaluation is open.\n\nStart one under “New evaluation”, or pick an "
             "evaluation that waits for judgments and press “Resume judging”.")


class BlindView(QWidget):
    judged = Signal(int)     # eval run id, after every stored or undone judgment
    finished = Signal(int)   # eval run id, when it is complete (all judged, or ended early)

    def __init__(self, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.run_id: int | None = None

        self.view = CompareView(blind=True)
        self.loop = JudgingLoop(store, self.view, self._next_pair, self._empty_message, self)
        self.loop.judged.connect(self._on_judged)
        self.loop.undone.connect(self._on_undone)
        self.loop.changed.connect(self._after_judgment)
        self.loop.shown.connect(lambda pair: pair is not None and self.view.setFocus())
        self.loop.lost.connect(self.refresh)
        self.explain = QLabel("Blind: which policy wrote which response is hidden, and the "
                              "sides are shuffled. Judge as you would any pair.")
        self.explain.setObjectName("blindExplain")
        self.explain.setWordWrap(True)
        self.progress_line = QLabel("")
        self.progress_line.setObjectName("blindProgress")
        self.finish_button = QPushButton("Finish now")
        self.finish_button.setToolTip("End this evaluation with the pairs judged so far; the "
                                      "rest stay unjudged and do not count.")
        self.finish_button.clicked.connect(lambda: self.finish_now())

        top = QHBoxLayout()
        top.addWidget(self.explain, 1)
        top.addWidget(self.progress_line)
        top.addWidget(self.finish_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        self.open_run(None)

    # -- which evaluation --------------------------------------------------------------------

    def open_run(self, run_id: int | None) -> None:
        """Judge the pending pairs of eval run ``run_id`` (None: nothing open)."""
        if run_id != self.run_id:
            self.loop.undo_stack = []
        self.run_id = run_id
        self.loop.current = None
        self.refresh()

    def refresh(self) -> None:
        if self.run_id is not None and self.store.get_run(self.run_id) is None:
            self.run_id, self.loop.undo_stack = None, []   # deleted on the Runs page meanwhile
        loop = self.loop
        if loop.current is not None and self.store.get_pair(loop.current.comparison_id) is None:
            loop.current = None
        if loop.current is None:
            loop.show_next()
        self._update_status()

    def _next_pair(self) -> PairView | None:
        if self.run_id is None:
            return None
        return self.store.next_pending(eval_run_id=self.run_id)

    def _empty_message(self) -> str:
        if self.run_id is None:
            return IDLE_TEXT
        return (f"Every pair of evaluation #{self.run_id} is judged.\n\nThe result is under "
                "“Evaluations”. Undo still takes back your last judgment.")

    # -- judging -----------------------------------------------------------------------------

    def _on_judged(self, pair: PairView) -> None:
        record_human_result(self.store, self.run_id)

    def _on_undone(self, pair: PairView) -> None:
        record_human_result(self.store, self.run_id)   # reopens a completed evaluation

    def _after_judgment(self) -> None:
        self._update_status()
        self.judged.emit(self.run_id)
        if self.loop.current is None:
            self.finished.emit(self.run_id)

    def finish_now(self, confirm: bool = True) -> None:
        """End the evaluation early: the verdict is what has been judged so far."""
        run_id = self.run_id
        if run_id is None:
            return
        tally = self.store.eval_tally(run_id)
        if confirm and tally["pending"] and QMessageBox.question(
                self, "Finish the evaluation now?",
                f"{tally['pending']} pair(s) are not judged yet. They will not count, and the "
                "result is computed from the pairs you judged.\n\nFinish now?"
        ) != QMessageBox.StandardButton.Yes:
            return
        record_human_result(self.store, run_id, finish=True)
        self.loop.undo_stack = []
        self.run_id, self.loop.current = None, None
        self.refresh()
        self.finished.emit(run_id)

    # -- status ------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(judged, total) pairs of the open evaluation."""
        if self.run_id is None:
            return 0, 0
        tally = self.store.eval_tally(self.run_id)
        total = sum(tally.values())
        return total - tally["pending"], total

    def _update_status(self) -> None:
        judged, total = self.counts()
        open_ = self.run_id is not None
        self.progress_line.setText(f"<b>{judged} of {total} judged</b>" if open_ else "")
        self.finish_button.setEnabled(open_ and judged < total)
        self.view.set_status(f"Evaluation #{self.run_id}   ·   keys: 1 / ← left, 2 / → right, "
                             "T tie, B both bad, S skip, Ctrl+Z undo" if open_ else "")
        self.view.undo_button.setEnabled(bool(self.loop.undo_stack))
