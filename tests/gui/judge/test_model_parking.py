"""While a training job runs, a generation model on the GPU waits in main memory ("parked") and
comes back afterwards; generation resumes only once it is back.

There is no GPU here: ``on_accelerator`` is told the tiny model is on one, and ``move_weights``
records the moves (and takes a little time, as a real copy does) instead of copying."""

from __future__ import annotations

import time

import pytest

from desktop_app.ml.models import loader as model_loader
from desktop_app.ml.models.loader import load_model

from ..conftest import flush_events

pytestmark = pytest.mark.slow  # loads a model and generates in the real window

PROMPTS = [f"Prompt number {i}: tell me something nice." for i in range(40)]


@pytest.fixture
def moves(monkeypatch, window):
    """Each move as (to_cpu, whether a batch was being generated at that moment)."""
    recorded: list[tuple[bool, bool]] = []
    queue = window.judge_page.queue
    monkeypatch.setattr(model_loader, "on_accelerator", lambda lm: True)

    def fake_move(lm, to_cpu):
        recorded.append((to_cpu, queue.busy))
        time.sleep(0.2)  # on the job's thread: keeps a move in flight while the test acts
    monkeypatch.setattr(model_loader, "move_weights", fake_move)
    return recorded


@pytest.fixture
def loaded(qtbot, window, store, tiny_chat_model):
    store.add_prompts(PROMPTS)
    queue = window.judge_page.queue
    queue.cfg.max_new_tokens = 48
    queue.cfg.batch_size = 4
    window.judge_page.form.set_value(queue.cfg)
    window._on_model_loaded(load_model(tiny_chat_model, device="cpu"))
    return queue


def test_training_parks_the_model_and_generation_resumes_after_it_is_back(
        qtbot, window, loaded, moves):
    queue = loaded
    qtbot.waitUntil(lambda: queue.busy, timeout=30_000)  # a batch is being generated
    window.reward_page.training_started.emit()
    assert queue.paused
    # The batch in progress is cut short; only then do the weights move.
    qtbot.waitUntil(lambda: queue.parking == "parked", timeout=60_000)
    assert moves == [(True, False)] and not queue.busy
    assert "main memory" in queue.last_status
    queue.top_up()
    assert not queue.busy  # nothing is generated while parked

    window.reward_page.training_finished.emit()
    assert queue.parking == "unparking" and queue.paused  # not before the weights are back
    qtbot.waitUntil(lambda: queue.parking is None, timeout=30_000)
    assert [m[0] for m in moves] == [True, False]
    assert not queue.paused and not window.judge_page.pause_button.isChecked()


def test_two_training_jobs_keep_it_parked_until_both_end(qtbot, window, loaded, moves):
    queue = loaded
    window.reward_page.training_started.emit()
    window.ppo_page.training_started.emit()
    qtbot.waitUntil(lambda: queue.parking == "parked", timeout=60_000)
    window.reward_page.training_finished.emit()  # handled at once: the PPO run goes on
    flush_events()  # and whatever it queued has run too
    assert queue.parking == "parked" and queue.paused and not queue.move_job.running
    window.ppo_page.training_finished.emit()
    qtbot.waitUntil(lambda: queue.parking is None and not queue.paused, timeout=30_000)
    assert [m[0] for m in moves] == [True, False]


def test_training_that_ends_while_the_model_moves_out_brings_it_back(qtbot, window, loaded,
                                                                      moves):
    queue = loaded
    qtbot.waitUntil(lambda: not queue.busy, timeout=60_000)
    window.evaluate_page.training_started.emit()
    assert queue.parking == "parking"
    window.evaluate_page.training_finished.emit()  # e.g. a run that failed at once
    qtbot.waitUntil(lambda: queue.parking is None and not queue.paused, timeout=30_000)
    assert [m[0] for m in moves] == [True, False]


