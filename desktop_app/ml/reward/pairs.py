"""The torch-free half of reward training: judgments as pairs, the split by prompt, and the
check of whether there is enough to train on. The Reward page calls ``check_reward_data`` on
its UI thread whenever the judgments change, so nothing here may import torch (importing it
there froze the window for seconds at start-up).

    preference_examples  store rows -> PairExample (ties kept or left out, per the config)
    split_by_prompt      examples -> train / validation, no prompt in both, fixed by a seed
    Split                the comparison ids of each side, saved with the run for resume
    check_reward_data    how many pairs a new run would train and validate on
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from desktop_app.core.config import RewardConfig
from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError


class RewardTrainingError(UserError):
    """Training cannot start or go on; the message is one sentence for the user."""


@dataclass(frozen=True)
class PairExample:
    comparison_id: int
    prompt_id: int
    prompt: str
    messages: list | None
    chosen: str
    rejected: str
    tie: bool  # for a tie, chosen/rejected are simply the two responses


def preference_examples(rows: list[dict], ties: str) -> list[PairExample]:
    """``Store.preference_rows()`` as examples; ``ties="drop"`` leaves ties out. Both-bad and
    skipped pairs never reach here: they have no order to learn."""
    examples = [PairExample(r["comparison_id"], r["prompt_id"], r["prompt"],
                            r.get("prompt_messages"), r["chosen"], r["rejected"], bool(r["tie"]))
                for r in rows]
    return [e for e in examples if not (e.tie and ties == "drop")]


# ---- split -----------------------------------------------------------------------------------

def split_by_prompt(examples: list[PairExample], val_fraction: float,
                    seed: int) -> tuple[list[PairExample], list[PairExample]]:
    """Hold out ``val_fraction`` of the prompts (with all their pairs), chosen by ``seed``.

    Splitting by prompt, not by pair, keeps validation honest: two responses to a prompt seen
    in training would let the model score well by remembering the prompt. With two or more
    prompts and a non-zero fraction at least one prompt is held out, and at least one is kept
    for training."""
    prompt_ids = sorted({e.prompt_id for e in examples})
    random.Random(f"reward-split:{seed}").shuffle(prompt_ids)
    n_val = round(val_fraction * len(prompt_ids))
    if val_fraction > 0 and len(prompt_ids) >= 2:
        n_val = min(max(n_val, 1), len(prompt_ids) - 1)
    held_out = set(prompt_ids[:n_val])
    train = [e for e in examples if e.prompt_id not in held_out]
    val = [e for e in examples if e.prompt_id in held_out]
    return train, val


def fingerprint(examples: list[PairExample]) -> str:
    """A digest of the pairs' content: a resume checks that its judgments were not edited."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.comparison_id, e.prompt, e.messages, e.chosen, e.rejected,
                                  e.tie], ensure_ascii=False).encode())
    return digest.hexdigest()


@dataclass
class Split:
    """Which comparisons a run trains and validates on, in order. Saved as ``split.json`` so a
    resumed run uses exactly these pairs, whatever was judged since."""

    train_ids: list[int]
    val_ids: list[int]
    digest: str

    @classmethod
    def of(cls, train: list[PairExample], val: list[PairExample]) -> "Split":
        return cls([e.comparison_id for e in train], [e.comparison_id for e in val],
                   fingerprint(train + val))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"train": self.train_ids, "val": self.val_ids,
                                   "digest": self.digest}), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Split":
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(list(data["train"]), list(data["val"]), data["digest"])

    def select(self, examples: list[PairExample]) -> tuple[list[PairExample], list[PairExample]]:
        """The saved train and validation pairs, from every example in the store. Ids that are
        gone (deleted or unjudged since) are left out; the caller compares ``fingerprint``."""
        by_id = {e.comparison_id: e for e in examples}
        return ([by_id[i] for i in self.train_ids if i in by_id],
                [by_id[i] for i in self.val_ids if i in by_id])


def saved_split(store: Store, run_dir: Path, run_id: int,
                error: type[UserError] = RewardTrainingError
                ) -> tuple[list[PairExample], list[PairExample]]:
    """The training and validation pairs of run ``run_id`` (its ``split.json``), for a resume:
    every row, ties included (the split names the pairs, whatever the tie setting). ``error``
    says the run cannot be resumed when the file is unreadable or its judgments changed."""
    try:
        split = Split.load(run_dir / "split.json")
    except (OSError, ValueError, KeyError) as exc:
        raise error(f"Run {run_id} cannot be resumed: its split.json is missing or "
                    "unreadable.") from exc
    train, val = split.select(preference_examples(store.preference_rows(), "equal"))
    if fingerprint(train + val) != split.digest:
        raise error(f"Run {run_id} cannot be resumed: some of its judgments were deleted or "
                    "changed since it started.")
    return train, val


# ---- data check ------------------------------------------------------------------------------

def check_reward_data(store: Store, cfg: RewardConfig) -> dict:
    """How many pairs a new run would train and validate on. Raises ``RewardTrainingError``
    when there are too few judgments with a winner, before anything is created."""
    _validate(cfg)
    rows = store.preference_rows()
    examples = preference_examples(rows, cfg.ties)
    usable = sum(not e.tie for e in examples)
    if usable < cfg.min_pairs:
        raise RewardTrainingError(
            f"Reward training needs at least {cfg.min_pairs} usable judgments (pairs with a "
            f"winner); the workspace has {usable}.")
    train, val = split_by_prompt(examples, cfg.val_fraction, cfg.seed)
    if not any(not e.tie for e in train):
        raise RewardTrainingError("Every pair with a winner fell into the validation split; "
                                  "lower the validation share or judge pairs for more prompts.")
    ties_in_store = sum(bool(r["tie"]) for r in rows)
    return {"usable": usable, "train_pairs": len(train), "val_pairs": len(val),
            "ties": sum(e.tie for e in examples),
            "ties_left_out": ties_in_store - sum(e.tie for e in examples),
            "train_prompts": len({e.prompt_id for e in train}),
            "val_prompts": len({e.prompt_id for e in val})}


def _validate(cfg: RewardConfig) -> None:
    try:
        cfg.validate()
    except ValueError as exc:
        raise RewardTrainingError(f"{exc}.") from exc
