"""The Evaluate page: blind judging that never shows where a response came from, the verdicts
next to core's numbers, adding judgments to training, the round table, and a real evaluation
run on a tiny model through the page."""

from __future__ import annotations

import random

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTextBrowser,
    QWidget,
)

from desktop_app.core.data.store import GenerationIn
from desktop_app.core.evaluation.results import (
    eval_summary,
    record_auto_result,
    record_human_result,
)
from desktop_app.core.evaluation.win_rate import win_rate
from desktop_app.core.runs.rounds import round_overview
from desktop_app.gui.evaluate.rounds_view import COLUMNS, round_cells

pytestmark = pytest.mark.slow  # a page a test, and an evaluation run on a tiny model

ADAPTER = "/secret/runs/0002-ppo/policy-adapter"
BASE = "/secret/models/tiny-base"


def add_policy_runs(store):
    """A completed reward run (val accuracy 0.75) and a PPO run that optimised it."""
    reward = store.create_run("reward", {"base_model": BASE})
    store.replace_metrics(reward, 5, {"eval/accuracy": 0.75})
    store.finish_run(reward, "completed", artifact="/secret/runs/0001-reward/adapter")
    ppo = store.create_run("ppo", {"base_model": BASE}, parent_run_id=reward)
    store.finish_run(ppo, "completed", artifact=ADAPTER)
    return reward, ppo


def fabricate_eval(store, ppo, n=4, mode="human", texts=None):
    """An evaluation of PPO run ``ppo`` (A) against the base model (B) waiting for judgments,
    as ``run_evaluation`` stores one: response a is the policy's."""
    prompts = store.add_prompts([f"Held-out question {random.random():.6f}"
                                 for _ in range(n)]).ids
    store.set_held_out(prompts)
    run = store.create_run("eval", {
        "mode": mode, "a": {"run_id": ppo, "adapter": ADAPTER, "label": f"PPO run {ppo}"},
        "b": {"run_id": None, "adapter": None, "label": "base model"}, "base_model": BASE,
        "prompts": n, "prompt_source": "held-out prompts"}, parent_run_id=ppo)
    texts = texts or [(f"Reply α{i}", f"Reply β{i}") for i in range(n)]
    pairs = [(pid, GenerationIn(text=ta, model=BASE, adapter=ADAPTER, source="eval", run_id=run,
                                completion_tokens=4, finished=True),
              GenerationIn(text=tb, model=BASE, source="eval", run_id=run, completion_tokens=3,
                           finished=True))
             for pid, (ta, tb) in zip(prompts, texts)]
    ids = store.add_pairs(pairs, rng=random.Random(run), source="eval", eval_run_id=run)
    store.set_run_status(run, "judging")
    return run, ids


def visible_text(widget: QWidget) -> str:
    """Every string the widget and its visible children show or hint at."""
    parts = [widget.toolTip(), widget.windowTitle()]
    for child in [widget, *widget.findChildren(QWidget)]:
        if not child.isVisible():
            continue
        parts += [child.toolTip(), child.statusTip(), child.accessibleName()]
        if isinstance(child, (QLabel, QAbstractButton)):
            parts.append(child.text())
        if isinstance(child, QTextBrowser):
            parts.append(child.toPlainText())
    return "\n".join(p for p in parts if p)


@pytest.fixture
def page(qtbot, workspace, store):
    from desktop_app.gui.app import create_app
    from desktop_app.gui.evaluate.page import EvaluatePage
    create_app()
    page = EvaluatePage(workspace, store)
    qtbot.addWidget(page)
    page.resize(1130, 760)
    page.show()
    qtbot.waitExposed(page)
    yield page
    page.shutdown()


