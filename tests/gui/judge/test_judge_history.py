"""The Judge page's history: H opens it and Esc returns, the judging keys change the selected
verdict, the filter and the (debounced) search narrow the list, Delete asks first, N edits the
note, the list loads page by page, and the judging view's counts follow every change."""

import random

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QInputDialog, QMessageBox, QPushButton, QTextBrowser

from desktop_app.core.data import judgment_history as jh
from desktop_app.core.data.store import GenerationIn
from desktop_app.gui.judge.page import JudgePage

from ..conftest import flush_events

PROMPTS = ["Write a haiku about rain.", "Explain photosynthesis.", "Name three rivers.",
           "Tell a joke about cats.", "How do I boil an egg?"]


def seed_for(left_is_a: bool) -> int:
    """A seed whose first draw in add_pairs puts response a on the left (or not)."""
    return next(s for s in range(100) if (random.Random(s).random() < 0.5) == left_is_a)


def add_judged(store, prompt, choice, *, note=None, left_is_a=True):
    pid = store.add_prompt(prompt)
    [cid] = store.add_pairs([(pid, GenerationIn(f"A to {prompt}", "m"),
                              GenerationIn(f"B to {prompt}", "m"))],
                            rng=random.Random(seed_for(left_is_a)))
    if choice is not None:
        store.judge(cid, choice, note=note)
    return cid


@pytest.fixture
def page(qtbot, store):
    page = JudgePage(store)
    qtbot.addWidget(page)
    page.resize(1200, 700)
    page.show()
    qtbot.waitExposed(page)
    page.activateWindow()
    yield page
    page.queue.shutdown()
    page.order_box.shutdown()
    settle(qtbot, page)


def settle(qtbot, widget):
    """Close, and let the list's deferred fetches run while the store is still open."""
    widget.close()
    flush_events()


def open_history(qtbot, page):
    page.view.setFocus()
    qtbot.waitUntil(page.view.hasFocus)
    qtbot.keyClick(page.view, Qt.Key.Key_H)
    history = page.tabs.history
    assert page.tabs.currentWidget() is history
    qtbot.waitUntil(history.table.hasFocus)
    return history


def listed(history):
    return [r.comparison_id for r in history.model.rows]


def choice(store, cid):
    return store.db["comparisons"].get(cid)["choice"]


def test_h_opens_the_history_newest_first_and_esc_returns(qtbot, page, store):
    first = add_judged(store, PROMPTS[0], "a")
    second = add_judged(store, PROMPTS[1], "tie", note="equally dull")
    history = open_history(qtbot, page)
    assert listed(history) == [second, first]
    assert history.count_label.text() == "2 judgments"
    # The newest is selected and shown in full.
    assert history.current.pair.comparison_id == second
    assert history.verdict_label.text() == "Verdict: Tie"
    assert history.prompt_pane.source_text == PROMPTS[1]
    assert history.left_pane.source_text == f"A to {PROMPTS[1]}"
    assert "equally dull" in history.note_label.text()
    # Down moves through the list, and the pane follows.
    qtbot.keyClick(history.table, Qt.Key.Key_Down)
    assert history.current.pair.comparison_id == first
    assert history.verdict_label.text() == "Verdict: Left won"
    assert "chosen" in history.left_pane.title.text()
    assert "chosen" not in history.right_pane.title.text()
    qtbot.keyClick(history.table, Qt.Key.Key_Escape)
    assert page.tabs.currentWidget() is page.tabs.judging
    qtbot.waitUntil(page.view.hasFocus)
    # Ctrl+H works both ways too.
    qtbot.keyClick(page.view, Qt.Key.Key_H, Qt.KeyboardModifier.ControlModifier)
    assert page.tabs.currentWidget() is history
    qtbot.keyClick(history.table, Qt.Key.Key_H, Qt.KeyboardModifier.ControlModifier)
    assert page.tabs.currentWidget() is page.tabs.judging


