"""The judging loop the Judge page and blind evaluation share: show a pair, store the
judgment (committed before the next pair appears), show the next, undo, notes.

``JudgingLoop`` is an object its page holds (``page.loop``). It is made with the store, the
``CompareView`` it drives (it connects the view's ``chosen``, ``undo_requested`` and
``note_requested`` itself) and two callbacks: ``next_pair()``, the next pending pair of this
queue (or None), and ``empty_message()``, what the view says when there is none. The page
follows it through its signals:

- ``judged(pair)`` / ``undone(pair)``: a judgment was committed / taken back (before the view
  moves on);
- ``changed()``: after either, once the view shows what follows (refresh progress lines);
- ``shown(pair)``: a pair (or None) was put on the view;
- ``nothing_to_undo()``: undo was asked for with nothing to take back;
- ``lost()``: a judgment could not be stored (its pair was deleted meanwhile): read again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QInputDialog, QMessageBox, QWidget

from desktop_app.core.data.store import PairView, Store, StoreError
from desktop_app.gui.judge.compare_view import CompareView

IDENTICAL = "These two responses are identical. Judge them as a tie, or skip."


class JudgingLoop(QObject):
    judged = Signal(object)     # PairView, committed
    undone = Signal(object)     # PairView, taken back (it is shown again)
    changed = Signal()          # after a judgment or an undo, the next pair on the view
    shown = Signal(object)      # PairView or None, now on the view
    nothing_to_undo = Signal()
    lost = Signal()             # a judgment could not be stored: the page reads again

    def __init__(self, store: Store, view: CompareView, next_pair: Callable[[], PairView | None],
                 empty_message: Callable[[], str], parent: QWidget):
        super().__init__(parent)
        self.store = store
        self.view = view
        self._next_pair = next_pair
        self._empty_message = empty_message
        self._parent = parent    # the page: dialogs open over it
        self.current: PairView | None = None
        self.pending_note: str | None = None
        self.shown_at = 0.0
        self.undo_stack: list[int] = []
        view.chosen.connect(self.judge)
        view.undo_requested.connect(self.undo)
        view.note_requested.connect(self.edit_note)

    def show(self, pair: PairView | None) -> None:
        self.current = pair
        self.pending_note = pair.note if pair else None
        if pair is None:
            self.view.show_empty(self._empty_message())
        else:
            banner = IDENTICAL if (pair.flag == "identical"
                                   or pair.left["text"] == pair.right["text"]) else ""
            self.view.show_pair(pair.prompt, pair.left, pair.right, banner=banner,
                                note=pair.note)
            self.shown_at = time.monotonic()
        self.shown.emit(pair)

    def show_next(self) -> None:
        """Put the next pending pair (or the empty message) on the view."""
        self.show(self._next_pair())

    def judge(self, side: str) -> None:
        pair = self.current
        if pair is None:
            return
        try:
            self.store.judge(pair.comparison_id, pair.choice_for_side(side),
                             note=self.pending_note, seconds=time.monotonic() - self.shown_at)
        except StoreError as exc:
            # e.g. the pair was deleted with its prompt meanwhile: say so and move on.
            QMessageBox.warning(self._parent, "Judgment not saved", str(exc))
            self.current = None
            self.lost.emit()
            return
        self.undo_stack.append(pair.comparison_id)
        self.judged.emit(pair)
        self.show_next()
        self.changed.emit()

    def undo(self) -> None:
        if not self.undo_stack:
            self.nothing_to_undo.emit()
            return
        comparison_id = self.undo_stack.pop()
        try:
            pair = self.store.unjudge(comparison_id)
        except StoreError as exc:
            QMessageBox.warning(self._parent, "Cannot undo", str(exc))
            return
        self.undone.emit(pair)
        self.show(pair)
        self.changed.emit()

    def forget(self, comparison_id: int) -> None:
        """Changed elsewhere (the history): undo no longer takes it back."""
        self.undo_stack = [i for i in self.undo_stack if i != comparison_id]

    def edit_note(self) -> None:
        if self.current is None:
            return
        text, ok = QInputDialog.getMultiLineText(
            self._parent, "Note for this judgment",
            "Why is one better? Saved with the judgment you make next.", self.pending_note or "")
        if ok:
            self.pending_note = text.strip() or None
            self.view.set_note(self.pending_note)
