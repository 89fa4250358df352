"""RLOO's and GRPO's advantages, as pure tensor functions.

Rewards come as one flat tensor of ``prompts * k`` rows, the k responses to each prompt next to
each other (the order ``generate_tokens`` returns them in). Each response's advantage is its
sequence-level reward measured against the other responses to the same prompt, so no value
model is needed:

    rloo  (Ahmadian et al., 2024)   A_i = r_i - mean_{j != i} r_j
                                        = k / (k - 1) * (r_i - mean_j r_j)
    grpo  (Shao et al., 2024)       A_i = (r_i - mean_j r_j) / (std_j r_j + eps)

The leave-one-out baseline is unbiased (it does not use r_i itself); GRPO's division makes the
update's size independent of the reward's scale, and gives 0 to a group whose rewards are all
equal.
"""

from __future__ import annotations

import torch

ADVANTAGES = ("rloo", "grpo")
GRPO_EPS = 1e-4  # TRL's: keeps a group with (almost) equal rewards from blowing up


def grouped(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """(prompts, k) view of the flat rewards."""
    if k < 2 or rewards.numel() % k:
        raise ValueError(f"{rewards.numel()} rewards do not form groups of k = {k} (k >= 2)")
    return rewards.view(-1, k)


def leave_one_out(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Each reward minus the mean of the other k - 1 rewards of its group (flat, like the
    input)."""
    groups = grouped(rewards, k)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)
    return (groups - others).reshape(-1)


def group_normalised(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Each reward minus its group's mean, divided by its group's standard deviation."""
    groups = grouped(rewards, k)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)
    return ((groups - mean) / (std + GRPO_EPS)).reshape(-1)


def advantages(rewards: torch.Tensor, k: int, kind: str = "rloo") -> torch.Tensor:
    if kind == "rloo":
        return leave_one_out(rewards, k)
    if kind == "grpo":
        return group_normalised(rewards, k)
    raise ValueError(f"unknown advantage {kind!r}: choose one of {', '.join(ADVANTAGES)}")


def group_spread(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """The mean over groups of the standard deviation of rewards within a group: how much the
    k responses to a prompt differ. Near 0, the advantages are near 0 and nothing is learnt."""
    return grouped(rewards, k).std(dim=1).mean()
