"""Live metric charts: the one chart widget type of the app.

Each series owns a growing numpy buffer; ``add_point`` only appends (cheap, called per event)
and marks the chart dirty. A single ~50 ms timer per board redraws dirty curves with
``setData`` (pyqtgraph's scrollingPlots pattern), so a burst of events never blocks the UI.
Each series is drawn raw (thin, faint) and smoothed (EMA, bold), like TensorBoard.

Axes label their ticks with the digits the spacing between ticks needs (``tick_strings``:
0.0273, never 0.02732129208743580) and never rescale them with an SI prefix ("x0.001"). An axis
with nothing to spread over (one step, or every value the same) gets a range around its value
and one tick that names it, instead of pyqtgraph's leftover range from before.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

pg.setConfigOptions(antialias=True, background="w", foreground="#374151")

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
           "#db2777", "#65a30d", "#4f46e5", "#a16207"]


def _decimals(spacing: float) -> int:
    """Decimal places that write ``spacing`` exactly (0.25 -> 2, 5 -> 0), at most 12."""
    for places in range(13):
        if abs(round(spacing, places) - spacing) <= spacing * 1e-6:
            return places
    return 12


def tick_strings(values: list[float], spacing: float) -> list[str]:
    """Labels for ticks ``spacing`` apart: as many digits as tell neighbouring ticks apart.

    Values from 0.001 to 100000 are written plainly with one number of decimals for the whole
    axis (0.025, 0.0275 -> 0.0250, 0.0275); smaller and larger ones in scientific notation
    (2e-4, 1.5e6). A spacing that is no spacing at all (a single tick, or one far below the
    values' own size) gets three significant digits: 0.02732129208743580 -> 0.0273."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    biggest = max(finite, default=0.0)
    if not spacing > 0 or (biggest and spacing < biggest * 1e-6):
        spacing = 10.0 ** (math.floor(math.log10(biggest)) - 2) if biggest else 1.0
    plain = 1e-3 <= biggest < 1e5
    places = _decimals(spacing)
    step_exp = math.floor(math.log10(spacing))
    extra = _decimals(spacing / 10.0 ** step_exp)   # 2.5e-4 needs one digit more than 2e-4
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(str(v))
        elif abs(v) < spacing * 1e-6:
            out.append("0")
        elif plain:
            out.append(f"{v:.{places}f}")
        else:
            digits = max(0, math.floor(math.log10(abs(v))) - step_exp + extra)
            mantissa, exponent = f"{v:.{digits}e}".split("e")
            out.append(f"{mantissa}e{int(exponent)}")
    return out


def value_text(value: float) -> str:
    """One value on its own (a flat axis' single tick): four significant digits at most,
    without trailing zeros (24.93, 0.05 rather than 24.93070060556060, 0.05000)."""
    finite = math.isfinite(value) and value != 0
    spacing = 10.0 ** (math.floor(math.log10(abs(value))) - 3) if finite else 0.0
    mantissa, e, exponent = tick_strings([value], spacing)[0].partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return mantissa + e + exponent


class TickAxis(pg.AxisItem):
    """An axis labelled by ``tick_strings``, without SI-prefix scaling; ``integer`` keeps ticks
    on whole numbers (steps, pair counts: there is no step 2.5)."""

    def __init__(self, orientation: str, integer: bool = False, **kwargs):
        super().__init__(orientation, **kwargs)
        self.integer = integer
        self.enableAutoSIPrefix(False)

    def tickSpacing(self, minVal: float, maxVal: float, size: float):
        levels = super().tickSpacing(minVal, maxVal, size)
        if not self.integer or self._tickSpacing is not None:
            return levels
        whole = [(spacing, offset) for spacing, offset in levels if spacing >= 1]
        return whole or [(1.0, 0.0)]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if self.logMode:
            return super().tickStrings(values, scale, spacing)
        return tick_strings([v * scale for v in values], spacing * scale)


def flat_range(value: float, axis: int) -> tuple[float, float]:
    """The range shown around an axis with one value: a step either side for x, 10% of the
    value either side for y (1 either side of 0)."""
    if axis == 0:
        return value - 1.0, value + 1.0
    half = abs(value) * 0.1 or 1.0
    return value - half, value + half


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
    names are then only keys) and the smoothing and marker rules follow ``metric``.
    ``x_label`` names the x axis (training steps unless told otherwise); ``integer_x`` keeps its
    ticks on whole numbers."""

    def __init__(self, title: str, series: list[tuple[str, str]], parent: QWidget | None = None,
                 metric: str | None = None, x_label: str = "step", integer_x: bool = True):
        super().__init__(parent, axisItems={"bottom": TickAxis("bottom", integer=integer_x),
                                            "left": TickAxis("left")})
        self.setTitle(title, size="10pt")
        self.showGrid(x=True, y=True, alpha=0.2)
        self.setLabel("bottom", x_label)
        legend = self.addLegend(offset=(-10, 10), brush=pg.mkBrush(255, 255, 255, 215))
        # One series: the title already says what it is.
        legend.setVisible(len(series) > 1)
        self._pinned = [False, False]   # an axis given a range here because it was flat
        self.integer_x = integer_x
        # Until a point arrives: says so, instead of axes from 0 to 1 that look like data.
        self.no_data = QLabel("no data yet", self)
        self.no_data.setStyleSheet("color: #9ca3af; background: transparent;")
        self.no_data.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._empty: bool | None = None
        self._set_empty(True)
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
        self._set_empty(not any(buffer.n for buffer in self.buffers.values()))
        self._fit_flat_axes()
        self.dirty = False

    def _set_empty(self, empty: bool) -> None:
        if empty == self._empty:
            return
        self._empty = empty
        self.no_data.setVisible(empty)
        for name in ("left", "bottom"):
            self.getAxis(name).setStyle(showValues=not empty)
        self._place_no_data()

    def _place_no_data(self) -> None:
        self.no_data.adjustSize()
        self.no_data.move((self.width() - self.no_data.width()) // 2,
                          (self.height() - self.no_data.height()) // 2)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if "no_data" in self.__dict__:  # PlotWidget's own __init__ resizes before ours runs
            self._place_no_data()

    def _fit_flat_axes(self) -> None:
        """Give an axis with a single value (one step; every value equal) a range around it
        and one tick naming it; hand it back to auto-range once the data spreads out. Left
        alone where the person zoomed or panned (auto-range off, not by us)."""
        view = self.getPlotItem().getViewBox()
        auto = view.autoRangeEnabled()
        data = [buffer.data()[:2] for buffer in self.buffers.values() if buffer.n]
        for axis, name in ((0, "bottom"), (1, "left")):
            values = [d[axis] for d in data]
            if not values:
                continue
            low = min(float(v.min()) for v in values)
            high = max(float(v.max()) for v in values)
            if not (math.isfinite(low) and math.isfinite(high)):
                continue
            flat = high - low <= 1e-12 * max(1.0, abs(high))
            if flat and (auto[axis] or self._pinned[axis]):
                centre = (low + high) / 2
                lo, hi = flat_range(centre, axis)
                if axis == 0:
                    view.setXRange(lo, hi, padding=0)
                else:
                    view.setYRange(lo, hi, padding=0)
                label = (str(int(centre)) if axis == 0 and self.integer_x
                         and centre.is_integer() else value_text(centre))
                self.getAxis(name).setTicks([[(centre, label)]])
                self._pinned[axis] = True
            elif not flat and self._pinned[axis]:
                self._pinned[axis] = False
                self.getAxis(name).setTicks(None)
                view.enableAutoRange(axis=axis)

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
    metric of several runs (see MetricChart). A fourth item, a dict, is passed on to the chart
    (``x_label``, ``integer_x``)."""

    def __init__(self, layout: list[tuple], columns: int = 2,
                 parent: QWidget | None = None, interval_ms: int = 50):
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.charts: list[MetricChart] = []
        self.routes: dict[str, MetricChart] = {}
        for i, (title, series, *rest) in enumerate(layout):
            metric = rest[0] if rest else None
            options = rest[1] if len(rest) > 1 else {}
            chart = MetricChart(title, series, metric=metric, **options)
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
