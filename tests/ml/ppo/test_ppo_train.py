"""PPO end to end on a tiny model with a synthetic preference: the annotator prefers responses
that say "cat" (tests/ml/marker_task.py). Judgments on the base model's own samples -> reward
model -> PPO; the tuned policy beats the base model, measured in the same test on the same
prompts with the same sampling seed, while KL stays finite. Also cancel + resume, guard rails,
metrics, the artifact in plain peft."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from marker_task import PPO, compare_with_base, run_ppo
from safetensors.torch import load_file

from desktop_app.core.config import PPOConfig
from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError
from desktop_app.core.events import Log, Metric, Progress, StopToken
from desktop_app.core.workspace import Workspace
from desktop_app.ml.ppo import train as ppo_train
from desktop_app.ml.ppo.train import METRICS, PPOTrainingError, Samples, train_ppo

pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # trains policies


@pytest.fixture(scope="module")
def task(marker_task):
    """The base model, a workspace of judged pairs and a trained reward model (seed 0)."""
    return marker_task


@pytest.fixture(scope="module")
def run(task):
    events = []
    result = run_ppo(task, emit=events.append)
    return {"result": result, "events": events}


@pytest.fixture(scope="module")
def versus_base(task, run):
    return compare_with_base(task, run["result"].artifact)


def series(events, name):
    return [e.value for e in events if isinstance(e, Metric) and e.name == name]


# ---- learning ------------------------------------------------------------------------------
# Thresholds from `bench/learning_spread.py ppo --seeds 20` with the packages of constraints.txt
# (2026-12-01, 2-core CPU), tuned policy minus base on the same 64 prompts and sampling seed:
#   reward model validation accuracy   mean 0.998  sd 0.009  min 0.958    threshold 0.9
#   reward-model score gain (in sd)    mean 2.03   sd 0.45   min 0.79     threshold 0.4
#   "cat" rate gain                    mean 0.198  sd 0.047  min 0.109    threshold 0.05
#   largest KL per response            mean 30.3   sd 5.8    max 41.3     limit 200 (marker_task)
# Each threshold sits well below the worst seed and well above "did not learn" (gains of 0,
# accuracy 0.5), so a release that makes learning faster or slower does not move the verdict.
# (With the earlier task, a base trained at lr 1e-2 and PPO at lr 5e-3 with 16 rollouts a
# step, 4 of 9 seeds did not learn at all: the reward model or PPO failed outright.)
SCORE_GAIN, RATE_GAIN = 0.4, 0.05

def test_the_reward_model_learnt_the_preference(task):
    assert task["reward"].status == "completed"
    assert task["reward"].val_accuracy >= 0.9


def test_the_tuned_policy_scores_above_the_base_while_kl_stays_finite(run, versus_base):
    result, events = run["result"], run["events"]
    assert result.status == "completed" and result.error is None
    assert result.step == result.total_steps == 40
    gain = versus_base["tuned_score"] - versus_base["base_score"]
    print(f"\nreward-model score (normalised): base {versus_base['base_score']:.3f}, tuned "
          f"{versus_base['tuned_score']:.3f}, gain {gain:.3f}")
    assert gain > SCORE_GAIN
    kl = series(events, "objective/kl")
    assert all(math.isfinite(k) for k in kl) and max(kl) < PPO["max_kl"]
    assert kl[0] == pytest.approx(0.0, abs=1e-5)  # the first rollout is the reference's own
    assert result.kl == pytest.approx(kl[-1])
    scores = series(events, "objective/scores")
    assert len(scores) == 40
    assert result.score_first == pytest.approx(sum(scores[:4]) / 4)
    assert result.score_last == pytest.approx(sum(scores[-4:]) / 4)


def test_the_tuned_policy_says_the_preferred_word_more_often_than_the_base(versus_base):
    print(f"\nmarker rate: base {versus_base['base_rate']:.3f}, tuned "
          f"{versus_base['tuned_rate']:.3f}")
    assert versus_base["tuned_rate"] > versus_base["base_rate"] + RATE_GAIN


# ---- records -------------------------------------------------------------------------------

def test_metrics_reach_the_charts_and_the_store_with_the_usual_names(task, run):
    result, events = run["result"], run["events"]
    names = {e.name for e in events if isinstance(e, Metric)}
    assert {"objective/scores", "objective/kl", "objective/non_score_reward",
            "objective/rlhf_reward", "objective/entropy", "policy/approxkl", "policy/clipfrac",
            "loss/policy", "loss/value", "val/ratio", "val/var_explained", "objective/kl_coef",
            "response/length_mean", "response/eos_share", "time/generation_s",
            "time/scoring_s", "time/optimization_s", "memory_gib"} <= names <= set(METRICS)
    with Store(task["ws"].db_path) as store:
        stored = store.metrics(result.run_id)
    assert sorted((m["step"], m["name"]) for m in stored) == sorted(
        (e.step, e.name) for e in events if isinstance(e, Metric))
    assert {e.step for e in events if isinstance(e, Metric)} == set(range(1, 41))
    progress = [e for e in events if isinstance(e, Progress) and e.message == "PPO"]
    assert [p.done for p in progress] == list(range(1, 41))
    assert {"eta_s", "generation_s", "scoring_s", "optimization_s", "memory_gib",
            "score", "kl"} <= set(progress[-1].extra)
    samples = [e for e in events if isinstance(e, Samples)]
    assert [s.step for s in samples] == [1, 10, 20, 30, 40]
    row = samples[-1].rows[0]
    assert set(row) == {"prompt", "response", "score", "kl"} and row["prompt"].startswith(
        "Question")
    for name in ("val/ratio",):
        assert all(0.5 < v < 2.0 for v in series(events, name))
    assert all(0 <= v <= 1 for v in series(events, "response/eos_share"))


def test_run_folder_store_record_and_adapter(task, run):
    result = run["result"]
    run_dir = task["ws"].runs_dir / f"{result.run_id:04d}-ppo"
    assert result.artifact == str(run_dir / "policy")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= {
        p.name for p in (run_dir / "policy").iterdir()}
    assert not (run_dir / "checkpoint").exists()
    config = json.loads((run_dir / "config.json").read_text())
    adapter_config = json.loads((run_dir / "policy" / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "CAUSAL_LM" and not adapter_config["modules_to_save"]
    weights = load_file(run_dir / "policy" / "adapter_model.safetensors")
    assert weights and all("lora_" in k and ".policy." not in k for k in weights)
    with Store(task["ws"].db_path) as store:
        record = store.get_run(result.run_id)
    assert (record.kind, record.status) == ("ppo", "completed")
    assert record.parent_run_id == task["reward"].run_id == config["reward_run_id"]
    assert record.artifact == result.artifact


# ---- cancel and resume -----------------------------------------------------------------------

SHORT = dict(PPO, steps=6, batch_size=8, mini_batch_size=4, grad_accum=2, ppo_epochs=2,
             checkpoint_every=2)


def test_cancel_keeps_a_checkpoint_and_resume_equals_an_uninterrupted_run(task):
    ws, base, reward_id = task["ws"], str(task["base"]), task["reward"].run_id
    cfg = PPOConfig(**SHORT)
    full = train_ppo(ws, cfg, base_model=base, reward_run_id=reward_id)
    assert full.status == "completed"

    stop = StopToken()
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.message == "PPO" and event.done == 3:
            stop.stop()

    first = train_ppo(ws, cfg, base_model=base, reward_run_id=reward_id, emit=emit, stop=stop)
    assert (first.status, first.step, first.artifact) == ("cancelled", 3, None)
    run_dir = ws.runs_dir / f"{first.run_id:04d}-ppo"
    assert (run_dir / "checkpoint" / "trainer_state.pt").is_file()
    assert (run_dir / "checkpoint" / "policy" / "adapter_model.safetensors").is_file()
    assert any(isinstance(e, Log) and "cancelled at step 3" in e.message for e in events)

    resumed = train_ppo(ws, PPOConfig(), base_model="ignored", reward_run_id=-1,
                        resume_run_id=first.run_id)
    assert (resumed.status, resumed.step, resumed.run_id) == ("completed", 6, first.run_id)
    a = load_file(Path(full.artifact) / "adapter_model.safetensors")
    b = load_file(Path(resumed.artifact) / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    assert resumed.score_first == pytest.approx(full.score_first, abs=1e-5)
    with Store(ws.db_path) as store:
        steps = sorted({m["step"] for m in store.metrics(first.run_id, "objective/scores")})
    assert steps == list(range(1, 7))
    with pytest.raises(UserError, match="already completed"):
        train_ppo(ws, cfg, base_model=base, reward_run_id=reward_id, resume_run_id=first.run_id)


# ---- guard rails -----------------------------------------------------------------------------

def test_kl_past_the_limit_stops_the_run_with_the_reason(task):
    cfg = PPOConfig(**dict(SHORT, kl_estimator="k3", max_kl=1e-6, lr=5e-2))
    result = train_ppo(task["ws"], cfg, base_model=str(task["base"]),
                       reward_run_id=task["reward"].run_id)
    assert (result.status, result.step) == ("failed", 2)  # step 1's KL is exactly 0
    assert "KL reached" in result.error and "at step 2" in result.error
    assert "limit" in result.error


def test_non_finite_values_fail_the_run_naming_the_step(task, monkeypatch):
    normalise = ppo_train.core.normalise_scores
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = normalise(*args, **kwargs)
        return out * float("nan") if calls["n"] == 2 else out

    monkeypatch.setattr(ppo_train.core, "normalise_scores", poisoned)
    result = train_ppo(task["ws"], PPOConfig(**SHORT), base_model=str(task["base"]),
                       reward_run_id=task["reward"].run_id)
    assert (result.status, result.step) == ("failed", 1)
    assert "non-finite at step 2" in result.error


def test_out_of_memory_fails_with_advice(task, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ppo_train, "generate_tokens", out_of_memory)
    result = train_ppo(task["ws"], PPOConfig(**SHORT), base_model=str(task["base"]),
                       reward_run_id=task["reward"].run_id)
    assert result.status == "failed" and "out of device memory at step 1" in result.error
    assert "batch" in result.error


def test_runs_that_cannot_start_are_refused_before_they_exist(task, tmp_path):
    ws, base = task["ws"], str(task["base"])
    with Store(ws.db_path) as store:
        before = len(store.list_runs())
        other = store.create_run("generate", {})
        store.finish_run(other, "completed")
    with pytest.raises(UserError, match="needs a reward-model run"):
        train_ppo(ws, PPOConfig(**SHORT), base_model=base, reward_run_id=other)
    with pytest.raises(PPOTrainingError, match="no reward run 999"):
        train_ppo(ws, PPOConfig(**SHORT), base_model=base, reward_run_id=999)
    copy = Workspace.open(shutil.copytree(ws.root, tmp_path / "copy"))
    with Store(copy.db_path) as store:
        store.delete_prompts([r["id"] for r in store.list_prompts() if not r["judged"]])
    with pytest.raises(PPOTrainingError, match="without a judgment"):
        train_ppo(copy, PPOConfig(**dict(SHORT, prompts="unjudged")), base_model=base,
                  reward_run_id=task["reward"].run_id)
    with pytest.raises(UserError, match="mini_batch_size"):
        train_ppo(ws, PPOConfig(**dict(SHORT, mini_batch_size=64)), base_model=base,
                  reward_run_id=task["reward"].run_id)
    with Store(ws.db_path) as store:
        assert len(store.list_runs()) == before + 1  # only the "generate" run made above


# ---- export and command line -----------------------------------------------------------------

def test_export_merged_loads_in_plain_transformers_and_matches_the_adapter(task, run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from desktop_app.core.runs.record import UnusableRun
    from desktop_app.ml.models.export import ExportError, export_policy

    run_id, artifact = run["result"].run_id, run["result"].artifact
    merged = export_policy(task["ws"], run_id, tmp_path / "merged", merged=True)
    plain = AutoModelForCausalLM.from_pretrained(merged).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert not any("lora" in n for n, _ in plain.named_parameters())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(task["base"]),
                                        artifact).eval()
    ids = torch.tensor([tokenizer("Question 1: tell me about the dog")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids).logits, adapted(input_ids=ids).logits,
                                   atol=1e-4, rtol=1e-4)
        out = plain.generate(ids, max_new_tokens=5, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids.shape[1]

    copied = export_policy(task["ws"], run_id, tmp_path / "adapter")
    assert (copied / "adapter_model.safetensors").read_bytes() == (
        Path(artifact) / "adapter_model.safetensors").read_bytes()
    with pytest.raises(ExportError, match="not an empty folder"):
        export_policy(task["ws"], run_id, tmp_path / "adapter")
    with pytest.raises(UnusableRun,
                       match=r"exporting a policy needs a policy \(PPO, RLOO or DPO\) run"):
        export_policy(task["ws"], task["reward"].run_id, tmp_path / "x")


def test_cli_train_ppo_and_export_model(task, tmp_path, capsys):
    from desktop_app.cli import main

    ws = str(task["ws"].root)
    code = main(["--workspace", ws, "train-ppo", "--model", str(task["base"]), "--reward",
                 str(task["reward"].run_id), "--steps", "3", "--batch-size", "4",
                 "--mini-batch-size", "2", "--ppo-epochs", "1", "--kl-coef", "0.1",
                 "--target-kl", "1.0", "--lr", "1e-3", "--max-new-tokens", "6", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"run_id", "status", "score_first", "score_last", "kl", "artifact"} <= set(data)
    assert data["status"] == "completed" and Path(data["artifact"]).is_dir()
    with Store(task["ws"].db_path) as store:
        config = store.get_run(data["run_id"]).config
    assert (config["steps"], config["target_kl"], config["max_new_tokens"]) == (3, 1.0, 6)

    code = main(["--workspace", ws, "export-model", str(data["run_id"]),
                 str(tmp_path / "out"), "--merged", "--json"])
    assert code == 0
    assert (tmp_path / "out" / "config.json").is_file()
    code = main(["--workspace", ws, "train-ppo", "--model", str(task["base"]), "--json"])
    assert code == 1 and "--reward" in capsys.readouterr().err


def test_prompts_from_a_file_are_imported_and_used(tmp_path):
    from desktop_app.core.config import PPOConfig
    from desktop_app.core.data.store import Store
    from desktop_app.ml.ppo.train import PPOTrainingError, _prompts

    prompts_file = tmp_path / "ppo_prompts.txt"
    prompts_file.write_text("Say hi.\nName a fruit.\nSay hi.\n", encoding="utf-8")
    with Store(tmp_path / "rlhf.db") as store:
        store.add_prompts(["Already here.", "Name a fruit."])
        chosen = _prompts(store, PPOConfig(prompt_file=str(prompts_file)), None)
        assert [p.text for p in chosen] == ["Say hi.", "Name a fruit."]
        assert store.stats()["prompts"] == 3
        pairs = tmp_path / "pairs.jsonl"
        pairs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n', encoding="utf-8")
        with pytest.raises(PPOTrainingError, match="pairs"):
            _prompts(store, PPOConfig(prompt_file=str(pairs)), None)
        with pytest.raises(PPOTrainingError, match="missing.txt"):
            _prompts(store, PPOConfig(prompt_file=str(tmp_path / "missing.txt")), None)


def test_starting_from_a_tuned_policy_uses_it_as_the_reference(task, run):
    """Step 1's KL is 0 only if the reference is the starting adapter, not the bare base."""
    events = []
    tuned = run["result"].artifact
    cfg = PPOConfig(**dict(SHORT, steps=1, init_policy=tuned))
    result = train_ppo(task["ws"], cfg, base_model=str(task["base"]),
                       reward_run_id=task["reward"].run_id, emit=events.append)
    assert result.status == "completed", result.error
    assert series(events, "objective/kl")[0] == pytest.approx(0.0, abs=1e-5)
    # From the base, the same tuned samples would be far from the reference.
    assert run["result"].kl > 1e-3
