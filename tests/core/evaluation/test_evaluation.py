"""Win rates, their intervals, blind-evaluation bookkeeping and the round overview, checked
against numbers worked out by hand."""

from __future__ import annotations

import math
import random

import pytest

from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.evaluation.results import (
    eval_summary,
    record_auto_result,
    record_human_result,
)
from desktop_app.core.evaluation.win_rate import (
    hacking_warning,
    win_rate,
    win_rate_from_scores,
    win_rate_from_tally,
)
from desktop_app.core.runs.rounds import round_overview

# ---- the statistics ----------------------------------------------------------------------------

def test_wilson_interval_matches_hand_computed_values():
    # 7 wins of 10: p = 0.7, z = 1.96. centre = (0.7 + 3.8415/20) / (1 + 3.8415/10) = 0.64450,
    # half = 1.96/1.38415 * sqrt(0.021 + 3.8415/400) = 0.24774 -> [0.3968, 0.8922].
    r = win_rate(7, 3)
    assert r.win_rate == pytest.approx(0.7)
    assert r.ci_low == pytest.approx(0.3968, abs=1e-4)
    assert r.ci_high == pytest.approx(0.8922, abs=1e-4)
    assert r.n == 10


def test_ties_count_as_half_a_win():
    # 6 wins, 2 losses, 2 ties: (6 + 1) / 10 = 0.7, the same interval as 7 of 10.
    r = win_rate(6, 2, 2)
    assert r.win_rate == pytest.approx(0.7)
    assert (r.ci_low, r.ci_high) == pytest.approx((win_rate(7, 3).ci_low, win_rate(7, 3).ci_high))


def test_extreme_results_keep_a_real_interval():
    # 10 of 10: Wilson's lower bound is n / (n + z^2) = 10 / 13.8415 = 0.7225, upper 1.
    r = win_rate(10, 0)
    assert r.win_rate == 1.0
    assert r.ci_low == pytest.approx(10 / (10 + 1.959964 ** 2), abs=1e-5)
    assert r.ci_high == pytest.approx(1.0)
    lost = win_rate(0, 10)
    assert lost.ci_low == pytest.approx(0.0, abs=1e-12)
    assert lost.ci_high == pytest.approx(1 - r.ci_low, abs=1e-9)


def test_even_split_is_centred_on_a_half():
    r = win_rate(50, 50)
    # n = 100, p = 0.5: half-width = 1.96/1.0384 * sqrt(0.0025 + 0.000096) = 0.09617.
    assert r.ci_low == pytest.approx(0.5 - 0.09617, abs=1e-4)
    assert r.ci_high == pytest.approx(0.5 + 0.09617, abs=1e-4)


def test_no_judgments_has_no_rate():
    r = win_rate(0, 0, 0)
    assert r.win_rate is None and r.n == 0
    assert "no judged pairs" in r.describe()
    assert win_rate(1, 2, 1).counts() == "1 win, 2 losses, 1 tie"
    assert "(95% CI" in win_rate(3, 0).describe() and "3 wins, 0 losses, 0 ties" in \
        win_rate(3, 0).describe()


def test_tally_and_scores():
    # both_bad is a tie, skip does not count.
    r = win_rate_from_tally({"a": 3, "b": 1, "tie": 1, "both_bad": 1, "skip": 5, "pending": 2})
    assert (r.wins, r.losses, r.ties, r.n) == (3, 1, 2, 6)
    assert r.win_rate == pytest.approx(4 / 6)
    s = win_rate_from_scores([1.0, 0.5, 0.2, 0.3], [0.0, 0.5, 0.9, 0.1])
    assert (s.wins, s.losses, s.ties) == (2, 1, 1)
    with pytest.raises(ValueError):
        win_rate_from_scores([1.0], [])


