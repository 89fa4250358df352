"""Reward training from the GUI: charts receive points while the UI runs, cancel keeps a
checkpoint and the run (with its metrics) is in the store; resume finishes it."""

import random

import pytest
from PySide6.QtCore import Qt

from desktop_app.core.data.store import GenerationIn

pytestmark = pytest.mark.slow  # trains reward models from the page

WORDS = ["apple", "river", "cloud", "stone", "green", "quiet", "light", "table"]


def add_marker_judgments(store, n=40, seed=0):
    """Chosen responses contain 'banana', rejected ones don't: an easy preference to learn."""
    rng = random.Random(seed)
    ids = store.add_prompts([f"Tell me about {w} number {i}." for i, w in
                             zip(range(n), rng.choices(WORDS, k=n))]).ids
    pairs = []
    for pid in ids:
        base = " ".join(rng.choices(WORDS, k=6))
        pairs.append((pid, GenerationIn(f"{base} banana", "m"), GenerationIn(f"{base} plain", "m")))
    store.add_pairs(pairs, rng=rng, choice="a")


def test_train_cancel_resume_from_the_page(qtbot, window, store, tiny_chat_model):
    add_marker_judgments(store)
    page = window.reward_page
    window.show_page("Reward model")
    page.set_base_model(str(tiny_chat_model))
    cfg = page.form.value()
    cfg.epochs, cfg.batch_size, cfg.max_length, cfg.lora_r = 20.0, 4, 64, 4
    cfg.log_every, cfg.eval_every, cfg.checkpoint_every, cfg.min_pairs = 1, 5, 1000, 8
    page.form.set_value(cfg)
    page.refresh()
    assert page.train_button.isEnabled(), page.data_label.text()

    qtbot.mouseClick(page.train_button, Qt.MouseButton.LeftButton)
    assert window.judge_page.queue.paused  # generation waits while training runs
    qtbot.waitUntil(lambda: page.charts.points_received >= 10, timeout=120_000)
    assert page.cancel_button.isEnabled() and not page.train_button.isEnabled()
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.run.running, timeout=120_000)

    [run] = [r for r in store.list_runs() if r.kind == "reward"]
    assert run.status == "cancelled"
    names = {m["name"] for m in store.metrics(run.id)}
    assert {"train/loss", "train/accuracy", "train/margin"} <= names
    assert page.resume_button.isEnabled() and f"#{run.id}" in page.resume_button.text()
    assert "cancelled" in page.run.status.text()

    # Resume finishes the same run; the charts were redrawn from the stored metrics first.
    qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.run.running, timeout=300_000)
    run = store.get_run(run.id)
    assert run.status == "completed", page.run.status.text()
    assert store.final_metrics(run.id).get("eval/accuracy") is not None
    assert page.run_box.count() == 1
    assert not window.judge_page.queue.paused  # generation resumes afterwards

    # The inspector scores a response and lists validation pairs the model gets wrong.
    page.tabs.setCurrentIndex(1)
    page.score_prompt.setText("Tell me about apple number 1.")
    page.score_response.setPlainText("river stone banana")
    qtbot.mouseClick(page.score_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.inspect_job.running, timeout=60_000)
    assert page.score_label.text().startswith("reward "), page.inspect_status.text()
    qtbot.mouseClick(page.wrong_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.inspect_job.running, timeout=60_000)
    assert "validation pair" in page.inspect_status.text()


def test_too_few_judgments_disables_training(qtbot, window, store, tiny_chat_model):
    add_marker_judgments(store, n=3)
    page = window.reward_page
    page.set_base_model(str(tiny_chat_model))
    page.refresh()
    assert not page.train_button.isEnabled()
    assert "needs at least" in page.data_label.text()


def test_training_frees_the_inspectors_model_only_when_it_sits_on_a_gpu(window):
    from types import SimpleNamespace

    from desktop_app.ml.models.device import DeviceChoice

    page = window.reward_page
    on_cpu = SimpleNamespace(device=DeviceChoice("cpu", "float32"))
    page._scorers[1] = on_cpu
    window.ppo_page.training_started.emit()
    assert page._scorers == {1: on_cpu}  # main memory: kept, the next score is instant
    window.ppo_page.training_finished.emit()

    page._scorers.clear()
    page._scorers[2] = SimpleNamespace(device=DeviceChoice("cuda", "bfloat16"))
    window.ppo_page.training_started.emit()
    assert page._scorers == {}  # a GPU: freed for training, loaded again when next used
    window.ppo_page.training_finished.emit()
