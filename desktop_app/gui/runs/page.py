"""Runs: every run of the workspace, its charts from the stored metrics, overlays, export, delete.

The table lists each run with its status, duration and the one number that says how it went;
selecting a run charts its stored metrics, selecting several overlays them (one colour per run,
the same metric on the same axes). Training jobs write metrics to SQLite as they go, from their
own connection, so a running run is followed by re-reading only the points written since the
last look (``Store.metrics_since``) on a ~1.5 s timer while the page is shown.

Runs that stopped without leaving anything (a failed start: no metric, no files, no pair) are
hidden unless "Show empty failed runs" is ticked; the summary says how many are hidden.

This module is the page itself: its layout, reading the runs, the live timer and selection.
The parts live beside it: ``runs_table`` (columns and what a row shows), ``runs_details`` (the
details pane), ``runs_charts`` (metric chooser and charts, the page's ``charts`` object) and
``runs_actions`` (export and delete, the page's ``actions`` object).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import QKeySequence, QShortcut, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.data.store import Store, StoreError
from desktop_app.core.runs.files import RunDeletion
from desktop_app.core.runs.record import Run, RunKind, RunStatus
from desktop_app.core.workspace import Workspace
from desktop_app.gui.runs.actions import RunActions
from desktop_app.gui.runs.charts import RunCharts
from desktop_app.gui.runs.details import details_html
from desktop_app.gui.runs.table import (
    COLUMNS,
    EMPTY_ROLE,
    ID_ROLE,
    KIND_LABELS,
    STOPPED,
    fill_row,
    left_nothing,
    make_proxy,
    make_table,
    row_items,
)

LIVE_INTERVAL_MS = 1500


class RunsPage(QWidget):
    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.runs: dict[int, Run] = {}
        self._rows: dict[int, int] = {}           # run id -> row in the source model
        self._first_refresh = True
        self.charts = RunCharts(store, lambda: self.runs, self)
        self.charts.charted.connect(self._show_details)
        self.charts.export_requested.connect(lambda: self.export_png())
        self.actions = RunActions(self, store, workspace.runs_dir)
        self.actions.runs_changed.connect(self.refresh)

        # -- top: summary, filter, actions --------------------------------------------------
        self.summary = QLabel("")
        self.summary.setObjectName("paneTitle")
        self.kind_filter = QComboBox()
        self.kind_filter.addItem("All kinds", "")
        for kind in RunKind:
            label = KIND_LABELS[kind]
            self.kind_filter.addItem(label if label.isupper() else label.capitalize(),
                                     str(kind))
        self.kind_filter.currentIndexChanged.connect(self._apply_filter)
        self.show_empty = QCheckBox("Show empty failed runs")
        self.show_empty.setToolTip("Also list runs that failed, were cancelled or were "
                                   "interrupted before they left anything: no metric, no files, "
                                   "no pair.")
        self.show_empty.toggled.connect(self._show_empty_toggled)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.setToolTip("Write the stored metrics of the selected runs to a CSV file "
                                   "(columns run_id, step, name, value).")
        self.csv_button.clicked.connect(lambda: self.export_csv())
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setToolTip("Delete the selected runs with their metrics and folders "
                                      "(you are asked first).")
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.summary)
        top.addStretch(1)
        top.addWidget(QLabel("Show"))
        top.addWidget(self.kind_filter)
        top.addSpacing(8)
        top.addWidget(self.show_empty)
        top.addSpacing(12)
        top.addWidget(self.refresh_button)

        # -- the table ------------------------------------------------------------------------
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(COLUMNS)
        self.proxy = make_proxy(self.model, self)
        self.table = make_table(self.proxy)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._selection_changed())
        self.table.doubleClicked.connect(lambda _: self._selection_changed(force=True))
        delete_key = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.table)
        delete_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete_key.activated.connect(lambda: self.delete_selected())

        # -- bottom left: details and the metric chooser ---------------------------------------
        self.details = QTextBrowser()
        self.details.setObjectName("runDetails")
        self.details.setOpenLinks(False)
        self.details.anchorClicked.connect(lambda url: self.select_runs([int(url.path())])
                                           if url.path().isdigit() else None)
        metric_tree = self.charts.metric_tree
        metrics_title = QLabel("Metrics to chart")
        metrics_title.setObjectName("paneTitle")
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        details_title = QLabel("Details")
        details_title.setObjectName("paneTitle")
        # What acts on the selected runs sits over what describes them.
        title_row = QHBoxLayout()
        title_row.addWidget(details_title, 1)
        title_row.addWidget(self.csv_button)
        title_row.addWidget(self.delete_button)
        lv.addLayout(title_row)
        lv.addWidget(self.details, 3)
        lv.addWidget(metrics_title)
        lv.addWidget(metric_tree, 2)
        left.setMinimumWidth(260)
        left.setMaximumWidth(400)

        # -- bottom right: the charts -----------------------------------------------------------
        right = self.charts.pane

        bottom = QSplitter()
        bottom.addWidget(left)
        bottom.addWidget(right)
        bottom.setStretchFactor(1, 1)
        bottom.setSizes([300, 900])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(bottom)
        # A third for the table, the rest for details and charts, at any window height.
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        split.setSizes([240, 480])
        split.setChildrenCollapsible(False)
        self.table.setMinimumHeight(110)
        self.status_line = QLabel("")
        self.status_line.setObjectName("statusLine")
        self.status_line.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.status_line)
        self.charts.read_failed.connect(self.status_line.setText)
        self.actions.said.connect(self.status_line.setText)

        self.timer = QTimer(self)
        self.timer.setInterval(LIVE_INTERVAL_MS)
        self.timer.timeout.connect(self._tick)
        self.refresh()

    # -- the table -------------------------------------------------------------------------

    def activate(self) -> None:
        """The page is shown: runs may have changed elsewhere."""
        self.refresh()

    def refresh(self) -> None:
        """Re-read every run (called when the page is shown and by the Refresh button)."""
        try:
            runs = self.store.list_runs()
            finals = {r.id: self.store.final_metrics(r.id) for r in runs}
        except (StoreError, sqlite3.Error) as exc:
            self.status_line.setText(f"Could not read the runs from {self.store.path}: {exc}")
            return
        selected = self.selected_run_ids()
        self.runs = {r.id: r for r in runs}
        self.table.setSortingEnabled(False)
        self.model.removeRows(0, self.model.rowCount())
        self._rows = {}
        for run in runs:
            self._rows[run.id] = self.model.rowCount()
            items = row_items(run, finals[run.id], self.runs)
            items[0].setData(self._left_nothing(run, finals[run.id]), EMPTY_ROLE)
            self.model.appendRow(items)
        self.table.setSortingEnabled(True)
        self._update_summary()
        shown = [r.id for r in runs if self.show_empty.isChecked()
                 or not self.model.item(self._rows[r.id], 0).data(EMPTY_ROLE)]
        if not selected and self._first_refresh and shown:
            selected = [shown[-1]]  # open the newest run to start with
        self._first_refresh = False
        self.select_runs([i for i in selected if i in self.runs], quiet=True)
        self._sync_timer()

    def _left_nothing(self, run: Run, final: dict) -> bool:
        if run.status not in STOPPED or final or run.artifact:
            return False   # the common case answers without another query
        try:
            return left_nothing(run, final, self.store.run_has_pairs(run.id))
        except (StoreError, sqlite3.Error):
            return False

    def _update_summary(self) -> None:
        running = sum(r.status == RunStatus.RUNNING for r in self.runs.values())
        n = len(self.runs)
        text = f"{n} run{'s' * (n != 1)}" if n else "No runs yet"
        if running:
            text += f" · {running} running"
        hidden = 0 if self.show_empty.isChecked() else sum(
            bool(self.model.item(row, 0).data(EMPTY_ROLE)) for row in self._rows.values())
        if hidden:
            text += f" · {hidden} hidden"   # the box beside it says which and shows them
        self.summary.setText(text)

    def _show_empty_toggled(self, show: bool) -> None:
        self.proxy.set_show_empty(show)
        self._update_summary()

    def _apply_filter(self) -> None:
        kind = self.kind_filter.currentData() or ""
        self.proxy.setFilterRegularExpression(f"^{kind}$" if kind else "")

    def _sync_timer(self) -> None:
        if self.isVisible():
            self.timer.start()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.timer.start()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.timer.stop()

    def _tick(self) -> None:
        """Follow running runs: new runs, status changes, durations and new metric points."""
        try:
            runs = {r.id: r for r in self.store.list_runs()}
        except (StoreError, sqlite3.Error):
            return  # the database is busy: try again on the next tick
        if set(runs) != set(self.runs):
            self.refresh()
            return
        reload = []
        for run_id, run in runs.items():
            before = self.runs[run_id]
            changed = (run.status, run.finished_at, run.error, run.artifact) != (
                before.status, before.finished_at, before.error, before.artifact)
            running = run.status == RunStatus.RUNNING
            if not changed and not running:
                continue
            if changed and running:
                reload.append(run_id)  # resumed: points past its checkpoint were dropped
            self.runs[run_id] = run
            try:
                final = self.store.final_metrics(run_id)
            except sqlite3.Error:
                continue
            row = self._rows[run_id]
            fill_row([self.model.item(row, c) for c in range(len(COLUMNS))], run, final,
                     self.runs)
            self.model.item(row, 0).setData(self._left_nothing(run, final), EMPTY_ROLE)
        self._update_summary()
        charted = [r for r in self.charts.run_ids if self.runs[r].status == RunStatus.RUNNING
                   or r in reload]
        if any(r in reload for r in self.charts.run_ids):
            self.charts.forget(reload)
            self.charts.show_runs(self.charts.run_ids, keep_choice=True)
        elif charted:
            self.charts.follow(charted)
        if len(self.charts.run_ids) == 1 and self.charts.run_ids[0] in runs:
            self._show_details(self.charts.run_ids)

    # -- selection -------------------------------------------------------------------------

    def selected_run_ids(self) -> list[int]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        ids = [self.proxy.index(index.row(), 0).data(ID_ROLE) for index in rows]
        # Table order (as sorted on screen) so colours follow what the person sees.
        order = {self.proxy.index(r, 0).data(ID_ROLE): r for r in range(self.proxy.rowCount())}
        return sorted((i for i in ids if i is not None), key=lambda i: order.get(i, 0))

    def select_runs(self, run_ids: list[int], quiet: bool = False) -> None:
        selection = self.table.selectionModel()
        if quiet:
            selection.blockSignals(True)
        chosen = QItemSelection()
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data(ID_ROLE) in run_ids:
                chosen.select(self.proxy.index(row, 0),
                              self.proxy.index(row, len(COLUMNS) - 1))
        selection.select(chosen, QItemSelectionModel.SelectionFlag.ClearAndSelect
                         | QItemSelectionModel.SelectionFlag.Rows)
        if not chosen.isEmpty():
            self.table.scrollTo(chosen.indexes()[0])
        if quiet:
            selection.blockSignals(False)
            self.table.viewport().update()
            ids = self.selected_run_ids()
            if ids != self.charts.run_ids or any(self.runs[i].status == RunStatus.RUNNING
                                           for i in ids):
                self._selection_changed()
            else:
                self._show_details(ids)

    def _selection_changed(self, force: bool = False) -> None:
        ids = self.selected_run_ids()
        if ids == self.charts.run_ids and not force:
            return
        self.charts.show_runs(ids, keep_choice=True)

    # -- details ---------------------------------------------------------------------------

    def _show_details(self, ids: list[int]) -> None:
        self.details.setHtml(details_html(ids, self.runs, self.charts.colour))

    # -- actions on the selected runs --------------------------------------------------------

    def export_png(self, path: str | None = None) -> Path | None:
        """Save the charts as shown to a PNG file (asks where when ``path`` is None)."""
        return self.actions.export_png(self.charts.board, self.charts.run_ids, path)

    def export_csv(self, path: str | None = None) -> Path | None:
        """Write the selected runs' metrics to a CSV file (asks where when ``path`` is None)."""
        return self.actions.export_csv(self.selected_run_ids(), path)

    def delete_selected(self) -> list[RunDeletion]:
        """Delete the selected runs, after saying exactly what goes."""
        return self.actions.delete(self.selected_run_ids(), self.runs)