def test_blind_view_shows_this_evaluations_pairs_and_never_their_sources(qtbot, page, store):
    _, ppo = add_policy_runs(store)
    run, ids = fabricate_eval(store, ppo, n=3)
    other, other_ids = fabricate_eval(store, ppo, n=2)
    training = store.add_prompts(["a training prompt"]).ids[0]
    store.add_pairs([(training, GenerationIn("t1", BASE), GenerationIn("t2", BASE))])

    page.refresh()
    page.resume_judging(run)
    assert page.tabs.currentWidget() is page.blind
    seen = []
    while page.blind.loop.current is not None:
        pair = page.blind.loop.current
        seen.append(pair.comparison_id)
        shown = visible_text(page.blind)
        assert {pair.left["text"], pair.right["text"]} <= set(shown.splitlines())
        for secret in (ADAPTER, BASE, "PPO run", "policy-adapter", "base model", "tiny-base",
                       "imported", "secret"):
            assert secret not in shown, secret
        page.blind.loop.judge("tie")
    assert sorted(seen) == sorted(ids) and not set(seen) & set(other_ids)
    assert store.pending_count(eval_run_id=other) == 2 and store.pending_count() == 1


def test_keys_judge_blind_pairs_and_update_the_verdict(qtbot, page, store):
    _, ppo = add_policy_runs(store)
    run, _ = fabricate_eval(store, ppo, n=4)
    page.refresh()
    page.resume_judging(run)
    view = page.blind.view
    view.setFocus()

    def press_for(choice: str) -> None:
        """Press the key that means ``choice`` (a/b/tie) for the pair on screen."""
        pair = page.blind.loop.current
        if choice == "tie":
            qtbot.keyClick(view, Qt.Key.Key_T)
        else:
            a_on_left = pair.left_is_a
            left = (choice == "a") == a_on_left
            qtbot.keyClick(view, Qt.Key.Key_1 if left else Qt.Key.Key_2)

    press_for("a")
    press_for("a")
    press_for("b")
    assert page.blind.progress_line.text() == "<b>3 of 4 judged</b>"
    assert store.eval_tally(run) == {"a": 2, "b": 1, "tie": 0, "both_bad": 0, "skip": 0,
                                          "pending": 1}
    # Undo takes the last one back; judge it again.
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert store.eval_tally(run)["b"] == 0 and store.eval_tally(run)["pending"] == 2
    press_for("b")
    press_for("tie")

    # 2 wins, 1 loss, 1 tie: (2 + 0.5) / 4 = 0.625; Wilson 95%: 0.2194–0.9081 (by hand).
    metrics = store.final_metrics(run)
    assert metrics["eval/win_rate"] == pytest.approx(0.625)
    assert metrics["eval/ci_low"] == pytest.approx(0.2194, abs=5e-4)
    assert metrics["eval/ci_high"] == pytest.approx(0.9081, abs=5e-4)
    assert metrics["eval/n"] == 4
    assert store.get_run(run).status == "completed"
    # Finished: the results of this evaluation are shown, with core's numbers.
    assert page.tabs.currentIndex() == 2 and page.selected_eval() == run
    assert "62%" in page.results.human_label.text()
    assert "95% CI 22%–91%" in page.results.human_label.text()
    assert "2 wins · 1 loss · 1 tie (n = 4)" in page.results.human_label.text()


def test_finish_now_completes_the_run_with_what_was_judged(qtbot, page, store, monkeypatch):
    _, ppo = add_policy_runs(store)
    run, _ = fabricate_eval(store, ppo, n=5)
    page.refresh()
    page.resume_judging(run)
    page.blind.loop.judge("left")
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(page.blind.finish_button, Qt.MouseButton.LeftButton)
    assert "4 pair(s) are not judged" in asked[0]
    assert store.get_run(run).status == "completed"
    assert store.final_metrics(run)["eval/n"] == 1
    assert store.eval_tally(run)["pending"] == 4
    assert page.blind.run_id is None and not page.blind.view.showing_pair
    assert page.tabs.currentIndex() == 2


def test_an_unfinished_evaluation_can_be_resumed_from_the_list(qtbot, page, store):
    _, ppo = add_policy_runs(store)
    run, _ = fabricate_eval(store, ppo, n=3)
    page.refresh()
    page.tabs.setCurrentIndex(2)
    page.select_eval(run)
    status = page.eval_table.item(0, 3).text()
    assert status == "judging (3 left)" and page.eval_table.item(0, 4).text() == "hidden"
    assert page.results.resume_button.isVisible()
    qtbot.mouseClick(page.results.resume_button, Qt.MouseButton.LeftButton)
    assert page.tabs.currentWidget() is page.blind and page.blind.run_id == run
    assert page.blind.loop.current is not None


