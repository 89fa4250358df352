"""The two layouts pages share: a settings column (labels, a scrolling settings form and a row
of buttons) and two panes side by side in a splitter."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QPushButton, QSplitter, QVBoxLayout, QWidget

from desktop_app.gui.widgets.config_form import FormScroll


def settings_column(above: list[QWidget], form: QWidget,
                    buttons: list[tuple[QPushButton, int]],
                    below: list[QWidget] = ()) -> QWidget:
    """``above`` (labels, pickers), ``form`` scrolling, a row of ``buttons`` (each with its
    stretch), then ``below``. At most 380 px wide: its least width is the form's and its
    scroll bar's, and the rest of the page goes to the charts."""
    column = QWidget()
    layout = QVBoxLayout(column)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in above:
        layout.addWidget(widget)
    layout.addWidget(FormScroll(form), 1)
    row = QHBoxLayout()
    for button, stretch in buttons:
        row.addWidget(button, stretch)
    layout.addLayout(row)
    for widget in below:
        layout.addWidget(widget)
    column.setMaximumWidth(380)
    return column


def side_by_side(owner: QWidget, left: QWidget, right: QWidget) -> QSplitter:
    """``left`` and ``right`` in a splitter that fills ``owner``; the right pane takes the spare
    width, and neither can be dragged shut."""
    split = QSplitter()
    split.addWidget(left)
    split.addWidget(right)
    split.setStretchFactor(1, 1)
    split.setChildrenCollapsible(False)
    QHBoxLayout(owner).addWidget(split)
    return split
