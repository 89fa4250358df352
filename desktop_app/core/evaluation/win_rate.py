"""Win rates with confidence intervals, and what a gap between human and reward model means.

A comparison of policy A with policy B ends in A winning, B winning, or a tie ("both bad"
counts as a tie: neither was preferred; skips do not count). Ties count as half a win, as in
chess scores and AlpacaEval's length-controlled win rate, so

    win_rate = (wins + ties / 2) / n.

The 95% interval is Wilson's score interval for that proportion. Unlike the normal
approximation it stays inside [0, 1] and does not collapse to a point at 10/10, which matters
here: a person judges tens of pairs, not thousands.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal

# A human and a reward-model win rate further apart than this (and outside each other's
# intervals) suggest the policy learnt what the reward model likes, not what the person likes.
HACKING_GAP = 0.15


@dataclass(frozen=True)
class WinRate:
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    wins: int
    losses: int
    ties: int

    def to_dict(self) -> dict:
        return asdict(self)

    def counts(self, sep: str = ", ") -> str:
        """"11 wins, 1 loss, 0 ties"."""
        def n(count: int, one: str, many: str) -> str:
            return f"{count} {one if count == 1 else many}"
        return sep.join((n(self.wins, "win", "wins"), n(self.losses, "loss", "losses"),
                         n(self.ties, "tie", "ties")))

    def describe(self, a: str = "A", b: str = "B") -> str:
        if self.n == 0 or self.win_rate is None:
            return "no judged pairs yet"
        ci = ("" if self.ci_low is None or self.ci_high is None
              else f"95% CI {self.ci_low:.0%}–{self.ci_high:.0%}; ")
        counts = f"{self.counts()}, " if self.wins or self.losses or self.ties else ""
        return f"{a} wins {self.win_rate:.0%} against {b} ({ci}{counts}n = {self.n})"


def win_rate(wins: int, losses: int, ties: int = 0, z: float = Z95) -> WinRate:
    """A's win rate over B with ties as half a win, and Wilson's interval around it."""
    if min(wins, losses, ties) < 0:
        raise ValueError("counts cannot be negative")
    n = wins + losses + ties
    if n == 0:
        return WinRate(None, None, None, 0, wins, losses, ties)
    p = (wins + ties / 2) / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return WinRate(p, max(0.0, centre - half), min(1.0, centre + half), n, wins, losses, ties)


def win_rate_from_tally(tally: dict[str, int]) -> WinRate:
    """From ``Store.eval_tally``: 'a' is a win for policy A, 'b' a loss; tie and both_bad tie."""
    return win_rate(tally.get("a", 0), tally.get("b", 0),
                    tally.get("tie", 0) + tally.get("both_bad", 0))


def win_rate_from_scores(scores_a: list[float], scores_b: list[float],
                         tie_tolerance: float = 1e-6) -> WinRate:
    """A reward model as the judge: A wins a prompt when its response scores higher."""
    if len(scores_a) != len(scores_b):
        raise ValueError("need one score per policy for every prompt")
    wins = sum(a - b > tie_tolerance for a, b in zip(scores_a, scores_b))
    losses = sum(b - a > tie_tolerance for a, b in zip(scores_a, scores_b))
    return win_rate(wins, losses, len(scores_a) - wins - losses)


def hacking_warning(human: WinRate | None, automatic: WinRate | None) -> str | None:
    """A sentence for the person when the reward model likes the tuned policy far more than
    they do; None when the two agree (or either is missing)."""
    if (human is None or automatic is None or human.win_rate is None
            or automatic.win_rate is None):
        return None
    gap = automatic.win_rate - human.win_rate
    intervals_apart = (automatic.ci_low is None or human.ci_high is None
                       or automatic.ci_low > human.ci_high)
    if gap >= HACKING_GAP and intervals_apart:
        return (f"The reward model prefers the tuned policy {automatic.win_rate:.0%} of the time, "
                f"you prefer it {human.win_rate:.0%} of the time. A gap this large is a sign of "
                "reward hacking: the policy found what the reward model scores highly rather "
                "than what you want. Judge more pairs from the tuned policy, retrain the reward "
                "model on them, and consider a larger KL coefficient.")
    return None