def test_judging_keys_change_the_selected_verdict(qtbot, page, store):
    shown_left_a = add_judged(store, PROMPTS[0], "a", left_is_a=True)    # left won
    shown_left_b = add_judged(store, PROMPTS[1], "b", left_is_a=False)   # left won too
    page.refresh()
    assert "Left 100%" in page.view.status.text()
    history = open_history(qtbot, page)
    assert history.current.pair.comparison_id == shown_left_b

    # 2: the right response (a, on this pair) wins now; the judging view's counts follow.
    with qtbot.waitSignal(page.judged):
        qtbot.keyClick(history.table, Qt.Key.Key_2)
    assert choice(store, shown_left_b) == "a"
    assert history.verdict_label.text() == "Verdict: Right won"
    assert history.model.rows[0].side == "right" and history.model.rows[0].changes == 1
    assert history.verdict_buttons["right"].isChecked()
    assert "Right 50%" in page.view.status.text()
    assert "Right won" in history.meta.text()  # the change is listed with the judgment

    # ← / → / T / B / S: the same keys as judging.
    for key, expected in ((Qt.Key.Key_Left, "b"), (Qt.Key.Key_T, "tie"),
                          (Qt.Key.Key_B, "both_bad"), (Qt.Key.Key_S, "skip"),
                          (Qt.Key.Key_Right, "a"), (Qt.Key.Key_1, "b")):
        qtbot.keyClick(history.table, key)
        assert choice(store, shown_left_b) == expected
    assert [c["new_choice"] for c in jh.judgment_changes(store, shown_left_b)] == [
        "b", "a", "skip", "both_bad", "tie", "b", "a"]
    # The same verdict again records nothing.
    qtbot.keyClick(history.table, Qt.Key.Key_1)
    assert len(jh.judgment_changes(store, shown_left_b)) == 7
    assert choice(store, shown_left_a) == "a"  # the other judgment was left alone
    # Training reads the latest verdict.
    rows = {r["comparison_id"]: r["chosen"] for r in store.preference_rows()}
    assert rows[shown_left_b] == f"B to {PROMPTS[1]}"


