"""The round overview: how each round of feedback moved the model.

A round ends with a reward model: round k is the k-th completed reward run, trained on every
training judgment made up to its start. Its PPO runs are the runs that used that reward model,
and its human win rate is the newest blind evaluation of one of those policies against the
base model. Judgments made after the newest reward model are the next round, in progress.
Everything here is counted from the database, nothing is cached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from desktop_app.core.data.store import Store
from desktop_app.core.evaluation.results import eval_summary
from desktop_app.core.runs.record import Run, RunKind, RunStatus


@dataclass
class Round:
    number: int
    reward_run_id: int | None  # None for the round in progress
    judgments: int  # training judgments the reward model saw (in progress: so far)
    new_judgments: int  # of those, made during this round
    rm_accuracy: float | None  # the reward model's validation accuracy
    ppo_run_ids: list[int]
    human_win_rate: float | None  # newest tuned policy of the round vs. base, as judged blind
    human_ci: tuple[float, float] | None
    human_n: int
    rm_win_rate: float | None  # the same, judged by a reward model
    eval_run_id: int | None
    pending: int = 0  # pairs waiting for a judgment (round in progress only)

    def to_dict(self) -> dict:
        return asdict(self)


def round_overview(store: Store) -> list[Round]:
    runs = store.list_runs()
    # Completed, whether or not their files are still there: a round happened either way.
    rewards = [r for r in runs if r.kind == RunKind.REWARD and r.status == RunStatus.COMPLETED]
    evals = [r for r in runs if r.kind == RunKind.EVAL]
    rounds: list[Round] = []
    previous = 0
    for number, reward in enumerate(rewards, start=1):
        judgments = store.judgments_until(reward.created_at)
        ppo_ids = [r.id for r in runs if r.kind in (RunKind.PPO, RunKind.RLOO)
                   and r.status == RunStatus.COMPLETED and r.parent_run_id == reward.id]
        accuracy = store.final_metrics(reward.id).get("eval/accuracy")
        round_ = Round(number, reward.id, judgments, judgments - previous, accuracy, ppo_ids,
                       None, None, 0, None, None)
        _add_evaluation(store, round_, evals)
        rounds.append(round_)
        previous = judgments
    stats = store.stats()
    total = stats["training_judgments"]
    if total > previous or stats["pending"] or not rounds:
        rounds.append(Round(len(rounds) + 1, None, total, total - previous, None, [], None, None,
                            0, None, None, pending=stats["pending"]))
    return rounds


def _add_evaluation(store: Store, round_: Round, evals: list[Run]) -> None:
    """The newest finished human verdict and the newest automatic verdict on one of the
    round's policies against the base model (often the same evaluation run)."""
    for run in reversed(evals):
        if run.status not in (RunStatus.COMPLETED, RunStatus.JUDGING):
            continue
        summary = eval_summary(store, run)
        for ppo_id in reversed(round_.ppo_run_ids):
            view = summary.against_base(ppo_id)
            if view is None:
                continue
            # A person's verdict counts once they have finished judging (it stays hidden
            # until then); the reward model's is known as soon as the pairs exist.
            if (view.human is not None and run.status == RunStatus.COMPLETED
                    and round_.human_win_rate is None):
                round_.human_win_rate = view.human.win_rate
                round_.human_ci = (view.human.ci_low, view.human.ci_high)
                round_.human_n = view.human.n
                round_.eval_run_id = run.id
            if view.automatic is not None and round_.rm_win_rate is None:
                round_.rm_win_rate = view.automatic.win_rate
                round_.eval_run_id = round_.eval_run_id or run.id
            break
        if round_.human_win_rate is not None and round_.rm_win_rate is not None:
            return
