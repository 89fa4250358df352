"""Every page fits the smallest supported window (1024×600) and the default one (1280×800):
the window can be that small, and on every page nothing is squeezed below the size it needs
(buttons cut off mid-word, spin boxes without their arrows), nothing scrolls sideways, and no
form field sits under a scroll bar. What only an eye can judge is in docs/make_page_shots.py,
which renders the same pages at the same sizes."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QTabWidget,
    QWidget,
)

from desktop_app.gui.judge.compare_view import KeyButton

from .conftest import close_main_window, flush_events, open_main_window
from .page_data import populate

pytestmark = pytest.mark.slow  # every page and tab of a filled window, at two sizes

SIZES = [(1024, 600), (1280, 800)]
PAGES = ["Judge", "Prompts", "Models", "Reward model", "Policy", "Evaluate", "Chat",
         "Playground", "Runs"]
CHECKED = (QPushButton, QAbstractSpinBox, QComboBox, QCheckBox, QRadioButton)
LEAST_LINE_EDIT = 120   # a line edit narrower than this is no place to type


@pytest.fixture
def filled_window(qtbot, workspace, store):
    populate(store, workspace)
    win = open_main_window(qtbot, workspace, store)
    yield win
    close_main_window(win)


def _visible(window, kind) -> list:
    return [w for w in window.findChildren(QWidget) if isinstance(w, kind) and w.isVisible()]


def _name(widget: QWidget) -> str:
    text = widget.text() if hasattr(widget, "text") and callable(widget.text) else ""
    return f"{type(widget).__name__} {widget.objectName() or ''} {text!r}".strip()


def _squeezed(window) -> list[str]:
    """Controls narrower or lower than they need to show their text: cut-off labels."""
    problems = []
    for widget in _visible(window, CHECKED):
        need = widget.minimumSizeHint()
        if widget.width() < need.width() or widget.height() < need.height():
            problems.append(f"{_name(widget)}: {widget.width()}×{widget.height()} < "
                            f"{need.width()}×{need.height()}")
        if isinstance(widget, KeyButton) and widget.width() < widget._hint_for(
                widget.text()).width():
            problems.append(f"{_name(widget)}: its text does not fit in {widget.width()} px")
    for line in _visible(window, QLineEdit):
        if not isinstance(line.parentWidget(), (QAbstractSpinBox, QComboBox)) \
                and line.width() < LEAST_LINE_EDIT:
            problems.append(f"{_name(line)}: {line.width()} px wide")
    for label in _visible(window, QLabel):
        # A label that does not wrap shows its whole text only at its least width.
        if not label.wordWrap() and label.text() and not label.pixmap() \
                and label.width() < label.minimumSizeHint().width():
            problems.append(f"{_name(label)}: {label.width()} px < "
                            f"{label.minimumSizeHint().width()}")
    return problems


def _under_scroll_bars(window) -> list[str]:
    """Sideways scroll bars, and fields of a scrolled form hidden by its vertical bar."""
    problems = []
    for area in _visible(window, QAbstractScrollArea):
        if area.horizontalScrollBar().isVisible():
            problems.append(f"{_name(area)} scrolls sideways")
    for area in _visible(window, QScrollArea):
        bar = area.verticalScrollBar()
        if not bar.isVisible() or area.widget() is None:
            continue
        right = area.viewport().width()
        under = [f"{_name(field)} ({edge} >= {right})" for field in
                 area.widget().findChildren(QWidget)
                 if isinstance(field, CHECKED) and field.isVisible()
                 and (edge := field.mapTo(area.viewport(), field.rect().topRight()).x()) >= right]
        if under:
            problems.append(f"{len(under)} fields reach under the scroll bar of {_name(area)}, "
                            f"e.g. {under[0]}")
    return problems


def test_the_window_can_be_as_small_as_1024_by_600(filled_window):
    too_big = []
    for name in PAGES:
        filled_window.show_page(name)
        need = filled_window.pages.currentWidget().minimumSizeHint()
        if need.width() > 1024 - filled_window.sidebar.width():
            too_big.append(f"{name} needs {need.width()} px")
    assert not too_big, too_big
    hint = filled_window.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 600, hint
    filled_window.resize(1024, 600)
    assert (filled_window.width(), filled_window.height()) == (1024, 600)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_page_fits(filled_window, qtbot, size):
    width, height = size
    # As a screen of this size (or a maximised window on it) would: the window is this size,
    # whatever it asks for.
    filled_window.setFixedSize(width, height)
    problems = []
    for name in PAGES:
        filled_window.show_page(name)
        page = filled_window.pages.currentWidget()
        # Each tab of a page too (Judge: History; Reward model: Inspect; Evaluate: four).
        views = [(tabs, i) for tabs in page.findChildren(QTabWidget) for i in range(tabs.count())]
        for tabs, index in views or [(None, 0)]:
            where = name if tabs is None else f"{name} › {tabs.tabText(index)}"
            if tabs is not None:
                tabs.setCurrentIndex(index)
            flush_events()  # the pending layout requests and resizes are done
            problems += [f"{where}: {p}" for p in _squeezed(filled_window)]
            problems += [f"{where}: {p}" for p in _under_scroll_bars(filled_window)]
        for tabs, _ in views:
            tabs.setCurrentIndex(0)
    assert not problems, "\n".join(problems)


def test_judge_buttons_name_their_keys_on_two_lines_when_narrow(filled_window, qtbot):
    buttons = filled_window.judge_page.view.buttons
    filled_window.setFixedSize(1280, 800)
    filled_window.show_page("Judge")
    qtbot.waitUntil(lambda: buttons["left"].text() == "◀  Left is better   [1 / ←]")
    assert all(b.text() == b.wide_text for b in buttons.values())
    filled_window.setFixedSize(1024, 600)
    # Too narrow for one line each: the whole row names its keys on a second line.
    qtbot.waitUntil(lambda: buttons["left"].text() == "◀  Left is better\n[1 / ←]")
    assert all(b.text() == b.narrow_text for b in buttons.values())
    flush_events()  # the row is laid out again for the new texts
    assert all(b.width() >= b._hint_for(b.text()).width() for b in buttons.values())
    filled_window.setFixedSize(1280, 800)
    qtbot.waitUntil(lambda: all(b.text() == b.wide_text for b in buttons.values()))
