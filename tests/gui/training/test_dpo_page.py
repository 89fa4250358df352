"""DPO from the GUI: the Policy page's DPO tab says what it will learn from (ties and both-bad
left out), trains from the judgments with live charts, can be cancelled and resumed, and its
policy goes where a PPO policy goes: the playground, the evaluation and the next round."""

import pytest
from PySide6.QtCore import Qt

from desktop_app.core.data.store import GenerationIn

from ..training.test_reward_page import add_marker_judgments

pytestmark = pytest.mark.slow  # trains a DPO policy from the page


def test_dpo_tab_trains_cancels_resumes_and_hands_on_its_policy(qtbot, window, workspace, store,
                                                                 tiny_chat_model):
    add_marker_judgments(store, n=24)
    pid = store.add_prompts(["A prompt judged both bad"]).ids[0]
    for cid, choice in zip(store.add_pairs([(pid, GenerationIn("x", "m"), GenerationIn("y", "m")),
                                            (pid, GenerationIn("z", "m"), GenerationIn("w", "m"))]),
                           ("both_bad", "tie")):
        store.judge(cid, choice)

    window.show_page("Policy")
    window.policy_page.show_method("DPO")
    page = window.dpo_page
    assert window.policy_page.stack.currentWidget() is page
    assert "no reward model" in window.policy_page.when.text()
    page.set_base_model(str(tiny_chat_model))
    cfg = page.form.value()
    cfg.epochs, cfg.batch_size, cfg.max_length, cfg.lora_r, cfg.min_pairs = 3, 4, 64, 4, 8
    cfg.lr, cfg.log_every, cfg.eval_every = 5e-3, 1, 2
    page.form.set_value(cfg)
    page.refresh()
    summary = page.data_label.text()
    assert "1 tie and 1 both-bad left out" in summary, summary
    assert page.start_button.isEnabled()

    # Cancel after the second step: a checkpoint is kept and Resume offers the run.
    def stop_at_two(event):
        from desktop_app.core.events import Progress
        if isinstance(event, Progress) and event.done == 2:
            page.run.cancel()

    page.run.event.connect(stop_at_two)
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    assert window.judge_page.queue.paused
    qtbot.waitUntil(lambda: not page.run.running, timeout=300_000)
    page.run.event.disconnect(stop_at_two)
    assert page.run.last_result.status == "cancelled", page.run.status.text()
    page.refresh()
    run_id = page.run.last_result.run_id
    assert page.resume_button.isEnabled() and f"#{run_id}" in page.resume_button.text()

    qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.run.running, timeout=300_000)
    result = page.run.last_result
    assert result is not None and result.status == "completed", page.run.status.text()
    assert result.run_id == run_id and page.charts.points_received > 0
    assert "implicit reward" in page.run.status.text()
    run = store.get_run(run_id)
    assert run.kind == "dpo" and run.config["both_bad_left_out"] == 1
    assert "eval/rewards/accuracies" in store.final_metrics(run_id)

    # The policy is offered wherever policies are: the playground and the evaluation.
    window.show_page("Playground")
    assert window.playground_page.policy_box.findData(run_id) >= 0
    assert window.playground_page.policy_box.itemText(
        window.playground_page.policy_box.findData(run_id)) == f"DPO run {run_id}"
    window.show_page("Evaluate")
    setup = window.evaluate_page.setup
    setup.refresh()
    assert setup.a_box.findData(run_id) >= 0

    # The next round.
    assert page.use_button.isEnabled()
    window._ask_pair_mode = lambda: False
    qtbot.mouseClick(page.use_button, Qt.MouseButton.LeftButton)
    judge = window.judge_page
    qtbot.waitUntil(lambda: judge.queue.lm is not None and judge.queue.lm.adapter is not None,
                    timeout=120_000)
    judge.queue.shutdown()