def test_results_match_core_and_warn_of_reward_hacking(qtbot, page, store, tmp_path):
    _, ppo = add_policy_runs(store)
    run, ids = fabricate_eval(store, ppo, n=16)
    for cid in ids:   # the person prefers the base model almost always
        store.judge(cid, "b" if cid % 8 else "tie")
    record_human_result(store, run)
    record_auto_result(store, run, win_rate(14, 2), [1.0] * 16, [0.2] * 16, [300] * 16,
                       [80] * 16)
    summary = eval_summary(store, store.get_run(run))
    assert summary.warning is not None

    page.refresh()
    page.tabs.setCurrentIndex(2)
    page.select_eval(run)
    qtbot.waitUntil(lambda: page.results.summary is not None
                    and page.results.summary.run_id == run)   # the results show this run
    human, auto = page.results.human_label.text(), page.results.rm_label.text()
    h, a = summary.human, summary.automatic
    assert f"{h.win_rate:.0%}</b>" in human and f"{h.ci_low:.0%}–{h.ci_high:.0%}" in human
    assert f"{h.wins} wins · {h.losses} losses · {h.ties} ties (n = {h.n})" in human
    assert f"{a.win_rate:.0%}</b>" in auto and f"{a.ci_low:.0%}–{a.ci_high:.0%}" in auto
    assert page.results.warning.isVisible()
    assert summary.warning in page.results.warning.text()
    assert len(page.results.chart.items) == 6   # two points, two intervals, two labels
    page.grab().save(str(tmp_path / "results.png"))


def test_adding_judgments_to_training_asks_first(qtbot, page, store, monkeypatch):
    _, ppo = add_policy_runs(store)
    run, ids = fabricate_eval(store, ppo, n=3)
    for cid, choice in zip(ids, ("a", "tie", "skip")):
        store.judge(cid, choice)
    record_human_result(store, run)
    page.refresh()
    page.select_eval(run)
    assert page.results.add_button.isEnabled()
    assert store.stats()["held_out_prompts"] == 3

    answers, asked = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes], []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or answers.pop(0))
    qtbot.mouseClick(page.results.add_button, Qt.MouseButton.LeftButton)
    assert "held out" in asked[0] and "Add 2 judgment(s)" in asked[0]
    assert page.results.training_count(run) == 0 and store.preference_rows() == []

    with qtbot.waitSignal(page.prompts_changed):
        qtbot.mouseClick(page.results.add_button, Qt.MouseButton.LeftButton)
    assert page.results.training_count(run) == 2 and len(store.preference_rows()) == 2
    assert store.stats()["held_out_prompts"] == 1   # the skipped one stays held out
    assert not page.results.add_button.isEnabled()
    assert "2 of these judgments are in the training data" in page.results.training_note.text()