def test_reward_hacking_warning_needs_a_large_separated_gap():
    human, auto = win_rate(10, 10), win_rate(45, 5)
    assert "reward hacking" in hacking_warning(human, auto)
    assert hacking_warning(win_rate(14, 6), win_rate(16, 4)) is None  # close: agree
    assert hacking_warning(None, auto) is None


# ---- the store ---------------------------------------------------------------------------------

def gen(text: str, run_id: int | None = None, adapter: str | None = None) -> GenerationIn:
    return GenerationIn(text, "base-model", source="eval", run_id=run_id, adapter=adapter)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "rlhf.db") as s:
        yield s


def add_blind_eval(store: Store, n: int, a_run: int | None = None) -> tuple[int, list[int]]:
    run = store.create_run("eval", {"mode": "human", "a": {"run_id": a_run, "label": "A"},
                                    "b": {"run_id": None, "label": "base model"}},
                           parent_run_id=a_run)
    ids = store.add_prompts([f"held-out {run}-{i}" for i in range(n)]).ids
    store.set_held_out(ids)
    comparisons = store.add_pairs([(pid, gen(f"tuned {pid}", run, "policy"),
                                    gen(f"base {pid}", run))
                                   for pid in ids], rng=random.Random(1), source="eval",
                                  eval_run_id=run)
    store.set_run_status(run, "judging")
    return run, comparisons


def test_blind_pairs_stay_out_of_training_data_until_added(store):
    train_ids = store.add_prompts(["train me"]).ids
    [train_pair] = store.add_pairs([(train_ids[0], GenerationIn("x", "m"), GenerationIn("y", "m"))])
    run, comparisons = add_blind_eval(store, 4)

    # The training queue never serves an evaluation pair, and vice versa.
    assert store.next_pending().comparison_id == train_pair
    assert store.pending_count() == 1
    assert store.pending_count(eval_run_id=run) == 4
    pair = store.next_pending(eval_run_id=run)
    assert pair.comparison_id in comparisons

    for cid, choice in zip(comparisons, ["a", "a", "b", "tie"]):
        store.judge(cid, choice)
    assert store.preference_rows() == []
    assert store.stats()["judged"] == 0 and store.stats()["eval_judged"] == 4
    # Held-out prompts get no training pairs and are never PPO prompts.
    assert [r["id"] for r in store.prompts_without_pairs(10)] == []

    assert store.add_eval_to_training(run) == 4
    rows = store.preference_rows()
    assert len(rows) == 4 and sum(r["tie"] for r in rows) == 1
    assert store.held_out_prompts() == []  # trained on now: no longer held out


def test_sides_are_random_and_stored_and_a_is_always_policy_a(store):
    run, comparisons = add_blind_eval(store, 40)
    pairs = [store.get_pair(cid) for cid in comparisons]
    lefts = [p.left_is_a for p in pairs]
    assert 10 < sum(lefts) < 30  # both sides used
    for p in pairs:
        a = p.left if p.left_is_a else p.right
        assert a["text"].startswith("tuned")
        assert p.choice_for_side("left") == ("a" if p.left_is_a else "b")


def test_human_result_is_recorded_and_completes_the_run(store):
    run, comparisons = add_blind_eval(store, 5)
    for cid, choice in zip(comparisons[:4], ["a", "a", "b", "both_bad"]):
        store.judge(cid, choice)
    partial = record_human_result(store, run)
    assert store.get_run(run).status == "judging"
    assert partial.win_rate == pytest.approx(2.5 / 4)
    store.judge(comparisons[4], "skip")
    final = record_human_result(store, run)
    assert store.get_run(run).status == "completed"
    metrics = store.final_metrics(run)
    assert metrics["eval/win_rate"] == pytest.approx(final.win_rate)
    assert metrics["eval/ci_low"] == pytest.approx(win_rate(2, 1, 1).ci_low)
    assert metrics["eval/n"] == 4
    # Undoing a judgment reopens it; recording again replaces (never duplicates) metrics.
    store.unjudge(comparisons[0])
    record_human_result(store, run)
    assert store.get_run(run).status == "judging"
    assert len([m for m in store.metrics(run) if m["name"] == "eval/win_rate"]) == 1


