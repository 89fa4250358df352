"""Evaluation end to end on a tiny model: a "PPO policy" (a LoRA adapter with non-zero weights
registered as a completed PPO run), a reward model (adapter + score head registered as a
completed reward run), held-out prompts; blind pairs for the person plus the reward model's
verdict on the same responses, and the CLI's JSON."""

from __future__ import annotations

import json

import pytest
import torch

from desktop_app.cli import main
from desktop_app.core.config import EvalConfig, RewardConfig
from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError
from desktop_app.core.evaluation.results import record_human_result
from desktop_app.core.events import StopToken
from desktop_app.core.workspace import Workspace
from desktop_app.ml.evaluation.run import (
    EvaluationError,
    parse_policy,
    resolve_policy,
    run_evaluation,
)
from desktop_app.ml.models.device import pick_device
from desktop_app.ml.reward.model import build_reward_model, load_tokenizer

pytestmark = pytest.mark.slow  # generates with models and scores with a reward model

CFG = EvalConfig(max_new_tokens=8, batch_size=4, max_prompts=6, device="cpu", seed=3)


def eval_pairs(store, run_id):
    """The pairs of evaluation ``run_id`` as comparison_id, text_a, text_b, oldest first."""
    return list(store.db.query(
        "SELECT c.id AS comparison_id, ga.text AS text_a, gb.text AS text_b FROM comparisons c "
        "JOIN generations ga ON ga.id = c.generation_a_id "
        "JOIN generations gb ON gb.id = c.generation_b_id "
        "WHERE c.eval_run_id = ? ORDER BY c.id", [run_id]))


@pytest.fixture
def setup(tmp_path, gpt2_dir, gpt2_policy_dir):
    ws = Workspace.open(tmp_path / "ws")
    with Store(ws.db_path) as store:
        ppo = store.create_run("ppo", {"base_model": str(gpt2_dir)})
        store.finish_run(ppo, "completed", artifact=str(gpt2_policy_dir))
        reward = store.create_run("reward", {"base_model": str(gpt2_dir)})
        torch.manual_seed(1)
        model = build_reward_model(gpt2_dir, load_tokenizer(gpt2_dir), pick_device("cpu", "auto"),
                                   cfg=RewardConfig(target_modules="c_attn"))
        model.save_pretrained(tmp_path / "reward" / "adapter")
        store.finish_run(reward, "completed", artifact=str(tmp_path / "reward" / "adapter"))
        ids = store.add_prompts([f"Tell me about the cat {i}" for i in range(8)]).ids
        store.add_prompts(["a training prompt"])
        store.set_held_out(ids)
    return {"ws": ws, "ppo": ppo, "reward": reward, "base": gpt2_dir, "policy": gpt2_policy_dir}


def test_blind_evaluation_stores_hidden_pairs_and_the_reward_models_verdict(setup):
    ws = setup["ws"]
    with Store(ws.db_path) as store:
        a = resolve_policy(store, setup["ppo"])
        b = resolve_policy(store, None)
        outcome = run_evaluation(ws, store, CFG, a=a, b=b)
        assert outcome.status == "judging" and outcome.pairs == 6
        assert outcome.automatic is not None and outcome.automatic.n == 6
        run = store.get_run(outcome.run_id)
        assert run.kind == "eval" and run.status == "judging"
        assert run.parent_run_id == setup["ppo"]
        assert run.config["a"]["run_id"] == setup["ppo"] and run.config["b"]["run_id"] is None

        # Response a is always the policy's, b the base's; both are recorded per generation.
        pairs = eval_pairs(store, outcome.run_id)
        assert len(pairs) == 6
        for row in pairs:
            pair = store.get_pair(row["comparison_id"])
            a_side = pair.left if pair.left_is_a else pair.right
            b_side = pair.right if pair.left_is_a else pair.left
            assert a_side["adapter"] == str(setup["policy"])
            assert b_side["adapter"] is None and a_side["source"] == "eval"
        assert any(r["text_a"] != r["text_b"] for r in pairs)
        # The training queue does not see them.
        assert store.pending_count() == 0 and store.next_pending() is None

        results = [json.loads(line) for line in
                   (ws.runs_dir / f"{outcome.run_id:04d}-eval" / "results.jsonl").read_text()
                   .splitlines()]
        assert [r["response_a"] for r in results] == [r["text_a"] for r in pairs]
        metrics = store.final_metrics(outcome.run_id)
        assert metrics["eval/rm_n"] == 6
        assert metrics["eval/rm_win_rate"] == pytest.approx(outcome.automatic.win_rate)

        for row in pairs:
            store.judge(row["comparison_id"], "a")
        human = record_human_result(store, outcome.run_id)
        assert human.win_rate == 1.0 and store.get_run(outcome.run_id).status == "completed"


