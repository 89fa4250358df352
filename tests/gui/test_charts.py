import numpy as np
import pytest

from desktop_app.gui.charts import ChartBoard, SeriesBuffer


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
