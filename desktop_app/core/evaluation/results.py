"""Evaluation runs in the store: their results as metrics, and reading them back.

An evaluation run (kind 'eval') compares policy A with policy B (config keys ``a`` and ``b``,
each ``{"run_id": PPO run id or None for the base model, "label": ...}``). Its results are
metrics at step 0, so the runs page, ``rlhf-desk runs show`` and the CSV export see them:

- the person's verdict: ``eval/win_rate``, ``eval/ci_low``, ``eval/ci_high``, ``eval/n``,
  ``eval/wins``, ``eval/losses``, ``eval/ties`` (recomputed as judgments come in);
- the reward model's, on the same responses: ``eval/rm_win_rate``, ``eval/rm_ci_low``,
  ``eval/rm_ci_high``, ``eval/rm_n``, ``eval/rm_wins``/``_losses``/``_ties``, the mean rewards
  ``eval/rm_reward_a``/``_b`` and the mean response lengths in characters
  ``eval/length_a``/``_b`` (a reward model that likes length shows up here first).
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop_app.core.data.store import Store
from desktop_app.core.evaluation.win_rate import (
    WinRate,
    hacking_warning,
    win_rate,
    win_rate_from_tally,
)
from desktop_app.core.runs.record import Run, RunStatus

HUMAN = ("win_rate", "ci_low", "ci_high", "n")


def record_auto_result(store: Store, run_id: int, result: WinRate, rewards_a: list[float],
                       rewards_b: list[float], lengths_a: list[int], lengths_b: list[int]) -> None:
    def mean(values):
        return sum(values) / len(values) if values else 0.0

    values = {"eval/rm_n": result.n, "eval/rm_wins": result.wins,
              "eval/rm_losses": result.losses, "eval/rm_ties": result.ties,
              "eval/rm_reward_a": mean(rewards_a),
              "eval/rm_reward_b": mean(rewards_b), "eval/length_a": mean(lengths_a),
              "eval/length_b": mean(lengths_b)}
    if result.win_rate is not None:
        values |= {"eval/rm_win_rate": result.win_rate, "eval/rm_ci_low": result.ci_low,
                   "eval/rm_ci_high": result.ci_high}
    store.replace_metrics(run_id, 0, values)


def record_human_result(store: Store, run_id: int, *, finish: bool = False) -> WinRate:
    """Recompute the person's verdict from the run's judgments and store it. The run is
    completed when no pair is pending, or earlier when ``finish`` (pairs still pending then
    stay unjudged and do not count)."""
    tally = store.eval_tally(run_id)
    result = win_rate_from_tally(tally)
    values = {"eval/n": result.n, "eval/wins": result.wins, "eval/losses": result.losses,
              "eval/ties": result.ties}
    if result.win_rate is not None:
        values |= {"eval/win_rate": result.win_rate, "eval/ci_low": result.ci_low,
                   "eval/ci_high": result.ci_high}
    store.replace_metrics(run_id, 0, values)
    run = store.get_run(run_id)
    if run and (finish or tally["pending"] == 0) and run.status in (RunStatus.JUDGING,
                                                                     RunStatus.RUNNING):
        store.finish_run(run_id, RunStatus.COMPLETED)
    elif run and tally["pending"] and run.status == RunStatus.COMPLETED:
        store.set_run_status(run_id, RunStatus.JUDGING)  # a judgment was undone
    return result


@dataclass(frozen=True)
class EvalSummary:
    run_id: int
    status: RunStatus
    a: dict
    b: dict
    human: WinRate | None
    automatic: WinRate | None
    pending: int

    @property
    def warning(self) -> str | None:
        return hacking_warning(self.human, self.automatic)

    def against_base(self, policy_run_id: int) -> "EvalSummary | None":
        """This evaluation seen as ``policy_run_id`` versus the base model, or None when it
        compares something else. B-versus-A results are flipped to A's point of view."""
        ids = (self.a.get("run_id"), self.b.get("run_id"))
        if ids == (policy_run_id, None):
            return self
        if ids == (None, policy_run_id):
            return EvalSummary(self.run_id, self.status, self.b, self.a, _flip(self.human),
                               _flip(self.automatic), self.pending)
        return None


def eval_summary(store: Store, run: Run) -> EvalSummary:
    """The verdicts of an eval run: the person's from its judgments (live while judging),
    the reward model's from its metrics."""
    metrics = store.final_metrics(run.id)
    tally = store.eval_tally(run.id)
    human = win_rate_from_tally(tally) if run.config.get("mode") == "human" else None
    if human is not None and human.n == 0:
        human = None
    automatic = None
    if "eval/rm_wins" in metrics:
        automatic = win_rate(int(metrics["eval/rm_wins"]), int(metrics["eval/rm_losses"]),
                             int(metrics.get("eval/rm_ties", 0)))
    elif metrics.get("eval/rm_win_rate") is not None:  # counts not recorded: rate and CI only
        automatic = WinRate(metrics["eval/rm_win_rate"], metrics.get("eval/rm_ci_low"),
                            metrics.get("eval/rm_ci_high"), int(metrics.get("eval/rm_n", 0)),
                            0, 0, 0)
    if automatic is not None and automatic.n == 0:
        automatic = None
    return EvalSummary(run.id, run.status, run.config.get("a", {}), run.config.get("b", {}),
                       human, automatic, tally["pending"])


def _flip(result: WinRate | None) -> WinRate | None:
    if result is None or result.win_rate is None:
        return result
    if result.ci_low is None or result.ci_high is None:
        return WinRate(1 - result.win_rate, None, None, result.n, 0, 0, 0)
    if result.wins or result.losses or result.ties:
        return win_rate(result.losses, result.wins, result.ties)
    return WinRate(1 - result.win_rate, 1 - result.ci_high, 1 - result.ci_low, result.n, 0, 0, 0)
