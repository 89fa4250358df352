"""A new model never makes the UI thread wait: ``PairQueue.set_model`` asked while a batch is
being generated returns at once; the batch ends on its own thread and the model is taken when
its job's ``finished`` arrives, the last one asked for winning."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from waiting import poll_until

from desktop_app.ml.generation import pair_job


def fake_model(path: str):
    return SimpleNamespace(path=path, adapter=None, versus_base=False, quantize="none",
                           device=SimpleNamespace(label=lambda: "cpu"))


def test_set_model_returns_at_once_while_a_batch_runs(qtbot, store, monkeypatch):
    from desktop_app.gui.app import create_app
    from desktop_app.gui.judge.pair_queue import PairQueue
    create_app()
    release = threading.Event()
    batches: list[str] = []

    def fake_generate(store_, lm, cfg, limit, run_id, emit, stop):
        batches.append(lm.path)
        if lm.path == "old":
            release.wait(60)   # a batch that cannot stop yet, whatever the stop token says
        else:
            poll_until(lambda: stop.requested, timeout=60)  # a batch that stops when asked
        return SimpleNamespace(pairs=0, tokens_per_s=0.0, seconds=0.0)

    monkeypatch.setattr(pair_job, "generate_pending_pairs", fake_generate)
    store.add_prompts(["Tell me about cats.", "Write a poem about rain.", "Boil an egg."])
    queue = PairQueue(store)
    queue.set_model(fake_model("old"))
    assert queue.busy
    qtbot.waitUntil(lambda: batches == ["old"], timeout=60_000)

    began = time.monotonic()
    queue.set_model(fake_model("middle"))
    queue.set_model(fake_model("new"))
    assert time.monotonic() - began < 1.0   # it did not wait for the batch
    assert queue.busy and queue.lm.path == "old" and queue.wanted_model.path == "new"
    assert "Switching to the new model" in queue.last_status
    queue.top_up()
    assert batches == ["old"]               # nothing more starts for the old model

    release.set()                           # the old batch ends on its thread
    qtbot.waitUntil(lambda: batches[-1:] == ["new"], timeout=30_000)
    assert batches == ["old", "new"]        # the last model asked for; "middle" never ran
    assert queue.lm.path == "new" and queue.busy
    queue.shutdown()
