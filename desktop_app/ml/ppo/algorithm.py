"""The arithmetic of PPO for language models, as pure tensor functions (TRL's conventions).

Shapes: ``(rows, T)`` over response tokens, with a boolean ``mask`` that is True on real
response tokens (up to and including the first EOS) and False on the padding after it.
Every reduction here is over masked positions only, so padding after EOS never counts.

    response_mask_after_eos   tokens -> mask (True up to and including the first EOS)
    logprobs_from_logits      log p of the sampled tokens; entropy_from_logits
    kl_per_token              k1 or k3 estimate of KL(policy || reference) per token
    token_rewards             -kl_coef * kl everywhere, plus the score on the last real token
    gae                       advantages and returns (gamma, lambda) over masked positions
    whiten                    zero mean, unit variance over the masked positions
    policy_loss, value_loss   the clipped PPO losses, with clip fractions
    AdaptiveKLController      Ziegler et al. (2019); FixedKLController
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ---- masks and reductions --------------------------------------------------------------------

def response_mask_after_eos(tokens: torch.Tensor, eos_ids: list[int] | torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, finished): mask is True up to and including each row's first EOS (every token of a
    row without one); finished says which rows have an EOS."""
    eos = torch.as_tensor(eos_ids, device=tokens.device)
    is_eos = torch.isin(tokens, eos) if eos.numel() else torch.zeros_like(tokens, dtype=torch.bool)
    finished = is_eos.any(dim=1)
    steps = tokens.shape[1]
    first = torch.where(finished, is_eos.int().argmax(dim=1), steps - 1)
    positions = torch.arange(steps, device=tokens.device)
    return positions[None, :] <= first[:, None], finished


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    values = values.masked_fill(~mask, 0.0)
    return values.sum() if dim is None else values.sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the masked positions (0 where there are none)."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
           total=None) -> torch.Tensor:
    """Zero mean (unless ``shift_mean`` is False) and unit variance over the masked positions;
    masked positions come out as 0. ``total`` (a function summing a tensor over the torchrun
    ranks, in place) makes the mean and variance those of every rank's positions."""
    if total is None:
        mean, var = masked_mean(values, mask), masked_var(values, mask)
    else:
        m = mask.to(values.dtype)
        n, s, sq = total(torch.stack([m.sum(), (values * m).sum(), (values * values * m).sum()]))
        mean = s / n.clamp(min=1)
        var = (sq / n.clamp(min=1) - mean * mean).clamp(min=0) * (n / (n - 1) if n > 1 else 1)
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out.masked_fill(~mask, 0.0)


# ---- log-probabilities, entropy, KL ----------------------------------------------------------

def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under ``logits`` (..., vocab), in float32."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's distribution, in nats: logsumexp(z) - sum softmax(z) * z."""
    logits = logits.float()
    p = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs.

    k1 = log p - log p_ref: unbiased, can be negative for single tokens.
    k3 = (r - 1) - log r with r = p_ref / p: unbiased, never negative, lower variance."""
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k3":
        log_r = ref_logp - logp
        return torch.expm1(log_r) - log_r
    raise ValueError(f"unknown KL estimator {estimator!r}: choose k1 or k3")


# ---- rewards and advantages ------------------------------------------------------------------

def apply_missing_eos_penalty(scores: torch.Tensor, finished: torch.Tensor,
                              penalty: float) -> torch.Tensor:
    """Responses that never ended lose ``penalty`` from their score."""
    return torch.where(finished, scores, scores - penalty)


def normalise_scores(scores: torch.Tensor, mean: float, std: float,
                     clip: float = 0.0) -> torch.Tensor:
    """(score - mean) / std with the reward run's statistics; clipped to [-clip, clip] if set."""
    out = (scores - mean) / max(std, 1e-8)
    return out.clamp(-clip, clip) if clip > 0 else out


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor,
                  kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, non_score_reward): -kl_coef * kl on every real token, plus each row's score on
    its last real token; zero on padding."""
    non_score = (-kl_coef * kl).masked_fill(~mask, 0.0)
    last = (mask.long().sum(1) - 1).clamp(min=0)
    rewards = non_score.clone()
    rows = torch.arange(len(scores), device=scores.device)
    rewards[rows, last] += scores.to(rewards.dtype) * mask.any(1)
    return rewards, non_score


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens: (advantages, returns).

    delta_t = r_t + gamma * V_{t+1} - V_t,  A_t = delta_t + gamma * lam * A_{t+1}, with V and A
    zero beyond each row's last real token (the episode ends there). Returns = A + V."""
    rewards = rewards.masked_fill(~mask, 0.0)
    values = values.masked_fill(~mask, 0.0)
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        real = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        adv = torch.where(real, adv, torch.zeros_like(adv))
        advantages[:, t] = adv
        next_adv = adv
        next_value = torch.where(real, values[:, t], torch.zeros_like(adv))
    returns = advantages + values
    return advantages, returns


# ---- losses ----------------------------------------------------------------------------------

def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float) -> dict[str, torch.Tensor]:
    """The clipped surrogate: mean of max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)).

    Returns loss, clipfrac (share of tokens where clipping bit), approxkl
    (0.5 * mean (log ratio)^2) and ratio (mean), all over masked tokens."""
    log_ratio = (logp - old_logp).masked_fill(~mask, 0.0)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    return {"loss": loss,
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approxkl": 0.5 * masked_mean(log_ratio ** 2, mask),
            "ratio": masked_mean(ratio, mask)}


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, cliprange_value: float) -> dict[str, torch.Tensor]:
    """0.5 * mean of max((V - R)^2, (V_clipped - R)^2), V_clipped = V_old + clip(V - V_old)."""
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    return {"loss": loss, "clipfrac": masked_mean((loss_clipped > loss_unclipped).float(), mask)}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over masked tokens (1 = perfect, 0 = a constant)."""
    var_returns = masked_var(returns, mask, unbiased=False)
    if var_returns.item() <= 1e-12:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask, unbiased=False) / var_returns)


# ---- KL coefficient --------------------------------------------------------------------------

class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. (2019), "Fine-Tuning Language Models from Human Preferences": the error
    e = clip(KL / target - 1, -0.2, 0.2) changes the coefficient by a factor 1 + e * n / horizon,
    n being the responses of this step."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


def kl_controller(kl_coef: float, target_kl: float, horizon: int):
    if target_kl > 0:
        return AdaptiveKLController(kl_coef, target_kl, horizon)
    return FixedKLController(kl_coef)
