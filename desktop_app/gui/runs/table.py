"""The Runs page's table: its columns, what each row shows, and the view that sorts and filters it.

Kept apart from the page so that what a row says (status, duration, key result, the runs it was
made from) reads, and is tested, without the charts or the actions around it. The page owns the
model and refills rows through ``row_items`` / ``fill_row``; sorting and the kind filter go
through a proxy on hidden roles, so the shown text never has to sort right. The proxy also
hides runs that stopped (failed, cancelled, interrupted) without leaving anything: no metric, no
files, no pair; the page has a box to show them.
"""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor, QStandardItem
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from desktop_app.core.runs.record import Run, RunKind, RunStatus
from desktop_app.core.runs.summary import key_metric, parse_time, run_seconds
from desktop_app.gui.training.controller import duration

COLUMNS = ("ID", "Kind", "Status", "Started", "Duration", "Result", "Parents")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
EMPTY_ROLE = Qt.ItemDataRole.UserRole + 3     # on column 0: a stopped run that left nothing
STOPPED = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)
STATUS_COLOURS = {RunStatus.RUNNING: "#2563eb", RunStatus.COMPLETED: "#15803d",
                  RunStatus.FAILED: "#b91c1c", RunStatus.CANCELLED: "#6b7280",
                  RunStatus.JUDGING: "#b45309", RunStatus.INTERRUPTED: "#c2410c"}
KIND_LABELS = {RunKind.GENERATE: "generate", RunKind.REWARD: "reward model", RunKind.PPO: "PPO",
               RunKind.RLOO: "RLOO", RunKind.DPO: "DPO", RunKind.EVAL: "evaluation"}


# -- what a row shows (plain functions, tested without a window) -----------------------------

def parent_links(run: Run, runs_by_id: dict[int, Run]) -> list[tuple[str, int]]:
    """(label, run id) of the runs this one was made from: by ``parent_run_id`` a PPO run's
    reward model, an evaluation's policy, or the newest policy whose pairs a reward run learnt
    from; and any older policies in a reward run's data (``config['policy_run_ids']``)."""
    links = []

    def label(role: str, run_id: int) -> str:
        other = runs_by_id.get(run_id)
        if other is None:
            return f"{role or 'run'} #{run_id} (deleted)"
        return f"{role or KIND_LABELS[other.kind]} #{run_id}"

    parent = run.parent_run_id
    if parent is not None:
        # A reward run's parent is the PPO run whose policy wrote the pairs it learnt from.
        links.append((label("policy" if run.kind == RunKind.REWARD else "", parent), parent))
    for policy in run.config.get("policy_run_ids") or []:
        if isinstance(policy, int) and policy != parent:
            links.append((label("policy", policy), policy))
    return links


def fmt_time(stamp: str | None) -> str:
    value = parse_time(stamp)
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "—"


def row_items(run: Run, final: dict[str, float],
              runs_by_id: dict[int, Run]) -> list[QStandardItem]:
    """A new row for ``run``; the id and kind roles are set once, as a row never changes run."""
    items = [QStandardItem() for _ in COLUMNS]
    items[0].setData(run.id, ID_ROLE)
    items[1].setData(str(run.kind), ID_ROLE)
    fill_row(items, run, final, runs_by_id)
    return items


def fill_row(items: list[QStandardItem], run: Run, final: dict[str, float],
             runs_by_id: dict[int, Run]) -> None:
    """(Re)write a row's text, sort keys and tooltips: also used in place while a run runs."""
    seconds = run_seconds(run)
    result, result_sort = key_metric(run, final)
    links = parent_links(run, runs_by_id)
    status = run.status
    values = [
        (f"#{run.id}", run.id),
        (KIND_LABELS[run.kind], str(run.kind)),
        (f"●  {status}", str(status)),
        (fmt_time(run.created_at), run.created_at or ""),
        (duration(seconds) if seconds is not None else "—",
         seconds if seconds is not None else -1.0),
        (result, result_sort if result_sort is not None else float("-inf")),
        (", ".join(text for text, _ in links) or "—", links[0][1] if links else -1),
    ]
    tip = f"Run #{run.id} ({run.kind}): {status}"
    if run.error:
        tip += f"\n\n{run.error}"
    for item, (text, sort) in zip(items, values):
        item.setText(text)
        item.setData(sort, SORT_ROLE)
        item.setToolTip(tip)
    items[2].setForeground(QBrush(QColor(STATUS_COLOURS[status])))
    if run.error:
        items[5].setToolTip(run.error)


def left_nothing(run: Run, final: dict[str, float], has_pairs: bool) -> bool:
    """A run that stopped without a metric, an artifact or a pair: a failed start, nothing to
    look at (``has_pairs``: whether any response was stored for it)."""
    return run.status in STOPPED and not final and not run.artifact and not has_pairs


# -- the view ----------------------------------------------------------------------------------

class RunsProxy(QSortFilterProxyModel):
    """The kind filter (on ``ID_ROLE`` of column 1) and, unless ``show_empty``, no rows whose
    ``EMPTY_ROLE`` is set."""

    show_empty = False

    def set_show_empty(self, show: bool) -> None:
        if hasattr(self, "beginFilterChange"):   # Qt 6.9 and later
            self.beginFilterChange()
            self.show_empty = show
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.show_empty = show
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, row: int, parent) -> bool:
        if not self.show_empty and self.sourceModel().index(row, 0, parent).data(EMPTY_ROLE):
            return False
        return super().filterAcceptsRow(row, parent)


def make_proxy(model, parent) -> RunsProxy:
    """Sorts on ``SORT_ROLE`` (numbers, not their text) and filters the Kind column on its raw
    kind in ``ID_ROLE`` (not its label)."""
    proxy = RunsProxy(parent)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    proxy.setFilterKeyColumn(1)
    proxy.setFilterRole(ID_ROLE)
    return proxy


def make_table(proxy: QSortFilterProxyModel) -> QTableView:
    """A read-only, row-selecting, newest-first view of ``proxy``."""
    table = QTableView()
    table.setModel(proxy)
    table.setSortingEnabled(True)
    table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.setShowGrid(False)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(26)
    header = table.horizontalHeader()
    header.setHighlightSections(False)
    for col in range(len(COLUMNS)):
        header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
    return table
