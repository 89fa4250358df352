"""The arithmetic of DPO, as pure tensor functions (TRL's conventions and names).

    response_logps   summed log p of each row's response tokens (prompt and padding masked)
    dpo_losses       per-pair loss and implicit rewards from policy and reference log-probs

With π the policy and π_ref the reference, a response's implicit reward is
β · (log π(y|x) − log π_ref(y|x)), and for a judged pair (chosen y_w, rejected y_l) with
h = [log π(y_w) − log π_ref(y_w)] − [log π(y_l) − log π_ref(y_l)]:

    sigmoid (DPO, Rafailov et al. 2023)   −(1 − ε) · log σ(β h) − ε · log σ(−β h)
                                          ε = label smoothing: conservative DPO (cDPO), which
                                          assumes a share ε of the judgments are wrong
    ipo (Azar et al. 2023)                (h − 1 / (2β))², on log-probabilities averaged over
                                          each response's tokens (as TRL and the IPO authors'
                                          code do), so it stops pushing once a pair is
                                          separated by 1/(2β) rather than forever
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("sigmoid", "ipo")


def response_logps(logits: torch.Tensor, labels: torch.Tensor,
                   mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log p over each row's masked tokens, number of those tokens).

    ``logits`` (rows, T, vocab) are the model's predictions for ``labels`` (rows, T): position t
    of the logits predicts label t (the caller has already shifted by one). ``mask`` is True on
    response tokens; prompt and padding positions count nothing. log p is taken as the label's
    logit minus the logsumexp over the vocabulary, in float32, which never materialises a
    second vocabulary-wide log-softmax tensor."""
    logits = logits.float()
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    logp = picked - torch.logsumexp(logits, dim=-1)
    return logp.masked_fill(~mask, 0.0).sum(-1), mask.sum(-1)


def dpo_losses(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
               ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, *, beta: float,
               loss: str = "sigmoid", label_smoothing: float = 0.0,
               chosen_tokens: torch.Tensor | None = None,
               rejected_tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-pair ``loss``, ``chosen_rewards`` and ``rejected_rewards`` (the implicit rewards,
    β · log-ratio, detached) from summed response log-probabilities of shape (pairs,).

    ``ipo`` needs ``chosen_tokens`` and ``rejected_tokens`` (the responses' token counts) to
    average the log-probabilities per token."""
    if loss not in LOSSES:
        raise ValueError(f"unknown DPO loss {loss!r}: choose one of {', '.join(LOSSES)}")
    if loss == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss needs the responses' token counts")
        c, r = chosen_tokens.clamp(min=1), rejected_tokens.clamp(min=1)
        policy_chosen, ref_chosen = policy_chosen / c, ref_chosen / c
        policy_rejected, ref_rejected = policy_rejected / r, ref_rejected / r
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    h = chosen_ratio - rejected_ratio
    if loss == "sigmoid":
        losses = (-(1.0 - label_smoothing) * F.logsigmoid(beta * h)
                  - label_smoothing * F.logsigmoid(-beta * h))
    else:
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    return {"loss": losses, "chosen_rewards": (beta * chosen_ratio).detach(),
            "rejected_rewards": (beta * rejected_ratio).detach()}
