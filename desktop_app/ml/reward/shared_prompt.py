"""Rewards of chosen and rejected with their shared prompt computed once.

The two responses of a judged pair follow the same prompt, and a plain batch runs that prompt
through the model twice. Here the prompt goes through once (one row per pair), its KV cache is
repeated for the two responses, and each response runs on top of it:

    prefix rows   c_i[:k_i]                       k_i = the tokens chosen and rejected share,
    tail rows     c_i[k_i:], r_i[k_i:] per pair         less at least one of each response
    positions     a tail continues at k_i; padding between a prefix and its tail is masked

The rewards equal the plain batch's (the same attention over the same positions; float
rounding aside) and so do the gradients, which flow into the prefix through the cache. The
score is read where the sequence classifier reads it, at the last non-pad token of each row;
every tail holds a non-pad token, so that token is in the tail, as in the plain batch.

``pair_rewards`` falls back to the plain batch where the trick does not apply: a pair whose
responses share no prefix (a prompt cut to fit max_length, differently for each response), a
tail made only of pad tokens (a pad token standing in for EOS), or gradient
checkpointing (which turns the cache off).
"""

from __future__ import annotations

import torch

from desktop_app.ml.models.cache_kwarg import cache_kwarg
from desktop_app.ml.reward.data import EncodedPair, collate
from desktop_app.ml.reward.model import rewards


def shared_prefix(chosen: list[int], rejected: list[int]) -> int:
    """Tokens both start with, leaving at least one token of each as its tail."""
    k = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        k += 1
    return min(k, len(chosen) - 1, len(rejected) - 1)


def pair_rewards(model, pairs: list[EncodedPair], pad_id: int,
                 device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rewards of the chosen responses, of the rejected ones, tie flags), float32 on
    ``device``; the prompt of each pair computed once where that is possible."""
    batch = _shared_batch(model, pairs, pad_id)
    if batch is None:
        plain = {k: v.to(device, non_blocking=True)
                 for k, v in collate(pairs, pad_id).items()}
        r = rewards(model, plain)
        return r[:len(pairs)], r[len(pairs):], plain["tie"]
    prefix, prefix_mask, tails, tail_mask, positions, tie = (t.to(device) for t in batch)
    out = model(input_ids=prefix, attention_mask=prefix_mask, use_cache=True)
    cache = out["cache"] if "cache" in out else out["past_key_values"]  # transformers 5's name
    cache.batch_repeat_interleave(2)  # rows c_0, r_0, c_1, r_1, ... like the tails
    out = model(input_ids=tails, position_ids=positions, use_cache=True,
                attention_mask=torch.cat([prefix_mask.repeat_interleave(2, dim=0), tail_mask],
                                         dim=1),
                **{cache_kwarg(model): cache})
    r = out.logits[:, 0].float()
    return r[0::2], r[1::2], tie


def _shared_batch(model, pairs: list[EncodedPair], pad_id: int):
    """The prefix and tail tensors, or None when the plain batch must be used."""
    if _checkpointing(model):
        return None
    ks = [shared_prefix(p.chosen, p.rejected) for p in pairs]
    tails = [t for p, k in zip(pairs, ks) for t in (p.chosen[k:], p.rejected[k:])]
    if min(ks) < 1 or any(all(t == pad_id for t in tail) for tail in tails):
        return None
    n, width, tail_width = len(pairs), max(ks), max(len(t) for t in tails)
    prefix = torch.full((n, width), pad_id, dtype=torch.long)
    prefix_mask = torch.zeros((n, width), dtype=torch.long)
    for i, (p, k) in enumerate(zip(pairs, ks)):
        prefix[i, :k] = torch.tensor(p.chosen[:k], dtype=torch.long)
        prefix_mask[i, :k] = 1
    tail_ids = torch.full((2 * n, tail_width), pad_id, dtype=torch.long)
    tail_mask = torch.zeros((2 * n, tail_width), dtype=torch.long)
    for j, tail in enumerate(tails):
        tail_ids[j, :len(tail)] = torch.tensor(tail, dtype=torch.long)
        tail_mask[j, :len(tail)] = 1
    positions = (torch.tensor(ks).repeat_interleave(2)[:, None]
                 + torch.arange(tail_width)[None, :])
    tie = torch.tensor([p.tie for p in pairs], dtype=torch.bool)
    return prefix, prefix_mask, tail_ids, tail_mask, positions, tie


def _checkpointing(model) -> bool:
    """Whether the base recomputes activations (the name changed in transformers 5; the old
    one warns, so it is read only where the new one is missing)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    on = getattr(base, "is_activation_checkpointing", None)
    return bool(on if on is not None else getattr(base, "is_gradient_checkpointing", False))
