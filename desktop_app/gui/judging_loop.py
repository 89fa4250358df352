"""The judging loop the Judge page and blind evaluation share: show a pair, store the
judgment (committed before the next pair appears), show the next, undo, notes.

A host widget has ``self.store`` and ``self.view`` (a ``CompareView`` whose ``chosen``,
``undo_requested`` and ``note_requested`` it connects to ``judge``, ``undo`` and
``edit_note``), calls ``_init_loop()`` first, and provides:

- ``_next_pair()``: the next pending pair for this queue, or None;
- ``_empty_message()``: what the view says when there is none;
- ``_update_status()``: refresh whatever progress line it has;
- ``_on_judged(pair)`` / ``_on_undone(pair)``: what else follows a judgment or an undo.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QInputDialog, QMessageBox

from ..core.store import PairView, StoreError

IDENTICAL = "These two responses are identical. Judge them as a tie, or skip."


class JudgingLoop:
    def _init_loop(self) -> None:
        self.current: PairView | None = None
        self.pending_note: str | None = None
        self.shown_at = 0.0
        self.undo_stack: list[int] = []

    def _show(self, pair: PairView | None) -> None:
        self.current = pair
        self.pending_note = pair.note if pair else None
        if pair is None:
            self.view.show_empty(self._empty_message())
            return
        banner = IDENTICAL if (pair.flag == "identical"
                               or pair.left["text"] == pair.right["text"]) else ""
        self.view.show_pair(pair.prompt, pair.left, pair.right, banner=banner, note=pair.note)
        self.shown_at = time.monotonic()

    def judge(self, side: str) -> None:
        pair = self.current
        if pair is None:
            return
        try:
            self.store.judge(pair.comparison_id, pair.choice_for_side(side),
                             note=self.pending_note, seconds=time.monotonic() - self.shown_at)
        except StoreError as exc:
            # e.g. the pair was deleted with its prompt meanwhile: say so and move on.
            QMessageBox.warning(self, "Judgment not saved", str(exc))
            self.current = None
            self.refresh()
            return
        self.undo_stack.append(pair.comparison_id)
        self._on_judged(pair)
        self._show(self._next_pair())
        self._update_status()
        self._after_judgment()

    def undo(self) -> None:
        if not self.undo_stack:
            self._nothing_to_undo()
            return
        comparison_id = self.undo_stack.pop()
        try:
            pair = self.store.unjudge(comparison_id)
        except StoreError as exc:
            QMessageBox.warning(self, "Cannot undo", str(exc))
            return
        self._on_undone(pair)
        self._show(pair)
        self._update_status()
        self._after_judgment()

    def edit_note(self) -> None:
        if self.current is None:
            return
        text, ok = QInputDialog.getMultiLineText(
            self, "Note for this judgment",
            "Why is one better? Saved with the judgment you make next.", self.pending_note or "")
        if ok:
            self.pending_note = text.strip() or None
            self.view.set_note(self.pending_note)

    # Hooks with nothing to do by default.
    def _on_judged(self, pair: PairView) -> None:
        pass

    def _on_undone(self, pair: PairView) -> None:
        pass

    def _after_judgment(self) -> None:
        pass

    def _nothing_to_undo(self) -> None:
        pass
