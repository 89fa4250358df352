"""The Runs page's charts: the metric chooser, the chart board and following a running run.

Selecting a run charts its stored metrics; selecting several overlays them, one colour per run,
the same metric on the same axes. Metrics are read with ``Store.metrics_since`` so that a
running run only costs the points written since the last look.

A metric's x is its step: a training step, or for generation (``generate/``) the number of pairs
the run had made when the point was written. A metric whose steps repeat (generate runs
recorded before that, every point at step 0) is charted against the seconds since its run
started instead, from the time each point was written, so it is a curve and not a vertical
line.

``RunCharts`` is an object the page holds (``page.charts``), made with the store and a way to
read the page's runs (run id -> Run). The page places ``metric_tree`` and ``pane`` in its
layout, calls ``show_runs(ids)`` when the selection changes, ``follow(ids)`` for running runs
and ``forget(ids)`` for runs resumed since; it listens to ``charted`` (show the details of these
runs), ``read_failed`` (a sentence for the status line) and ``export_requested`` (the pane's
PNG button).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.data.store import Store, StoreError
from desktop_app.core.runs.record import Run, RunKind
from desktop_app.core.runs.summary import parse_time
from desktop_app.gui.runs.table import KIND_LABELS
from desktop_app.gui.widgets.charts import PALETTE, ChartBoard

# What to chart first when a run of this kind is opened (and the person has not chosen).
DEFAULT_METRICS = {
    RunKind.REWARD: ["train/loss", "eval/loss", "train/accuracy", "eval/accuracy"],
    RunKind.PPO: ["objective/scores", "objective/kl", "loss/policy", "loss/value",
                  "objective/entropy", "policy/clipfrac"],
    RunKind.RLOO: ["objective/scores", "objective/kl", "loss/policy",
                   "objective/group_reward_std", "objective/entropy", "policy/clipfrac"],
    RunKind.DPO: ["train/loss", "eval/loss", "train/rewards/accuracies",
                  "eval/rewards/accuracies", "train/rewards/margins", "eval/rewards/margins"],
    RunKind.GENERATE: ["generate/tokens_per_s", "generate/pairs"],
}
GROUP_ORDER = ["objective", "eval", "train", "loss", "policy", "val", "response", "generate"]
EMPTY_TEXT = ("Select a run to chart its metrics.\n"
              "Select several (Ctrl- or Shift-click) to overlay them.")
STEP_LABELS = {"generate": "pairs generated"}   # what a step is, by metric group
TIME_LABEL = "seconds since the run started"


def metric_group(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else "other"


class RunCharts(QObject):
    charted = Signal(list)       # the run ids now charted, in order (their colours follow it)
    read_failed = Signal(str)    # the metrics could not be read: a sentence for the status line
    export_requested = Signal()  # "Export charts (PNG)…" was pressed

    def __init__(self, store: Store, runs: Callable[[], dict[int, Run]],
                 parent: QObject | None = None):
        """``runs()``: the page's runs by id, as last read (kinds, labels, start times)."""
        super().__init__(parent)
        self.store = store
        self._runs = runs
        # charted runs' metrics: (step, name, value, time written)
        self._points: dict[int, list[tuple[int, str, float, float]]] = {}
        self._by_time: set[str] = set()           # metrics charted against time, not step
        self._markers: dict[int, int] = {}        # where each charted run's points end
        self.run_ids: list[int] = []              # the charted runs
        self._chosen: set[str] = set()            # metrics the person ticked
        self.board: ChartBoard | None = None
        self.metric_tree = self._build_metric_tree()
        self.pane = self._build_chart_pane()

    @property
    def runs(self) -> dict[int, Run]:
        return self._runs()

    # -- building ----------------------------------------------------------------------------

    def _build_metric_tree(self) -> QTreeWidget:
        self.metric_tree = QTreeWidget()
        self.metric_tree.setHeaderHidden(True)
        self.metric_tree.setRootIsDecorated(True)
        self.metric_tree.itemChanged.connect(self._metric_toggled)
        return self.metric_tree

    def _build_chart_pane(self) -> QWidget:
        """The title and smoothing bar over a scrolling host the board is put in."""
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
        self.png_button.clicked.connect(self.export_requested)
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
        self.empty = QLabel(EMPTY_TEXT)
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
        return right

    # -- the charted runs' metrics -----------------------------------------------------------

    def colour(self, run_id: int) -> str:
        index = self.run_ids.index(run_id) if run_id in self.run_ids else 0
        return PALETTE[index % len(PALETTE)]

    def _load(self, run_id: int) -> None:
        rows, marker = self.store.metrics_since(run_id, self._markers.get(run_id, 0))
        points = self._points.setdefault(run_id, [])
        points.extend((r["step"], r["name"], r["value"], r["time"]) for r in rows)
        self._markers[run_id] = marker

    def metric_names(self) -> list[str]:
        names = {name for run_id in self.run_ids
                 for _, name, *_ in self._points.get(run_id, [])}
        return sorted(names, key=lambda n: (GROUP_ORDER.index(metric_group(n))
                                            if metric_group(n) in GROUP_ORDER else 99,
                                            metric_group(n), n))

    def forget(self, run_ids: list[int]) -> None:
        """Read these runs' points again from the start next time (a resumed run dropped the
        points past its checkpoint)."""
        for run_id in run_ids:
            self._points.pop(run_id, None)
            self._markers.pop(run_id, None)

    def show_runs(self, ids: list[int], keep_choice: bool = True) -> None:
        """Chart the runs ``ids`` (overlaid when several); ``charted`` says which."""
        for run_id in list(self._points):
            if run_id not in ids:
                self._points.pop(run_id)
                self._markers.pop(run_id, None)
        self.run_ids = list(ids)
        try:
            for run_id in ids:
                self._load(run_id)
        except (StoreError, sqlite3.Error) as exc:
            self.read_failed.emit(f"Could not read the metrics from {self.store.path}: {exc}")
        self.charted.emit(list(ids))
        names = self.metric_names()
        chosen = [n for n in names if n in self._chosen] if keep_choice else []
        if not chosen and ids:
            kind = self.runs[ids[0]].kind if ids[0] in self.runs else None
            chosen = [n for n in DEFAULT_METRICS.get(kind, []) if n in names] or names[:4]
        self._fill_metric_tree(names, set(chosen))
        self._build_charts(chosen)

    def follow(self, run_ids: list[int]) -> None:
        """Append the points running runs wrote since the last look."""
        before = set(self.metric_names())
        for run_id in run_ids:
            start = len(self._points.get(run_id, []))
            try:
                self._load(run_id)
            except sqlite3.Error:
                continue
            if self.board is not None:
                for step, name, value, written in self._points[run_id][start:]:
                    if value is not None:
                        self.board.add_point(f"{name}@{run_id}",
                                             self._x(run_id, name, step, written), value)
        names = self.metric_names()
        if set(names) != before:
            # A metric appeared (e.g. the first evaluation): offer it, chart the defaults.
            kind = self.runs[self.run_ids[0]].kind
            chosen = [n for n in names if n in self._chosen] or [
                n for n in DEFAULT_METRICS.get(kind, []) if n in names] or names[:4]
            self._fill_metric_tree(names, set(chosen))
            self._build_charts(chosen)

    # -- the metric chooser ------------------------------------------------------------------

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

    # -- the board ---------------------------------------------------------------------------

    def _charts(self) -> list:
        return self.board.charts if self.board is not None else []

    def _label(self, run_id: int) -> str:
        run = self.runs.get(run_id)
        return f"#{run_id} {KIND_LABELS[run.kind]}" if run else f"#{run_id}"

    def _ordered(self, metrics: list[str]) -> list[str]:
        """Charts in a stable order: the kind's usual charts first (in their usual order),
        then the rest as the chooser lists them."""
        kind = self.runs[self.run_ids[0]].kind if self.run_ids and \
            self.run_ids[0] in self.runs else None
        usual = DEFAULT_METRICS.get(kind, [])
        listed = self.metric_names()
        return sorted(metrics, key=lambda n: (usual.index(n) if n in usual else len(usual),
                                              listed.index(n) if n in listed else 0))

    def _x(self, run_id: int, name: str, step: int, written: float) -> float:
        """Where a point goes across: its step, or for a metric charted against time the
        seconds from its run's start to when it was written."""
        if name not in self._by_time:
            return step
        return written - self._start_time(run_id)

    def _start_time(self, run_id: int) -> float:
        run = self.runs.get(run_id)
        started = parse_time(run.created_at) if run is not None else None
        if started is not None:
            return started.timestamp()
        return min((p[3] for p in self._points.get(run_id, [])), default=0.0)

    def _steps_repeat(self, name: str) -> bool:
        """Whether a charted run has two points of ``name`` at the same step."""
        for run_id in self.run_ids:
            steps = [p[0] for p in self._points.get(run_id, []) if p[1] == name]
            if len(steps) != len(set(steps)):
                return True
        return False

    def _x_options(self, name: str) -> dict:
        if name in self._by_time:
            return {"x_label": TIME_LABEL, "integer_x": False}
        return {"x_label": STEP_LABELS.get(name.split("/", 1)[0], "step"), "integer_x": True}

    def _build_charts(self, metrics: list[str]) -> None:
        metrics = self._ordered(metrics)
        if self.board is not None:
            self.board.timer.stop()
            self.chart_layout.removeWidget(self.board)
            self.board.hide()   # deleteLater waits for the event loop; never draw it meanwhile
            self.board.setParent(None)
            self.board.deleteLater()
            self.board = None
        ids = self.run_ids
        names_of = {r: {name for _, name, *_ in self._points.get(r, [])} for r in ids}
        self._by_time = {name for name in metrics if self._steps_repeat(name)}
        if not ids or not metrics:
            self.empty.setText(EMPTY_TEXT if not ids else
                               "This run has no stored metrics yet." if not self.metric_names()
                               else "Tick the metrics to chart on the left.")
            self.empty.show()
            self.chart_title.setText("")
            return
        self.empty.hide()
        layout = [(name, [(f"{name}@{r}", self._label(r), self.colour(r))
                          for r in ids if name in names_of[r]], name, self._x_options(name))
                  for name in metrics]
        columns = 1 if len(metrics) == 1 else 2 if len(metrics) <= 4 or len(ids) > 1 else 3
        self.board = ChartBoard(layout, columns=columns)
        for chart in self.board.charts:
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
            for step, name, value, written in self._points.get(run_id, []):
                if value is not None:
                    self.board.add_point(f"{name}@{run_id}",
                                         self._x(run_id, name, step, written), value)
        self.board.redraw_all()
        runs = ", ".join(self._label(r) for r in ids)
        self.chart_title.setText(f"{'Overlay of ' if len(ids) > 1 else ''}{runs}")

    def _set_smoothing(self, value: int) -> None:
        self.smoothing_value.setText(f"{value / 100:.2f}")
        if self.board is not None:
            self.board.set_smoothing(value / 100)
            self.board.redraw_all()
