"""How big the next batch of pairs should be, and how many pairs to keep ready.

Two speeds decide it, both measured while the app runs: how long the model takes per pair
(``seconds_per_pair``, from the batches so far) and how long the person takes per judgment
(``judge_seconds``). The rules:

- The first batch of a model is one prompt: the first pair shows after the time one pair
  takes, instead of after a whole batch (on a CPU a batch of 8 took over two minutes).
- A batch must finish before the pairs already waiting are judged, or the judge waits:
  ``pending * judge_seconds`` is the time left, so the batch holds at most that many seconds
  of generation. Bigger batches are faster per pair, so it is as big as that allows, up to the
  sampling settings' batch size.
- Keep ready enough pairs to cover a full batch being generated, and at least what the person
  asked for. When the model is slower than the judge no number is enough; generation then
  simply never stops.

Pure functions with no Qt, so they are tested directly (tests/core/test_pair_pacing.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A person's pace before any judgment is timed: quick, so the queue errs on the side of
# keeping more ready.
DEFAULT_JUDGE_SECONDS = 5.0
MAX_READY = 256
# Pauses longer than this (a coffee break) are not the judging pace.
LONGEST_JUDGMENT_S = 120.0


@dataclass
class Pace:
    """Running estimates, smoothed so one odd batch or judgment does not swing them."""

    seconds_per_pair: float | None = None   # None until a batch has finished
    judge_seconds: float = DEFAULT_JUDGE_SECONDS
    judgments_timed: int = 0

    def batch_done(self, pairs: int, seconds: float) -> None:
        if pairs <= 0 or seconds <= 0:
            return
        measured = seconds / pairs
        self.seconds_per_pair = (measured if self.seconds_per_pair is None
                                 else 0.5 * self.seconds_per_pair + 0.5 * measured)

    def judged_after(self, seconds: float) -> None:
        """One judgment took ``seconds`` since the previous one (or since its pair showed)."""
        if not 0 < seconds <= LONGEST_JUDGMENT_S:
            return
        self.judgments_timed += 1
        weight = 0.3 if self.judgments_timed > 1 else 1.0
        self.judge_seconds = (1 - weight) * self.judge_seconds + weight * seconds


def next_batch_size(pace: Pace, pending: int, largest: int) -> int:
    """Prompts in the next batch: 1 at first, then as many as can be generated before the
    ``pending`` pairs are judged, between 1 and ``largest``."""
    largest = max(1, largest)
    if pace.seconds_per_pair is None:
        return 1
    fits = math.floor(pending * pace.judge_seconds / pace.seconds_per_pair)
    return max(1, min(largest, fits))


def ready_target(pace: Pace, asked: int, largest: int) -> int:
    """Pairs to keep waiting: at least ``asked``, and enough that a full batch of ``largest``
    finishes before they are judged."""
    asked = max(1, asked)
    if pace.seconds_per_pair is None:
        return asked
    cover = math.ceil(max(1, largest) * pace.seconds_per_pair / pace.judge_seconds) + 1
    return max(asked, min(MAX_READY, cover))
