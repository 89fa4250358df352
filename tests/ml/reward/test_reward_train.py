"""Reward-model training end to end on tiny models: a synthetic preference (the chosen response
always says "banana") that the model must learn, cancel and resume, guard rails, artifacts."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from desktop_app.core.config import RewardConfig
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.errors import UserError
from desktop_app.core.events import Log, Metric, Progress, StopToken
from desktop_app.core.runs.record import Run
from desktop_app.core.workspace import Workspace
from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
from desktop_app.ml.reward import train as reward_train
from desktop_app.ml.reward.model import (
    RewardModelError,
    RewardScorer,
    lora_targets,
    wrong_validation_pairs,
)
from desktop_app.ml.reward.pairs import RewardTrainingError, Split, check_reward_data
from desktop_app.ml.reward.train import learning_rate, pair_losses, train_reward_model

# The plain-peft round trips below call peft directly, which warns about a transformers 5
# deprecation (not ours).
pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # trains reward models

WORDS = "the cat sat on mat and looked at rain a dog ran in park red ball".split()

# Small and fast: 60 prompts, ~100 training pairs, ~65 steps in about a second on a CPU.
# 5 epochs, not 3: at 3, one seed in 20 of the GPT-2 without a pad token ended at accuracy 0.58
# (bench/learning_spread.py reward; its figures are at test_learns_the_synthetic_preference...).
FAST = dict(epochs=5.0, lr=1e-2, batch_size=8, lora_r=8, lora_alpha=16, max_length=64,
            eval_every=10, log_every=5, val_fraction=0.2, warmup_ratio=0.1, min_pairs=16)

DETERMINISTIC = {"train/loss", "train/accuracy", "train/margin", "train/reward_mean",
                 "train/reward_std", "train/lr", "train/grad_norm", "eval/loss",
                 "eval/accuracy", "eval/margin", "eval/reward_mean", "eval/reward_std"}


def sentence(rng: random.Random, marker: bool) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
    if marker:
        words.insert(rng.randint(0, len(words)), "banana")
    return " ".join(words)


def add_judgments(store: Store, n_prompts: int, *, seed: int = 0, per_prompt: int = 2,
                  ties: int = 0, other: int = 0, start: int = 0) -> None:
    """Pairs whose "a" response contains the marker and wins. ``ties`` extra pairs judged tie
    (neither has the marker), ``other`` extra ones judged both-bad or skipped."""
    rng = random.Random(seed)
    prompts = [f"Question {start + i}: tell me about the {rng.choice(WORDS)}"
               for i in range(n_prompts)]
    ids = store.add_prompts(prompts).ids
    pairs = [(pid, GenerationIn(sentence(rng, True), "m"), GenerationIn(sentence(rng, False), "m"))
             for pid in ids for _ in range(per_prompt)]
    for cid in store.add_pairs(pairs, rng=random.Random(seed)):
        store.judge(cid, "a")
    extra = [(rng.choice(ids), GenerationIn(sentence(rng, False), "m"),
              GenerationIn(sentence(rng, False), "m")) for _ in range(ties + other)]
    for k, cid in enumerate(store.add_pairs(extra, rng=random.Random(seed))):
        store.judge(cid, "tie" if k < ties else ("both_bad", "skip")[k % 2])


def make_workspace(root: Path, n_prompts: int = 60, **kw) -> Workspace:
    ws = Workspace.open(root)
    with Store(ws.db_path) as store:
        add_judgments(store, n_prompts, **kw)
    return ws


def runs(ws: Workspace) -> list[Run]:
    with Store(ws.db_path) as store:
        return store.list_runs()


@pytest.fixture(scope="module", params=["gpt2", "llama", "gpt2_nopad"])
def trained(request, tmp_path_factory):
    """One trained run per tokenizer kind: pad token + no template (GPT-2), chat template and
    no pad token (Llama), and no pad token at all, so EOS pads (GPT-2)."""
    base = request.getfixturevalue({"gpt2": "gpt2_dir", "llama": "llama_chat_dir",
                                    "gpt2_nopad": "gpt2_nopad_dir"}[request.param])
    ws = make_workspace(tmp_path_factory.mktemp(f"ws-{request.param}"), ties=6, other=4)
    events = []
    result = train_reward_model(ws, RewardConfig(**FAST), base_model=str(base),
                                emit=events.append)
    return {"ws": ws, "base": Path(base), "result": result, "events": events}


# ---- learning ------------------------------------------------------------------------------

# `bench/learning_spread.py reward --seeds 20`, packages of constraints.txt (2026-12-01), against
# chance (0.5) and the loss of rewards that cannot tell (log 2 = 0.693):
#   validation accuracy  GPT-2 mean 0.985 sd 0.039 min 0.875; Llama 0.992 / 0.022 / 0.917;
#                        GPT-2 without pad 0.996 / 0.013 / 0.958              threshold 0.75
#   validation loss      worst seed of any model 0.526                         threshold log 2
def test_learns_the_synthetic_preference_on_held_out_prompts(trained):
    result = trained["result"]
    assert result.status == "completed" and result.error is None
    split = Split.load(trained["ws"].runs_dir / f"{result.run_id:04d}-reward" / "split.json")
    assert result.step == result.total_steps == FAST["epochs"] * math.ceil(len(split.train_ids) / 8)
    assert result.val_accuracy >= 0.75
    assert result.val_loss < math.log(2)  # better than rewards that cannot tell
    assert result.samples_per_s > 0


def test_run_folder_and_store_record(trained):
    ws, result = trained["ws"], trained["result"]
    run_dir = ws.runs_dir / f"{result.run_id:04d}-reward"
    assert result.artifact == str(run_dir / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= {
        p.name for p in (run_dir / "adapter").iterdir()}
    assert not (run_dir / "checkpoint").exists()  # a completed run is final
    config = json.loads((run_dir / "config.json").read_text())
    assert config["base_model"] == str(trained["base"].resolve()) and config["lr"] == FAST["lr"]
    stats = json.loads((run_dir / "reward_stats.json").read_text())
    assert math.isfinite(stats["mean"]) and stats["std"] > 0

    split = Split.load(run_dir / "split.json")
    # The final evaluation's held-out responses, topped up with training ones to the sample.
    pairs = len(split.train_ids) + len(split.val_ids)
    assert stats["responses"] == 2 * min(reward_train.STATS_PAIRS, pairs)
    with Store(ws.db_path) as store:
        run = store.get_run(result.run_id)
        rows = {r["comparison_id"]: r for r in store.preference_rows()}
    assert run.status == "completed" and run.kind == "reward"
    assert run.artifact == result.artifact
    assert run.config["base_model"] == config["base_model"]
    # No prompt in both splits; ties kept (ties="equal"), both-bad and skips never used.
    train_prompts = {rows[i]["prompt_id"] for i in split.train_ids}
    val_prompts = {rows[i]["prompt_id"] for i in split.val_ids}
    assert train_prompts and val_prompts and not train_prompts & val_prompts
    assert set(split.train_ids) | set(split.val_ids) == set(rows)


def test_adapter_saves_the_score_head_and_lora_on_block_layers_only(trained):
    adapter = Path(trained["result"].artifact)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    assert "score" not in config["target_modules"]
    weights = load_file(adapter / "adapter_model.safetensors")
    head = [k for k in weights if k.endswith("score.weight")]
    assert head and not any("score" in k and "lora" in k for k in weights)
    assert any("lora_A" in k for k in weights)


def test_metrics_reach_the_charts_and_the_store(trained):
    ws, result, events = trained["ws"], trained["result"], trained["events"]
    metrics = [e for e in events if isinstance(e, Metric)]
    names = {m.name for m in metrics}
    assert {"train/loss", "train/accuracy", "train/margin", "train/reward_mean",
            "train/reward_std", "train/lr", "train/grad_norm", "train/samples_per_s",
            "train/memory_gib", "eval/loss", "eval/accuracy", "eval/margin",
            "eval/reward_mean", "eval/reward_std", "eval/pairs"} == names
    total = result.total_steps
    assert sorted({m.step for m in metrics if m.name == "train/loss"}) == sorted(
        {*range(5, total + 1, 5), total})
    assert sorted({m.step for m in metrics if m.name == "eval/loss"}) == sorted(
        {*range(10, total + 1, 10), total})
    with Store(ws.db_path) as store:
        stored = store.metrics(result.run_id)
        final = store.final_metrics(result.run_id)
    assert sorted((m["step"], m["name"], m["value"]) for m in stored) == sorted(
        (m.step, m.name, pytest.approx(m.value)) for m in metrics)
    assert final["eval/accuracy"] == pytest.approx(result.val_accuracy)
    # What the accuracy is out of: the validation pairs with a winner (ties are not counted).
    split = Split.load(ws.runs_dir / f"{result.run_id:04d}-reward" / "split.json")
    assert 0 < final["eval/pairs"] <= len(split.val_ids)

    progress = [e for e in events if isinstance(e, Progress) and e.total == result.total_steps
                and e.message == "Training reward model"]
    assert [p.done for p in progress] == list(range(1, result.total_steps + 1))
    assert {"eta_s", "samples_per_s", "memory_gib", "epoch"} <= set(progress[-1].extra)
    assert progress[-1].extra["epoch"] == pytest.approx(FAST["epochs"])
    start = [e for e in events if isinstance(e, Log)][0].message
    assert "training pairs" in start and "ties" in start and "truncated" in start


# ---- the adapter outside the app ---------------------------------------------------------------

def test_adapter_round_trips_in_plain_transformers_and_peft(trained):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base, adapter = trained["base"], Path(trained["result"].artifact)
    scorer = RewardScorer.load(base, adapter, device="cpu")
    prompt = "Question 3: tell me about the cat"
    responses = ["the cat banana sat on the mat", "the dog ran in the park", "", "banana"]
    ours = scorer.score(prompt, responses)
    assert ours[0] > ours[1]  # it learned the marker

    tokenizer = AutoTokenizer.from_pretrained(adapter)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    model = PeftModel.from_pretrained(model, adapter).eval()
    for response, score in zip(responses, ours):
        (ids, _), = scorer.encoder.encode_texts(prompt, None, [response])
        with torch.no_grad():
            plain = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
        assert plain == pytest.approx(score, abs=1e-4)  # one unpadded row vs our padded batch

    rc, rr = scorer.score_pairs([{"prompt": prompt, "prompt_messages": None,
                                  "chosen": responses[0], "rejected": responses[1]}])
    assert rc[0] == pytest.approx(ours[0], abs=1e-4) and rr[0] == pytest.approx(ours[1], abs=1e-4)
    assert scorer.stats and scorer.encoder.max_length == FAST["max_length"]


def test_wrong_validation_pairs_most_confident_first(trained, tmp_path):
    # A copy of the workspace where three validation pairs are judged the other way round:
    # the model, which learned "banana wins", must now list them as confidently wrong.
    # Only pairs the model got right are flipped: one it already got wrong would become right.
    src, result = trained["ws"], trained["result"]
    already_wrong = {w["comparison_id"] for w in
                     wrong_validation_pairs(src, result.run_id, limit=10_000, device="cpu")}
    ws = Workspace.open(shutil.copytree(src.root, tmp_path / "copy"))
    split = Split.load(ws.runs_dir / f"{result.run_id:04d}-reward" / "split.json")
    with Store(ws.db_path) as store:
        rows = {r["comparison_id"]: r for r in store.preference_rows()}
        flipped = [i for i in split.val_ids
                   if not rows[i]["tie"] and i not in already_wrong][:3]
        assert len(flipped) == 3
        for cid in flipped:
            store.unjudge(cid)
            store.judge(cid, "b")
    wrong = wrong_validation_pairs(ws, result.run_id, device="cpu")
    assert set(flipped) <= {w["comparison_id"] for w in wrong}
    margins = [w["margin"] for w in wrong]
    assert margins == sorted(margins) and all(m <= 0 for m in margins)
    for w in wrong:
        assert w["margin"] == pytest.approx(w["r_chosen"] - w["r_rejected"])
        if w["comparison_id"] in flipped:
            assert "banana" not in w["chosen"] and "banana" in w["rejected"]
    assert len(wrong_validation_pairs(ws, result.run_id, limit=1, device="cpu")) == 1


# ---- cancel and resume -----------------------------------------------------------------------

RESUME = dict(FAST, epochs=4.0, batch_size=4, grad_accum=2, log_every=3, eval_every=4,
              checkpoint_every=5, lora_dropout=0.1, warmup_ratio=0.2)


def test_cancel_and_resume_equals_an_uninterrupted_run(tmp_path, gpt2_dir, monkeypatch):
    ws = make_workspace(tmp_path / "ws", n_prompts=12, ties=2)
    cfg = RewardConfig(**RESUME)
    full = train_reward_model(ws, cfg, base_model=str(gpt2_dir))
    assert full.status == "completed" and full.total_steps == 12

    # 1. Stop in the middle of step 4 (after its first of two micro-batches).
    stop = StopToken()
    calls = {"n": 0}
    pair_rewards = reward_train.pair_rewards

    def counting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # steps 1-3 took six micro-batches
            stop.stop()
        return pair_rewards(*args, **kwargs)

    monkeypatch.setattr(reward_train, "pair_rewards", counting)
    first = train_reward_model(ws, cfg, base_model=str(gpt2_dir), stop=stop)
    monkeypatch.setattr(reward_train, "pair_rewards", pair_rewards)
    assert (first.status, first.step, first.artifact) == ("cancelled", 3, None)

    # 2. Judgments added since do not change the resumed run's data.
    with Store(ws.db_path) as store:
        add_judgments(store, 5, seed=9, start=100)

    # 3. Resume, stop again at the step boundary after step 8 (mid log window), resume again.
    stop = StopToken()
    second = train_reward_model(
        ws, RewardConfig(), base_model=str(gpt2_dir), resume_run_id=first.run_id, stop=stop,
        emit=lambda e: stop.stop() if isinstance(e, Progress) and e.done == 8 else None)
    assert (second.status, second.step) == ("cancelled", 8)
    third = train_reward_model(ws, RewardConfig(), base_model=str(gpt2_dir),
                               resume_run_id=first.run_id)
    assert third.status == "completed" and third.run_id == first.run_id

    # Same weights, same metrics, same validation result as the uninterrupted run.
    a = load_file(Path(full.artifact) / "adapter_model.safetensors")
    b = load_file(Path(third.artifact) / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    with Store(ws.db_path) as store:
        ma = [(m["step"], m["name"], m["value"]) for m in store.metrics(full.run_id)
              if m["name"] in DETERMINISTIC]
        mb = [(m["step"], m["name"], m["value"]) for m in store.metrics(third.run_id)
              if m["name"] in DETERMINISTIC]
        assert store.get_run(third.run_id).status == "completed"
    assert [m[:2] for m in ma] == [m[:2] for m in mb]
    assert [m[2] for m in mb] == pytest.approx([m[2] for m in ma], rel=1e-5, abs=1e-7)
    assert third.val_accuracy == full.val_accuracy
    assert third.val_loss == pytest.approx(full.val_loss, rel=1e-5)


def test_cancel_stops_within_one_step_and_keeps_a_checkpoint(tmp_path, gpt2_dir, monkeypatch):
    ws = make_workspace(tmp_path / "ws", n_prompts=20)
    stop = StopToken()
    forwards = {"n": 0}
    pair_rewards = reward_train.pair_rewards

    def counting(*args, **kwargs):
        forwards["n"] += 1
        return pair_rewards(*args, **kwargs)

    monkeypatch.setattr(reward_train, "pair_rewards", counting)
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.done == 2 and event.total > 2:
            stop.stop()

    result = train_reward_model(ws, RewardConfig(**FAST), base_model=str(gpt2_dir), emit=emit,
                                stop=stop)
    assert (result.status, result.step, result.artifact) == ("cancelled", 2, None)
    assert forwards["n"] == 2  # not one forward pass after the request
    run_dir = ws.runs_dir / f"{result.run_id:04d}-reward"
    assert (run_dir / "checkpoint" / "trainer_state.pt").is_file()
    assert (run_dir / "checkpoint" / "adapter" / "adapter_model.safetensors").is_file()
    assert not (run_dir / "checkpoint.tmp").exists()
    assert runs(ws)[0].status == "cancelled"
    assert any(isinstance(e, Log) and "cancelled at step 2" in e.message for e in events)


def test_resume_refuses_runs_it_cannot_continue_exactly(tmp_path, gpt2_dir):
    ws = make_workspace(tmp_path / "ws", n_prompts=20)
    stop = StopToken()
    stop.stop()  # cancelled before the first step: a checkpoint at step 0
    cancelled = train_reward_model(ws, RewardConfig(**FAST), base_model=str(gpt2_dir),
                                   stop=stop)
    assert (cancelled.status, cancelled.step) == ("cancelled", 0)

    def resume(run_id):
        return train_reward_model(ws, RewardConfig(), base_model=str(gpt2_dir),
                                  resume_run_id=run_id)

    with pytest.raises(UserError, match="no run 99"):
        resume(99)
    with Store(ws.db_path) as store:
        other = store.create_run("generate", {})
        bare = store.create_run("reward", {"base_model": str(gpt2_dir)})
        store.finish_run(bare, "failed", error="x")
        split = Split.load(ws.runs_dir / f"{cancelled.run_id:04d}-reward" / "split.json")
        store.unjudge(split.train_ids[0])
    with pytest.raises(UserError, match="not a reward-model run"):
        resume(other)
    with pytest.raises(UserError, match="no checkpoint"):
        resume(bare)
    with pytest.raises(RewardTrainingError, match="deleted or changed"):
        resume(cancelled.run_id)
    with Store(ws.db_path) as store:
        store.judge(split.train_ids[0], "a")
    done = resume(cancelled.run_id)
    assert done.status == "completed"
    with pytest.raises(UserError, match="already completed"):
        resume(cancelled.run_id)


# ---- guard rails ---------------------------------------------------------------------------

def test_too_few_judgments_are_refused_before_any_run_exists(tmp_path, gpt2_dir):
    ws = make_workspace(tmp_path / "ws", n_prompts=5, per_prompt=1, ties=4, other=3)
    with Store(ws.db_path) as store:
        with pytest.raises(RewardTrainingError,
                           match=r"at least 16 usable judgments \(pairs with a winner\); the "
                                 r"workspace has 5\."):
            check_reward_data(store, RewardConfig())
    with pytest.raises(RewardTrainingError, match="has 5"):
        train_reward_model(ws, RewardConfig(), base_model=str(gpt2_dir))
    assert runs(ws) == []


def test_ties_equal_or_dropped_change_the_data(tmp_path):
    ws = make_workspace(tmp_path / "ws", n_prompts=20, ties=5, other=4)
    with Store(ws.db_path) as store:
        equal = check_reward_data(store, RewardConfig(ties="equal"))
        drop = check_reward_data(store, RewardConfig(ties="drop"))
    assert equal["usable"] == drop["usable"] == 40
    assert (equal["ties"], equal["ties_left_out"]) == (5, 0)
    assert (drop["ties"], drop["ties_left_out"]) == (0, 5)
    assert equal["train_pairs"] + equal["val_pairs"] == 45
    assert drop["train_pairs"] + drop["val_pairs"] == 40


def test_tie_loss_is_lowest_at_equal_rewards():
    tie = torch.ones(3, dtype=torch.bool)
    rr = torch.zeros(3)
    rc = torch.tensor([0.0, 1.0, -2.0], requires_grad=True)
    losses = pair_losses(rc, rr, tie)
    assert losses[0] < losses[1] and losses[0] < losses[2]
    losses[0].backward()
    assert rc.grad[0] == 0  # a minimum
    # A winner's loss keeps falling as its margin grows, and respects the required margin.
    won = torch.zeros(2, dtype=torch.bool)
    assert pair_losses(torch.tensor([1.0, 3.0]), torch.zeros(2), won).diff() < 0
    assert pair_losses(torch.tensor([1.0]), torch.zeros(1), won[:1], margin=1.0) == \
        pytest.approx(math.log(2))
    centered = pair_losses(torch.tensor([2.0]), torch.tensor([1.0]), won[:1], center=0.1)
    assert centered - pair_losses(torch.tensor([2.0]), torch.tensor([1.0]), won[:1]) == \
        pytest.approx(0.9)


def test_non_finite_loss_fails_the_run_naming_the_step(tmp_path, gpt2_dir, monkeypatch):
    ws = make_workspace(tmp_path / "ws", n_prompts=20)
    pair_rewards = reward_train.pair_rewards
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        rc, rr, tie = pair_rewards(*args, **kwargs)
        return (rc * float("nan") if calls["n"] == 3 else rc), rr, tie

    monkeypatch.setattr(reward_train, "pair_rewards", poisoned)
    result = train_reward_model(ws, RewardConfig(**FAST), base_model=str(gpt2_dir))
    assert (result.status, result.step) == ("failed", 2)
    assert "loss became nan at step 3" in result.error.lower()
    run = runs(ws)[0]
    assert (run.status, run.error) == ("failed", result.error)


def test_out_of_memory_fails_with_advice_and_other_errors_are_raised(tmp_path, gpt2_dir,
                                                                     monkeypatch):
    ws = make_workspace(tmp_path / "ws", n_prompts=20)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(reward_train, "pair_rewards", out_of_memory)
    result = train_reward_model(ws, RewardConfig(**FAST), base_model=str(gpt2_dir))
    assert result.status == "failed"
    assert "out of device memory at step 1" in result.error
    assert "batch size" in result.error and "gradient checkpointing" in result.error
    assert runs(ws)[0].status == "failed"

    def broken(*args, **kwargs):
        raise ValueError("something broke\nwith a long traceback-ish tail")

    monkeypatch.setattr(reward_train, "pair_rewards", broken)
    with pytest.raises(ValueError):
        train_reward_model(ws, RewardConfig(**FAST), base_model=str(gpt2_dir))
    run = runs(ws)[1]
    assert (run.status, run.error) == ("failed", "ValueError: something broke")


def test_settings_the_machine_cannot_honour_are_refused_up_front(tmp_path, gpt2_dir):
    ws = make_workspace(tmp_path / "ws", n_prompts=20)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="needs a CUDA GPU"):
            train_reward_model(ws, RewardConfig(**FAST, precision="fp16"),
                               base_model=str(gpt2_dir))
    with pytest.raises(UserError, match="matches no linear layer"):
        train_reward_model(ws, RewardConfig(**FAST, target_modules="q_proj, nope"),
                           base_model=str(gpt2_dir))
    with pytest.raises(UserError, match="not a model folder"):
        train_reward_model(ws, RewardConfig(**FAST), base_model=str(tmp_path))
    assert runs(ws) == []


# ---- options and architectures -------------------------------------------------------------

def test_the_reward_statistics_sample_is_fixed_by_the_seed():
    pairs = list(range(1000))
    a = reward_train.stats_sample(pairs, seed=3, n=256)
    assert a == reward_train.stats_sample(pairs, seed=3, n=256) and a == sorted(a)
    assert len(set(a)) == 256 and a != reward_train.stats_sample(pairs, seed=4, n=256)
    assert reward_train.stats_sample(pairs[:10], seed=3, n=256) == pairs[:10]


def test_learning_rate_schedules():
    cfg = RewardConfig(lr=1.0, warmup_ratio=0.2, scheduler="cosine")
    lrs = [learning_rate(cfg, s, 10) for s in range(10)]
    assert lrs[:2] == pytest.approx([1 / 3, 2 / 3])  # warm-up starts above zero
    assert lrs[2] == 1.0 and all(a > b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] > 0
    linear = RewardConfig(lr=1.0, warmup_ratio=0.0, scheduler="linear")
    assert [learning_rate(linear, s, 4) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    constant = RewardConfig(lr=0.5, warmup_ratio=0.0, scheduler="constant")
    assert {learning_rate(constant, s, 4) for s in range(4)} == {0.5}


def test_gradient_checkpointing_still_trains_lora(tmp_path, gpt2_dir):
    ws = make_workspace(tmp_path / "ws", n_prompts=20)
    cfg = RewardConfig(**dict(FAST, epochs=0.5, gradient_checkpointing=True, grad_accum=2,
                              val_fraction=0.0))
    events = []
    result = train_reward_model(ws, cfg, base_model=str(gpt2_dir), emit=events.append)
    assert result.status == "completed"
    # No validation share: no evaluation, and nothing to report for it.
    assert result.val_accuracy is None and result.val_loss is None
    assert not any(isinstance(e, Metric) and e.name.startswith("eval/") for e in events)
    weights = load_file(Path(result.artifact) / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero


@pytest.mark.parametrize("arch", ["qwen2", "gpt_neox", "opt"])
def test_other_architectures_train_and_round_trip(arch, tmp_path, corpus):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = tmp_path / arch
    build_tiny_model(arch, train_tokenizer(corpus, vocab_size=320), base, hidden=32, heads=2)
    ws = make_workspace(tmp_path / "ws", n_prompts=20)
    result = train_reward_model(ws, RewardConfig(**dict(FAST, epochs=1.0)), base_model=str(base))
    assert result.status == "completed"
    scorer = RewardScorer.load(base, result.artifact, device="cpu")
    (ids, _), = scorer.encoder.encode_texts("Hi", None, ["the cat banana"])
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model = PeftModel.from_pretrained(model, result.artifact).eval()
    with torch.no_grad():
        plain = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert plain == pytest.approx(scorer.score("Hi", ["the cat banana"])[0], abs=1e-4)


def test_scorer_refuses_a_folder_that_is_not_an_adapter(tmp_path, gpt2_dir):
    with pytest.raises(RewardModelError, match="not a reward adapter folder"):
        RewardScorer.load(gpt2_dir, tmp_path, device="cpu")


def test_lora_targets(llama_chat_dir, gpt2_dir):
    from transformers import AutoModelForSequenceClassification

    llama = AutoModelForSequenceClassification.from_pretrained(llama_chat_dir, num_labels=1)
    assert lora_targets(llama, "all-linear") == ["down_proj", "gate_proj", "k_proj", "o_proj",
                                                 "q_proj", "up_proj", "v_proj"]
    assert lora_targets(llama, "q_proj, v_proj") == ["q_proj", "v_proj"]
    with pytest.raises(RewardModelError, match="c_attn"):
        lora_targets(llama, "c_attn")
    gpt2 = AutoModelForSequenceClassification.from_pretrained(gpt2_dir, num_labels=1)
    assert lora_targets(gpt2, "all-linear") == ["c_attn", "c_fc", "c_proj"]
