"""DPO end to end on a tiny model with a synthetic preference (tests/ml/marker_task.py: the
response that says "cat" wins): the implicit reward separates held-out pairs and the tuned
policy says "cat" more often than the base, measured in the same test on the same prompts with
the same sampling seed. Also: ties and both-bad left out and counted, the reward model's split,
cancel + resume, the reference staying the starting policy, the CLI, and the policy going
wherever a PPO policy goes."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch
from marker_task import DPO, build_task, marker_rates, run_dpo
from safetensors.torch import load_file

from desktop_app.core.config import DPOConfig
from desktop_app.core.data.store import Store
from desktop_app.core.events import Log, Metric, Progress, StopToken
from desktop_app.core.runs.record import RunKind
from desktop_app.ml.dpo import train as dpo_train
from desktop_app.ml.dpo.train import train_dpo
from desktop_app.ml.reward.pairs import preference_examples

pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # trains policies


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The base model and a workspace of judged pairs (seed 0); no reward model."""
    return build_task(tmp_path_factory.mktemp("dpo"), seed=0, reward=False)


@pytest.fixture(scope="module")
def run(task):
    events = []
    result = run_dpo(task, emit=events.append)
    return {"result": result, "events": events}


def series(events, name):
    return [e.value for e in events if isinstance(e, Metric) and e.name == name]


# ---- learning ------------------------------------------------------------------------------
# Thresholds from `bench/learning_spread.py dpo --seeds 10` with the packages of constraints.txt
# (2026-12-02, 2-core CPU), tuned policy against the base on the same 64 prompts and seed:
#   held-out implicit-reward accuracy   mean 0.992  sd 0.018  min 0.958    threshold 0.8
#   held-out margin                     mean 4.15   sd 2.71   min 1.92     (must be > 0)
#   "cat" rate gain                     mean 0.186  sd 0.046  min 0.109    threshold 0.05
# Each sits well below the worst seed and above "did not learn" (accuracy 0.5, a gain of 0).
ACCURACY, RATE_GAIN = 0.8, 0.05


def test_the_implicit_reward_separates_held_out_pairs(run):
    result = run["result"]
    assert result.status == "completed" and result.error is None
    assert result.val_accuracy >= ACCURACY
    assert result.val_margin > 0
    assert result.samples_per_s > 0


def test_the_tuned_policy_says_the_preferred_word_more_often_than_the_base(task, run):
    rates = marker_rates(task, run["result"].artifact)
    assert rates["tuned_rate"] - rates["base_rate"] >= RATE_GAIN, rates


def test_metrics_use_the_fields_names_for_train_and_validation(task, run):
    events, result = run["events"], run["result"]
    names = {e.name for e in events if isinstance(e, Metric)}
    fields = {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
              "rewards/margins", "logps/chosen", "logps/rejected"}
    assert {f"train/{f}" for f in fields} | {f"eval/{f}" for f in fields} <= names
    assert {"train/lr", "train/grad_norm", "train/samples_per_s", "eval/pairs"} <= names
    losses = series(events, "train/loss")
    assert losses[0] < math.log(2) + 0.05  # a mean over the first steps, from log 2 down
    assert losses[-1] < losses[0]
    margins = series(events, "train/rewards/margins")
    assert margins[-1] > margins[0]
    with Store(task["ws"].db_path) as store:
        final = store.final_metrics(result.run_id)
    assert final["eval/rewards/accuracies"] == pytest.approx(result.val_accuracy)
    progress = [e for e in events if isinstance(e, Progress) and e.message == "DPO"]
    assert [p.done for p in progress] == list(range(1, result.total_steps + 1))
    assert {"eta_s", "samples_per_s", "epoch", "run_id"} <= set(progress[-1].extra)


