"""PPO and RLOO from the GUI: each starts from its tab of the Policy page on a finished reward
model, charts and the sample table fill live, the run is stored under its reward run, and the
tuned policy can generate the next round."""

import pytest
from PySide6.QtCore import Qt

from desktop_app.core.config import RewardConfig
from desktop_app.ml.reward.train import train_reward_model

from ..training.test_reward_page import add_marker_judgments

pytestmark = pytest.mark.slow  # trains a reward model, then PPO and RLOO from the page


def test_ppo_and_rloo_runs_then_next_round(qtbot, window, workspace, store, tiny_chat_model):
    add_marker_judgments(store, n=24)
    reward = train_reward_model(workspace, RewardConfig(epochs=2, batch_size=8, max_length=64,
                                                        lora_r=4, min_pairs=8),
                                base_model=str(tiny_chat_model))
    assert reward.status == "completed"

    page = window.ppo_page
    window.show_page("Policy")
    page.set_base_model(str(tiny_chat_model))
    page.refresh()
    assert page.reward_box.currentData() == reward.run_id
    cfg = page.form.value()
    cfg.steps, cfg.batch_size, cfg.mini_batch_size, cfg.ppo_epochs = 3, 4, 2, 1
    cfg.max_new_tokens = 8
    page.form.set_value(cfg)
    assert page.start_button.isEnabled()

    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    assert window.judge_page.queue.paused
    qtbot.waitUntil(lambda: not page.run.running, timeout=300_000)
    result = page.run.last_result
    assert result is not None and result.status == "completed", page.run.status.text()
    assert page.charts.points_received > 0 and page.samples.rowCount() > 0
    run = store.get_run(result.run_id)
    assert run.kind == "ppo" and run.parent_run_id == reward.run_id
    assert "objective/kl" in store.final_metrics(result.run_id)

    # RLOO from its own tab, against the same reward model.
    window.policy_page.show_method("RLOO")
    rloo = window.rloo_page
    assert window.policy_page.stack.currentWidget() is rloo
    rloo.set_base_model(str(tiny_chat_model))
    rloo.refresh()
    assert rloo.reward_box.currentData() == reward.run_id
    cfg = rloo.form.value()
    cfg.steps, cfg.batch_size, cfg.k, cfg.mini_batch_size, cfg.max_new_tokens = 2, 4, 2, 2, 8
    rloo.form.set_value(cfg)
    qtbot.mouseClick(rloo.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not rloo.run.running, timeout=300_000)
    rloo_result = rloo.run.last_result
    assert rloo_result is not None and rloo_result.status == "completed", rloo.run.status.text()
    assert rloo.charts.points_received > 0 and rloo.samples.rowCount() > 0
    run = store.get_run(rloo_result.run_id)
    assert run.kind == "rloo" and run.parent_run_id == reward.run_id
    assert "objective/group_reward_std" in store.final_metrics(rloo_result.run_id)
    window.policy_page.show_method("PPO")

    # The next round: the tuned policy against the base (the answer to the main window's
    # question), each pair recorded with the adapter on the tuned side only.
    assert page.use_button.isEnabled()
    window._ask_pair_mode = lambda: True
    qtbot.mouseClick(page.use_button, Qt.MouseButton.LeftButton)
    judge = window.judge_page
    qtbot.waitUntil(lambda: judge.queue.lm is not None and judge.queue.lm.adapter is not None,
                    timeout=120_000)
    assert judge.queue.lm.versus_base
    qtbot.waitUntil(lambda: store.db.execute(
        "SELECT COUNT(*) FROM generations WHERE adapter IS NOT NULL").fetchone()[0] > 0,
        timeout=120_000)
    judge.queue.shutdown()
