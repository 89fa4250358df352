"""The torch-free half of DPO: which judgments it learns from, and whether there are enough.
The DPO page calls ``check_dpo_data`` on its UI thread whenever the judgments change, so
nothing here may import torch.

DPO learns from pairs with a winner. Ties and both-bad pairs say nothing about which response
is better, so they are left out, and counted so that the person sees what was not used. The
split by prompt is the reward model's (same validation share and seed give the same held-out
prompts: ties are split with their prompts first and left out afterwards), so a DPO policy and
a reward model trained on the same judgments are validated on the same prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop_app.core.config import DPOConfig
from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError
from desktop_app.ml.reward.pairs import PairExample, preference_examples, split_by_prompt


class DPOTrainingError(UserError):
    """DPO cannot start or go on; the message is one sentence for the user."""


@dataclass
class DPOData:
    train: list[PairExample]
    val: list[PairExample]
    ties: int       # judged ties, left out
    both_bad: int   # judged both-bad, left out

    def counts(self) -> dict[str, int]:
        return {"train_pairs": len(self.train), "val_pairs": len(self.val),
                "ties_left_out": self.ties, "both_bad_left_out": self.both_bad,
                "train_prompts": len({e.prompt_id for e in self.train}),
                "val_prompts": len({e.prompt_id for e in self.val})}


def dpo_data(store: Store, cfg: DPOConfig) -> DPOData:
    """The training and validation pairs (winners only), split by prompt as the reward model
    splits them."""
    examples = preference_examples(store.preference_rows(), "equal")
    train, val = split_by_prompt(examples, cfg.val_fraction, cfg.seed)
    # One count, not Store.stats(): the page runs this on its UI thread at every form change.
    both_bad = store.db.execute("SELECT COUNT(*) FROM comparisons WHERE choice = 'both_bad' "
                                "AND training = 1").fetchone()[0]
    return DPOData([e for e in train if not e.tie], [e for e in val if not e.tie],
                   sum(e.tie for e in examples), both_bad)


def check_dpo_data(store: Store, cfg: DPOConfig) -> dict[str, int]:
    """What a new run would train and validate on (``DPOData.counts``). Raises
    ``DPOTrainingError`` for a bad config or too few pairs, before anything is created."""
    try:
        cfg.validate()
    except ValueError as exc:
        raise DPOTrainingError(f"{exc}.") from exc
    data = dpo_data(store, cfg)
    usable = len(data.train) + len(data.val)
    if usable < cfg.min_pairs:
        raise DPOTrainingError(
            f"DPO needs at least {cfg.min_pairs} judged pairs with a winner; the workspace has "
            f"{usable} (ties and both-bad pairs do not count).")
    if not data.train:
        raise DPOTrainingError("Every pair with a winner fell into the validation split; lower "
                               "the validation share or judge pairs for more prompts.")
    return data.counts()