def test_generation_the_user_had_paused_stays_paused(qtbot, window, loaded, moves):
    queue = loaded
    window.judge_page.set_generation_paused(True)
    qtbot.waitUntil(lambda: not queue.busy, timeout=60_000)
    window.reward_page.training_started.emit()
    qtbot.waitUntil(lambda: queue.parking == "parked", timeout=30_000)
    window.reward_page.training_finished.emit()
    qtbot.waitUntil(lambda: queue.parking is None, timeout=30_000)
    assert queue.paused and window.judge_page.pause_button.isChecked()


def test_a_model_in_main_memory_is_not_moved(qtbot, window, loaded, monkeypatch):
    moved = []
    monkeypatch.setattr(model_loader, "move_weights", lambda lm, to_cpu: moved.append(to_cpu))
    queue = loaded  # the real on_accelerator: this model is on the CPU
    window.reward_page.training_started.emit()
    assert queue.paused and queue.parking is None
    window.reward_page.training_finished.emit()
    assert not queue.paused and not moved


def test_a_failed_move_asks_for_the_model_to_be_loaded_again(qtbot, window, loaded, moves,
                                                              monkeypatch):
    queue = loaded
    qtbot.waitUntil(lambda: not queue.busy, timeout=60_000)

    def broken(lm, to_cpu):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    monkeypatch.setattr(model_loader, "move_weights", broken)
    window.reward_page.training_started.emit()
    qtbot.waitUntil(lambda: queue.lm is None, timeout=30_000)
    assert "Load it again" in queue.last_status and "illegal memory access" in queue.last_status
    window.reward_page.training_finished.emit()
    assert queue.parking is None


def test_a_model_loaded_while_training_runs_waits_too(qtbot, window, loaded, moves,
                                                       tiny_chat_model):
    queue = loaded
    window.reward_page.training_started.emit()
    qtbot.waitUntil(lambda: queue.parking == "parked", timeout=60_000)
    window._on_model_loaded(load_model(tiny_chat_model, device="cpu"))  # another model
    assert queue.paused and window.judge_page.pause_button.isChecked()
    qtbot.waitUntil(lambda: queue.parking == "parked" and len(moves) == 2, timeout=30_000)
    assert not queue.busy
    window.reward_page.training_finished.emit()
    qtbot.waitUntil(lambda: queue.parking is None and not queue.paused, timeout=30_000)
    assert [m[0] for m in moves] == [True, True, False]


def test_a_model_replaced_while_it_moves_is_not_taken_for_the_new_one(qtbot, window, loaded,
                                                                       moves, tiny_chat_model):
    queue = loaded
    qtbot.waitUntil(lambda: not queue.busy, timeout=60_000)
    window.reward_page.training_started.emit()
    window.reward_page.training_finished.emit()  # parking is still under way
    assert queue.parking == "parking"
    old_move = queue.move_job
    new_model = load_model(tiny_chat_model, device="cpu")
    # The old move's result arrives once the new model is in, and must change nothing.
    with qtbot.waitSignal(old_move.finished, timeout=30_000):
        window._on_model_loaded(new_model)
    flush_events()
    assert queue.parking is None and not queue.paused and not queue._after_unpark
    assert not window.judge_page.pause_button.isChecked()


def test_resume_pressed_while_parked_waits_for_the_weights(qtbot, window, loaded, moves, store):
    queue = loaded
    window.reward_page.training_started.emit()
    qtbot.waitUntil(lambda: queue.parking == "parked", timeout=60_000)
    window.judge_page.set_generation_paused(False)  # the person presses Resume
    assert not queue.busy and "until training ends" in queue.last_status
    # Make room in the queue, so that generation has work once the weights are back.
    while (pair := store.next_pending()) is not None:
        store.judge(pair.comparison_id, pair.choice_for_side("left"))
    window.reward_page.training_finished.emit()
    qtbot.waitUntil(lambda: queue.parking is None, timeout=30_000)
    assert queue.busy or store.pending_count() > 0  # generating again
