"""Runs: every run of the workspace, its charts from the stored metrics, overlays, export, delete.

The table lists each run with its status, duration and the one number that says how it went;
selecting a run charts its stored metrics, selecting several overlays them (one colour per run,
the same metric on the same axes). Training jobs write metrics to SQLite as they go, from their
own connection, so a running run is followed by re-reading only the points written since the
last look (``Store.metrics_since``) on a ~1.5 s timer while the page is shown.
"""

from __future__ import annotations

import html
import sqlite3
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QSortFilterProxyModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QKeySequence,
    QShortcut,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QTableView,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.run_export import write_metrics_csv
from ..core.run_files import (
    RunDeletion,
    delete_run,
    describe_deletion,
    folder_size,
    human_size,
)
from ..core.run_summary import key_metric, parse_time, run_seconds
from ..core.store import Store, StoreError
from ..core.workspace import Workspace
from .charts import PALETTE, ChartBoard
from .training_run import duration

COLUMNS = ("ID", "Kind", "Status", "Started", "Duration", "Result", "Parents")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
STATUS_COLOURS = {"running": "#2563eb", "completed": "#15803d", "failed": "#b91c1c",
                  "cancelled": "#6b7280", "judging": "#b45309"}
KIND_LABELS = {"generate": "generate", "reward": "reward model", "ppo": "PPO", "eval": "evaluation"}
# What to chart first when a run of this kind is opened (and the person has not chosen).
DEFAULT_METRICS = {
    "reward": ["train/loss", "eval/loss", "train/accuracy", "eval/accuracy"],
    "ppo": ["objective/scores", "objective/kl", "loss/policy", "loss/value",
            "objective/entropy", "policy/clipfrac"],
    "generate": ["generate/tokens_per_s", "generate/pairs"],
}
GROUP_ORDER = ["objective", "eval", "train", "loss", "policy", "val", "response", "generate"]
LIVE_INTERVAL_MS = 1500


# -- what a row shows (plain functions, tested without a window) -----------------------------

def parent_links(run: dict, runs_by_id: dict[int, dict]) -> list[tuple[str, int]]:
    """(label, run id) of the runs this one was made from: a PPO run's reward model (or an
    evaluation's policy) by ``parent_run_id``, and the policy whose pairs a reward run learnt
    from by ``config['policy_run_id']``."""
    links = []

    def label(role: str, run_id: int) -> str:
        other = runs_by_id.get(run_id)
        if other is None:
            return f"{role or 'run'} #{run_id} (deleted)"
        return f"{role or KIND_LABELS.get(other['kind'], other['kind'])} #{run_id}"

    parent = run.get("parent_run_id")
    if parent is not None:
        links.append((label("", parent), parent))
    policy = (run.get("config") or {}).get("policy_run_id")
    if isinstance(policy, int) and policy != parent:
        links.append((label("policy", policy), policy))
    return links


