"""The model card of an exported policy: front matter other tools read, and the provenance
(base model, judgments, reward and PPO runs with settings and final metrics) from the store."""

import json

import pytest

from desktop_app import __version__
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.runs.model_card import (
    CardFacts,
    RunFacts,
    collect_card_facts,
    hub_id,
    render_model_card,
    write_model_card,
)
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.workspace import Workspace


def front_matter(card: str) -> dict:
    """A small YAML reader for the card's flat front matter (no PyYAML needed)."""
    assert card.startswith("---\n")
    head = card.split("---\n")[1]
    data, key = {}, None
    for line in head.splitlines():
        if line.startswith("- "):
            data[key].append(line[2:])
        else:
            key, _, value = line.partition(":")
            value = value.strip()
            data[key] = json.loads(value) if value.startswith('"') else (value or [])
    return data


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    with Store(ws.db_path) as store:
        store.add_prompts(["one", "two", "three"])
        pairs = [(row["id"], GenerationIn(f"good {row['id']}", "m"),
                  GenerationIn(f"bad {row['id']}", "m")) for row in store.list_prompts()]
        comparisons = store.add_pairs(pairs)
        for cid, choice in zip(comparisons, ("a", "b", "tie")):
            store.judge(cid, choice)
        reward = store.create_run("reward", {"base_model": "/models/tiny", "lr": 2e-4,
                                             "epochs": 2.0, "ties": "equal"})
        reward_dir = ws.runs_dir / f"{reward:04d}-reward"
        (reward_dir / "adapter").mkdir(parents=True)
        (reward_dir / "split.json").write_text(json.dumps(
            {"train": [1, 2], "val": [3], "digest": "x"}), encoding="utf-8")
        store.add_metrics(reward, [(5, "eval/accuracy", 0.5), (10, "eval/accuracy", 0.875),
                                   (10, "eval/loss", 0.41), (10, "train/memory_gib", 1.5)])
        store.finish_run(reward, "completed", artifact=str(reward_dir / "adapter"))
        ppo = store.create_run("ppo", {"base_model": "/models/tiny", "kl_coef": 0.05,
                                       "steps": 20, "reward_run_id": reward},
                               parent_run_id=reward)
        store.add_metrics(ppo, [(1, "objective/scores", -0.25), (20, "objective/scores", 0.75),
                                (20, "objective/kl", 0.125), (20, "time/generation_s", 3.0),
                                (20, "loss/value", 0.5)])
        store.finish_run(ppo, "completed", artifact=str(ws.runs_dir / "0002-ppo" / "policy"))
    return ws, reward, ppo


def test_card_gathers_runs_settings_metrics_and_judgments(workspace):
    ws, reward, ppo = workspace
    with Store(ws.db_path) as store:
        facts = collect_card_facts(ws, store, ppo, merged=True, name="tuned-tiny")
    assert facts.reward.run_id == reward and facts.ppo.run_id == ppo
    assert (facts.train_pairs, facts.val_pairs, facts.judged) == (2, 1, 3)
    assert facts.reward.final_metrics["eval/accuracy"] == 0.875
    assert facts.ppo.first_score == -0.25

    card = render_model_card(facts)
    meta = front_matter(card)
    assert meta == {"base_model": "tiny", "library_name": "transformers",
                    "pipeline_tag": "text-generation",
                    "tags": ["rlhf", "ppo", "lora", "rlhf-desk"]}
    assert "# tuned-tiny" in card
    assert "- path: `/models/tiny`" in card
    assert "reward model trained on 2 judged pairs, validated on 1" in card
    assert "judgments in the workspace at export: 3 (2 with a winner, 1 tie)" in card
    assert f"## Reward model: run {reward}" in card and f"## PPO: run {ppo}" in card
    assert "| eval/accuracy | 0.875 |" in card and "| eval/loss | 0.41 |" in card
    assert "| objective/scores | 0.75 |" in card and "| objective/kl | 0.125 |" in card
    assert "-0.25 at the first step, 0.75 at the last" in card
    assert "| kl_coef | 0.05 |" in card and "| ties | equal |" in card
    # Timings and memory describe the machine, not the model.
    assert "time/generation_s" not in card and "memory_gib" not in card
    # Known metrics come first, in the documented order.
    assert card.index("| objective/kl |") < card.index("| loss/value |")
    assert f"RLHF Desk version: {__version__}" in card
    assert "AutoModelForCausalLM.from_pretrained(\"PATH/TO/THIS/FOLDER\")" in card


def test_adapter_card_says_peft_and_how_to_load(workspace, tmp_path):
    ws, _, ppo = workspace
    with Store(ws.db_path) as store:
        facts = collect_card_facts(ws, store, ppo, merged=False)
    path = write_model_card(tmp_path, facts)
    card = path.read_text(encoding="utf-8")
    assert path.name == "README.md"
    assert front_matter(card)["library_name"] == "peft"
    assert "PeftModel.from_pretrained(base" in card
    assert "AutoModelForCausalLM.from_pretrained('/models/tiny')" in card
    assert f"# RLHF Desk policy (PPO run {ppo})" in card


def test_card_without_the_reward_run_still_renders():
    facts = CardFacts(base_model="/x/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/abc",
                      merged=True,
                      ppo=RunFacts(7, RunKind.PPO, RunStatus.COMPLETED, "2026-01-01T00:00:00",
                                   None, {"base_model": "x", "init_policy": "/p/policy"}, {}))
    card = render_model_card(facts)
    assert front_matter(card)["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert "no longer in the workspace" in card
    assert "PPO started from the policy adapter `/p/policy`" in card


def test_card_says_which_quantisation_trained_the_adapter():
    def card(quantize: str | None) -> str:
        config = {"base_model": "x"} | ({"quantize": quantize} if quantize else {})
        run = RunFacts(7, RunKind.PPO, RunStatus.COMPLETED, "2026-01-01T00:00:00", None,
                       config, {})
        return render_model_card(CardFacts(base_model="/m/x", merged=True, ppo=run))
    assert "Trained on a 4-bit NF4 (QLoRA) base" in card("4bit")
    assert "applies to the full-precision base" in card("4bit")
    assert "Trained on an 8-bit" in card("8bit")
    # Runs recorded before quantisation existed trained on the full-precision base.
    assert "Trained on the full-precision base" in card(None)


@pytest.mark.parametrize("base, expected", [
    ("/home/me/.cache/huggingface/hub/models--gpt2--tiny/snapshots/0a1b", "gpt2/tiny"),
    ("C:\\Users\\me\\hub\\models--org--name-v2\\snapshots\\1", "org/name-v2"),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ("/srv/models/my-model", None),
])
def test_hub_id(base, expected):
    assert hub_id(base) == expected
