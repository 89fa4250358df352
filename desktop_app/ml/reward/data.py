"""From judgments in the store to padded token batches for the reward model.

(The torch-free half, judgments to ``PairExample``s and the split by prompt, is reward_pairs.)

    PairEncoder          prompt + response -> token ids, the prompt rendered like generation
    collate              pairs -> one right-padded batch: every chosen row, then every rejected

The reward model reads the same text the policy writes: the prompt goes through
``sampling.render_prompt`` (the chat template when the tokenizer has one) and the response ends
the way the model ends its turn, so the score is taken on the token that closes the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from desktop_app.ml.generation.sampling import PromptInput, encode_prompt, render_prompt
from desktop_app.ml.reward.pairs import PairExample

# ---- tokens ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncodedPair:
    chosen: list[int]
    rejected: list[int]
    tie: bool
    truncated: bool  # the prompt (or the end of a response) was cut to fit max_length


class PairEncoder:
    """Token ids of prompt + response, at most ``max_length`` long, cut so the response stays."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.templated = bool(getattr(tokenizer, "chat_template", None))
        self._prompts: dict[tuple, list[int]] = {}

    def prompt_ids(self, prompt: str, messages: list | None) -> list[int]:
        key = (prompt, json.dumps(messages) if messages else None)
        if key not in self._prompts:
            self._prompts[key] = encode_prompt(self.tokenizer, PromptInput(0, prompt, messages),
                                               self.max_length)
        return self._prompts[key]

    def response_text(self, prompt: str, messages: list | None, response: str) -> str:
        """The response as the model writes it, end-of-turn included.

        With a chat template: the template's text for the conversation with this answer, minus
        the generation prompt (so whatever the template closes a turn with is kept). Without one,
        or when the template rewrites earlier turns: the response and the EOS token."""
        eos = self.tokenizer.eos_token or ""
        if not self.templated:
            return response + eos
        conversation = list(messages or [{"role": "user", "content": prompt}])
        prefix, _ = render_prompt(self.tokenizer, PromptInput(0, prompt, messages))
        full = self.tokenizer.apply_chat_template(
            conversation + [{"role": "assistant", "content": response}], tokenize=False)
        return full[len(prefix):] if full.startswith(prefix) else response + eos

    def encode_texts(self, prompt: str, messages: list | None,
                     responses: list[str]) -> list[tuple[list[int], bool]]:
        """(ids, truncated) for each response to one prompt."""
        head = self.prompt_ids(prompt, messages)
        tails = [self.response_text(prompt, messages, r) for r in responses]
        # add_special_tokens=False: the EOS or end-of-turn is already in the text, and a BOS
        # belongs before the prompt only.
        tail_ids = self.tokenizer(tails, add_special_tokens=False)["input_ids"]
        return [self.fit(head, list(ids)) for ids in tail_ids]

    def encode_pair(self, example: PairExample) -> EncodedPair:
        (chosen, cut_c), (rejected, cut_r) = self.encode_texts(
            example.prompt, example.messages, [example.chosen, example.rejected])
        return EncodedPair(chosen, rejected, example.tie, cut_c or cut_r)

    def fit(self, prompt: list[int], response: list[int]) -> tuple[list[int], bool]:
        """Cut the prompt from the left so the response fits; a response that alone is too long
        loses its end (and the whole prompt)."""
        limit = self.max_length
        if len(prompt) + len(response) <= limit:
            return prompt + response, False
        if len(response) >= limit:
            return response[:limit], True
        return prompt[len(prompt) - (limit - len(response)):] + response, True


def collate(pairs: list[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch for one forward pass: rows 0..n-1 are the chosen responses, n..2n-1 the
    rejected ones, right-padded to the longest row of this batch (dynamic padding)."""
    input_ids, attention_mask = pad_rows([p.chosen for p in pairs] + [p.rejected for p in pairs],
                                         pad_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "tie": torch.tensor([p.tie for p in pairs], dtype=torch.bool)}


def pad_rows(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right padding: the classifier reads each row at its last non-pad token."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, :len(row)] = 1
    return input_ids, attention_mask
