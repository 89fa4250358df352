"""A workspace that looks used: judgments, pending pairs, held-out prompts and a history of runs
with metrics, so every page has something to show. Used by ``test_page_sizes.py`` and by
``docs/make_page_shots.py`` (which renders every page at the sizes the test checks)."""

from __future__ import annotations

import random

from desktop_app.core.data.store import GenerationIn

from .runs.test_runs_page import _set_times, build_runs, spread_metric_times
from .training.test_reward_page import add_marker_judgments

PENDING = [
    ("Explain what a reward model is, in two sentences.",
     "A reward model is a network trained on pairs of responses that people compared; it "
     "learns to give the preferred response the higher score.\n\nPPO then tunes a policy to "
     "write responses that this model scores highly, while a KL penalty keeps it close to the "
     "original model.",
     "It is a model that gives rewards."),
    ("Write a haiku about autumn rain.",
     "Cold rain on the roof\nred leaves pressed flat on the path\nthe kettle starts singing",
     "Autumn rain is falling down,\nleaves are red and brown,\nit is a rainy day in town."),
    ("How do I reverse a list in Python?",
     "Use slicing for a reversed copy:\n\n```python\nitems[::-1]\n```\n\nor reverse it in "
     "place with `items.reverse()`.",
     "You can use `reversed(items)`, which returns an iterator; wrap it in `list()` to get a "
     "list."),
]


def populate(store, workspace) -> dict[str, int]:
    """Fill ``store``: 40 judged pairs, three pairs waiting to be judged, four
    held-out prompts and the runs of ``build_runs`` (a generate, two reward, four PPO and an
    evaluation run with metrics), a generate run recorded the old way (every batch at step 0)
    and empty failed generate runs. Returns the run ids."""
    add_marker_judgments(store, n=40)
    rng = random.Random(7)
    ids = store.add_prompts([prompt for prompt, _, _ in PENDING]).ids
    store.add_pairs([(pid, GenerationIn(a, "demo-chat-model", completion_tokens=len(a.split()),
                                        finished=True),
                      GenerationIn(b, "demo-chat-model", completion_tokens=len(b.split()),
                                   finished=i != 1))
                     for i, (pid, (_, a, b)) in enumerate(zip(ids, PENDING))], rng=rng)
    held = store.add_prompts([f"Held-out question number {i}: what is {i} squared?"
                              for i in range(4)]).ids
    store.set_held_out(held)
    runs = build_runs(store, workspace)
    runs["gen_old"] = old_generate_run(store)
    for _ in range(3):   # what a window that could not generate leaves behind
        empty = store.create_run("generate", {"model": "/models/demo-chat-model"})
        store.finish_run(empty, "failed", error="CUDA out of memory")
    return runs


def old_generate_run(store) -> int:
    """A Judge-page generate run as recorded before batches had an x: every tokens/s at step 0,
    a batch every 40 seconds or so (the Runs page charts it against time)."""
    run = store.create_run("generate", {
        "model": "/models/demo-chat-model", "adapter": None, "device": "CPU · float32",
        "sampling": {"temperature": 0.9, "top_p": 0.95, "top_k": 0, "max_new_tokens": 128,
                     "repetition_penalty": 1.0, "batch_size": 8}, "source": "gui"})
    rates = [212.4, 388.1, 402.7, 395.0, 411.9, 24.93070060556060, 405.3, 398.8]
    store.add_metrics(run, [(0, "generate/tokens_per_s", rate) for rate in rates])
    store.finish_run(run, "completed")
    _set_times(store, run, 20, 6)
    spread_metric_times(store, run, first=30, every=41.5)
    return run

