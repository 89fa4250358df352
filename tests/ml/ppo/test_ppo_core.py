"""PPO arithmetic against examples worked out by hand: where mistakes in PPO hide."""

from __future__ import annotations

import math

import pytest
import torch

from desktop_app.core.config import PPOConfig
from desktop_app.ml.ppo.algorithm import (
    AdaptiveKLController,
    FixedKLController,
    apply_missing_eos_penalty,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_controller,
    kl_per_token,
    logprobs_from_logits,
    masked_mean,
    normalise_scores,
    policy_loss,
    response_mask_after_eos,
    token_rewards,
    value_loss,
    whiten,
)

EOS, PAD = 9, 0


def close(actual: torch.Tensor, expected: list, atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=atol,
                               rtol=1e-5)


def test_mask_covers_tokens_up_to_and_including_the_first_eos():
    tokens = torch.tensor([[5, 6, EOS, PAD, PAD],
                           [EOS, PAD, PAD, PAD, PAD],
                           [5, 6, 7, 8, 5],           # never ends
                           [5, EOS, 6, EOS, 7]])      # tokens after the first EOS are padding
    mask, finished = response_mask_after_eos(tokens, [EOS])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1],
                             [1, 1, 0, 0, 0]]
    assert finished.tolist() == [True, True, False, True]
    # Several EOS ids (an end-of-turn token and the tokenizer's EOS).
    mask, finished = response_mask_after_eos(torch.tensor([[5, 4, 9, 9]]), [4, 9])
    assert mask.tolist() == [[1, 1, 0, 0]] and finished.tolist() == [True]


def test_masked_reductions_ignore_padding():
    values = torch.tensor([[1.0, 3.0, 100.0], [5.0, -100.0, -100.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert masked_mean(values, mask).item() == pytest.approx(3.0)
    assert masked_mean(values, mask, dim=1).tolist() == [2.0, 5.0]
    w = whiten(values, mask)
    assert w[~mask].abs().sum() == 0
    real = w[mask]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.std().item() == pytest.approx(1.0, abs=1e-4)  # unbiased, as TRL
    # [1, 3, 5]: mean 3, unbiased std 2 -> [-1, 0, 1]
    assert real.tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)
    assert whiten(values, mask, shift_mean=False)[mask].tolist() == pytest.approx(
        [2.0, 3.0, 4.0], abs=1e-4)  # scaled, mean kept


def test_logprobs_and_entropy_from_logits():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]], [[1 / 3, 1 / 3, 1 / 3]]]))
    tokens = torch.tensor([[0], [2]])
    assert logprobs_from_logits(logits, tokens).squeeze(-1).tolist() == pytest.approx(
        [math.log(0.5), math.log(1 / 3)])
    assert entropy_from_logits(logits).squeeze(-1).tolist() == pytest.approx(
        [1.5 * math.log(2), math.log(3)], abs=1e-6)
    # Shifting logits changes nothing.
    torch.testing.assert_close(entropy_from_logits(logits + 7.0), entropy_from_logits(logits))


def test_kl_estimators():
    logp = torch.log(torch.tensor([0.5, 0.2, 0.1]))
    ref = torch.log(torch.tensor([0.25, 0.2, 0.4]))
    k1 = kl_per_token(logp, ref, "k1")
    assert k1.tolist() == pytest.approx([math.log(2), 0.0, math.log(0.25)])
    k3 = kl_per_token(logp, ref, "k3")
    # r = p_ref / p = 0.5, 1, 4: (r - 1) - log r
    assert k3.tolist() == pytest.approx([-0.5 + math.log(2), 0.0, 3 - math.log(4)], abs=1e-6)
    assert (k3 >= 0).all()
    with pytest.raises(ValueError, match="k2"):
        kl_per_token(logp, ref, "k2")
    # Both are unbiased: averaged over samples from p they approach the true KL.
    torch.manual_seed(0)
    p, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    true_kl = (p * (p / q).log()).sum().item()
    x = torch.multinomial(p, 200000, replacement=True)
    for est in ("k1", "k3"):
        assert kl_per_token(p.log()[x], q.log()[x], est).mean().item() == pytest.approx(
            true_kl, abs=0.01)


