"""A person's first minutes: the model named at start-up loads in the background and is listed
on the Models page; the first pair comes from a one-prompt batch; a generate run exists only
once it produced a pair; a cut-off answer says so on the pair."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from desktop_app.core.data.store import GenerationIn

pytestmark = pytest.mark.slow  # loads a model and generates in the real window

PROMPTS = [f"Prompt number {i}: tell me something nice." for i in range(12)]


def test_the_start_up_model_loads_in_the_background_and_is_listed(qtbot, window, store,
                                                                   tiny_chat_model):
    store.add_prompts(PROMPTS)
    page = window.models_page
    page.open_at_start(str(tiny_chat_model))
    # The window says what it is doing while the stack imports and the model loads.
    assert window.model_status.text() == "Loading tiny-llama…"
    assert "Loading tiny-llama" in page.message.text()
    judge = window.judge_page
    qtbot.waitUntil(lambda: judge.loop.current is not None, timeout=120_000)
    assert page.info is not None and "tiny-llama" in window.model_status.text()

    # The first batch was a single prompt: the first pair did not wait for a batch of 8.
    first = store.db.execute("SELECT COUNT(*) FROM generations WHERE run_id = "
                             "(SELECT MIN(id) FROM runs WHERE kind = 'generate')").fetchone()[0]
    assert first >= 2
    assert store.db.execute("SELECT MIN(batch_row) FROM generations").fetchone()[0] == 0
    metrics = store.metrics(store.list_runs()[0].id, "generate/batch_pairs")
    assert metrics and metrics[0]["value"] == 1 and metrics[0]["step"] == 1

    # Opened by path, not found by a scan: listed all the same (it used to say "No models").
    qtbot.waitUntil(lambda: page._tree_has(str(tiny_chat_model)), timeout=60_000)
    assert "No models found" not in page.scan_label.text()
    judge.queue.shutdown()


def test_a_start_up_model_that_is_not_a_model_says_so(qtbot, window, tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    window.models_page.open_at_start(str(bad))
    qtbot.waitUntil(lambda: not window.models_page.load_job.running, timeout=60_000)
    assert "config.json" in window.models_page.message.text()
    assert window.model_status.text() == "No model loaded (see the Models page)"


def test_a_generate_run_that_produced_nothing_is_not_kept(qtbot, window, store,
                                                           tiny_chat_model):
    from desktop_app.ml.models.loader import load_model
    window._on_model_loaded(load_model(tiny_chat_model, device="cpu"))  # no prompts: no batch
    queue = window.judge_page.queue
    assert queue.run_id is None and not store.list_runs()
    store.add_prompts(PROMPTS[:1])
    queue.set_paused(True)
    queue.set_paused(False)
    assert queue.busy and queue.run_id is not None
    run_id = queue.run_id
    queue.job.cancel()            # cut short (a tiny model may finish its one pair first)
    qtbot.waitUntil(lambda: not queue.busy, timeout=60_000)
    queue.shutdown()
    produced = store.db.execute("SELECT COUNT(*) FROM generations WHERE run_id = ?",
                                [run_id]).fetchone()[0]
    assert [r.id for r in store.list_runs()] == ([run_id] if produced else [])


def test_a_cut_off_answer_says_so_on_the_pair(qtbot, window, store):
    store.add_prompts(["Say something long."])
    prompt_id = store.prompts_without_pairs(1, model="m", adapter=None)[0]["id"]
    cut = GenerationIn(text="It goes on and on and", model="m", completion_tokens=12,
                       finished=False)
    done = GenerationIn(text="Short.", model="m", completion_tokens=3, finished=True)
    store.add_pairs([(prompt_id, cut, done)])
    window.judge_page.refresh()
    view = window.judge_page.view
    footers = view.left.footer.text() + view.right.footer.text()
    assert "cut off at the length limit" in footers and "ended normally" in footers
    assert view.undo_button.isEnabled() is False
    qtbot.keyClick(view, Qt.Key.Key_1)