def test_summary_flips_to_the_policy_point_of_view(store):
    run = store.create_run("eval", {"mode": "automatic", "a": {"run_id": None},
                                    "b": {"run_id": 7}})
    record_auto_result(store, run, win_rate(2, 8), [0.1] * 10, [0.9] * 10, [10] * 10, [20] * 10)
    store.finish_run(run, "completed")
    summary = eval_summary(store, store.get_run(run))
    assert summary.against_base(8) is None
    view = summary.against_base(7)
    assert view.automatic.win_rate == pytest.approx(0.8)
    assert view.automatic.ci_low == pytest.approx(1 - win_rate(2, 8).ci_high)


# ---- rounds ------------------------------------------------------------------------------------

def test_round_overview_counts_what_is_in_the_database(store):
    prompts = store.add_prompts([f"p{i}" for i in range(8)]).ids
    first = store.add_pairs([(p, GenerationIn(f"a{p}", "m"), GenerationIn(f"b{p}", "m"))
                             for p in prompts[:5]])
    for cid in first:
        store.judge(cid, "a")
    reward1 = store.create_run("reward", {})
    store.add_metrics(reward1, [(10, "eval/accuracy", 0.6), (20, "eval/accuracy", 0.7)])
    store.finish_run(reward1, "completed", artifact="x")
    ppo1 = store.create_run("ppo", {}, parent_run_id=reward1)
    store.finish_run(ppo1, "completed", artifact="policy")
    run, comparisons = add_blind_eval(store, 4, a_run=ppo1)
    for cid, choice in zip(comparisons, ["a", "a", "a", "b"]):
        store.judge(cid, choice)
    record_human_result(store, run)

    # Round 2 so far: three more judgments on the tuned policy's pairs, one pending.
    second = store.add_pairs([(p, GenerationIn(f"c{p}", "m", adapter="policy"),
                               GenerationIn(f"d{p}", "m", adapter="policy"))
                              for p in prompts[5:]])
    store.judge(second[0], "b")
    store.judge(second[1], "tie")
    store.judge(second[2], "skip")  # not a training judgment

    # A newer evaluation still being judged does not replace the finished verdict.
    newer, newer_pairs = add_blind_eval(store, 3, a_run=ppo1)
    store.judge(newer_pairs[0], "b")
    record_human_result(store, newer)

    rounds = round_overview(store)
    assert len(rounds) == 2
    one, two = rounds
    assert (one.number, one.reward_run_id, one.judgments, one.new_judgments) == (1, reward1, 5, 5)
    assert one.rm_accuracy == pytest.approx(0.7)
    assert one.ppo_run_ids == [ppo1]
    assert one.human_win_rate == pytest.approx(0.75) and one.human_n == 4
    assert one.human_ci == pytest.approx((win_rate(3, 1).ci_low, win_rate(3, 1).ci_high))
    assert one.eval_run_id == run
    assert (two.reward_run_id, two.judgments, two.new_judgments, two.pending) == (None, 7, 2, 0)
    assert math.isclose(store.stats()["training_judgments"], 7)


def test_uncertain_order_serves_the_smallest_margin_first(store):
    ids = store.add_prompts(["p1", "p2", "p3"]).ids
    c = store.add_pairs([(p, GenerationIn(f"a{p}", "m"), GenerationIn(f"b{p}", "m")) for p in ids])
    store.set_margins([(c[0], 2.0), (c[1], 0.1)])
    assert store.next_pending(order="uncertain").comparison_id == c[1]
    assert store.next_pending(exclude=[c[1]], order="uncertain").comparison_id == c[0]
    assert store.next_pending(exclude=[c[0], c[1]], order="uncertain").comparison_id == c[2]
    assert store.next_pending().comparison_id == c[0]
    assert [r["comparison_id"] for r in store.pending_pairs()] == c
