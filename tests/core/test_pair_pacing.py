"""Batch sizes and the number of pairs kept ready follow the measured speeds."""

from desktop_app.core.pair_pacing import (
    DEFAULT_JUDGE_SECONDS,
    MAX_READY,
    Pace,
    next_batch_size,
    ready_target,
)


def test_the_first_batch_is_one_prompt_so_the_first_pair_comes_fast():
    pace = Pace()
    assert next_batch_size(pace, pending=0, largest=8) == 1
    assert ready_target(pace, asked=8, largest=8) == 8


def test_a_batch_never_outlasts_the_pairs_already_waiting():
    pace = Pace(seconds_per_pair=4.0, judge_seconds=6.0)
    # 3 pairs waiting = 18 s of judging = 4 pairs of generation.
    assert next_batch_size(pace, pending=3, largest=8) == 4
    assert next_batch_size(pace, pending=0, largest=8) == 1      # the judge waits: one pair
    assert next_batch_size(pace, pending=100, largest=8) == 8    # never past the settings


def test_a_slow_model_keeps_more_ready_and_a_fast_one_what_was_asked():
    slow = Pace(seconds_per_pair=16.0, judge_seconds=5.0)   # SmolLM2 on a CPU, a quick judge
    assert ready_target(slow, asked=8, largest=8) == 27       # 8 * 16 / 5 + 1
    fast = Pace(seconds_per_pair=0.2, judge_seconds=5.0)
    assert ready_target(fast, asked=8, largest=8) == 8
    hopeless = Pace(seconds_per_pair=1000.0, judge_seconds=1.0)
    assert ready_target(hopeless, asked=8, largest=64) == MAX_READY


def test_the_estimates_smooth_and_ignore_breaks():
    pace = Pace()
    pace.batch_done(pairs=1, seconds=10.0)
    pace.batch_done(pairs=4, seconds=20.0)
    assert pace.seconds_per_pair == 7.5
    pace.batch_done(pairs=0, seconds=3.0)                      # a cut batch says nothing
    assert pace.seconds_per_pair == 7.5
    assert pace.judge_seconds == DEFAULT_JUDGE_SECONDS
    pace.judged_after(3.0)
    assert pace.judge_seconds == 3.0                           # the first timing replaces
    pace.judged_after(600.0)                                   # a coffee break
    assert pace.judge_seconds == 3.0
    pace.judged_after(13.0)
    assert 3.0 < pace.judge_seconds < 13.0
