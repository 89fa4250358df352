"""Paired nucleus sampling: two responses per prompt, for side-by-side judgment.

The layers, bottom up, so PPO rollouts can reuse the lower ones:

    encode_prompt     prompt -> token ids (chat template when the tokenizer has one)
    generate_tokens   token ids -> one ``model.generate`` call, EOS found and masked on-device
    sample_batch      prompts -> decoded ``Sample`` rows
    generate_pairs    prompts -> batches of ``PairResult``, identical pairs retried, progress

Everything is seeded from one number, so a batch can be generated again exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from desktop_app.core.config import SamplingConfig
from desktop_app.core.events import Emit, Progress, StopToken, ignore
from desktop_app.ml.models.loader import LoadedModel


@dataclass
class PromptInput:
    prompt_id: int
    text: str
    messages: list[dict] | None = None  # a conversation to continue; ``text`` when None


@dataclass
class Sample:
    text: str
    prompt_tokens: int
    completion_tokens: int  # including the EOS token when finished
    finished: bool  # ended with an EOS token (rather than hitting max_new_tokens)
    seed: int  # the seed of the generate call that produced it
    row: int  # its row in that call's batch: (seed, batch, row) reproduces it


@dataclass
class PairResult:
    prompt_id: int
    a: Sample
    b: Sample
    identical: bool  # still identical after every retry
    attempts: int  # generate calls this pair took (1 = no retry)


@dataclass
class GeneratedTokens:
    """The raw result of one generate call, kept on the model's device for reuse (PPO).

    Row r belongs to prompt r // n_per_prompt. ``sequences`` is [left-padded prompt | completion];
    ``completion_mask`` marks completion tokens up to and including the first EOS."""

    sequences: torch.Tensor  # (rows, prompt_width + new_tokens)
    prompt_width: int
    prompt_lengths: list[int]  # per prompt, after truncation
    completion_mask: torch.Tensor  # (rows, new_tokens), bool
    completion_lengths: torch.Tensor  # (rows,), tokens including EOS
    text_lengths: torch.Tensor  # (rows,), tokens before EOS: what the reader sees
    finished: torch.Tensor  # (rows,), bool

    @property
    def completions(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_width:]


def plain_transcript(messages: list[dict]) -> str:
    """A conversation as plain text, ending where the assistant speaks next: what a model
    without a chat template is given (``PromptInput.text`` of a chat)."""
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(turns + ["Assistant:"])


def render_prompt(tokenizer, prompt: PromptInput) -> tuple[str, bool]:
    """The text the model sees, and whether it came from the chat template. A templated text
    already holds its special tokens, so it must be tokenized with add_special_tokens=False."""
    if getattr(tokenizer, "chat_template", None):
        messages = prompt.messages or [{"role": "user", "content": prompt.text}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text, True
    return prompt.text, False


# A token is rarely longer than a few characters, so a prompt's last ``max_tokens * 32``
# characters hold every token its budget can keep. Cutting the text to that before tokenising
# bounds the work: a 50 MB prompt would otherwise cost gigabytes to tokenise, only for all but
# its end to be dropped.
_CHARS_PER_TOKEN = 32
# The budget when the caller knows none (no position limit in the model's config).
MAX_PROMPT_TOKENS = 131_072


def encode_prompt(tokenizer, prompt: PromptInput, max_tokens: int | None = None) -> list[int]:
    """The prompt's token ids, at most ``max_tokens`` (the end is kept: it holds the question
    and the generation prompt)."""
    budget = max_tokens or MAX_PROMPT_TOKENS
    prompt = _clipped(prompt, budget * _CHARS_PER_TOKEN)
    text, templated = render_prompt(tokenizer, prompt)
    return encode_text(tokenizer, text, budget, special_tokens=not templated)


def encode_text(tokenizer, text: str, max_tokens: int | None = None,
                special_tokens: bool = True) -> list[int]:
    """A text's token ids as they are (no chat template), at most ``max_tokens``, the end
    kept; only the characters that can hold those tokens are tokenised."""
    budget = max_tokens or MAX_PROMPT_TOKENS
    text = text[-budget * _CHARS_PER_TOKEN:]
    return list(tokenizer(text, add_special_tokens=special_tokens)["input_ids"])[-budget:]


def _clipped(prompt: PromptInput, chars: int) -> PromptInput:
    """``prompt`` with its text and each message cut to their last ``chars`` characters, so
    rendering the chat template is bounded too."""
    if len(prompt.text) <= chars and all(len(m["content"]) <= chars
                                         for m in prompt.messages or ()):
        return prompt
    messages = ([{**m, "content": m["content"][-chars:]} for m in prompt.messages]
                if prompt.messages else prompt.messages)
    return dataclasses.replace(prompt, text=prompt.text[-chars:], messages=messages)


class _StopRequested:
    """A generate() stopping criterion that ends every row once the stop token is set, so a
    cancel does not wait for a long batch to finish (the partial batch is then discarded)."""

    def __init__(self, stop: StopToken):
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.stop.requested, dtype=torch.bool,
                          device=input_ids.device)


def generate_tokens(lm: LoadedModel, prompt_ids: list[list[int]], n_per_prompt: int,
                    cfg: SamplingConfig, seed: int,
                    stop: StopToken | None = None) -> GeneratedTokens:
    """One batched ``model.generate`` call: ``n_per_prompt`` sampled rows for each prompt.

    With ``stop``, a stop request cuts the call short: check ``stop.requested`` afterwards and
    do not use a cut-short result as if it were complete."""
    model, tokenizer = lm.model, lm.tokenizer
    pad_id = tokenizer.pad_token_id
    eos_ids = lm.eos_token_ids

    # 1. Keep the end of prompts that are too long, leaving room for the response.
    budget = _prompt_budget(model, cfg.max_new_tokens)
    # An empty prompt still needs one token to condition on.
    fallback = next(t for t in (tokenizer.bos_token_id, *eos_ids, pad_id) if t is not None)
    prompt_ids = [(ids[-budget:] if budget else ids) or [fallback] for ids in prompt_ids]

    # 2. Left padding: every prompt ends at the same column, where generation continues.
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, ids in enumerate(prompt_ids):
        input_ids[i, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, width - len(ids):] = 1
    device = model.device
    input_ids = input_ids.repeat_interleave(n_per_prompt, dim=0).to(device)
    attention_mask = attention_mask.repeat_interleave(n_per_prompt, dim=0).to(device)

    # 3. Sample. top_k=0 switches top-k off; leaving it unset would apply transformers' 50.
    torch.manual_seed(seed)
    with torch.inference_mode():
        sequences = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            do_sample=True,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            repetition_penalty=cfg.repetition_penalty,
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=eos_ids or None,
            stopping_criteria=[_StopRequested(stop)] if stop is not None else None,
        )
    # Inference tensors cannot enter autograd; PPO feeds these tokens to a trained policy.
    sequences = sequences.clone()

    # 4. Find each row's first EOS on the device; everything after it is padding.
    new = sequences[:, width:]
    steps = new.shape[1]
    if eos_ids:
        is_eos = torch.isin(new, torch.tensor(eos_ids, device=new.device))
    else:
        is_eos = torch.zeros_like(new, dtype=torch.bool)
    finished = is_eos.any(dim=1)
    first_eos = torch.where(finished, is_eos.int().argmax(dim=1), steps)
    completion_lengths = torch.where(finished, first_eos + 1, steps)
    positions = torch.arange(steps, device=new.device)
    completion_mask = positions[None, :] < completion_lengths[:, None]
    return GeneratedTokens(sequences=sequences, prompt_width=width,
                           prompt_lengths=[len(ids) for ids in prompt_ids],
                           completion_mask=completion_mask,
                           completion_lengths=completion_lengths, text_lengths=first_eos,
                           finished=finished)


def sample_batch(lm: LoadedModel, prompts: list[PromptInput], n_per_prompt: int,
                 cfg: SamplingConfig, seed: int,
                 stop: StopToken | None = None) -> list[list[Sample]]:
    """``n_per_prompt`` decoded samples for each prompt, from a single generate call."""
    if not prompts:
        return []
    budget = _prompt_budget(lm.model, cfg.max_new_tokens)
    prompt_ids = [encode_prompt(lm.tokenizer, p, budget) for p in prompts]
    out = generate_tokens(lm, prompt_ids, n_per_prompt, cfg, seed, stop)

    # One transfer to the CPU, then slicing and decoding in Python.
    rows = out.completions.tolist()
    text_lengths = out.text_lengths.tolist()
    completion_lengths = out.completion_lengths.tolist()
    finished = out.finished.tolist()
    texts = lm.tokenizer.batch_decode([row[:n] for row, n in zip(rows, text_lengths)],
                                      skip_special_tokens=True)
    samples = [Sample(text=texts[r], prompt_tokens=out.prompt_lengths[r // n_per_prompt],
                      completion_tokens=completion_lengths[r], finished=finished[r],
                      seed=seed, row=r)
               for r in range(len(rows))]
    return [samples[i * n_per_prompt:(i + 1) * n_per_prompt] for i in range(len(prompts))]


def generate_pairs(lm: LoadedModel, prompts: list[PromptInput], cfg: SamplingConfig, seed: int,
                   emit: Emit = ignore, stop: StopToken | None = None,
                   max_retries: int = 2, first_batch: int = 0) -> Iterator[list[PairResult]]:
    """Yield one list of pairs per batch of ``cfg.batch_size`` prompts, so the caller can store
    each batch as soon as it exists. A stop request ends the iteration between batches.
    ``first_batch`` numbers the first batch for its seed, for a caller that hands the prompts
    over a batch at a time and wants the seeds of one long call."""
    cfg.validate()
    total = len(prompts)
    done = 0
    emit(Progress(0, total, "Generating…", extra={"tokens_per_s": 0.0, "pairs": 0}))
    for batch_index, start in enumerate(range(0, total, cfg.batch_size), start=first_batch):
        if stop is not None and stop.requested:
            return
        batch = prompts[start:start + cfg.batch_size]
        started = time.perf_counter()

        # 1. Two responses per prompt, all prompts of the batch in one call (two calls when
        #    the tuned policy faces the base: response a is the policy's, b the base's).
        batch_seed = derive_seed(seed, batch_index, 0)
        results = [_pair(p, s, attempts=1)
                   for p, s in zip(batch, _two_samples(lm, batch, cfg, batch_seed, stop))]
        if stop is not None and stop.requested:
            return  # cut short mid-batch: these responses are incomplete, keep none of them
        tokens = sum(r.a.completion_tokens + r.b.completion_tokens for r in results)

        # 2. Identical pairs teach nothing; sample those prompts again with fresh seeds.
        for attempt in range(1, max_retries + 1):
            redo = [i for i, r in enumerate(results) if r.identical]
            if not redo:
                break
            retry_seed = derive_seed(seed, batch_index, attempt)
            again = _two_samples(lm, [batch[i] for i in redo], cfg, retry_seed, stop)
            if stop is not None and stop.requested:
                return
            for i, samples in zip(redo, again):
                results[i] = _pair(batch[i], samples, attempts=attempt + 1)
                tokens += samples[0].completion_tokens + samples[1].completion_tokens

        # 3. Report, then hand the batch over.
        done += len(batch)
        elapsed = max(time.perf_counter() - started, 1e-9)
        emit(Progress(done, total, "Generating…",
                      extra={"tokens_per_s": tokens / elapsed, "pairs": done}))
        yield results


def derive_seed(seed: int, batch_index: int, attempt: int) -> int:
    """A well-mixed seed per (run seed, batch, attempt): nearby run seeds must not replay each
    other's batches, as ``seed + batch_index`` would. 31 bits, so it fits any int column or
    spin box that shows it."""
    digest = hashlib.blake2b(f"{seed}:{batch_index}:{attempt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") >> 1


# ---- helpers ---------------------------------------------------------------------------------

def _two_samples(lm: LoadedModel, prompts: list[PromptInput], cfg: SamplingConfig, seed: int,
                 stop: StopToken | None) -> list[list[Sample]]:
    if not lm.versus_base:
        return sample_batch(lm, prompts, 2, cfg, seed, stop)
    tuned = sample_batch(lm, prompts, 1, cfg, seed, stop)
    with lm.model.disable_adapter():
        base = sample_batch(lm, prompts, 1, cfg, seed, stop)
    return [[t[0], b[0]] for t, b in zip(tuned, base)]


def _pair(prompt: PromptInput, samples: list[Sample], attempts: int) -> PairResult:
    a, b = samples
    return PairResult(prompt_id=prompt.prompt_id, a=a, b=b,
                      identical=a.text.strip() == b.text.strip(), attempts=attempts)


def _prompt_budget(model, max_new_tokens: int) -> int | None:
    """Longest prompt that leaves room for ``max_new_tokens`` in the model's positions."""
    config = model.config
    if hasattr(config, "get_text_config"):  # multimodal configs nest the language model's
        config = config.get_text_config()
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not limit:
        return None
    if max_new_tokens >= limit:
        raise ValueError(f"max_new_tokens = {max_new_tokens} leaves no room for the prompt: this "
                         f"model handles {limit} positions in all.")
    return limit - max_new_tokens