def test_run_folder_store_record_and_policy_adapter(task, run):
    result = run["result"]
    run_dir = task["ws"].runs_dir / f"{result.run_id:04d}-dpo"
    assert result.artifact == str(run_dir / "policy")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= {
        p.name for p in (run_dir / "policy").iterdir()}
    assert (run_dir / "split.json").is_file() and not (run_dir / "checkpoint").exists()
    config = json.loads((run_dir / "policy" / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM"
    with Store(task["ws"].db_path) as store:
        record = store.get_run(result.run_id)
        assert record.kind == RunKind.DPO and record.status == "completed"
        assert record.config["beta"] == DPO["beta"] and record.config["ties_left_out"] == 0
        assert store.finished_runs(RunKind.PPO) == []
        assert [r.id for r in store.finished_runs((RunKind.PPO, RunKind.DPO))] == [result.run_id]


# ---- cancel and resume ---------------------------------------------------------------------

RESUME = dict(DPO, epochs=2.0, batch_size=4, grad_accum=2, log_every=3, eval_every=4,
              checkpoint_every=5, lora_dropout=0.1, warmup_ratio=0.2)
DETERMINISTIC = ("train/loss", "train/rewards/", "train/logps/", "train/lr", "train/grad_norm",
                 "eval/")


def test_cancel_and_resume_equals_an_uninterrupted_run(task, monkeypatch):
    cfg = DPOConfig(**RESUME)
    full = train_dpo(task["ws"], cfg, base_model=str(task["base"]))
    assert full.status == "completed"

    # 1. Stop in the middle of step 4 (after its first of two micro-batches).
    stop = StopToken()
    calls = {"n": 0}
    collate = dpo_train.collate

    def counting_collate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            stop.stop()
        return collate(*args, **kwargs)

    monkeypatch.setattr(dpo_train, "collate", counting_collate)
    first = train_dpo(task["ws"], cfg, base_model=str(task["base"]), stop=stop)
    monkeypatch.setattr(dpo_train, "collate", collate)
    assert (first.status, first.step, first.artifact) == ("cancelled", 3, None)

    # 2. Resume, stop after step 8 (mid log window, after an evaluation), resume again.
    stop = StopToken()
    second = train_dpo(task["ws"], None, resume_run_id=first.run_id, stop=stop,
                       emit=lambda e: stop.stop() if isinstance(e, Progress)
                       and e.done == 8 else None)
    assert (second.status, second.step) == ("cancelled", 8)
    third = train_dpo(task["ws"], None, resume_run_id=first.run_id)
    assert third.status == "completed" and third.run_id == first.run_id

    a = load_file(Path(full.artifact) / "adapter_model.safetensors")
    b = load_file(Path(third.artifact) / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    with Store(task["ws"].db_path) as store:
        pick = lambda run_id: [(m["step"], m["name"], m["value"])  # noqa: E731
                               for m in store.metrics(run_id)
                               if m["name"].startswith(DETERMINISTIC)]
        ma, mb = pick(full.run_id), pick(third.run_id)
    assert [m[:2] for m in ma] == [m[:2] for m in mb]
    assert [m[2] for m in mb] == pytest.approx([m[2] for m in ma], rel=1e-5, abs=1e-6)
    assert third.val_accuracy == full.val_accuracy


# ---- the reference -------------------------------------------------------------------------

def test_starting_from_a_policy_keeps_that_policy_as_the_reference(task, run):
    """At the first step the policy is the starting adapter and so is the reference: the
    loss is exactly log 2 and the implicit rewards 0. Against the bare base it would not be."""
    tuned = run["result"].artifact
    events = []
    result = run_dpo(task, emit=events.append, init_policy=tuned, epochs=0.1, log_every=1,
                     lora_dropout=0.0)
    assert result.status == "completed", result.error
    assert series(events, "train/loss")[0] == pytest.approx(math.log(2), abs=1e-5)
    assert series(events, "train/rewards/chosen")[0] == pytest.approx(0.0, abs=1e-5)
    start = [e.message for e in events if isinstance(e, Log)][-1]
    assert "frozen copy of the starting policy" in start
    with Store(task["ws"].db_path) as store:
        assert store.get_run(result.run_id).parent_run_id == run["result"].run_id
    # The trained policy really is far from the base: its held-out margin is large.
    assert run["result"].val_margin > 0.1


def test_the_reference_logps_are_the_starting_policys(task, run, gpt2_policy_dir):
    """The cached reference log-probabilities equal those of the starting adapter loaded on
    its own with peft, and stay so while the policy moves."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from desktop_app.ml.dpo.data import PreferenceEncoder, collate
    from desktop_app.ml.dpo.loss import response_logps
    from desktop_app.ml.models.device import pick_device
    from desktop_app.ml.policy.model import POLICY, REFERENCE, LoraSpec, build_policy_model

    start = run["result"].artifact
    models = build_policy_model(task["base"], pick_device("cpu", "float32"),
                                LoraSpec(8, 16, 0.0, "all-linear"), policy_adapter=start)
    assert models.reference == REFERENCE
    with Store(task["ws"].db_path) as store:
        examples = preference_examples(store.preference_rows(), "drop")[:4]
    batch = collate([PreferenceEncoder(models.tokenizer, 64).encode(e) for e in examples],
                    models.tokenizer.pad_token_id)

    def logps(model, adapter: str | None = None):
        first = int(batch["first"])
        switch = models.use(adapter) if model is models.peft else contextlib.nullcontext()
        with torch.no_grad(), switch:
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
        return response_logps(logits[:, first - 1:-1], batch["input_ids"][:, first:],
                              batch["loss_mask"][:, first:])[0]

    plain = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(task["base"], local_files_only=True), start).eval()
    expected = logps(plain)
    torch.testing.assert_close(logps(models.peft, REFERENCE), expected, rtol=1e-5, atol=1e-4)
    # Move the policy: the reference does not move with it.
    with torch.no_grad():
        for name, p in models.peft.named_parameters():
            if f".{POLICY}." in name and "lora_B" in name:
                p.add_(0.5)
    assert not torch.allclose(logps(models.peft, POLICY), expected, atol=1e-2)
    torch.testing.assert_close(logps(models.peft, REFERENCE), expected, rtol=1e-5, atol=1e-4)


# ---- the CLI and everywhere a policy goes -------------------------------------------------

def test_cli_train_dpo_plan_evaluate_and_export(task, run, tmp_path, capsys):
    from desktop_app.cli import main

    ws = str(task["ws"].root)
    code = main(["--workspace", ws, "train-dpo", "--model", str(task["base"]), "--beta", "0.2",
                 "--loss", "ipo", "--epochs", "0.5", "--lr", "1e-3", "--batch-size", "8",
                 "--max-length", "64", "--lora-r", "4", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"run_id", "status", "val_accuracy", "val_margin", "artifact"} <= set(data)
    assert data["status"] == "completed" and Path(data["artifact"]).is_dir()
    with Store(task["ws"].db_path) as store:
        config = store.get_run(data["run_id"]).config
    assert (config["beta"], config["loss"], config["lora_r"]) == (0.2, "ipo", 4)

    code = main(["--workspace", ws, "plan", "train-dpo", "--model", str(task["base"]),
                 "--batch-size", "4", "--json"])
    assert code == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plan["peak_bytes"] > 0 and "logits" in plan["breakdown"]

    # A DPO policy is evaluated, exported and used like a PPO policy.
    prompts = tmp_path / "held-out.txt"
    prompts.write_text("Query 1: tell me about the dog\nQuery 2: tell me about the park\n")
    code = main(["--workspace", ws, "evaluate", "--a", str(run["result"].run_id), "--prompts",
                 str(prompts), "--max-new-tokens", "6", "--json"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    code = main(["--workspace", ws, "export-model", str(run["result"].run_id),
                 str(tmp_path / "out"), "--merged", "--json"])
    assert code == 0
    assert (tmp_path / "out" / "config.json").is_file()
    card = (tmp_path / "out" / "README.md").read_text()
    rid = run["result"].run_id
    assert "- dpo" in card and "- ppo" not in card and "straight from the judgments" in card
    assert f"## DPO: run {rid}" in card and "## Reward model" not in card
    assert "DPO trained on 96 judged pairs, validated on 24" in card

    code = main(["--workspace", ws, "train-dpo", "--json"])
    assert code == 1 and "--model" in capsys.readouterr().err