def test_the_same_seed_gives_the_same_responses(setup):
    ws = setup["ws"]
    with Store(ws.db_path) as store:
        a, b = resolve_policy(store, setup["ppo"]), resolve_policy(store, None)
        first = run_evaluation(ws, store, CFG, a=a, b=b, automatic=False)
        second = run_evaluation(ws, store, CFG, a=a, b=b, automatic=False)
        texts = lambda run: [(r["text_a"], r["text_b"]) for r in eval_pairs(store, run)]  # noqa
        assert texts(first.run_id) == texts(second.run_id)


def test_automatic_only_completes_at_once(setup):
    ws = setup["ws"]
    with Store(ws.db_path) as store:
        outcome = run_evaluation(ws, store, CFG, a=resolve_policy(store, setup["ppo"]),
                                 b=resolve_policy(store, None), human=False)
        assert outcome.status == "completed"
        assert eval_pairs(store, outcome.run_id) == []
        assert outcome.warnings == []  # held-out prompts, and not the PPO run's own reward model
        assert store.get_run(outcome.run_id).config["warnings"] == []


def test_refusals_name_the_problem(setup, tmp_path):
    ws = setup["ws"]
    with Store(ws.db_path) as store:
        with pytest.raises(EvaluationError, match="not a policy"):
            parse_policy("banana")
        with pytest.raises(UserError, match=r"is a reward-model run; an evaluation needs a "
                                            r"policy \(PPO, RLOO or DPO\) run"):
            resolve_policy(store, setup["reward"])
        with pytest.raises(EvaluationError, match="two different"):
            run_evaluation(ws, store, CFG, a=resolve_policy(store, None),
                           b=resolve_policy(store, None))
        store.set_held_out([p["id"] for p in store.held_out_prompts()], False)
        with pytest.raises(EvaluationError, match="no held-out prompts"):
            run_evaluation(ws, store, CFG, a=resolve_policy(store, setup["ppo"]),
                           b=resolve_policy(store, None))
        assert not [r for r in store.list_runs() if r.kind == "eval"]


def test_cancel_stores_nothing(setup):
    ws = setup["ws"]
    stop = StopToken()
    stop.stop()
    with Store(ws.db_path) as store:
        outcome = run_evaluation(ws, store, CFG, a=resolve_policy(store, setup["ppo"]),
                                 b=resolve_policy(store, None), stop=stop)
        assert outcome.status == "cancelled"
        assert store.get_run(outcome.run_id).status == "cancelled"
        assert eval_pairs(store, outcome.run_id) == []


def test_cli_evaluate_auto_prints_the_win_rate_as_json(setup, tmp_path, capsys):
    prompts = tmp_path / "eval.txt"
    prompts.write_text("What is a dog?\nWhere is Paris?\nWhat is a dog?\n", encoding="utf-8")
    code = main(["evaluate", "--workspace", str(setup["ws"].root), "--a", str(setup["ppo"]),
                 "--b", "base", "--prompts", str(prompts), "--auto", "--json",
                 "--max-new-tokens", "8", "--device", "cpu"])
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["n"] == 2 and 0 <= data["ci_low"] <= data["win_rate"] <= data["ci_high"] <= 1
    assert data["status"] == "completed"
    with Store(setup["ws"].db_path) as store:
        held = {p["text"] for p in store.held_out_prompts()}
        assert {"What is a dog?", "Where is Paris?"} <= held

    code = main(["evaluate", "--workspace", str(setup["ws"].root), "--a", "nonsense", "--json"])
    assert code != 0


def test_pending_pairs_are_ranked_by_reward_model_uncertainty(setup, capsys):
    from desktop_app.core.data.store import GenerationIn
    from desktop_app.ml.reward.model import RewardScorer
    from desktop_app.ml.reward.uncertainty import score_pending_pairs

    ws = setup["ws"]
    texts = ["the cat sat", "the dog ran", "red ball", "the cat sat on the mat", "rain"]
    with Store(ws.db_path) as store:
        pid = store.add_prompts(["Tell me about a pet"]).ids[0]
        ids = store.add_pairs([(pid, GenerationIn(a, "m"), GenerationIn(b, "m"))
                               for a, b in zip(texts, texts[1:])])
        assert score_pending_pairs(store, setup["reward"]) == 4
        scorer = RewardScorer.load(setup["base"], store.get_run(setup["reward"]).artifact,
                                   device="cpu")
        margins = {cid: abs(r[0] - r[1]) for cid, r in
                   zip(ids, (scorer.score("Tell me about a pet", [a, b])
                             for a, b in zip(texts, texts[1:])))}
        stored = {r["id"]: r["margin"] for r in store.db.query(
            "SELECT id, margin FROM comparisons WHERE margin IS NOT NULL")}
        assert stored.keys() == margins.keys()
        for cid in ids:
            assert stored[cid] == pytest.approx(margins[cid], abs=1e-4)
        order, served = sorted(ids, key=stored.get), []
        while (pair := store.next_pending(exclude=served, order="uncertain")) is not None:
            served.append(pair.comparison_id)
        assert served == order
    assert main(["rank-pending", "--workspace", str(ws.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["scored"] == 4
