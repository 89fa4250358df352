"""Live metric charts: the one chart widget type of the app.

Each series owns a growing numpy buffer; ``add_point`` only appends (cheap, called per event)
and marks the chart dirty. A single ~50 ms timer per board redraws dirty curves with
``setData`` (pyqtgraph's scrollingPlots pattern), so a burst of events never blocks the UI.
Each series is drawn raw (thin, faint) and smoothed (EMA, bold), like TensorBoard.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

pg.setConfigOptions(antialias=True, background="w", foreground="#374151")

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
           "#db2777", "#65a30d", "#4f46e5", "#a16207"]


def is_smoothed(metric: str) -> bool:
    """Only dense, noisy series are smoothed: evaluation points are sparse and already
    averaged over the whole split, and schedules (lr, KL coefficient) are not noisy."""
    return not metric.startswith("eval/") and not metric.endswith(("/lr", "/kl_coef"))


class SeriesBuffer:
    """Append-only (step, value) storage that grows by doubling, with its EMA kept up to date
    incrementally (TensorBoard's debiased form), so a redraw never loops over the history."""

    def __init__(self, smoothing: float = 0.0, capacity: int = 256):
        self.x = np.empty(capacity, dtype=np.float64)
        self.y = np.empty(capacity, dtype=np.float64)
        self.s = np.empty(capacity, dtype=np.float64)
        self.n = 0
        self.smoothing = smoothing
        self._last = self._norm = 0.0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self.x):
            self.x, self.y, self.s = (np.resize(a, 2 * len(a)) for a in (self.x, self.y, self.s))
        self.x[self.n], self.y[self.n] = x, y
        self.s[self.n] = self._smooth(y)
        self.n += 1

    def _smooth(self, y: float) -> float:
        w = self.smoothing
        self._last = w * self._last + (1 - w) * y
        self._norm = w * self._norm + (1 - w)
        return self._last / self._norm

    def set_smoothing(self, weight: float) -> None:
        self.smoothing = weight
        self._last = self._norm = 0.0
        for i in range(self.n):
            self.s[i] = self._smooth(self.y[i])

    def data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x[:self.n], self.y[:self.n], self.s[:self.n]


class MetricChart(pg.PlotWidget):
    """One plot with several named series (e.g. train/loss and eval/loss).

    With ``metric``, every series is that one metric (of different runs, overlaid; the series
    names are then only keys) and the smoothing and marker rules follow ``metric``."""

    def __init__(self, title: str, series: list[tuple[str, str]], parent: QWidget | None = None,
                 metric: str | None = None):
        super().__init__(parent)
        self.setTitle(title, size="10pt")
        self.showGrid(x=True, y=True, alpha=0.2)
        self.setLabel("bottom", "step")
        self.addLegend(offset=(-10, 10))
        self.getPlotItem().setClipToView(True)
        self.setMinimumHeight(160)
        self.smoothing = 0.6
        self.metric_name = metric
        self.buffers: dict[str, SeriesBuffer] = {}
        self.raw_curves: dict[str, pg.PlotDataItem] = {}
        self.smooth_curves: dict[str, pg.PlotDataItem] = {}
        self.smoothed: set[str] = set()
        for i, (name, label, *colour) in enumerate(series):
            # A series may name its colour (the runs page keeps one colour per run).
            color = colour[0] if colour else PALETTE[i % len(PALETTE)]
            rule = metric or name
            if is_smoothed(rule):
                self.smoothed.add(name)
            self.buffers[name] = SeriesBuffer(self._weight(name))
            faint = pg.mkColor(color)
            faint.setAlpha(70)
            self.raw_curves[name] = self.plot(pen=pg.mkPen(faint, width=1))
            # Evaluation points are sparse: show markers so one point is visible.
            symbol = "o" if rule.startswith("eval/") else None
            self.smooth_curves[name] = self.plot(pen=pg.mkPen(color, width=2), name=label,
                                                 symbol=symbol, symbolSize=5,
                                                 symbolBrush=color, symbolPen=None)
            for curve in (self.raw_curves[name], self.smooth_curves[name]):
                curve.setDownsampling(auto=True, method="peak")
        self.dirty = False

    def add_point(self, name: str, step: float, value: float) -> bool:
        buffer = self.buffers.get(name)
        if buffer is None:
            return False
        buffer.append(step, value)
        self.dirty = True
        return True

    def clear_data(self) -> None:
        for name in self.buffers:
            self.buffers[name] = SeriesBuffer(self._weight(name))
        self.dirty = True

    def redraw(self) -> None:
        if not self.dirty:
            return
        for name, buffer in self.buffers.items():
            x, y, smoothed = buffer.data()
            self.raw_curves[name].setData(x, y)
            self.raw_curves[name].setVisible(self._weight(name) > 0)
            self.smooth_curves[name].setData(x, smoothed)
        self.dirty = False

    def set_smoothing(self, weight: float) -> None:
        self.smoothing = weight
        for name, buffer in self.buffers.items():
            buffer.set_smoothing(self._weight(name))
        self.dirty = True

    def _weight(self, name: str) -> float:
        return self.smoothing if name in self.smoothed else 0.0


class ChartBoard(QWidget):
    """A grid of MetricCharts fed by metric name, redrawn together on one timer.

    A layout entry is (title, series) or (title, series, metric): the latter overlays one
    metric of several runs (see MetricChart)."""

    def __init__(self, layout: list[tuple], columns: int = 2,
                 parent: QWidget | None = None, interval_ms: int = 50):
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.charts: list[MetricChart] = []
        self.routes: dict[str, MetricChart] = {}
        for i, (title, series, *metric) in enumerate(layout):
            chart = MetricChart(title, series, metric=metric[0] if metric else None)
            grid.addWidget(chart, i // columns, i % columns)
            self.charts.append(chart)
            for name, *_ in series:
                self.routes[name] = chart
        self.points_received = 0
        self._next = 0
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def add_point(self, name: str, step: float, value: float) -> None:
        chart = self.routes.get(name)
        if chart is not None and chart.add_point(name, step, value):
            self.points_received += 1

    def clear(self) -> None:
        for chart in self.charts:
            chart.clear_data()
        self.points_received = 0

    def redraw(self) -> None:
        """Redraw one dirty chart per tick, round-robin: a repaint (axes text especially) is
        the expensive part, and spreading it keeps every UI-thread pause short."""
        for offset in range(len(self.charts)):
            chart = self.charts[(self._next + offset) % len(self.charts)]
            if chart.dirty:
                chart.redraw()
                self._next = (self._next + offset + 1) % len(self.charts)
                return

    def redraw_all(self) -> None:
        for chart in self.charts:
            chart.redraw()

    def set_smoothing(self, weight: float) -> None:
        for chart in self.charts:
            chart.set_smoothing(weight)
