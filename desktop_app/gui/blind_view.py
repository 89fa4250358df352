"""Blind judging of one evaluation: its pending pairs in the usual comparison view.

The sides were drawn at random when the pairs were stored, and nothing here says which
policy wrote which response: no policy names, no model or adapter paths, no source tags.
After every judgment (and every undo) the person's verdict is recomputed and stored with
``core.eval_runs.record_human_result``; when no pair is left the evaluation is complete.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QMessageBox, QPushButton,
                               QVBoxLayout, QWidget)

from ..core.eval_runs import record_human_result
from ..core.store import PairView, Store, StoreError
from .compare_view import CompareView

IDLE_TEXT = ("No blind evaluation is open.\n\nStart one under “New evaluation”, or pick an "
             "evaluation that waits for judgments and press “Resume judging”.")


class BlindView(QWidget):
    judged = Signal(int)     # eval run id, after every stored or undone judgment
    finished = Signal(int)   # eval run id, when it is complete (all judged, or ended early)

    def __init__(self, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.run_id: int | None = None
        self.current: PairView | None = None
        self.pending_note: str | None = None
        self.shown_at = 0.0
        self.undo_stack: list[int] = []

        self.view = CompareView(blind=True)
        self.view.chosen.connect(self.judge)
        self.view.undo_requested.connect(self.undo)
        self.view.note_requested.connect(self.edit_note)
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
            self.undo_stack = []
        self.run_id = run_id
        self.current = None
        self.refresh()

    def refresh(self) -> None:
        if self.run_id is not None and self.store.get_run(self.run_id) is None:
            self.run_id, self.undo_stack = None, []   # deleted on the Runs page meanwhile
        if self.current is not None and self.store.get_pair(self.current.comparison_id) is None:
            self.current = None
        if self.current is None:
            self._show(self._next())
        self._update_status()

    def _next(self) -> PairView | None:
        if self.run_id is None:
            return None
        return self.store.next_pending(eval_run_id=self.run_id)

    def _show(self, pair: PairView | None) -> None:
        self.current = pair
        self.pending_note = pair.note if pair else None
        if pair is None:
            self.view.show_empty(self._empty_message())
            return
        banner = ""
        if pair.left["text"] == pair.right["text"]:
            banner = "These two responses are identical. Judge them as a tie, or skip."
        self.view.show_pair(pair.prompt, pair.left, pair.right, banner=banner, note=pair.note)
        self.shown_at = time.monotonic()
        self.view.setFocus()

    def _empty_message(self) -> str:
        if self.run_id is None:
            return IDLE_TEXT
        return (f"Every pair of evaluation #{self.run_id} is judged.\n\nThe result is under "
                "“Evaluations”. Undo still takes back your last judgment.")

    # -- judging -----------------------------------------------------------------------------

    def judge(self, side: str) -> None:
        pair, run_id = self.current, self.run_id
        if pair is None or run_id is None:
            return
        try:
            self.store.judge(pair.comparison_id, pair.choice_for_side(side),
                             note=self.pending_note, seconds=time.monotonic() - self.shown_at)
        except StoreError as exc:
            QMessageBox.warning(self, "Judgment not saved", str(exc))
            self.current = None
            self.refresh()
            return
        self.undo_stack.append(pair.comparison_id)
        record_human_result(self.store, run_id)
        self._show(self._next())
        self._update_status()
        self.judged.emit(run_id)
        if self.current is None:
            self.finished.emit(run_id)

    def undo(self) -> None:
        if not self.undo_stack or self.run_id is None:
            return
        comparison_id = self.undo_stack.pop()
        try:
            pair = self.store.unjudge(comparison_id)
        except StoreError as exc:
            QMessageBox.warning(self, "Cannot undo", str(exc))
            return
        record_human_result(self.store, self.run_id)   # reopens a completed evaluation
        self._show(pair)
        self._update_status()
        self.judged.emit(self.run_id)

    def edit_note(self) -> None:
        if self.current is None:
            return
        text, ok = QInputDialog.getMultiLineText(
            self, "Note for this judgment",
            "Why is one better? Saved with the judgment you make next.", self.pending_note or "")
        if ok:
            self.pending_note = text.strip() or None
            self.view.set_note(self.pending_note)

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
        self.undo_stack = []
        self.run_id, self.current = None, None
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
        self.view.undo_button.setEnabled(bool(self.undo_stack))
