"""Least-certain-first: rank the pending pairs by how unsure the reward model is about them.

A pair the reward model already separates clearly (large |r_a - r_b|) mostly confirms what it
knows; a pair it scores alike is where a judgment teaches it most (uncertainty sampling, as in
active preference learning). ``score_pending_pairs`` stores the margin of every pending pair;
``Store.next_pending(order="uncertain")`` then serves the smallest margins first.
"""

from __future__ import annotations

from pathlib import Path

from ..core.events import Emit, Progress, StopToken, ignore
from ..core.store import Store
from .reward_model import RewardModelError, RewardScorer


class UncertaintyError(Exception):
    """The pairs cannot be ranked; the message says why."""


def reward_adapter_of(store: Store, reward_run_id: int) -> tuple[str, str]:
    """(base model, adapter folder) of a completed reward run."""
    run = store.get_run(reward_run_id)
    if run is None or run["kind"] != "reward":
        raise UncertaintyError(f"Run {reward_run_id} is not a reward-model run.")
    if run["status"] != "completed" or not run["artifact"]:
        raise UncertaintyError(f"Reward run {reward_run_id} is {run['status']}; ranking needs a "
                               "completed reward model.")
    if not (Path(run["artifact"]) / "adapter_config.json").is_file():
        raise UncertaintyError(f"The reward model of run {reward_run_id} is missing "
                               f"({run['artifact']}).")
    return run["config"]["base_model"], run["artifact"]


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
        try:
            scorer = RewardScorer.load(base, adapter, device=device)
        except RewardModelError as exc:
            raise UncertaintyError(str(exc)) from exc
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
