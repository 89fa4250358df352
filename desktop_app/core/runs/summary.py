"""How a run went, in a line: the durations and key results the runs page and the CLI show.

Plain Python (no Qt), so ``rlhf-desk runs`` and the Runs page say the same thing.
"""

from __future__ import annotations

from datetime import datetime, timezone

from desktop_app.core.runs.record import Run, RunKind, RunStatus
from desktop_app.core.wording import count


def parse_time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        value = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def run_seconds(run: Run, now: datetime | None = None) -> float | None:
    """How long the run took, or has been going for; None when it is not known."""
    start = parse_time(run.created_at)
    end = parse_time(run.finished_at)
    if start is None:
        return None
    if end is None:
        if run.status != RunStatus.RUNNING:
            return None
        end = now or datetime.now(timezone.utc)
    return max(0.0, (end - start).total_seconds())


def _win_rate(final: dict[str, float], prefix: str) -> tuple[str, float] | None:
    """"62% (95% CI 41%–80%, n = 24)" from eval/{prefix}win_rate, ci_low, ci_high, n (the
    names ``core.evaluation.results`` records: no prefix for the person's verdict, rm_ for the
    reward model's)."""
    value = final.get(f"eval/{prefix}win_rate")
    if value is None:
        return None
    low, high = final.get(f"eval/{prefix}ci_low"), final.get(f"eval/{prefix}ci_high")
    n = final.get(f"eval/{prefix}n")
    detail = []
    if low is not None and high is not None:
        detail.append(f"95% CI {low:.0%}–{high:.0%}")
    if n is not None:
        detail.append(f"n = {n:.0f}")
    return f"{value:.0%}" + (f" ({', '.join(detail)})" if detail else ""), value


def key_metric(run: Run, final: dict[str, float]) -> tuple[str, float | None]:
    """The one number that says how a run went, as text and as a sort value."""
    kind = run.kind
    get = final.get
    judging = run.status == RunStatus.JUDGING
    if kind == RunKind.REWARD:
        for name, label in (("eval/accuracy", "val accuracy"),
                            ("train/accuracy", "train accuracy")):
            if get(name) is not None:
                # How many validation pairs it is out of (runs since eval/pairs was recorded).
                pairs = get("eval/pairs") if name == "eval/accuracy" else None
                out_of = f" on {count(pairs, 'pair')}" if pairs else ""
                return f"{label} {final[name]:.3f}{out_of}", final[name]
    elif kind in (RunKind.PPO, RunKind.RLOO):
        score, kl = get("objective/scores"), get("objective/kl")
        parts = [f"score {score:+.3f}" if score is not None else None,
                 f"KL {kl:.3f}" if kl is not None else None]
        if score is not None or kl is not None:
            return " · ".join(p for p in parts if p), score
    elif kind == RunKind.DPO:
        accuracy, margin = get("eval/rewards/accuracies"), get("eval/rewards/margins")
        if accuracy is not None:
            pairs = get("eval/pairs")
            out_of = f" on {count(pairs, 'pair')}" if pairs else ""
            text = f"val accuracy {accuracy:.3f}{out_of}"
            return text + (f" · margin {margin:+.2f}" if margin is not None else ""), accuracy
    elif kind == RunKind.EVAL:
        # The person's verdict stays hidden while they judge: a win rate that moves with each
        # judgment would tell them which side was which policy.
        human = None if judging else _win_rate(final, "")
        model = _win_rate(final, "rm_")
        if human:
            text = f"win rate {human[0]}"
            if model:
                text += f" · reward model {model[1]:.0%}"
            return text, human[1]
        if model:
            text = f"reward model: win rate {model[0]}"
            if judging:
                text += " · waiting for your judgments"
            return text, model[1]
        if judging:
            return "waiting for your judgments", None
    elif kind == RunKind.GENERATE:
        rate, pairs = get("generate/tokens_per_s"), get("generate/pairs")
        if rate is not None:
            text = f"{rate:,.0f} tokens/s"
            if pairs is not None:
                text = f"{pairs:.0f} pairs · " + text
            return text, rate
    return "—", None