def test_rewards_put_the_score_on_the_last_real_token():
    kl = torch.tensor([[0.1, 0.2, 0.3, 9.0], [0.5, 9.0, 9.0, 9.0], [0.0, 0.1, 0.1, 0.1]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    scores = torch.tensor([1.0, -2.0, 0.5])
    rewards, non_score = token_rewards(scores, kl, mask, kl_coef=0.1)
    close(rewards, [[-0.01, -0.02, -0.03 + 1.0, 0.0],
                    [-0.05 - 2.0, 0.0, 0.0, 0.0],
                    [0.0, -0.01, -0.01, -0.01 + 0.5]])
    assert non_score.sum(1).tolist() == pytest.approx([-0.06, -0.05, -0.03])


def test_score_normalisation_clipping_and_missing_eos_penalty():
    scores = torch.tensor([3.0, -1.0, 11.0])
    assert normalise_scores(scores, 1.0, 2.0).tolist() == [1.0, -1.0, 5.0]
    assert normalise_scores(scores, 1.0, 2.0, clip=3.0).tolist() == [1.0, -1.0, 3.0]
    finished = torch.tensor([True, False, True])
    assert apply_missing_eos_penalty(scores, finished, 1.5).tolist() == [3.0, -2.5, 11.0]


def test_gae_against_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.5, -1.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 99.0], [0.2, 0.1, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    gamma, lam = 0.9, 0.8
    adv, ret = gae(rewards, values, mask, gamma, lam)
    # Row 0, backwards: d2 = 1 - 0.7 = 0.3;            A2 = 0.3
    #                   d1 = 0 + .9*.7 - .6 = 0.03;    A1 = 0.03 + .72*0.3 = 0.246
    #                   d0 = 0 + .9*.6 - .5 = 0.04;    A0 = 0.04 + .72*0.246 = 0.21712
    # Row 1:            d1 = -1 - 0.1 = -1.1;          A1 = -1.1
    #                   d0 = .5 + .9*.1 - .2 = 0.39;   A0 = 0.39 + .72*(-1.1) = -0.402
    close(adv, [[0.21712, 0.246, 0.3, 0.0], [-0.402, -1.1, 0.0, 0.0]])
    close(ret, [[0.71712, 0.846, 1.0, 0.0], [-0.202, -1.0, 0.0, 0.0]])
    # gamma = lambda = 1: the advantage is the reward-to-go minus the value.
    adv, ret = gae(rewards, values, mask, 1.0, 1.0)
    assert ret[0, :3].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert ret[1, :2].tolist() == pytest.approx([-0.5, -1.0])


def test_clipped_policy_loss():
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.25, 0.55, 0.9]]))  # ratios 1.5, 0.5, 1.1, 1.8
    adv = torch.tensor([[1.0, 1.0, -2.0, 5.0]])
    mask = torch.tensor([[True, True, True, False]])
    out = policy_loss(new, old, adv, mask, cliprange=0.2)
    # per token max(-A r, -A clip(r)): max(-1.5, -1.2) = -1.2 (clipped), max(-0.5, -0.8) = -0.5,
    # max(2.2, 2.2) = 2.2; the fourth is padding.
    assert out["loss"].item() == pytest.approx((-1.2 - 0.5 + 2.2) / 3)
    assert out["clipfrac"].item() == pytest.approx(1 / 3)
    assert out["ratio"].item() == pytest.approx((1.5 + 0.5 + 1.1) / 3)
    lr = [math.log(1.5), math.log(0.5), math.log(1.1)]
    assert out["approxkl"].item() == pytest.approx(0.5 * sum(x * x for x in lr) / 3)
    # The clipped token passes no gradient.
    new = new.clone().requires_grad_(True)
    policy_loss(new, old, adv, mask, 0.2)["loss"].backward()
    assert new.grad[0, 0] == 0 and new.grad[0, 1] != 0 and new.grad[0, 3] == 0


def test_clipped_value_loss():
    old = torch.tensor([[1.0, 1.0, 1.0]])
    new = torch.tensor([[2.0, 1.1, 0.0]])
    returns = torch.tensor([[3.0, 1.0, 5.0]])
    mask = torch.tensor([[True, True, False]])
    out = value_loss(new, old, returns, mask, cliprange_value=0.5)
    # token 0: unclipped (2-3)^2 = 1, clipped 1.5 -> (1.5-3)^2 = 2.25 -> 2.25 (clipped counts)
    # token 1: unclipped 0.01, clipped (1.1) 0.01 -> 0.01
    assert out["loss"].item() == pytest.approx(0.5 * (2.25 + 0.01) / 2)
    assert out["clipfrac"].item() == pytest.approx(0.5)


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 2.0), returns, mask) == pytest.approx(0.0)


def test_kl_controllers():
    fixed = kl_controller(0.1, 0.0, 100)
    assert isinstance(fixed, FixedKLController)
    fixed.update(100.0, 16)
    assert fixed.value == 0.1
    ctl = kl_controller(0.1, 6.0, 1000)
    assert isinstance(ctl, AdaptiveKLController)
    ctl.update(9.0, 100)  # error clipped to +0.2: x (1 + 0.2 * 100 / 1000)
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(5.4, 100)  # error -0.1
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.99)
    ctl.update(0.0, 1000)  # error clipped to -0.2, a full horizon
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.99 * 0.8)
    before = ctl.value
    ctl.update(float("nan"), 10)
    assert ctl.value == before


def test_ppo_config_checks_batch_shapes():
    PPOConfig().validate()
    with pytest.raises(ValueError, match="mini_batch_size = 8 is larger"):
        PPOConfig(batch_size=4, mini_batch_size=8).validate()
    with pytest.raises(ValueError, match="not a multiple"):
        PPOConfig(batch_size=8, mini_batch_size=4, grad_accum=3).validate()
    with pytest.raises(ValueError, match="kl_estimator"):
        PPOConfig(kl_estimator="k2").validate()
