"""RLOO end to end on the "short" task of tests/ml/marker_task.py (the shorter response wins):
it raises the reward model's score on held-out prompts above the base's and shortens the
responses while KL stays finite (leave-one-out advantages; GRPO's run, and learn in
bench/learning_spread.py); the metrics
(PPO's names and the spread within groups), no value model anywhere, cancel + resume to the
same weights, the refusals and the CLI.

Why not the "cat" task of the PPO tests: its base hardly ever says "cat", and its reward model
gives every other response the same score to 1e-4, so the k responses to a prompt almost never
differ and a group method has nothing to learn from (RLOO found the word in 1 run of 3)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from marker_task import RLOO, compare_with_base, run_rloo
from safetensors.torch import load_file

from desktop_app.core.config import RLOOConfig
from desktop_app.core.data.store import Store
from desktop_app.core.events import Metric, Progress, StopToken
from desktop_app.core.runs.record import RunKind
from desktop_app.ml.rloo.train import METRICS, train_rloo

pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # trains policies


@pytest.fixture(scope="module")
def task(short_task):
    return short_task


@pytest.fixture(scope="module")
def run(task):
    events = []
    result = run_rloo(task, emit=events.append)
    return {"result": result, "events": events, "versus_base": compare_with_base(
        task, result.artifact)}


def series(events, name):
    return [e.value for e in events if isinstance(e, Metric) and e.name == name]


# ---- learning ------------------------------------------------------------------------------
# Thresholds from `bench/learning_spread.py rloo --seeds 12` with the packages of
# constraints.txt (2026-12-02, 2-core CPU), tuned policy against the base on the same 64
# held-out prompts and sampling seed, for leave-one-out (rloo) and group-normalised (grpo)
# advantages:
#   reward model validation accuracy   mean 0.77   sd 0.10   min 0.61             threshold 0.55
#   score gain (in sd), rloo | grpo    mean 2.02 | 1.95      min 0.98 | 0.86      threshold 0.4
#   tuned / base response length       mean 0.10 | 0.15      max 0.22 | 0.38      threshold 0.6
#   largest KL per response            mean 2.9 | 3.3        max 4.3 | 7.6        limit 30
# (Before the missing-EOS penalty of marker_task.RLOO, 2 seeds of 12 went the wrong way: see
# there.) Each threshold sits well below the worst seed and well above "did not learn" (a gain
# of 0, a length ratio of 1, accuracy 0.5).
SCORE_GAIN, LENGTH_RATIO, MAX_KL = 0.4, 0.6, 30.0


def test_the_reward_model_learnt_the_preference(task):
    assert task["reward"].status == "completed"
    assert task["reward"].val_accuracy >= 0.55


def test_rloo_raises_the_score_and_shortens_responses_while_kl_stays_finite(run):
    result, events, versus = run["result"], run["events"], run["versus_base"]
    assert result.status == "completed" and result.step == result.total_steps == RLOO["steps"]
    gain = versus["tuned_score"] - versus["base_score"]
    ratio = versus["tuned_length"] / versus["base_length"]
    print(f"\nscore: base {versus['base_score']:.3f}, tuned {versus['tuned_score']:.3f}; "
          f"length: base {versus['base_length']:.1f}, tuned {versus['tuned_length']:.1f}")
    assert gain > SCORE_GAIN
    assert ratio < LENGTH_RATIO
    kl = series(events, "objective/kl")
    assert len(kl) == RLOO["steps"] and all(math.isfinite(v) for v in kl)
    assert max(kl) < MAX_KL
    assert result.kl == pytest.approx(kl[-1])


def test_grpo_advantages_train_too(task):
    """GRPO's learning is measured by bench/learning_spread.py (above); here, that its
    advantages run end to end (a short run, to keep the suite short)."""
    result = run_rloo(task, advantage="grpo", steps=3, batch_size=8, mini_batch_size=4)
    assert result.status == "completed", result.error
    assert result.kl is not None and math.isfinite(result.kl)


def test_metrics_use_ppos_names_and_report_the_spread_in_groups(task, run):
    events, result = run["events"], run["result"]
    names = {e.name for e in events if isinstance(e, Metric)}
    assert {"objective/scores", "objective/kl", "objective/rlhf_reward", "policy/clipfrac",
            "loss/policy", "objective/entropy", "response/length_mean", "time/generation_s",
            "time/scoring_s", "time/optimization_s", "objective/group_reward_std"} <= names
    assert names <= set(METRICS)
    assert not {"loss/value", "val/var_explained", "val/clipfrac"} & names  # no value model
    assert all(v >= 0 for v in series(events, "objective/group_reward_std"))
    progress = [e for e in events if isinstance(e, Progress) and e.message == "RLOO"]
    assert [p.done for p in progress] == list(range(1, result.total_steps + 1))
    with Store(task["ws"].db_path) as store:
        record = store.get_run(result.run_id)
    assert record.kind == RunKind.RLOO and record.parent_run_id == task["reward"].run_id
    assert record.config["advantage"] == "rloo"
    run_dir = task["ws"].runs_dir / f"{result.run_id:04d}-rloo"
    assert result.artifact == str(run_dir / "policy")
    weights = load_file(run_dir / "policy" / "adapter_model.safetensors")
    assert weights and not any("value" in k or "reward" in k for k in weights)


SHORT = dict(RLOO, steps=6, batch_size=8, k=2, mini_batch_size=4, grad_accum=2,
             checkpoint_every=2)


def test_cancel_and_resume_equals_an_uninterrupted_run(task):
    ws, base, reward = task["ws"], str(task["base"]), task["reward"].run_id
    cfg = RLOOConfig(**SHORT)
    full = train_rloo(ws, cfg, base_model=base, reward_run_id=reward)
    assert full.status == "completed"
    stop = StopToken()
    first = train_rloo(ws, cfg, base_model=base, reward_run_id=reward, stop=stop,
                       emit=lambda e: stop.stop() if isinstance(e, Progress)
                       and e.message == "RLOO" and e.done == 3 else None)
    assert (first.status, first.step, first.artifact) == ("cancelled", 3, None)
    checkpoint = ws.runs_dir / f"{first.run_id:04d}-rloo" / "checkpoint"
    assert (checkpoint / "policy" / "adapter_model.safetensors").is_file()
    assert not (checkpoint / "value").exists()
    resumed = train_rloo(ws, None, resume_run_id=first.run_id)
    assert (resumed.status, resumed.step) == ("completed", 6)
    a = load_file(Path(full.artifact) / "adapter_model.safetensors")
    b = load_file(Path(resumed.artifact) / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    assert resumed.score_first == pytest.approx(full.score_first, abs=1e-5)


def test_a_batch_that_is_not_a_multiple_of_k_is_refused(task):
    with pytest.raises(Exception, match="not a multiple of k"):
        train_rloo(task["ws"], RLOOConfig(**dict(SHORT, batch_size=9, k=2)),
                   base_model=str(task["base"]),
                   reward_run_id=task["reward"].run_id)


def test_cli_train_rloo_and_plan(task, capsys):
    from desktop_app.cli import main

    ws, base = str(task["ws"].root), str(task["base"])
    reward = str(task["reward"].run_id)
    code = main(["--workspace", ws, "train-rloo", "--model", base, "--reward", reward,
                 "--steps", "2", "--batch-size", "4", "--k", "2", "--mini-batch-size", "2",
                 "--advantage", "grpo", "--max-new-tokens", "6", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"run_id", "status", "score_first", "score_last", "kl", "artifact"} <= set(data)
    assert data["status"] == "completed" and Path(data["artifact"]).is_dir()
    code = main(["--workspace", ws, "plan", "train-rloo", "--model", base, "--reward", reward,
                 "--batch-size", "16", "--json"])
    assert code == 0
    rloo_plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    code = main(["--workspace", ws, "plan", "train-ppo", "--model", base, "--reward", reward,
                 "--batch-size", "16", "--json"])
    ppo_plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # No value adapter, no value optimiser state: RLOO's plan is the smaller.
    assert rloo_plan["breakdown"]["optimizer"] < ppo_plan["breakdown"]["optimizer"]
    assert rloo_plan["peak_bytes"] < ppo_plan["peak_bytes"]
