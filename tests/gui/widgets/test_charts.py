import numpy as np
import pytest

from desktop_app.gui.widgets.charts import ChartBoard, SeriesBuffer


def test_series_buffer_grows_and_smooths_like_tensorboard():
    buffer = SeriesBuffer(smoothing=0.5, capacity=2)
    for step, value in enumerate([1.0, 3.0, 5.0]):
        buffer.append(step, value)
    x, y, s = buffer.data()
    assert list(x) == [0, 1, 2] and list(y) == [1, 3, 5]
    # Debiased EMA by hand: (0.5*1)/0.5 = 1; (0.25+1.5)/0.75; (0.875+2.5)/0.875
    assert s == pytest.approx([1.0, 1.75 / 0.75, 3.375 / 0.875])
    buffer.set_smoothing(0.0)
    assert list(buffer.data()[2]) == [1, 3, 5]


def test_board_routes_points_and_smooths_only_dense_series(qtbot):
    board = ChartBoard([("Loss", [("train/loss", "train"), ("eval/loss", "val")]),
                        ("LR", [("train/lr", "lr")])])
    qtbot.addWidget(board)
    board.set_smoothing(0.9)
    for step in range(5):
        board.add_point("train/loss", step, float(step))
        board.add_point("train/lr", step, float(step))
    board.add_point("eval/loss", 4, 2.0)
    board.add_point("unknown/metric", 1, 1.0)
    assert board.points_received == 11
    board.redraw_all()
    loss_chart, lr_chart = board.charts
    x, y = loss_chart.smooth_curves["train/loss"].getData()
    assert y[-1] < 4.0  # smoothed lags the raw value
    _, lr = lr_chart.smooth_curves["train/lr"].getData()
    assert np.array_equal(lr, np.arange(5.0))  # schedules are drawn as they are
    _, ev = loss_chart.smooth_curves["eval/loss"].getData()
    assert list(ev) == [2.0]
    board.clear()
    board.redraw_all()
    cleared = loss_chart.smooth_curves["train/loss"].getData()[0]
    assert cleared is None or len(cleared) == 0


# -- axes: readable ticks, sane ranges for one point and for flat lines ------------------------

def test_tick_labels_have_the_digits_the_spacing_needs():
    from desktop_app.gui.widgets.charts import tick_strings, value_text
    # No spacing to go by (a single tick, or a range far below the values' size): 3 digits.
    assert tick_strings([0.02732129208743580], 0.0) == ["0.0273"]
    assert tick_strings([24.93070060556060], 1e-15) == ["24.9"]
    assert tick_strings([0.02732129208743580], 0.0001) == ["0.0273"]
    # One number of decimals per axis, enough to tell neighbours apart.
    assert tick_strings([0.025, 0.0275, 0.03], 0.0025) == ["0.0250", "0.0275", "0.0300"]
    assert tick_strings([0.0, 10.0, 20.0], 10.0) == ["0", "10", "20"]
    assert tick_strings([-0.1, -0.05, 0.0, 0.05], 0.05) == ["-0.10", "-0.05", "0", "0.05"]
    # Very small and very large values in scientific notation, never an SI prefix.
    assert tick_strings([0.0, 2.5e-5, 5e-5, 7.5e-5], 2.5e-5) == ["0", "2.5e-5", "5.0e-5",
                                                                "7.5e-5"]
    assert tick_strings([1e6, 1.5e6], 5e5) == ["1.0e6", "1.5e6"]
    # A value on its own: four significant digits, no trailing zeros.
    assert [value_text(v) for v in (24.93070060556060, 0.05, 1.0, 0.0, 412.5, 2e-5)] == [
        "24.93", "0.05", "1", "0", "412.5", "2e-5"]


def _chart(qtbot, metric="train/loss", **options):
    from desktop_app.gui.widgets.charts import MetricChart
    chart = MetricChart(metric, [(metric, "run")], metric=metric, **options)
    qtbot.addWidget(chart)
    chart.resize(400, 300)
    return chart


def _ticks(axis) -> list[str]:
    low, high = axis.range
    strings = []
    for spacing, values in axis.tickValues(low, high, 300):
        strings += axis.tickStrings(values, 1.0, spacing)
    return strings


def test_axes_never_scale_by_an_si_prefix(qtbot):
    chart = _chart(qtbot, "generate/tokens_per_s")
    for step in range(0, 5001, 500):
        chart.add_point("generate/tokens_per_s", step, 20000.0 + step)
    chart.redraw()
    for name in ("bottom", "left"):
        axis = chart.getAxis(name)
        assert axis.autoSIPrefixScale == 1.0 and "x0.001" not in axis.labelString()
        assert all(len(text) <= 6 for text in _ticks(axis)), _ticks(axis)


def test_a_single_point_gets_a_range_around_it_and_one_tick_naming_it(qtbot):
    chart = _chart(qtbot, "generate/tokens_per_s")
    chart.add_point("generate/tokens_per_s", 0, 24.93070060556060)
    chart.redraw()
    view = chart.getPlotItem().getViewBox()
    (x0, x1), (y0, y1) = view.viewRange()
    assert (x0, x1) == pytest.approx((-1.0, 1.0))
    assert y0 < 24.93 < y1 and y1 - y0 == pytest.approx(0.2 * 24.93070060556060)
    assert chart.getAxis("left")._tickLevels == [[(24.93070060556060, "24.93")]]
    assert chart.getAxis("bottom")._tickLevels == [[(0.0, "0")]]
    assert not chart.no_data.isVisible()


def test_equal_values_are_a_flat_line_in_a_sane_range_until_they_differ(qtbot):
    chart = _chart(qtbot, "objective/kl_coef")
    for step in range(1, 31):
        chart.add_point("objective/kl_coef", step, 0.05)
    chart.redraw()
    view = chart.getPlotItem().getViewBox()
    (x0, x1), (y0, y1) = view.viewRange()
    assert x0 <= 1 and x1 >= 30 and x1 - x0 < 40          # x: the steps, auto-ranged
    assert (y0, y1) == pytest.approx((0.045, 0.055))       # y: 10% either side
    assert chart.getAxis("left")._tickLevels == [[(0.05, "0.05")]]
    chart.add_point("objective/kl_coef", 31, 0.5)
    chart.redraw()
    assert chart.getAxis("left")._tickLevels is None       # the values differ: auto again
    assert view.autoRangeEnabled()[1]


def test_an_empty_chart_says_so_instead_of_showing_zero_to_one(qtbot):
    chart = _chart(qtbot)
    chart.redraw()
    assert not chart.no_data.isHidden()
    assert not chart.getAxis("left").style["showValues"]
    chart.add_point("train/loss", 1, 0.7)
    chart.dirty = True
    chart.redraw()
    assert chart.no_data.isHidden() and chart.getAxis("left").style["showValues"]


def test_integer_axes_tick_whole_steps_only(qtbot):
    chart = _chart(qtbot)
    for step in (1, 2, 3):
        chart.add_point("train/loss", step, 1.0 / step)
    chart.redraw()
    axis = chart.getAxis("bottom")
    for spacing, values in axis.tickValues(0.8, 3.2, 300):
        assert spacing >= 1 and all(float(v).is_integer() for v in values)
