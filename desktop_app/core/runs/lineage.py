"""Where a run comes from: the policy runs whose responses are in the judgments it learns
from (round k's reward model and DPO policy learn from round k-1's policy)."""

from __future__ import annotations

from pathlib import Path

from desktop_app.core.data.store import Store


def policy_runs_in_data(store: Store) -> list[int]:
    """The policy runs (PPO, DPO) whose adapters generated judged training pairs, oldest
    first; the newest is a new run's parent."""
    adapters = {str(Path(a)) for a in store.training_adapters()}
    return [r.id for r in store.list_runs()
            if r.kind.trains_policy and r.artifact and str(Path(r.artifact)) in adapters]


def run_of_adapter(store: Store, adapter: str | Path) -> int | None:
    """The policy run whose artifact is the folder ``adapter`` (a policy a run started from)."""
    folder = Path(adapter).expanduser().resolve()
    for run in store.list_runs():
        if run.kind.trains_policy and run.artifact and Path(run.artifact).resolve() == folder:
            return run.id
    return None
