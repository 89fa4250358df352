"""Several GPUs from the app: with more than one visible, a training page offers "GPUs", and
the run goes to torchrun as a subprocess. Here two gloo processes on the CPU stand in for two
GPUs: the charts fill from the run's metrics in the database, progress arrives, cancel (SIGTERM
to torchrun) keeps a checkpoint, and resume finishes the run on two processes again."""

import pytest
from PySide6.QtCore import Qt

from desktop_app.gui.training import gpus

from .test_reward_page import add_marker_judgments

pytestmark = pytest.mark.slow  # starts torchrun twice


def test_one_gpu_or_none_offers_no_choice(window):
    page = window.reward_page
    page.activate()
    assert not page.gpus.offered and page.gpus.isHidden() and page.gpus.count() == 1


def test_a_reward_run_on_two_processes_charts_cancels_and_resumes(qtbot, window, store,
                                                                  tiny_chat_model, monkeypatch):
    monkeypatch.setattr(gpus, "visible_gpus", lambda: 2)
    monkeypatch.setenv("RLHF_DESK_DIST_BACKEND", "gloo")  # the CPU stands in for the GPUs
    add_marker_judgments(store)
    page = window.reward_page
    window.show_page("Reward model")
    assert page.gpus.offered and page.gpus.count() == 2  # every GPU by default
    page.set_base_model(str(tiny_chat_model))
    cfg = page.form.value()
    cfg.epochs, cfg.batch_size, cfg.max_length, cfg.lora_r = 40.0, 4, 64, 4
    cfg.log_every, cfg.eval_every, cfg.checkpoint_every, cfg.min_pairs = 1, 5, 1000, 8
    page.form.set_value(cfg)
    page.refresh()
    progress = []
    page.run.event.connect(lambda e: progress.append(e) if type(e).__name__ == "Progress"
                           else None)

    qtbot.mouseClick(page.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.charts.points_received >= 10, timeout=120_000)
    assert any(p.total > 0 and p.done > 0 for p in progress)  # rank 0's progress
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.run.running, timeout=120_000)

    [run] = [r for r in store.list_runs() if r.kind == "reward"]
    assert run.status == "cancelled", page.run.status.text()
    assert run.config["world_size"] == 2
    assert "cancelled" in page.run.status.text()
    assert page.resume_button.isEnabled() and f"#{run.id}" in page.resume_button.text()

    qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.run.running, timeout=300_000)
    run = store.get_run(run.id)
    assert run.status == "completed", page.run.status.text()
    assert page.run.status.text().startswith(f"Run #{run.id} finished")
    assert page.charts.points_received > 10
