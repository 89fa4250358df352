"""From judged pairs to token batches for DPO: prompt + response, and which tokens are the
response's.

    PreferenceEncoder   a PairExample -> chosen and rejected token ids, each with the index
                        where its response starts (the reward model's encoding: the prompt
                        rendered as generation renders it, through the chat template when
                        there is one, and the response closed the way the model closes its
                        turn, so the end-of-turn token is learnt too)
    collate             pairs -> one right-padded batch (every chosen row, then every rejected
                        one) with ``loss_mask``: True on response tokens only
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from desktop_app.ml.reward.data import PairEncoder, pad_rows
from desktop_app.ml.reward.pairs import PairExample


@dataclass(frozen=True)
class EncodedPreference:
    chosen: list[int]
    rejected: list[int]
    chosen_start: int    # index of the chosen row's first response token
    rejected_start: int
    truncated: bool      # the prompt (or a response's end) was cut to fit max_length


class PreferenceEncoder:
    """Token ids of prompt + response, at most ``max_length`` long, cut from the prompt's left
    so the response stays (a response that alone is too long loses its end)."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.pairs = PairEncoder(tokenizer, max_length)

    def encode_one(self, prompt: list[int], response: list[int]) -> tuple[list[int], int, bool]:
        ids, cut = self.pairs.fit(prompt, response)
        # Token 0 has nothing before it to be predicted from: a row that is all response
        # starts counting at 1.
        start = max(1, len(ids) - len(response))
        return ids, start, cut

    def encode(self, example: PairExample) -> EncodedPreference:
        head = self.pairs.prompt_ids(example.prompt, example.messages)
        tails = [self.pairs.response_text(example.prompt, example.messages, r)
                 for r in (example.chosen, example.rejected)]
        # add_special_tokens=False: the end-of-turn is in the text; a BOS belongs before the
        # prompt only.
        chosen_ids, rejected_ids = self.tokenizer(tails, add_special_tokens=False)["input_ids"]
        chosen, c_start, c_cut = self.encode_one(head, list(chosen_ids))
        rejected, r_start, r_cut = self.encode_one(head, list(rejected_ids))
        return EncodedPreference(chosen, rejected, c_start, r_start, c_cut or r_cut)


def collate(pairs: list[EncodedPreference], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows 0..n-1 the chosen responses, n..2n-1 the rejected ones, right-padded to this
    batch's longest row. ``loss_mask`` is True on each row's response tokens (never on the
    prompt or the padding); ``first`` is the earliest response start of the batch, so the
    logits before it need not be computed."""
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    starts = [p.chosen_start for p in pairs] + [p.rejected_start for p in pairs]
    input_ids, attention_mask = pad_rows(rows, pad_id)
    positions = torch.arange(input_ids.shape[1])
    loss_mask = (positions[None, :] >= torch.tensor(starts)[:, None]) & attention_mask.bool()
    return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask,
            "first": torch.tensor(min(starts))}
