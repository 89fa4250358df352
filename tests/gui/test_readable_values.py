"""Small things that read wrong: plurals, 2.00 epochs, an accuracy on 4 pairs shown as if it
meant something, Undo offered with nothing to undo."""

from __future__ import annotations

import random

import pytest

from desktop_app.core.data.store import GenerationIn
from desktop_app.core.wording import count

from .training.test_reward_page import add_marker_judgments


def test_counts_agree_with_their_nouns():
    assert count(1, "tie") == "1 tie"
    assert count(0, "tie") == "0 ties"
    assert count(2, "validation pair") == "2 validation pairs"
    assert count(1, "loss", "losses") == "1 loss" and count(3, "loss", "losses") == "3 losses"
    assert count(1024, "pair") == "1024 pairs" and count(4.0, "pair") == "4 pairs"


def test_decimal_fields_show_no_trailing_zeros(qtbot):
    from desktop_app.core.config import RewardConfig
    from desktop_app.gui.widgets.config_form import ConfigForm
    form = ConfigForm(RewardConfig(epochs=2.0, lr=2e-4, max_grad_norm=1.0))
    qtbot.addWidget(form)
    text = {name: form._editors[name].text() for name in ("epochs", "lr", "max_grad_norm")}
    assert text == {"epochs": "2", "lr": "0.0002", "max_grad_norm": "1"}
    form._editors["epochs"].setValue(2.5)
    assert form._editors["epochs"].text() == "2.5" and form.value().epochs == 2.5


def test_validation_accuracy_comes_with_its_pairs_and_interval():
    from desktop_app.gui.training.reward_page import accuracy_text
    few = accuracy_text(1 / 3, 3)
    assert few.startswith("validation accuracy 33% on 3 pairs (95% CI 6%–79%)")
    assert "3 pairs say little" in few
    many = accuracy_text(0.9, 120)
    assert many.startswith("validation accuracy 90% on 120 pairs (95% CI 83%–94%)")
    assert "say little" not in many
    assert accuracy_text(0.75, None) == "validation accuracy 0.750"   # runs from before n
    assert accuracy_text(None, None) == "validation accuracy –"


@pytest.mark.slow  # the whole main window
def test_reward_page_warns_when_validation_pairs_are_few(window, store):
    add_marker_judgments(store, n=40)
    pid = store.add_prompt("A prompt judged as a tie")
    store.add_pairs([(pid, GenerationIn("x y", "m"), GenerationIn("x z", "m"))],
                    rng=random.Random(1), choice="tie")
    page = window.reward_page
    page.refresh_data_summary()
    text = page.data_label.text()
    assert "(1 tie)" in text and "training pairs and 4 validation pairs" in text
    assert "Only 4 validation pairs" in text and "25 points" in text
    cfg = page.form.value()
    cfg.val_fraction = 0.5
    page.form.set_value(cfg)
    assert "Only" not in page.data_label.text()   # 20 or more: no warning


@pytest.mark.slow  # the whole main window
def test_undo_is_offered_only_when_there_is_something_to_undo(window, store):
    pid = store.add_prompt("Which is better?")
    store.add_pairs([(pid, GenerationIn("one", "m"), GenerationIn("two", "m"))],
                    rng=random.Random(2))
    page = window.judge_page
    page.refresh()
    undo = page.view.undo_button
    assert page.loop.current is not None and not undo.isEnabled()
    page.loop.judge("left")
    assert undo.isEnabled()
    page.loop.undo()
    assert not undo.isEnabled()