def test_round_table_counts_what_is_in_the_database(qtbot, page, store, monkeypatch):
    prompts = store.add_prompts([f"train {i}" for i in range(5)]).ids
    pairs = store.add_pairs([(p, GenerationIn(f"x{p}", BASE), GenerationIn(f"y{p}", BASE))
                             for p in prompts], rng=random.Random(0))
    for cid in pairs[:3]:
        store.judge(cid, "a")
    store.db.execute("UPDATE comparisons SET judged_at = '2000-01-01T00:00:00' "
                     "WHERE choice IS NOT NULL")
    _, ppo = add_policy_runs(store)
    run, ids = fabricate_eval(store, ppo, n=4)
    for cid in ids:
        store.judge(cid, "a")
    record_human_result(store, run)
    store.judge(pairs[3], "b")   # the next round has begun: 1 new judgment, 1 pair waiting

    page.refresh()
    page.tabs.setCurrentWidget(page.rounds)
    table: QTableWidget = page.rounds.table
    rounds = round_overview(store)
    assert table.rowCount() == len(rounds) == 2
    cells = [[table.item(r, c).text() for c in range(len(COLUMNS))] for r in range(2)]
    assert cells == [round_cells(r) for r in rounds]
    first, current = cells
    assert first[:4] == ["1", "3 / 3", "75.0%", f"#{ppo}"]
    assert first[4].startswith("100% (") and first[4].endswith("n = 4")
    assert first[6] == f"#{run}"
    assert current[0] == "2 (in progress)" and current[1] == "1 / 4"
    assert current[6] == "1 pair waiting for you"

    emitted = []
    page.next_round_requested.connect(lambda base, adapter: emitted.append((base, adapter)))
    monkeypatch.setattr("desktop_app.gui.evaluate.rounds_view.QInputDialog.getItem",
                        lambda *a, **k: (a[3][0], True))
    qtbot.mouseClick(page.rounds.next_button, Qt.MouseButton.LeftButton)
    assert emitted == [(BASE, ADAPTER)]


def test_start_needs_a_policy_and_held_out_prompts(qtbot, page, store):
    assert not page.setup.start_button.isEnabled() and "PPO" in page.setup.hint.text()
    _, ppo = add_policy_runs(store)
    page.refresh()
    assert page.setup.a_box.currentData() == ppo and page.setup.b_box.currentData() is None
    assert page.setup.a_box.currentText() == f"PPO run {ppo} (reward run {ppo - 1})"
    assert "held-out" in page.setup.hint.text().lower()
    assert not page.setup.start_button.isEnabled()
    store.set_held_out(store.add_prompts(["q1", "q2"]).ids)
    page.refresh()
    assert page.setup.held_radio.text() == "Held-out prompts (2)"
    assert page.setup.start_button.isEnabled()
    page.setup.b_box.setCurrentIndex(page.setup.b_box.findData(ppo))
    assert not page.setup.start_button.isEnabled() and "different" in page.setup.hint.text()


def test_prompts_page_holds_out_and_releases(qtbot, store):
    from desktop_app.gui.app import create_app
    from desktop_app.gui.prompts_page import PromptsPage
    create_app()
    ids = store.add_prompts(["one", "two", "three"]).ids
    page = PromptsPage(store)
    qtbot.addWidget(page)
    page.table.selectRow(1)
    with qtbot.waitSignal(page.prompts_changed):
        page.hold_out_selected()
    assert [p["id"] for p in store.held_out_prompts()] == [ids[1]]
    col = page.COLUMNS.index("Held out")
    assert [page.proxy.index(r, col).data() for r in range(3)] == ["", "held out", ""]
    assert "1 held out" in page.summary.text()
    page.table.selectRow(1)
    page.release_selected()
    assert store.held_out_prompts() == []


# -- a real evaluation on a tiny model ---------------------------------------------------------

@pytest.fixture
def tiny_policies(tmp_path, store, tiny_chat_model):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from desktop_app.core.config import RewardConfig
    from desktop_app.ml.models.device import pick_device
    from desktop_app.ml.reward.model import build_reward_model, load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model, local_files_only=True)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8,
                                             target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "policy")
    reward = store.create_run("reward", {"base_model": str(tiny_chat_model)})
    torch.manual_seed(1)
    rm = build_reward_model(tiny_chat_model, load_tokenizer(tiny_chat_model),
                            pick_device("cpu", "auto"), cfg=RewardConfig(lora_r=4))
    rm.save_pretrained(tmp_path / "reward")
    store.finish_run(reward, "completed", artifact=str(tmp_path / "reward"))
    ppo = store.create_run("ppo", {"base_model": str(tiny_chat_model)}, parent_run_id=reward)
    store.finish_run(ppo, "completed", artifact=str(tmp_path / "policy"))
    store.set_held_out(store.add_prompts([f"Tell me about cats {i}." for i in range(4)]).ids)
    return {"reward": reward, "ppo": ppo}


