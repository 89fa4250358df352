"""The Judge page's history: past judgments to review, filter, search, change and delete.

``JudgeTabs`` puts the judging view and ``JudgeHistory`` on the Judge page as two tabs; ``H``
(or ``Ctrl+H``) switches to the history and ``Esc`` returns to judging. The history lists the
judgments newest first, a page at a time as the list scrolls (``HistoryModel``), with the
pair, the verdict and the note beside it. The judging view's keys change the selected
judgment's verdict; ``N`` edits its note, ``Delete`` deletes it (the pair goes back to the
queue). Every change is one transaction with its audit row (``core/data/judgment_history.py``).
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.data import judgment_history as jh
from desktop_app.core.data.store import Store, StoreError
from desktop_app.gui.judge.compare_view import ACTIONS, TextPane, prompt_over_responses

# The verdict as the person saw the pair, as the judging view's buttons name it.
LABELS = {"left": "Left won", "right": "Right won", "tie": "Tie", "both_bad": "Both bad",
          "skip": "Skip", None: "Not judged"}
SHORT = {"left": "Left", "right": "Right", "both_bad": "Both bad", "tie": "Tie", "skip": "Skip"}
# (side, button text, keys): the judging view's keys (compare_view.ACTIONS), same meaning;
# the buttons name the first key, the hint line both.
_BUTTON_LABELS = {"left": "◀ Left", "right": "Right ▶"}
VERDICT_KEYS = [(side, f"{_BUTTON_LABELS.get(side, SHORT[side])}  [{keys[0]}]", keys)
                for side, _text, keys in ACTIONS]
VERDICT_FILTERS = [("All verdicts", None), ("Left won", "left"), ("Right won", "right"),
                   ("Any winner", "winner"), ("Tie", "tie"), ("Both bad", "both_bad"),
                   ("Skip", "skip")]
SOURCE_FILTERS = [("Judged here and imported", None), ("Judged here", "generated"),
                  ("Imported", "imported")]
SEARCH_DELAY_MS = 300
STYLE = """
#pane[winner="true"] { border: 2px solid #16a34a; }
#historyVerdict { font-weight: bold; font-size: 12pt; }
#historyMeta, #historyHint, #historyCount { color: #4b5563; }
"""


def when(iso: str | None, short: bool = False) -> str:
    """A stored UTC time as local time: '14 May 2024 09:30'; ``short``: only the time today,
    only the day this year ('14 May'), else the date ('14 May 2023')."""
    if not iso:
        return "–"
    try:
        moment = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    if not short:
        return moment.strftime("%d %b %Y %H:%M")
    now = datetime.now().astimezone()
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    return moment.strftime("%d %b" if moment.year == now.year else "%d %b %Y")


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


class HistoryModel(QAbstractTableModel):
    """Judgments matching a filter, fetched a page (``jh.PAGE`` rows) at a time as the view
    scrolls, so a workspace of tens of thousands opens as fast as one of ten."""

    COLUMNS = ("Judged", "Verdict", "Prompt", "Note")

    def __init__(self, store: Store, parent: QObject | None = None):
        super().__init__(parent)
        self.store = store
        self.filter = jh.HistoryFilter()
        self.rows: list[jh.JudgmentRow] = []
        self.total = 0

    def reload(self, flt: jh.HistoryFilter) -> None:
        self.beginResetModel()
        self.filter = flt
        self.rows = jh.list_judgments(self.store, flt, limit=jh.PAGE)
        # Counting a search reads every text; a short first page is the whole answer.
        self.total = (len(self.rows) if len(self.rows) < jh.PAGE
                      else jh.count_judgments(self.store, flt))
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def canFetchMore(self, parent: QModelIndex) -> bool:
        return not parent.isValid() and len(self.rows) < self.total

    def fetchMore(self, parent: QModelIndex) -> None:
        if parent.isValid():
            return
        more = jh.list_judgments(self.store, self.filter, offset=len(self.rows), limit=jh.PAGE)
        if not more:
            self.total = len(self.rows)
            return
        self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(more) - 1)
        self.rows.extend(more)
        self.endInsertRows()

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 0:
                return when(row.judged_at, short=True)
            if column == 1:
                return SHORT.get(row.side, row.side) + (" ✎" if row.changes else "")
            if column == 2:
                return _one_line(row.prompt)
            return _one_line(row.note)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == 0:
                return when(row.judged_at)
            if column == 1:
                changed = f", changed {row.changes}× since" if row.changes else ""
                return f"{LABELS.get(row.side, row.side)}{changed}"
            if column == 2:
                return row.prompt
            if column == 3:
                return row.note
        return None

    def comparison_id(self, row: int) -> int | None:
        return self.rows[row].comparison_id if 0 <= row < len(self.rows) else None

    def row_of(self, comparison_id: int) -> int | None:
        for i, row in enumerate(self.rows):
            if row.comparison_id == comparison_id:
                return i
        return None

    def refresh_row(self, row: int) -> None:
        """Read one judgment again after a change (or drop it when it is no longer judged)."""
        fresh = jh.judgment_row(self.store, self.rows[row].comparison_id)
        if fresh is None:
            self.remove_row(row)
            return
        self.rows[row] = fresh
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.COLUMNS) - 1))

    def remove_row(self, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        del self.rows[row]
        self.total = max(0, self.total - 1)
        self.endRemoveRows()


class HistoryTable(QTableView):
    """The list: whole rows; Home and End go to the first and last judgment (a table's own
    Home/End move between columns, which a row-selecting list never shows)."""

    def moveCursor(self, action: QAbstractItemView.CursorAction,
                   modifiers: Qt.KeyboardModifier) -> QModelIndex:
        column = max(self.currentIndex().column(), 0)
        model = self.model()
        if action == QAbstractItemView.CursorAction.MoveHome and model.rowCount():
            return model.index(0, column)
        if action == QAbstractItemView.CursorAction.MoveEnd and model.rowCount():
            while model.canFetchMore(QModelIndex()):  # a page at a time, to the end
                model.fetchMore(QModelIndex())
            return model.index(model.rowCount() - 1, column)
        return super().moveCursor(action, modifiers)


class JudgeHistory(QWidget):
    """The list of past judgments, its filters and search, and the selected pair in full."""

    changed = Signal(int)         # a judgment's verdict or note changed, or it was deleted
    back_requested = Signal()     # Esc: back to judging

    def __init__(self, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.current: jh.Judgment | None = None
        self.setStyleSheet(STYLE)

        # Filters and search.
        self.verdict_box = QComboBox()
        for text, value in VERDICT_FILTERS:
            self.verdict_box.addItem(text, value)
        self.source_box = QComboBox()
        for text, value in SOURCE_FILTERS:
            self.source_box.addItem(text, value)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts, responses and notes   [Ctrl+F]")
        self.search.setClearButtonEnabled(True)
        self.count_label = QLabel("")
        self.count_label.setObjectName("historyCount")
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.reload)
        self.search.textChanged.connect(lambda _: self._search_timer.start())
        self.search.returnPressed.connect(self._search_now)
        self.verdict_box.currentIndexChanged.connect(lambda _: self.reload())
        self.source_box.currentIndexChanged.connect(lambda _: self.reload())
        bar = QHBoxLayout()
        bar.addWidget(self.verdict_box)
        bar.addWidget(self.source_box)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.count_label)

        # The list.
        self.model = HistoryModel(store, self)
        self.table = HistoryTable()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTabKeyNavigation(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(
            self.table.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(3, 120)
        header.setStretchLastSection(False)
        header.setHighlightSections(False)
        self.table.selectionModel().currentRowChanged.connect(
            lambda current, _previous: self._show_row(current.row()))
        self.empty = QLabel("")
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)

        # The selected judgment.
        self.verdict_label = QLabel("")
        self.verdict_label.setObjectName("historyVerdict")
        self.meta = QLabel("")
        self.meta.setObjectName("historyMeta")
        self.meta.setWordWrap(True)
        self.note_label = QLabel("")
        self.note_label.setObjectName("noteLabel")
        self.note_label.setWordWrap(True)
        self.prompt_pane = TextPane("Prompt")
        self.left_pane = TextPane("Left")
        self.right_pane = TextPane("Right")
        texts = prompt_over_responses(self.prompt_pane, self.left_pane, self.right_pane, 3)

        self.verdict_buttons: dict[str, QPushButton] = {}
        verdict_row = QHBoxLayout()
        for side, text, _keys in VERDICT_KEYS:
            button = QPushButton(text)
            button.setCheckable(True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setToolTip(f"Change the verdict to “{LABELS[side]}”")
            button.clicked.connect(lambda _=False, s=side: self.set_verdict(s))
            self.verdict_buttons[side] = button
            verdict_row.addWidget(button)
        self.note_button = QPushButton("Note…  [N]")
        self.delete_button = QPushButton("Delete…  [Del]")
        self.delete_button.setToolTip("Delete this judgment: the pair goes back to the queue")
        for button, slot in ((self.note_button, self.edit_note),
                             (self.delete_button, self.delete)):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(slot)
        top = QHBoxLayout()
        top.addWidget(self.verdict_label, 1)
        top.addWidget(self.note_button)
        top.addWidget(self.delete_button)

        self.detail = QWidget()
        detail = QVBoxLayout(self.detail)
        detail.setContentsMargins(6, 0, 0, 0)
        detail.addLayout(top)
        detail.addWidget(self.meta)
        detail.addWidget(texts, 1)
        detail.addWidget(self.note_label)
        detail.addLayout(verdict_row)

        listing = QWidget()
        listing_layout = QVBoxLayout(listing)
        listing_layout.setContentsMargins(0, 0, 0, 0)
        listing_layout.addWidget(self.table, 1)
        listing_layout.addWidget(self.empty, 1)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(listing)
        self.split.addWidget(self.detail)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 1)
        self.split.setChildrenCollapsible(False)
        self.split.setSizes([450, 550])

        self.hint = QLabel("↑↓ move  ·  1/← left  2/→ right  T tie  B both bad  S skip  ·  "
                           "N note  ·  Del delete  ·  Ctrl+F search  ·  Esc back to judging")
        self.hint.setObjectName("historyHint")
        self.hint.setWordWrap(True)
        self.status = QLabel("")  # what the last change did; hidden until there is one
        self.status.setObjectName("statusLine")
        self.status.setWordWrap(True)
        self.status.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.split, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.hint)

        # Keys: the verdict keys act on the list (the search box keeps its letters).
        for side, _text, keys in VERDICT_KEYS:
            for key in keys:
                self._key(key, lambda s=side: self.set_verdict(s), self.table)
        self._key("N", self.edit_note, self.table)
        for key in ("Delete", "Backspace"):
            self._key(key, self.delete, self.table)
        self._key("Ctrl+F", self.focus_search, self,
                  Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._key("Escape", self.back_requested.emit, self,
                  Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.search.installEventFilter(self)
        self._show(None)

    def _key(self, key: str, slot, parent: QWidget,
             context: Qt.ShortcutContext = Qt.ShortcutContext.WidgetShortcut) -> None:
        shortcut = QShortcut(QKeySequence(key), parent)
        shortcut.setContext(context)
        shortcut.activated.connect(slot)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Down (or Enter) in the search box moves to the list, ready for the verdict keys.
        if (watched is self.search and event.type() == QEvent.Type.KeyPress
                and event.key() == Qt.Key.Key_Down):
            self.table.setFocus()
            return True
        return super().eventFilter(watched, event)

    # -- the list ------------------------------------------------------------------------

    @property
    def filter(self) -> jh.HistoryFilter:
        return jh.HistoryFilter(verdict=self.verdict_box.currentData(),
                                source=self.source_box.currentData(),
                                search=self.search.text())

    def reload(self) -> None:
        """Read the list again (after a filter or search change, or coming back to the tab);
        the selected judgment stays selected if it is still listed."""
        self._search_timer.stop()
        keep = self.current.pair.comparison_id if self.current else None
        try:
            self.model.reload(self.filter)
        except StoreError as exc:
            self._say(str(exc))
            return
        row = self.model.row_of(keep) if keep is not None else None
        self._select(row if row is not None else 0)
        self._update_count()

    def _search_now(self) -> None:
        self.reload()
        self.table.setFocus()

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _update_count(self) -> None:
        total = self.model.total
        self.count_label.setText(f"{total:,} judgment{'s' if total != 1 else ''}")
        listed = bool(self.model.rows)
        self.table.setVisible(listed)
        self.empty.setVisible(not listed)
        if not listed:
            self.empty.setText("Nothing matches. Try another verdict or fewer words."
                               if self.filter != jh.HistoryFilter()
                               else "No judgments yet.\n\nThe pairs you judge are listed here.")

    def _select(self, row: int) -> None:
        row = min(row, self.model.rowCount() - 1)
        if row < 0:
            self.table.selectionModel().clearSelection()
            self.table.setCurrentIndex(QModelIndex())
            self._show(None)
            return
        index = self.model.index(row, 0)
        self.table.setCurrentIndex(index)
        self.table.selectRow(row)
        self.table.scrollTo(index)
        self._show_row(row)

    @property
    def selected_row(self) -> int:
        return self.table.currentIndex().row()

    def _show_row(self, row: int) -> None:
        cid = self.model.comparison_id(row)
        self._show(jh.get_judgment(self.store, cid) if cid is not None else None)

    # -- the selected judgment -----------------------------------------------------------

    def _show(self, judgment: jh.Judgment | None) -> None:
        self.current = judgment
        enabled = judgment is not None and judgment.pair.choice is not None
        for button in (*self.verdict_buttons.values(), self.note_button, self.delete_button):
            button.setEnabled(enabled)
        self.detail.setVisible(judgment is not None)
        if judgment is None:
            return
        pair = judgment.pair
        side = judgment.side
        self.verdict_label.setText(f"Verdict: {LABELS.get(side, side)}")
        self.prompt_pane.set_text(pair.prompt)
        for pane, name, gen in ((self.left_pane, "left", pair.left),
                                (self.right_pane, "right", pair.right)):
            won = side == name
            pane.title.setText(f"{name.title()}   ✓ chosen" if won else name.title())
            pane.set_text(gen["text"])
            pane.footer.setText(_footer(gen))
            pane.setProperty("winner", won)
            pane.style().unpolish(pane)
            pane.style().polish(pane)
        for name, button in self.verdict_buttons.items():
            button.setChecked(name == side)
        self.note_label.setText(f"Note: {pair.note}" if pair.note else "No note  (N adds one)")
        self.note_label.setStyleSheet("" if pair.note else "color: #6b7280;")
        self.meta.setText(self._meta(judgment))

    def _meta(self, judgment: jh.Judgment) -> str:
        parts = [f"#{judgment.pair.comparison_id}", f"judged {when(judgment.judged_at)}"]
        if judgment.seconds is not None:
            parts.append(f"took {judgment.seconds:.0f} s")
        parts.append("imported" if judgment.source == "imported" else "judged here")
        text = "   ·   ".join(parts)
        edits = [c for c in judgment.changes if c["kind"] != "undo"]
        if edits:
            last = edits[0]
            left_is_a = judgment.pair.left_is_a
            if last["kind"] == "verdict":
                what = (f"{LABELS.get(jh.side_of(last['old_choice'], left_is_a))} → "
                        f"{LABELS.get(jh.side_of(last['new_choice'], left_is_a))}")
            else:
                what = {"note": "note edited", "delete": "deleted, then judged again"}.get(
                    last["kind"], last["kind"])
            text += (f"\nChanged {len(edits)}× · last {when(last['changed_at'])}: {what}")
        return text

    def _act(self, action, *args) -> bool | None:
        """Run a change on the selected judgment: True when it changed, False when there was
        nothing to change, None when it failed (said in a message box; the list is reread)."""
        if self.current is None or self.current.pair.choice is None:
            return None
        try:
            result = action(self.store, self.current.pair.comparison_id, *args)
        except StoreError as exc:
            QMessageBox.warning(self, "Judgment not changed", str(exc))
            self.reload()
            return None
        return result is not False

    def set_verdict(self, side: str) -> None:
        if self.current is None or self.current.pair.choice is None:
            return
        before = self.current.side
        row = self.selected_row
        done = self._act(jh.change_verdict, self.current.pair.choice_for_side(side))
        if not done:
            if done is False:
                self._show(self.current)  # re-check the button that was pressed
            return
        cid = self.current.pair.comparison_id
        self._after_change(row, cid, f"#{cid}: {LABELS[before]} → {LABELS[side]}")

    def edit_note(self) -> None:
        if self.current is None or self.current.pair.choice is None:
            return
        text, ok = QInputDialog.getMultiLineText(
            self, "Note for this judgment", "Why is one better? (Empty removes the note.)",
            self.current.pair.note or "")
        if not ok:
            return
        row = self.selected_row
        if self._act(jh.change_note, text):
            cid = self.current.pair.comparison_id
            self._after_change(row, cid, f"#{cid}: note saved")

    def delete(self) -> None:
        if self.current is None or self.current.pair.choice is None:
            return
        cid = self.current.pair.comparison_id
        answer = QMessageBox.question(
            self, "Delete this judgment?",
            f"Delete the judgment of pair #{cid} ({LABELS[self.current.side]})?\n\n"
            "The pair goes back to the queue to be judged again, and training no longer uses "
            "it. The old verdict and note stay in the record of changes.\n\n"
            "To keep the pair out of training without judging it again, mark it Skip (S).",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        row = self.selected_row
        if self._act(jh.delete_judgment):
            self._after_change(row, cid,
                               f"#{cid}: judgment deleted; the pair is back in the queue")

    def _after_change(self, row: int, comparison_id: int, message: str) -> None:
        if 0 <= row < self.model.rowCount():
            self.model.refresh_row(row)
            # A changed verdict can leave the filter (Tie → Left while showing ties only).
            fresh = self.model.comparison_id(row) == comparison_id
            if fresh and not self._still_matches(row):
                self.model.remove_row(row)
        self._update_count()
        self._select(row)
        self._say(message)
        self.changed.emit(comparison_id)

    def _say(self, message: str) -> None:
        self.status.setText(message)
        self.status.setVisible(bool(message))

    def _still_matches(self, row: int) -> bool:
        verdict = self.filter.verdict
        if verdict is None:
            return True
        judged = self.model.rows[row]
        if verdict == "winner":
            return judged.choice in ("a", "b")
        return verdict in (judged.choice, judged.side)


def _footer(gen: dict) -> str:
    tokens = gen.get("completion_tokens")
    where = "imported" if gen.get("source") == "imported" else (gen.get("model") or "")
    where = where.rstrip("/").rsplit("/", 1)[-1]
    if gen.get("adapter"):
        where += " + tuned policy"
    if tokens is None:
        return where
    ending = "ended normally" if gen.get("finished") else "cut off at the token limit"
    return f"{where} · {tokens} tokens · {ending}"


class JudgeTabs(QTabWidget):
    """The Judge page as two tabs: judging and its history. ``H`` or ``Ctrl+H`` switches,
    ``Esc`` in the history returns to judging, and leaving the page comes back to judging.
    A change in the history is ``judgment_changed``: the page refreshes its counts (and emits
    its ``judged`` signal, which the main window listens to), and leaves its undo alone: Ctrl+Z
    in the judging view never reverts what was decided in the history. Coming back to judging
    is ``judging_shown``."""

    judging_shown = Signal()         # back on the judging tab: the page refreshes and focuses
    judgment_changed = Signal(int)   # comparison id changed or deleted in the history

    def __init__(self, page: QWidget, judging: QWidget):
        super().__init__(page)
        self.page = page
        self.judging = judging
        self.history = JudgeHistory(page.store)
        self.setDocumentMode(True)
        # Keys belong to the judging view (1, 2, T…): the tabs never take the focus from it.
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.tabBar().setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.addTab(judging, "Judge")
        self.addTab(self.history, "History   [H]")
        self.setTabToolTip(1, "Past judgments: review, search, change or delete (H; Esc returns)")
        layout = QVBoxLayout(page)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self)
        if judging.layout() is not None:  # the tab's frame is margin enough
            judging.layout().setContentsMargins(0, 6, 0, 0)
        self.history.layout().setContentsMargins(0, 6, 0, 0)
        for key in ("H", "Ctrl+H"):
            shortcut = QShortcut(QKeySequence(key), judging)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.show_history)
        shortcut = QShortcut(QKeySequence("Ctrl+H"), self.history)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(self.show_judging)
        self.history.back_requested.connect(self.show_judging)
        self.history.changed.connect(self.judgment_changed)
        self.currentChanged.connect(self._on_tab)
        page.installEventFilter(self)

    def show_history(self) -> None:
        self.setCurrentWidget(self.history)

    def show_judging(self) -> None:
        self.setCurrentWidget(self.judging)

    def _on_tab(self, index: int) -> None:
        if self.widget(index) is self.history:
            self.history.reload()
            self.history.table.setFocus()
        else:
            self.judging_shown.emit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Another page was chosen (not the window minimised): come back to judging.
        if (watched is self.page and event.type() == QEvent.Type.Hide
                and not event.spontaneous()):
            self.show_judging()
        return super().eventFilter(watched, event)
