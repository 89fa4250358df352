"""Least-certain-first: rank the pending pairs by how unsure the reward model is about them.

A pair the reward model already separates clearly (large |r_a - r_b|) mostly confirms what it
knows; a pair it scores alike is where a judgment teaches it most (uncertainty sampling, as in
active preference learning). ``score_pending_pairs`` stores the margin of every pending pair;
``Store.next_pending(order="uncertain")`` then serves the smallest margins first.
"""

from __future__ import annotations

from desktop_app.core.data.store import Store
from desktop_app.core.events import Emit, Progress, StopToken, ignore
from desktop_app.core.runs.record import RunKind, UnusableRun
from desktop_app.ml.reward.model import RewardScorer


def reward_adapter_of(store: Store, reward_run_id: int) -> tuple[str, str]:
    """(base model, adapter folder) of a completed reward run."""
    run = store.get_run(reward_run_id)
    if run is None:
        raise UnusableRun(f"There is no run {reward_run_id}.")
    adapter = run.require_artifact(RunKind.REWARD, "ranking the pending pairs")
    return run.config["base_model"], str(adapter)


def score_pending_pairs(store: Store, reward_run_id: int, *, device: str = "auto",
                        scorer: RewardScorer | None = None, emit: Emit = ignore,
                        stop: StopToken | None = None) -> int:
    """Score every pending training pair with the reward model and store |r_a - r_b|.
    Returns how many pairs were scored (margins are stored batch by batch, so a stop keeps
    what was done)."""
    rows = store.pending_pairs()
    if not rows:
        return 0
    if scorer is None:
        base, adapter = reward_adapter_of(store, reward_run_id)
        emit(Progress(0, len(rows), "Loading the reward model"))
        scorer = RewardScorer.load(base, adapter, device=device)
    done = 0
    for start in range(0, len(rows), scorer.batch_size):
        if stop is not None and stop.requested:
            break
        batch = rows[start:start + scorer.batch_size]
        r_a, r_b = scorer.score_pairs([{"prompt": r["prompt"], "prompt_messages":
                                        r["prompt_messages"], "chosen": r["text_a"],
                                        "rejected": r["text_b"]} for r in batch])
        store.set_margins([(r["comparison_id"], abs(a - b))
                           for r, a, b in zip(batch, r_a, r_b)])
        done += len(batch)
        emit(Progress(done, len(rows), "Ranking pending pairs by reward-model uncertainty"))
    return done
