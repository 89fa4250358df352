"""The judge page's order: oldest first, or least certain first once pairs are ranked; and the
next-round question (both responses from the tuned policy, or tuned against base)."""

import pytest
from PySide6.QtWidgets import QMessageBox

from desktop_app.core.data.store import GenerationIn
from desktop_app.core.runs.record import Run, RunKind, RunStatus
from desktop_app.gui.judge.order import OLDEST, UNCERTAIN, JudgeOrder
from desktop_app.gui.judge.page import JudgePage

REWARD_RUN = Run(id=1, kind=RunKind.REWARD, status=RunStatus.COMPLETED, artifact="/rm/adapter")


def add_pairs(store, n):
    ids = store.add_prompts([f"prompt {i}" for i in range(n)]).ids
    return store.add_pairs([(p, GenerationIn(f"a{p}", "m"), GenerationIn(f"b{p}", "m"))
                            for p in ids])


def test_least_certain_first_needs_a_reward_model(qtbot, store):
    page = JudgePage(store)
    qtbot.addWidget(page)
    add_pairs(store, 2)
    page.order_box.combo.setCurrentIndex(1)
    assert page.order_box.order == OLDEST and page.order_box.combo.currentIndex() == 0
    assert "reward model first" in page.order_box.status.text()


def test_ranked_pairs_are_served_smallest_margin_first(qtbot, store, monkeypatch):
    ranked = []
    monkeypatch.setattr(JudgeOrder, "reward_run", lambda self: REWARD_RUN)
    monkeypatch.setattr(JudgeOrder, "rank", lambda self: ranked.append(True))
    ids = add_pairs(store, 3)
    page = JudgePage(store)
    qtbot.addWidget(page)
    assert page.loop.current.comparison_id == ids[0]
    store.set_margins([(ids[0], 3.0), (ids[1], 2.0), (ids[2], 0.5)])
    page.order_box.combo.setCurrentIndex(1)
    assert ranked and page.order_box.order == UNCERTAIN
    assert page.order_box.rank_button.isVisibleTo(page)
    assert page.loop.current.comparison_id == ids[2]  # the shown, unjudged pair went back
    page.loop.judge("left")
    assert page.loop.current.comparison_id == ids[1]
    page.loop.judge("right")
    assert page.loop.current.comparison_id == ids[0]


@pytest.mark.slow  # the whole main window
def test_next_round_asks_how_pairs_are_made(qtbot, window, monkeypatch):
    calls = []
    monkeypatch.setattr(window.models_page, "load_path",
                        lambda path, **kw: calls.append((path, kw)))
    monkeypatch.setattr(window.models_page, "select_path", lambda path: None)
    answers = iter(["Tuned against base", "Both from the tuned policy", None])

    def fake_exec(box):
        wanted = next(answers)
        for button in box.buttons():
            if button.text() == wanted:
                button.click()
                return 0
        box.button(QMessageBox.StandardButton.Cancel).click()
        return 0

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    window._load_policy("/base", "/policy")
    window._load_policy("/base", "/policy")
    window._load_policy("/base", "/policy")  # cancelled: nothing loads
    assert calls == [("/base", {"adapter": "/policy", "versus_base": True, "quantize": "none"}),
                     ("/base", {"adapter": "/policy", "versus_base": False, "quantize": "none"})]


def test_ranking_runs_in_the_background_and_can_be_cancelled(qtbot, store, monkeypatch):
    from waiting import poll_until

    from desktop_app.ml.reward import uncertainty

    def slow_scoring(store_, reward_run_id, emit, stop, **kw):
        poll_until(lambda: stop.requested, timeout=60)  # ranks until cancelled, as a long one
        return 2

    monkeypatch.setattr(uncertainty, "score_pending_pairs", slow_scoring)
    monkeypatch.setattr(JudgeOrder, "reward_run", lambda self: REWARD_RUN)
    add_pairs(store, 2)
    page = JudgePage(store)
    qtbot.addWidget(page)
    box = page.order_box
    box.combo.setCurrentIndex(1)
    assert box.job.running and box.rank_button.text() == "Cancel ranking"
    box.rank_button.click()
    qtbot.waitUntil(lambda: not box.job.running, timeout=10_000)
    qtbot.waitUntil(lambda: box.rank_button.text() == "Re-rank pending pairs", timeout=10_000)
    assert "Ranked 2 pending pairs" in box.status.text()