def test_verdict_filter_and_debounced_search(qtbot, page, store):
    ids = {p: add_judged(store, p, c) for p, c in zip(PROMPTS, ["a", "tie", "tie", "skip", "b"])}
    history = open_history(qtbot, page)
    assert len(listed(history)) == 5

    history.verdict_box.setCurrentIndex(history.verdict_box.findData("tie"))
    assert set(listed(history)) == {ids[PROMPTS[1]], ids[PROMPTS[2]]}
    assert history.count_label.text() == "2 judgments"
    # A tie changed to a winner leaves the list of ties.
    history.table.setFocus()
    qtbot.waitUntil(history.table.hasFocus)
    selected = history.current.pair.comparison_id
    qtbot.keyClick(history.table, Qt.Key.Key_1)
    assert selected not in listed(history) and len(listed(history)) == 1
    assert history.count_label.text() == "1 judgment"

    history.verdict_box.setCurrentIndex(0)
    qtbot.keyClick(history.table, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(history.search.hasFocus)
    # Letters typed in the search box are text, not verdict keys.
    before = {cid: choice(store, cid) for cid in ids.values()}
    qtbot.keyClicks(history.search, "Tell")
    assert len(listed(history)) == 5  # not yet: the search waits for a pause in typing
    qtbot.waitUntil(lambda: listed(history) == [ids[PROMPTS[3]]], timeout=3000)
    assert {cid: choice(store, cid) for cid in ids.values()} == before
    # Words are searched in the responses too; Enter searches at once and goes to the list.
    history.search.setText("B to rivers")
    qtbot.keyClick(history.search, Qt.Key.Key_Return)
    assert listed(history) == [ids[PROMPTS[2]]]
    qtbot.waitUntil(history.table.hasFocus)
    history.search.setText("nothing like this")
    history.reload()
    assert listed(history) == [] and history.empty.isVisible()
    assert "Nothing matches" in history.empty.text() and not history.detail.isVisible()


def test_delete_asks_first_and_returns_the_pair_to_the_queue(qtbot, page, store, monkeypatch):
    kept = add_judged(store, PROMPTS[0], "a")
    doomed = add_judged(store, PROMPTS[1], "b", note="right is shorter")
    assert page.loop.current is None  # nothing waits to be judged
    page.loop.undo_stack.append(doomed)  # as if judged in this session
    history = open_history(qtbot, page)
    assert history.current.pair.comparison_id == doomed

    asked = []

    def answer(reply):
        def question(parent, title, text, *args, **kwargs):
            asked.append(text)
            return reply
        monkeypatch.setattr(QMessageBox, "question", staticmethod(question))

    answer(QMessageBox.StandardButton.No)
    qtbot.keyClick(history.table, Qt.Key.Key_Delete)
    assert asked and "back to the queue" in asked[0]
    assert choice(store, doomed) == "b" and listed(history) == [doomed, kept]

    answer(QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(page.judged):
        qtbot.keyClick(history.table, Qt.Key.Key_Delete)
    assert len(asked) == 2
    row = store.db["comparisons"].get(doomed)
    assert (row["choice"], row["note"]) == (None, None)
    assert listed(history) == [kept] and history.current.pair.comparison_id == kept
    assert "deleted" in history.status.text()
    [change] = jh.judgment_changes(store, doomed)
    assert (change["kind"], change["old_choice"], change["old_note"]) == (
        "delete", "b", "right is shorter")
    # The judging view shows the pair again, and its undo no longer reaches it.
    assert page.loop.current.comparison_id == doomed
    assert doomed not in page.loop.undo_stack
    assert "Queue: 1 ready" in page.view.status.text()


def test_n_edits_the_note(qtbot, page, store, monkeypatch):
    cid = add_judged(store, PROMPTS[0], "a", note="first thought")
    history = open_history(qtbot, page)
    seen = []

    def note_dialog(parent, title, label, text, *args, **kwargs):
        seen.append(text)
        return "  left cites its source  ", True
    monkeypatch.setattr(QInputDialog, "getMultiLineText", staticmethod(note_dialog))
    qtbot.keyClick(history.table, Qt.Key.Key_N)
    assert seen == ["first thought"]
    assert store.db["comparisons"].get(cid)["note"] == "left cites its source"
    assert "left cites its source" in history.note_label.text()
    assert history.model.rows[0].note == "left cites its source"
    [change] = jh.judgment_changes(store, cid)
    assert (change["kind"], change["old_note"], change["new_note"]) == (
        "note", "first thought", "left cites its source")
    # Cancel changes nothing.
    monkeypatch.setattr(QInputDialog, "getMultiLineText",
                        staticmethod(lambda *a, **k: ("", False)))
    qtbot.keyClick(history.table, Qt.Key.Key_N)
    assert len(jh.judgment_changes(store, cid)) == 1


def test_judgments_made_while_away_appear_and_undo_leaves_history_changes(qtbot, page, store):
    pid = store.add_prompt(PROMPTS[0])
    [cid] = store.add_pairs([(pid, GenerationIn("one", "m"), GenerationIn("two", "m"))],
                            rng=random.Random(seed_for(True)))
    page.refresh()
    assert page.loop.current.comparison_id == cid
    page.loop.judge("left")
    assert choice(store, cid) == "a" and page.loop.undo_stack == [cid]
    history = open_history(qtbot, page)
    assert listed(history) == [cid]
    qtbot.keyClick(history.table, Qt.Key.Key_T)
    qtbot.keyClick(history.table, Qt.Key.Key_Escape)
    # Ctrl+Z in the judging view does not revert what was decided in the history.
    page.loop.undo()
    assert choice(store, cid) == "tie"
    assert "Nothing to undo" in page.gen_status.text()


@pytest.mark.slow  # the whole main window
def test_leaving_the_page_comes_back_to_judging(qtbot, window):
    page = window.judge_page
    page.tabs.show_history()
    window.show_page("Prompts")
    window.show_page("Judge")
    assert page.tabs.currentWidget() is page.tabs.judging
    settle(qtbot, window)


def test_the_list_loads_a_page_at_a_time(qtbot, page, store, monkeypatch):
    monkeypatch.setattr(jh, "PAGE", 4)
    ids = [add_judged(store, f"prompt {i}", "a") for i in range(10)]
    history = open_history(qtbot, page)
    assert listed(history) == ids[::-1][:4]
    assert history.count_label.text() == "10 judgments"
    # End goes to the oldest judgment, reading the pages on the way.
    qtbot.keyClick(history.table, Qt.Key.Key_End)
    assert listed(history) == ids[::-1]
    assert history.current.pair.comparison_id == ids[0]
    qtbot.keyClick(history.table, Qt.Key.Key_Home)
    assert history.current.pair.comparison_id == ids[-1]
    # A page is also read when the end of the list comes into sight.
    history.reload()
    assert len(listed(history)) == 4
    qtbot.waitUntil(lambda: len(listed(history)) == 10)


@pytest.mark.slow  # the whole main window
@pytest.mark.parametrize("size", [(1024, 600), (1280, 800)])
def test_history_fits_the_window(qtbot, window, store, size):
    for i in range(30):
        add_judged(store, f"{PROMPTS[i % 5]} (take {i})", "ab"[i % 2],
                   note="a longer note that explains the verdict" if i % 3 == 0 else None)
    window.resize(*size)
    page = window.judge_page
    page.tabs.show_history()
    history = page.tabs.history
    qtbot.waitUntil(lambda: history.detail.isVisible() and history.table.isVisible())
    flush_events()  # and laid out
    assert history.detail.isVisible() and history.table.isVisible()
    problems = []
    for widget in history.findChildren(QPushButton) + history.findChildren(QComboBox):
        if widget.isVisible() and widget.width() < widget.minimumSizeHint().width():
            problems.append(f"{widget.text() if hasattr(widget, 'text') else widget}: "
                            f"{widget.width()} < {widget.minimumSizeHint().width()}")
    if history.table.horizontalScrollBar().isVisible():
        problems.append("the list scrolls sideways")
    for area in history.findChildren(QTextBrowser) + [history.table]:
        if area.isVisible() and area.height() < 40:
            problems.append(f"{type(area).__name__} is {area.height()} px high")
    assert not problems, problems
    assert history.table.columnWidth(2) >= 100  # the prompt column stays readable
    settle(qtbot, window)
