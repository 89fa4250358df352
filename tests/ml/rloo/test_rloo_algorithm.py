"""RLOO's leave-one-out and GRPO's group-normalised advantages against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from desktop_app.ml.rloo.algorithm import (
    advantages,
    group_normalised,
    group_spread,
    leave_one_out,
)


def test_leave_one_out_by_hand():
    # Two prompts, k = 3: rewards [1, 2, 6] and [0, 0, 3].
    r = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    # 1 - (2 + 6) / 2 = -3;  2 - (1 + 6) / 2 = -1.5;  6 - (1 + 2) / 2 = 4.5
    # 0 - (0 + 3) / 2 = -1.5 (twice);  3 - 0 = 3
    assert leave_one_out(r, 3).tolist() == pytest.approx([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0])
    # The same as k / (k - 1) times the reward minus its group's mean.
    mean = r.view(2, 3).mean(1, keepdim=True)
    assert leave_one_out(r, 3).tolist() == pytest.approx(
        (1.5 * (r.view(2, 3) - mean)).reshape(-1).tolist())
    # Groups are independent: one group's rewards never move another's advantages.
    shifted = r.clone()
    shifted[3:] += 100.0
    assert leave_one_out(shifted, 3)[:3].tolist() == leave_one_out(r, 3)[:3].tolist()


def test_group_normalised_by_hand():
    r = torch.tensor([1.0, 3.0, 2.0, 2.0])  # k = 2: groups [1, 3] and [2, 2]
    # Group 1: mean 2, std (unbiased) sqrt(2): -1/sqrt(2), +1/sqrt(2). Group 2: all equal -> 0.
    out = group_normalised(r, 2)
    assert out[:2].tolist() == pytest.approx([-(2 ** -0.5), 2 ** -0.5], rel=1e-3)
    assert out[2:].tolist() == [0.0, 0.0]
    # Scale-free: multiplying a group's rewards by 10 leaves its advantages (almost) unchanged.
    assert group_normalised(r * 10, 2)[:2].tolist() == pytest.approx(out[:2].tolist(), rel=1e-3)


def test_advantages_sum_to_zero_within_each_group():
    r = torch.randn(5 * 4, generator=torch.Generator().manual_seed(0))
    for kind in ("rloo", "grpo"):
        sums = advantages(r, 4, kind).view(5, 4).sum(1)
        assert sums.abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="unknown advantage"):
        advantages(r, 4, "ppo")
    with pytest.raises(ValueError, match="groups of k = 3"):
        leave_one_out(r, 3)


def test_group_spread_is_the_mean_within_group_std():
    r = torch.tensor([1.0, 3.0, 5.0, 5.0])
    assert group_spread(r, 2).item() == pytest.approx((2 ** 0.5 + 0.0) / 2)
