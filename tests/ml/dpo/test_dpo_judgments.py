"""Which judgments DPO learns from (torch-free, as the DPO page checks them on its UI thread):
pairs with a winner, from the Judge page or an imported preference file; ties and both-bad
left out and counted; the reward model's split by prompt."""

from __future__ import annotations

import json

import pytest

from desktop_app.core.config import DPOConfig, RewardConfig
from desktop_app.core.data.importing import import_file
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.workspace import Workspace
from desktop_app.ml.dpo.judgments import DPOTrainingError, check_dpo_data, dpo_data
from desktop_app.ml.reward.pairs import preference_examples, split_by_prompt


def test_ties_and_both_bad_are_left_out_and_counted(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    with Store(ws.db_path) as store:
        ids = store.add_prompts([f"Prompt {i}" for i in range(30)]).ids
        pairs = [(pid, GenerationIn(f"yes {pid}", "m"), GenerationIn(f"no {pid}", "m"))
                 for pid in ids]
        choices = ["a"] * 20 + ["tie"] * 5 + ["both_bad"] * 3 + ["skip"] * 2
        for cid, choice in zip(store.add_pairs(pairs), choices):
            store.judge(cid, choice)
        counts = check_dpo_data(store, DPOConfig(val_fraction=0.2, min_pairs=16))
        assert counts["train_pairs"] + counts["val_pairs"] == 20
        assert (counts["ties_left_out"], counts["both_bad_left_out"]) == (5, 3)
        with pytest.raises(DPOTrainingError, match="at least 21 judged pairs with a winner"):
            check_dpo_data(store, DPOConfig(min_pairs=21))
        with pytest.raises(DPOTrainingError, match="label_smoothing"):
            check_dpo_data(store, DPOConfig(loss="ipo", label_smoothing=0.1, min_pairs=2))


def test_the_split_is_the_reward_models(tmp_path):
    """Same validation share and seed: the same held-out prompts as a reward model's split,
    ties included in the split (the reward model keeps them) and left out afterwards."""
    ws = Workspace.open(tmp_path / "ws")
    with Store(ws.db_path) as store:
        ids = store.add_prompts([f"Prompt {i}" for i in range(40)]).ids
        pairs = [(pid, GenerationIn(f"yes {pid}", "m"), GenerationIn(f"no {pid}", "m"))
                 for pid in ids for _ in range(2)]
        for k, cid in enumerate(store.add_pairs(pairs)):
            store.judge(cid, "tie" if k % 5 == 0 else "a")
        for seed, share in ((0, 0.2), (3, 0.1)):
            data = dpo_data(store, DPOConfig(seed=seed, val_fraction=share))
            reward = RewardConfig(seed=seed, val_fraction=share)
            train, val = split_by_prompt(preference_examples(store.preference_rows(),
                                                             reward.ties), share, seed)
            assert [e.comparison_id for e in data.val] == [e.comparison_id for e in val
                                                           if not e.tie]
            assert [e.comparison_id for e in data.train] == [e.comparison_id for e in train
                                                             if not e.tie]
            assert data.ties == 16


def test_an_imported_preference_file_is_learnt_from(tmp_path):
    rows = [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.",
             "rejected": f"A poor answer {i}."} for i in range(20)]
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ws = Workspace.open(tmp_path / "ws")
    with Store(ws.db_path) as store:
        import_file(store, path)
        data = dpo_data(store, DPOConfig(val_fraction=0.2))
        assert len(data.train) + len(data.val) == 20
        assert {e.chosen for e in data.train + data.val} == {r["chosen"] for r in rows}
        assert check_dpo_data(store, DPOConfig(val_fraction=0.2))["val_pairs"] == 4
