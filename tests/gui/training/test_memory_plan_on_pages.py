"""The memory plan beside the start buttons: computed off the UI thread, green when the job
fits, red with the change that makes it fit when it does not, and a job that will not fit is
not started without asking."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from .test_reward_page import add_marker_judgments

pytestmark = pytest.mark.slow  # the whole main window, and a model sized on a worker thread


def _planned(qtbot, label) -> str:
    qtbot.waitUntil(lambda: label.plan is not None or "No memory" in label.text(),
                    timeout=60_000)
    return label.text()


def test_the_reward_page_plans_and_asks_before_a_job_that_will_not_fit(
        qtbot, window, store, tiny_chat_model, monkeypatch):
    add_marker_judgments(store)
    page = window.reward_page
    window.show_page("Reward model")
    page.set_base_model(str(tiny_chat_model))
    page.refresh()
    text = _planned(qtbot, page.plan_label)
    assert text.startswith("Training needs about") and "free on the CPU" in text
    assert page.plan_label.plan.fits
    assert "weights" in page.plan_label.toolTip() and "activations" in page.plan_label.toolTip()

    # Less free memory than the job needs: red, with a change that would make it fit.
    tight = page.plan_label.plan.peak_bytes - page.plan_label.plan.breakdown["activations"] // 2
    monkeypatch.setattr("desktop_app.ml.models.device.available_memory_bytes",
                        lambda device: tight)
    page.plan_label.plan = None
    page.plan_label.refresh()
    text = _planned(qtbot, page.plan_label)
    assert text.startswith("<b>Will not fit:</b>") and "Try " in text
    assert "To make it fit" in page.plan_label.toolTip()

    # Starting asks first; "Change settings" starts nothing.
    asked = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: asked.append(box.text()) or 0)
    qtbot.mouseClick(page.train_button, Qt.MouseButton.LeftButton)
    assert asked and "Changes that help" in asked[0]
    assert not page.run.running and store.list_runs() == []


def test_the_models_page_plans_generation_with_the_chosen_quantisation(
        qtbot, window, tiny_chat_model):
    page = window.models_page
    page.select_path(str(tiny_chat_model))
    text = _planned(qtbot, page.plan_label)
    assert text.startswith("Generating pairs needs about"), text
    plain = page.plan_label.plan.breakdown["weights"]
    page.quant_box.setCurrentIndex(page.quant_box.findData("4bit"))
    qtbot.waitUntil(lambda: page.plan_label.plan is not None
                    and page.plan_label.plan.breakdown["weights"] < plain, timeout=60_000)
    assert "dequantize" in page.plan_label.plan.breakdown