def metric_group(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else "other"


def _fmt_time(stamp: str | None) -> str:
    value = parse_time(stamp)
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "—"


# -- the page ----------------------------------------------------------------------------------

class RunsPage(QWidget):
    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.runs: dict[int, dict] = {}
        self._rows: dict[int, int] = {}           # run id -> row in the source model
        self._points: dict[int, list[tuple[int, str, float]]] = {}   # charted runs' metrics
        self._markers: dict[int, int] = {}        # where each charted run's points end
        self._charted: list[int] = []
        self._chosen: set[str] = set()            # metrics the person ticked
        self.board: ChartBoard | None = None
        self._first_refresh = True

        # -- top: summary, filter, actions --------------------------------------------------
        self.summary = QLabel("")
        self.summary.setObjectName("paneTitle")
        self.kind_filter = QComboBox()
        self.kind_filter.addItem("All kinds", "")
        for kind in ("generate", "reward", "ppo", "eval"):
            self.kind_filter.addItem(KIND_LABELS[kind].capitalize()
                                     if kind != "ppo" else "PPO", kind)
        self.kind_filter.currentIndexChanged.connect(self._apply_filter)
        self.csv_button = QPushButton("Export metrics (CSV)…")
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
        top.addSpacing(12)
        for button in (self.csv_button, self.delete_button, self.refresh_button):
            top.addWidget(button)

        # -- the table ------------------------------------------------------------------------
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(COLUMNS)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(1)
        self.proxy.setFilterRole(ID_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
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
        self.metric_tree = QTreeWidget()
        self.metric_tree.setHeaderHidden(True)
        self.metric_tree.setRootIsDecorated(True)
        self.metric_tree.itemChanged.connect(self._metric_toggled)
        metrics_title = QLabel("Metrics to chart")
        metrics_title.setObjectName("paneTitle")
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        details_title = QLabel("Details")
        details_title.setObjectName("paneTitle")
        lv.addWidget(details_title)
        lv.addWidget(self.details, 3)
        lv.addWidget(metrics_title)
        lv.addWidget(self.metric_tree, 2)
        left.setMinimumWidth(260)
        left.setMaximumWidth(400)

        # -- bottom right: the charts -----------------------------------------------------------
        self.chart_title = QLabel("")
        self.chart_title.setObjectName("paneTitle")
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 95)
        self.smoothing.setValue(60)
        self.smoothing.setMaximumWidth(140)
        self.smoothing.setToolTip("0 draws the raw values; higher values draw an exponential "
                                  "moving average over the faint raw curve (evaluation points, "
                                  "learning rates and KL coefficients are never smoothed).")
        self.smoothing_value = QLabel("0.60")
        self.smoothing_value.setMinimumWidth(30)
        self.smoothing.valueChanged.connect(self._set_smoothing)
        self.png_button = QPushButton("Export charts (PNG)…")
        self.png_button.clicked.connect(lambda: self.export_png())
        bar = QHBoxLayout()
        bar.addWidget(self.chart_title, 1)
        bar.addWidget(QLabel("Smoothing"))
        bar.addWidget(self.smoothing)
        bar.addWidget(self.smoothing_value)
        bar.addSpacing(8)
        bar.addWidget(self.png_button)
        self.chart_host = QWidget()
        self.chart_host.setObjectName("chartHost")
        self.chart_host.setStyleSheet("#chartHost { background: white; }")
        self.chart_layout = QVBoxLayout(self.chart_host)
        self.chart_layout.setContentsMargins(4, 4, 4, 4)
        self.empty = QLabel("Select a run to chart its metrics.\n"
                            "Select several (Ctrl- or Shift-click) to overlay them.")
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.chart_layout.addWidget(self.empty)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.chart_host)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addLayout(bar)
        rv.addWidget(self.scroll, 1)

        bottom = QSplitter()
        bottom.addWidget(left)
        bottom.addWidget(right)
        bottom.setStretchFactor(1, 1)
        bottom.setSizes([300, 900])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(bottom)
        split.setStretchFactor(1, 1)
        split.setSizes([260, 540])
        self.status_line = QLabel("")
        self.status_line.setObjectName("statusLine")
        self.status_line.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.status_line)

        self.timer = QTimer(self)
        self.timer.setInterval(LIVE_INTERVAL_MS)
        self.timer.timeout.connect(self._tick)
        self.refresh()

    # -- the table -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read every run (called when the page is shown and by the Refresh button)."""
        try:
            runs = self.store.list_runs()
            finals = {r["id"]: self.store.final_metrics(r["id"]) for r in runs}
        except (StoreError, sqlite3.Error) as exc:
            self.status_line.setText(f"Could not read the runs from {self.store.path}: {exc}")
            return
        selected = self.selected_run_ids()
        self.runs = {r["id"]: r for r in runs}
        self.table.setSortingEnabled(False)
        self.model.removeRows(0, self.model.rowCount())
        self._rows = {}
        for run in runs:
            self._rows[run["id"]] = self.model.rowCount()
            self.model.appendRow(self._row_items(run, finals[run["id"]]))
        self.table.setSortingEnabled(True)
        self._update_summary()
        if not selected and self._first_refresh and runs:
            selected = [runs[-1]["id"]]  # open the newest run to start with
        self._first_refresh = False
        self.select_runs([i for i in selected if i in self.runs], quiet=True)
        self._sync_timer()

    def _row_items(self, run: dict, final: dict[str, float]) -> list[QStandardItem]:
        items = [QStandardItem() for _ in COLUMNS]
        items[0].setData(run["id"], ID_ROLE)
        items[1].setData(run["kind"], ID_ROLE)
        self._fill_row(items, run, final)
        return items

    def _fill_row(self, items: list[QStandardItem], run: dict, final: dict[str, float]) -> None:
        seconds = run_seconds(run)
        result, result_sort = key_metric(run, final)
        links = parent_links(run, self.runs)
        status = run["status"]
        values = [
            (f"#{run['id']}", run["id"]),
            (KIND_LABELS.get(run["kind"], run["kind"]), run["kind"]),
            (f"●  {status}", status),
            (_fmt_time(run["created_at"]), run["created_at"] or ""),
            (duration(seconds) if seconds is not None else "—",
             seconds if seconds is not None else -1.0),
            (result, result_sort if result_sort is not None else float("-inf")),
            (", ".join(text for text, _ in links) or "—", links[0][1] if links else -1),
        ]
        tip = f"Run #{run['id']} ({run['kind']}): {status}"
        if run.get("error"):
            tip += f"\n\n{run['error']}"
        for item, (text, sort) in zip(items, values):
            item.setText(text)
            item.setData(sort, SORT_ROLE)
            item.setToolTip(tip)
        items[2].setForeground(QBrush(QColor(STATUS_COLOURS.get(status, "#374151"))))
        if run.get("error"):
            items[5].setToolTip(run["error"])

    def _update_summary(self) -> None:
        running = sum(r["status"] == "running" for r in self.runs.values())
        n = len(self.runs)
        text = f"{n} run{'s' * (n != 1)}" if n else "No runs yet"
        if running:
            text += f" · {running} running"
        self.summary.setText(text)

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
            runs = {r["id"]: r for r in self.store.list_runs()}
        except (StoreError, sqlite3.Error):
            return  # the database is busy: try again on the next tick
        if set(runs) != set(self.runs):
            self.refresh()
            return
        reload = []
        for run_id, run in runs.items():
            before = self.runs[run_id]
            changed = (run["status"], run["finished_at"], run["error"], run["artifact"]) != (
                before["status"], before["finished_at"], before["error"], before["artifact"])
            if not changed and run["status"] != "running":
                continue
            if changed and run["status"] == "running":
                reload.append(run_id)  # resumed: points past its checkpoint were dropped
            self.runs[run_id] = run
            try:
                final = self.store.final_metrics(run_id)
            except sqlite3.Error:
                continue
            row = self._rows[run_id]
            self._fill_row([self.model.item(row, c) for c in range(len(COLUMNS))], run, final)
        self._update_summary()
        charted = [r for r in self._charted if self.runs[r]["status"] == "running"
                   or r in reload]
        if any(r in reload for r in self._charted):
            for run_id in reload:
                self._points.pop(run_id, None)
                self._markers.pop(run_id, None)
            self._show_runs(self._charted, keep_choice=True)
        elif charted:
            self._follow(charted)
        if len(self._charted) == 1 and self._charted[0] in runs:
            self._show_details(self._charted)

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
            if ids != self._charted or any(self.runs[i]["status"] == "running" for i in ids):
                self._selection_changed()
            else:
                self._show_details(ids)

    def _selection_changed(self, force: bool = False) -> None:
        ids = self.selected_run_ids()
        if ids == self._charted and not force:
            return
        self._show_runs(ids, keep_choice=True)

    # -- details ---------------------------------------------------------------------------

    def _show_details(self, ids: list[int]) -> None:
        runs = [self.runs[i] for i in ids if i in self.runs]
        if not runs:
            self.details.setHtml(
                "<p style='color:#6b7280'>Select a run to see its settings, result and "
                "files.</p>")
            return
        if len(runs) > 1:
            rows = "".join(
                f"<tr><td><span style='color:{self._colour(r['id'])}'>■</span> "
                f"<a href='{r['id']}'>#{r['id']}</a></td>"
                f"<td>{html.escape(KIND_LABELS.get(r['kind'], r['kind']))}</td>"
                f"<td style='color:{STATUS_COLOURS.get(r['status'], '#374151')}'>"
                f"{html.escape(r['status'])}</td></tr>" for r in runs)
            self.details.setHtml(f"<b>{len(runs)} runs overlaid</b><table cellpadding='2'>"
                                 f"{rows}</table>")
            return
        run = runs[0]
        seconds = run_seconds(run)
        colour = STATUS_COLOURS.get(run["status"], "#374151")
        title = (f"<p style='font-size:12pt'><b>Run #{run['id']}</b> · "
                 f"{html.escape(KIND_LABELS.get(run['kind'], run['kind']))} · "
                 f"<span style='color:{colour}'><b>{html.escape(run['status'])}</b></span></p>")
        parts = [title]
        if run.get("error"):
            parts.append("<p style='background:#fdecec; color:#8a1c1c; padding:4px; "
                         f"border:1px solid #f5c2c2'>{html.escape(run['error'])}</p>")
        info = [("Started", _fmt_time(run["created_at"])),
                ("Finished", _fmt_time(run["finished_at"])),
                ("Duration", duration(seconds) if seconds is not None else "—")]
        rows = [f"<tr><td style='color:#6b7280'>{k}</td><td>{v}</td></tr>" for k, v in info]
        links = parent_links(run, self.runs)
        if links:
            rows.append("<tr><td style='color:#6b7280'>From</td><td>" + ", ".join(
                f"<a href='{rid}'>{html.escape(text)}</a>" if rid in self.runs
                else html.escape(text) for text, rid in links) + "</td></tr>")
        children = [r for r in self.runs.values() if any(
            rid == run["id"] for _, rid in parent_links(r, self.runs))]
        if children:
            rows.append("<tr><td style='color:#6b7280'>Used by</td><td>" + ", ".join(
                f"<a href='{c['id']}'>{KIND_LABELS.get(c['kind'], c['kind'])} #{c['id']}</a>"
                for c in children) + "</td></tr>")
        if run.get("artifact"):
            rows.append(f"<tr><td style='color:#6b7280'>Files</td>"
                        f"<td>{html.escape(str(run['artifact']))}</td></tr>")
        parts.append("<table cellpadding='2'>" + "".join(rows) + "</table>")
        config = run.get("config") or {}
        if config:
            items = "".join(
                f"<tr><td style='color:#6b7280'>{html.escape(str(k))}</td>"
                f"<td>{html.escape(self._short(v))}</td></tr>" for k, v in sorted(config.items()))
            parts.append("<p style='margin-top:8px'><b>Settings</b></p>"
                         f"<table cellpadding='1'>{items}</table>")
        self.details.setHtml("".join(parts))

    @staticmethod
    def _short(value) -> str:
        text = str(value)
        return text if len(text) <= 80 else text[:77] + "…"

    # -- metrics and charts ----------------------------------------------------------------

    def _colour(self, run_id: int) -> str:
        index = self._charted.index(run_id) if run_id in self._charted else 0
        return PALETTE[index % len(PALETTE)]

    def _load(self, run_id: int) -> None:
        rows, marker = self.store.metrics_since(run_id, self._markers.get(run_id, 0))
        points = self._points.setdefault(run_id, [])
        points.extend((r["step"], r["name"], r["value"]) for r in rows)
        self._markers[run_id] = marker

    def metric_names(self) -> list[str]:
        names = {name for run_id in self._charted for _, name, _ in self._points.get(run_id, [])}
        return sorted(names, key=lambda n: (GROUP_ORDER.index(metric_group(n))
                                            if metric_group(n) in GROUP_ORDER else 99,
                                            metric_group(n), n))

    def _show_runs(self, ids: list[int], keep_choice: bool = True) -> None:
        """Chart the runs ``ids`` (overlaid when several) and show their details."""
        for run_id in list(self._points):
            if run_id not in ids:
                self._points.pop(run_id)
                self._markers.pop(run_id, None)
        self._charted = list(ids)
        try:
            for run_id in ids:
                self._load(run_id)
        except (StoreError, sqlite3.Error) as exc:
            self.status_line.setText(f"Could not read the metrics from {self.store.path}: {exc}")
        self._show_details(ids)
        names = self.metric_names()
        chosen = [n for n in names if n in self._chosen] if keep_choice else []
        if not chosen and ids:
            kind = self.runs[ids[0]]["kind"] if ids[0] in self.runs else ""
            chosen = [n for n in DEFAULT_METRICS.get(kind, []) if n in names] or names[:4]
        self._fill_metric_tree(names, set(chosen))
        self._build_charts(chosen)

    def _fill_metric_tree(self, names: list[str], chosen: set[str]) -> None:
        self.metric_tree.blockSignals(True)
        self.metric_tree.clear()
        groups: dict[str, QTreeWidgetItem] = {}
        for name in names:
            group = metric_group(name)
            if group not in groups:
                item = QTreeWidgetItem([f"{group}/" if group != "other" else "other"])
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable
                              | Qt.ItemFlag.ItemIsAutoTristate)
                self.metric_tree.addTopLevelItem(item)
                groups[group] = item
            child = QTreeWidgetItem([name])
            child.setData(0, Qt.ItemDataRole.UserRole, name)
            child.setFlags(child.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            child.setCheckState(0, Qt.CheckState.Checked if name in chosen
                                else Qt.CheckState.Unchecked)
            groups[group].addChild(child)
        self.metric_tree.expandAll()
        self.metric_tree.blockSignals(False)

    def checked_metrics(self) -> list[str]:
        names = []
        for i in range(self.metric_tree.topLevelItemCount()):
            group = self.metric_tree.topLevelItem(i)
            for j in range(group.childCount()):
                child = group.child(j)
                if child.checkState(0) == Qt.CheckState.Checked:
                    names.append(child.data(0, Qt.ItemDataRole.UserRole))
        return names

    def set_metrics(self, names: list[str]) -> None:
        """Tick exactly ``names`` in the chooser (and chart them)."""
        self._chosen = set(names)
        self._fill_metric_tree(self.metric_names(), self._chosen)
        self._build_charts(self.checked_metrics())

    def _metric_toggled(self, item: QTreeWidgetItem, column: int) -> None:
        # Ticking a group ticks its children one by one: chart once, after the last of them.
        QTimer.singleShot(0, self._chart_checked)

    def _chart_checked(self) -> None:
        checked = self.checked_metrics()
        visible = set(self.metric_names())
        self._chosen = (self._chosen - visible) | set(checked)
        if [c.metric_name for c in self._charts()] != self._ordered(checked):
            self._build_charts(checked)

    def _charts(self) -> list:
        return self.board.charts if self.board is not None else []

    def _label(self, run_id: int) -> str:
        run = self.runs.get(run_id)
        return f"#{run_id} {KIND_LABELS.get(run['kind'], run['kind'])}" if run else f"#{run_id}"

    def _ordered(self, metrics: list[str]) -> list[str]:
        """Charts in a stable order: the kind's usual charts first (in their usual order),
        then the rest as the chooser lists them."""
        kind = self.runs[self._charted[0]]["kind"] if self._charted and \
            self._charted[0] in self.runs else ""
        usual = DEFAULT_METRICS.get(kind, [])
        listed = self.metric_names()
        return sorted(metrics, key=lambda n: (usual.index(n) if n in usual else len(usual),
                                              listed.index(n) if n in listed else 0))

    def _build_charts(self, metrics: list[str]) -> None:
        metrics = self._ordered(metrics)
        if self.board is not None:
            self.board.timer.stop()
            self.chart_layout.removeWidget(self.board)
            self.board.hide()   # deleteLater waits for the event loop; never draw it meanwhile
            self.board.setParent(None)
            self.board.deleteLater()
            self.board = None
        ids = self._charted
        names_of = {r: {name for _, name, _ in self._points.get(r, [])} for r in ids}
        if not ids or not metrics:
            self.empty.setText("Select a run to chart its metrics.\nSelect several (Ctrl- or "
                               "Shift-click) to overlay them." if not ids else
                               "This run has no stored metrics yet." if not self.metric_names()
                               else "Tick the metrics to chart on the left.")
            self.empty.show()
            self.chart_title.setText("")
            return
        self.empty.hide()
        layout = [(name, [(f"{name}@{r}", self._label(r), self._colour(r))
                          for r in ids if name in names_of[r]], name) for name in metrics]
        columns = 1 if len(metrics) == 1 else 2 if len(metrics) <= 4 or len(ids) > 1 else 3
        self.board = ChartBoard(layout, columns=columns)
        for chart, name in zip(self.board.charts, metrics):
            chart.setMinimumHeight(230)
            legend = chart.getPlotItem().legend
            legend.setBrush(pg.mkBrush(255, 255, 255, 215))  # readable over the curves
            if len(ids) == 1:
                legend.setVisible(False)  # one run: the title above the charts says which
        self.board.set_smoothing(self.smoothing.value() / 100)
        rows = -(-len(metrics) // columns)
        self.board.setMinimumHeight(rows * 240)
        self.chart_layout.addWidget(self.board)
        for run_id in ids:
            for step, name, value in self._points.get(run_id, []):
                if value is not None:
                    self.board.add_point(f"{name}@{run_id}", step, value)
        self.board.redraw_all()
        runs = ", ".join(self._label(r) for r in ids)
        self.chart_title.setText(f"{'Overlay of ' if len(ids) > 1 else ''}{runs}")

    def _follow(self, run_ids: list[int]) -> None:
        """Append the points running runs wrote since the last look."""
        before = set(self.metric_names())
        for run_id in run_ids:
            start = len(self._points.get(run_id, []))
            try:
                self._load(run_id)
            except sqlite3.Error:
                continue
            if self.board is not None:
                for step, name, value in self._points[run_id][start:]:
                    if value is not None:
                        self.board.add_point(f"{name}@{run_id}", step, value)
        names = self.metric_names()
        if set(names) != before:
            # A metric appeared (e.g. the first evaluation): offer it, chart the defaults.
            kind = self.runs[self._charted[0]]["kind"]
            chosen = [n for n in names if n in self._chosen] or [
                n for n in DEFAULT_METRICS.get(kind, []) if n in names] or names[:4]
            self._fill_metric_tree(names, set(chosen))
            self._build_charts(chosen)

    def _set_smoothing(self, value: int) -> None:
        self.smoothing_value.setText(f"{value / 100:.2f}")
        if self.board is not None:
            self.board.set_smoothing(value / 100)
            self.board.redraw_all()

    # -- export ----------------------------------------------------------------------------

    def export_png(self, path: str | None = None) -> Path | None:
        """Save the charts as shown to a PNG file."""
        if self.board is None:
            QMessageBox.information(self, "Nothing to export",
                                    "Select a run and tick at least one metric to chart first.")
            return None
        if path is None:
            name = "runs-" + "-".join(str(r) for r in self._charted) + ".png"
            path, _ = QFileDialog.getSaveFileName(self, "Export charts",
                                                  str(Path.home() / name), "PNG image (*.png)")
            if not path:
                return None
        target = Path(path)
        if target.suffix.lower() != ".png":
            target = target.with_name(target.name + ".png")
        self.board.redraw_all()
        image = self.board.grab()
        if image.isNull() or not image.save(str(target), "PNG"):
            QMessageBox.warning(self, "Export failed",
                                f"Could not write {target}: check that the folder exists and "
                                "that you may write to it.")
            return None
        self.status_line.setText(f"Saved the charts to {target}")
        return target

    def export_csv(self, path: str | None = None) -> Path | None:
        """Write the selected runs' metrics to a CSV file (core.run_export)."""
        ids = self.selected_run_ids()
        if not ids:
            QMessageBox.information(self, "Nothing to export", "Select one or more runs first.")
            return None
        if path is None:
            name = "runs-" + "-".join(str(r) for r in ids) + "-metrics.csv"
            path, _ = QFileDialog.getSaveFileName(self, "Export metrics",
                                                  str(Path.home() / name), "CSV file (*.csv)")
            if not path:
                return None
        target = Path(path)
        try:
            count = write_metrics_csv(self.store, ids, target)
        except (StoreError, OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            QMessageBox.warning(self, "Export failed", f"Could not write {target}: {reason}")
            return None
        runs = ", ".join(f"#{r}" for r in ids)
        self.status_line.setText(f"Wrote {count:,} metric points of run{'s' * (len(ids) > 1)} "
                                 f"{runs} to {target}")
        return target

    # -- delete ----------------------------------------------------------------------------

    def delete_selected(self) -> list[RunDeletion]:
        ids = self.selected_run_ids()
        if not ids:
            QMessageBox.information(self, "Nothing to delete", "Select one or more runs first.")
            return []
        running = [i for i in ids if self.runs.get(i, {}).get("status") == "running"]
        if running:
            QMessageBox.information(
                self, "Run still running",
                f"Run{'s' * (len(running) > 1)} {', '.join(f'#{r}' for r in running)} "
                f"{'are' if len(running) > 1 else 'is'} still running. Cancel it on its page "
                "(or let it finish) before deleting it.")
            return []
        try:
            plans = [describe_deletion(self.store, self.workspace.runs_dir, i) for i in ids]
        except (StoreError, sqlite3.Error) as exc:
            QMessageBox.warning(self, "Cannot delete", str(exc))
            self.refresh()
            return []
        if QMessageBox.question(
                self, "Delete run" + ("s" if len(ids) > 1 else ""), self.deletion_text(plans),
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return []
        done, problems = [], []
        for plan in plans:
            try:
                result = delete_run(self.store, self.workspace.runs_dir, plan.run_id)
            except (StoreError, sqlite3.Error) as exc:
                problems.append(f"Run #{plan.run_id} was not deleted: {exc}")
                continue
            done.append(result)
            problems += [f"Could not remove {path}: {why}" for path, why in result.failed]
        self.refresh()
        if done:
            self.status_line.setText(
                f"Deleted run{'s' * (len(done) > 1)} {', '.join(f'#{d.run_id}' for d in done)}.")
        if problems:
            QMessageBox.warning(self, "Not everything was deleted",
                                "\n".join(problems) + "\n\nThe runs are gone from the workspace; "
                                "folders listed here can be removed by hand.")
        return done

    def deletion_text(self, plans: list[RunDeletion]) -> str:
        """What the confirmation says: runs, metric points, folders (with sizes), evaluation
        pairs, and which runs lose their link."""
        lines = []
        deleted = {p.run_id for p in plans}
        for plan in plans:
            what = [f"{plan.metrics:,} metric points"]
            if plan.comparisons:
                what.append(f"{plan.comparisons:,} evaluation pairs and their judgments")
            if plan.generations:
                what.append(f"{plan.generations:,} generated responses")
            lines.append(f"Run #{plan.run_id} ({KIND_LABELS.get(plan.kind, plan.kind)}, "
                         f"{plan.status}): " + ", ".join(what))
            for folder in plan.folders:
                lines.append(f"    folder {folder} ({human_size(folder_size(folder))})")
            for path in plan.kept:
                lines.append(f"    kept (outside the workspace's runs folder): {path}")
        children = sorted({c for p in plans for c in p.children} - deleted)
        text = "This deletes:\n\n" + "\n".join(lines)
        if children:
            text += ("\n\nRun" + ("s " if len(children) > 1 else " ")
                     + ", ".join(f"#{c}" for c in children)
                     + (" were" if len(children) > 1 else " was")
                     + " made from it: they are kept but lose their link to it.")
        return text + "\n\nThis cannot be undone."