def test_an_evaluation_runs_from_the_page_then_is_judged_blind(qtbot, page, store,
                                                              tiny_policies, monkeypatch):
    page.refresh()
    assert page.setup.a_box.currentData() == tiny_policies["ppo"]
    cfg = page.setup.form.value()
    cfg.max_new_tokens, cfg.batch_size, cfg.device = 6, 4, "cpu"
    page.setup.form.set_value(cfg)
    started, finished = [], []
    page.training_started.connect(lambda: started.append(1))
    page.training_finished.connect(lambda: finished.append(1))
    qtbot.mouseClick(page.setup.start_button, Qt.MouseButton.LeftButton)
    assert started and not page.setup.start_button.isEnabled()
    assert page.setup.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not page.setup.run.running, timeout=300_000)
    assert finished
    outcome = page.setup.run.last_result
    assert outcome is not None and outcome.status == "judging", page.setup.run.status.text()
    # It optimised the reward model that judges it: the job's warning is shown (on the setup
    # tab, and with the evaluation's results).
    assert not page.setup.run.warnings.isHidden()
    assert "optimised against" in page.setup.run.warnings.text()
    assert page.tabs.currentWidget() is page.blind and page.blind.run_id == outcome.run_id
    assert page.blind.progress_line.text() == "<b>0 of 4 judged</b>"
    shown = visible_text(page.blind)
    assert "policy" not in shown.lower().replace("which policy wrote", "")
    assert str(tiny_policies["ppo"]) not in page.blind.progress_line.text()
    for _ in range(4):
        page.blind.loop.judge("left")
    assert store.get_run(outcome.run_id).status == "completed"
    summary = eval_summary(store, store.get_run(outcome.run_id))
    assert summary.human.n == 4 and summary.automatic.n == 4
    assert f"{summary.automatic.win_rate:.0%}</b>" in page.results.rm_label.text()
    assert page.results.job_warnings.isVisible()
    assert "optimised against" in page.results.job_warnings.text()


def test_evaluation_errors_are_a_message_not_a_traceback(qtbot, page, store, tiny_policies,
                                                         tmp_path, monkeypatch):
    bad = tmp_path / "empty.jsonl"
    bad.write_text("", encoding="utf-8")
    monkeypatch.setattr("desktop_app.gui.evaluate.setup.QFileDialog.getOpenFileName",
                        lambda *a, **k: (str(bad), ""))
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[1:3]))
    page.refresh()
    page.setup.file_radio.click()
    assert page.setup.prompt_file == str(bad) and page.setup.start_button.isEnabled()
    page.setup.start()
    qtbot.waitUntil(lambda: not page.setup.run.running, timeout=120_000)
    assert shown and shown[0][0] == "Evaluation failed"
    message = shown[0][1]
    assert "Traceback" not in message and not message.startswith("EvaluationError")
    assert "empty.jsonl" in message or "no prompts" in message.lower()


def test_main_window_has_the_page_and_wires_it(qtbot, window, store, monkeypatch):
    window.show_page("Evaluate")
    assert window.pages.currentWidget() is window.evaluate_page
    # An evaluation generating pauses background pair generation, and resumes it after.
    assert not window.judge_page.queue.paused
    window.evaluate_page.training_started.emit()
    assert window.judge_page.queue.paused
    window.evaluate_page.training_finished.emit()
    assert not window.judge_page.queue.paused
    # The next round loads the tuned policy for pair generation.
    loaded = []
    monkeypatch.setattr(window.models_page, "select_path", lambda path: None)
    monkeypatch.setattr(window.models_page, "load_path",
                        lambda path, adapter=None, versus_base=False, quantize=None:
                        loaded.append((path, adapter, versus_base)))
    monkeypatch.setattr(window, "_ask_pair_mode", lambda: False)  # both from the tuned policy
    _, ppo = add_policy_runs(store)
    window.evaluate_page.rounds.refresh()
    window.evaluate_page.rounds.request_next_round(ppo)
    assert loaded == [(BASE, ADAPTER, False)]
    assert window.pages.currentWidget() is window.models_page
