"""Paired sampling on GPT-2 (plain prompts) and Llama (chat template)."""

from __future__ import annotations

import pytest
import torch

from desktop_app.core.config import SamplingConfig
from desktop_app.core.events import Progress, StopToken
from desktop_app.ml.generation import sampling
from desktop_app.ml.generation.sampling import (
    PromptInput,
    derive_seed,
    encode_prompt,
    generate_pairs,
    generate_tokens,
    render_prompt,
    sample_batch,
)
from desktop_app.ml.models.loader import load_model
from desktop_app.ml.models.tiny import build_tiny_model

PROMPTS = [
    PromptInput(10, "Hi"),
    PromptInput(11, "Write a short poem about the sea, the rain and a cat that sat on the mat."),
    PromptInput(12, "Paris is"),
    PromptInput(13, "Two plus two is four, and three plus three is"),
    PromptInput(14, "A dog"),
]


def cfg(**changes) -> SamplingConfig:
    return SamplingConfig(**{"max_new_tokens": 12, "batch_size": 2, **changes})


# ---- prompts ---------------------------------------------------------------------------------

def test_render_without_template_is_the_raw_text(gpt2_lm):
    assert render_prompt(gpt2_lm.tokenizer, PromptInput(1, "Hello")) == ("Hello", False)


def test_render_with_template(llama_lm):
    text, templated = render_prompt(llama_lm.tokenizer, PromptInput(1, "Hello"))
    assert templated and text == "<|user|>Hello<|end|><|assistant|>"
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                    {"role": "user", "content": "Again"}]
    text, _ = render_prompt(llama_lm.tokenizer, PromptInput(2, "ignored", messages=conversation))
    assert text == "<|user|>Hi<|end|><|assistant|>Yo<|end|><|user|>Again<|end|><|assistant|>"


class SpyTokenizer:
    """Records how it was asked to tokenize."""

    def __init__(self, inner):
        self.inner = inner
        self.chat_template = inner.chat_template
        self.calls = []

    def apply_chat_template(self, *args, **kwargs):
        return self.inner.apply_chat_template(*args, **kwargs)

    def __call__(self, text, **kwargs):
        self.calls.append(kwargs)
        return self.inner(text, **kwargs)


def test_templated_text_gets_no_extra_special_tokens(llama_lm, gpt2_lm):
    spy = SpyTokenizer(llama_lm.tokenizer)
    ids = encode_prompt(spy, PromptInput(1, "Hello"))
    assert spy.calls == [{"add_special_tokens": False}]
    assert ids[0] == llama_lm.tokenizer.convert_tokens_to_ids("<|user|>")
    spy = SpyTokenizer(gpt2_lm.tokenizer)
    encode_prompt(spy, PromptInput(1, "Hello"))
    assert spy.calls == [{"add_special_tokens": True}]


# ---- one batch -------------------------------------------------------------------------------

def test_sample_batch_shapes_and_counts(any_lm):
    settings = cfg(max_new_tokens=10)
    out = sample_batch(any_lm, PROMPTS[:3], 3, settings, seed=7)
    assert [len(samples) for samples in out] == [3, 3, 3]
    rows = [s.row for samples in out for s in samples]
    assert rows == list(range(9))  # prompt-major: row = prompt * n + k
    for prompt, samples in zip(PROMPTS[:3], out):
        expected_prompt_tokens = len(encode_prompt(any_lm.tokenizer, prompt))
        for s in samples:
            assert s.seed == 7
            assert s.prompt_tokens == expected_prompt_tokens
            assert 1 <= s.completion_tokens <= settings.max_new_tokens
            if not s.finished:
                assert s.completion_tokens == settings.max_new_tokens


def test_same_seed_same_samples(any_lm):
    first = sample_batch(any_lm, PROMPTS[:2], 2, cfg(), seed=3)
    again = sample_batch(any_lm, PROMPTS[:2], 2, cfg(), seed=3)
    other = sample_batch(any_lm, PROMPTS[:2], 2, cfg(), seed=4)
    texts = lambda out: [s.text for samples in out for s in samples]  # noqa: E731
    assert texts(first) == texts(again)
    assert texts(first) != texts(other)


def test_left_padding_does_not_change_a_prompt(any_lm):
    # top_k=1 makes sampling greedy, so a prompt must give the same tokens alone or padded
    # next to a longer one: the padding is masked and positions start at the first real token.
    greedy = cfg(top_k=1, max_new_tokens=8)
    short, long = PROMPTS[0], PROMPTS[1]
    alone = sample_batch(any_lm, [short], 1, greedy, seed=0)[0][0]
    batched = sample_batch(any_lm, [long, short], 1, greedy, seed=0)[1][0]
    long_alone = sample_batch(any_lm, [long], 1, greedy, seed=0)[0][0]
    assert batched.prompt_tokens < long_alone.prompt_tokens
    assert batched.text == alone.text
    assert batched.completion_tokens == alone.completion_tokens


def test_eos_masking_and_token_counts(any_lm, monkeypatch):
    # Make half the vocabulary end a response, so rows finish at different steps.
    eos_ids = list(range(0, len(any_lm.tokenizer), 2))
    monkeypatch.setattr(any_lm.model.generation_config, "eos_token_id", eos_ids)
    settings = cfg(max_new_tokens=6, temperature=1.5)
    ids = [encode_prompt(any_lm.tokenizer, p) for p in PROMPTS]
    out = generate_tokens(any_lm, ids, 4, settings, seed=1)
    eos = set(any_lm.eos_token_ids)
    finished = out.finished.tolist()
    assert any(finished)
    for tokens, length, mask, done in zip(out.completions.tolist(),
                                          out.completion_lengths.tolist(),
                                          out.completion_mask.tolist(), finished):
        assert sum(mask) == length and all(mask[:length])
        assert not any(t in eos for t in tokens[:length - 1])
        if done:
            assert tokens[length - 1] in eos
        else:
            assert length == settings.max_new_tokens
            assert not any(t in eos for t in tokens)
    samples = sample_batch(any_lm, PROMPTS, 4, settings, seed=1)
    flat = [s for group in samples for s in group]
    assert [s.completion_tokens for s in flat] == out.completion_lengths.tolist()
    assert [s.finished for s in flat] == finished


def test_empty_prompt_and_empty_batch(gpt2_lm):
    assert sample_batch(gpt2_lm, [], 2, cfg(), seed=0) == []
    (sample,) = sample_batch(gpt2_lm, [PromptInput(1, "")], 1, cfg(max_new_tokens=4), seed=0)[0]
    assert sample.prompt_tokens == 1  # conditioned on BOS
    assert list(generate_pairs(gpt2_lm, [], cfg(), seed=0)) == []


def test_long_prompts_are_cut_from_the_left(plain_tokenizer, tmp_path):
    build_tiny_model("gpt2", plain_tokenizer, tmp_path, hidden=32, heads=2, max_positions=32)
    lm = load_model(tmp_path, device="cpu")
    long_prompt = PromptInput(1, "the cat sat on the mat " * 40)
    assert len(encode_prompt(lm.tokenizer, long_prompt)) > 32
    sample = sample_batch(lm, [long_prompt, PromptInput(2, "Hi")], 1, cfg(max_new_tokens=8),
                          seed=0)[0][0]
    assert sample.prompt_tokens == 32 - 8  # learned positions would overflow otherwise
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample_batch(lm, [long_prompt], 1, cfg(max_new_tokens=32), seed=0)


def test_generate_gets_the_settings(gpt2_lm, monkeypatch):
    calls = []
    real_generate = gpt2_lm.model.generate

    def spy(**kwargs):
        calls.append(kwargs)
        return real_generate(**kwargs)

    monkeypatch.setattr(gpt2_lm.model, "generate", spy)
    settings = cfg(temperature=0.7, top_p=0.8, top_k=0, repetition_penalty=1.2, max_new_tokens=5)
    sample_batch(gpt2_lm, PROMPTS[:2], 2, settings, seed=0)
    (kwargs,) = calls
    assert kwargs["do_sample"] is True
    assert kwargs["top_k"] == 0  # off, not transformers' default of 50
    assert (kwargs["temperature"], kwargs["top_p"], kwargs["repetition_penalty"],
            kwargs["max_new_tokens"]) == (0.7, 0.8, 1.2, 5)
    assert kwargs["pad_token_id"] == gpt2_lm.tokenizer.pad_token_id
    assert kwargs["eos_token_id"] == gpt2_lm.eos_token_ids
    assert kwargs["input_ids"].shape[0] == 4
    assert kwargs["input_ids"][:, -1].ne(gpt2_lm.tokenizer.pad_token_id).all()  # left padded


# ---- pairs -----------------------------------------------------------------------------------

def test_generate_pairs_in_batches(any_lm):
    events = []
    batches = list(generate_pairs(any_lm, PROMPTS, cfg(), seed=5, emit=events.append))
    assert [len(b) for b in batches] == [2, 2, 1]
    pairs = [p for b in batches for p in b]
    assert [p.prompt_id for p in pairs] == [p.prompt_id for p in PROMPTS]
    for index, batch in enumerate(batches):
        for i, pair in enumerate(batch):
            if pair.attempts == 1:
                assert pair.a.seed == pair.b.seed == derive_seed(5, index, 0)
                assert (pair.a.row, pair.b.row) == (2 * i, 2 * i + 1)
            assert pair.a.prompt_tokens == pair.b.prompt_tokens
            assert pair.identical == (pair.a.text.strip() == pair.b.text.strip())

    progress = [e for e in events if isinstance(e, Progress)]
    assert [(p.done, p.total) for p in progress] == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert progress[-1].extra["pairs"] == 5
    assert all(p.extra["tokens_per_s"] > 0 for p in progress[1:])


def test_pairs_are_reproducible(llama_lm):
    texts = lambda: [(p.a.text, p.b.text)  # noqa: E731
                     for b in generate_pairs(llama_lm, PROMPTS, cfg(), seed=9) for p in b]
    assert texts() == texts()


def test_identical_pairs_are_retried_then_flagged(any_lm, monkeypatch):
    # Every token ends the response, so every response is empty and every pair identical.
    monkeypatch.setattr(any_lm.model.generation_config, "eos_token_id",
                        list(range(len(any_lm.tokenizer))))
    calls = []
    real = sampling.sample_batch
    monkeypatch.setattr(sampling, "sample_batch",
                        lambda *args: calls.append(args[4]) or real(*args))
    (batch,) = list(generate_pairs(any_lm, PROMPTS[:2], cfg(), seed=1, max_retries=2))
    assert calls == [derive_seed(1, 0, 0), derive_seed(1, 0, 1), derive_seed(1, 0, 2)]
    for pair in batch:
        assert pair.identical and pair.attempts == 3
        assert pair.a.text == "" and pair.a.finished and pair.a.completion_tokens == 1
        assert pair.a.seed == derive_seed(1, 0, 2)


def test_a_retry_that_differs_is_kept(gpt2_lm, monkeypatch):
    real = sampling.sample_batch
    calls = []

    def first_call_identical(lm, prompts, n, settings, seed, stop=None):
        out = real(lm, prompts, n, settings, seed, stop)
        calls.append([p.prompt_id for p in prompts])
        if len(calls) == 1:  # make the second prompt's pair identical
            out[1][1] = out[1][0]
        return out

    monkeypatch.setattr(sampling, "sample_batch", first_call_identical)
    (batch,) = list(generate_pairs(gpt2_lm, PROMPTS[:2], cfg(), seed=2))
    assert calls == [[10, 11], [11]]  # only the identical pair was sampled again
    assert batch[0].attempts == 1 and not batch[0].identical
    assert batch[1].attempts == 2 and not batch[1].identical
    assert batch[1].a.seed == derive_seed(2, 0, 1)


def test_stop_between_batches(gpt2_lm):
    stop = StopToken()
    batches = []
    for batch in generate_pairs(gpt2_lm, PROMPTS, cfg(), seed=0, stop=stop):
        batches.append(batch)
        stop.stop()  # e.g. the user pressed Stop while the first batch was being stored
    assert len(batches) == 1


def test_stop_before_anything(gpt2_lm):
    stop = StopToken()
    stop.stop()
    assert list(generate_pairs(gpt2_lm, PROMPTS, cfg(), seed=0, stop=stop)) == []


def test_invalid_settings_are_refused(gpt2_lm):
    with pytest.raises(ValueError, match="top_p"):
        next(generate_pairs(gpt2_lm, PROMPTS, cfg(top_p=1.5), seed=0))


def test_seeds_are_well_mixed():
    seeds = {derive_seed(s, b, a) for s in range(5) for b in range(5) for a in range(3)}
    assert len(seeds) == 75
    assert all(0 <= s < 2**31 for s in seeds)
    torch.manual_seed(max(seeds))  # torch accepts them


def test_generated_tokens_can_enter_autograd(llama_lm):
    # PPO reuses generate_tokens and then trains on the sequences it returns.
    ids = [encode_prompt(llama_lm.tokenizer, p) for p in PROMPTS[:2]]
    out = generate_tokens(llama_lm, ids, 2, cfg(max_new_tokens=4), seed=0)
    assert not out.sequences.is_inference()
    weight = llama_lm.model.get_input_embeddings().weight
    with torch.enable_grad():
        logits = torch.nn.functional.embedding(out.sequences, weight.detach().requires_grad_())
        logits.sum().backward()


def test_stop_cuts_a_long_batch_short_and_keeps_none_of_it(gpt2_lm, monkeypatch):
    """Cancel must not wait for max_new_tokens steps; the cut-short batch is discarded."""
    stop = StopToken()
    calls = []
    forward = gpt2_lm.model.forward

    def counting_forward(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            stop.stop()
        return forward(*args, **kwargs)

    monkeypatch.setattr(gpt2_lm.model, "forward", counting_forward)
    batches = list(generate_pairs(gpt2_lm, PROMPTS, cfg(max_new_tokens=200), seed=0, stop=stop))
    assert batches == []
    assert len(calls) < 10


@pytest.mark.parametrize("arch", ["qwen2", "gpt_neox", "opt"])
def test_pairs_from_other_architectures_loaded_from_disk(arch, corpus, tmp_path):
    """Any causal LM transformers supports: the path from folder to stored pair is the same.
    (GPT-2 and Llama are covered by every other test here.) No pad token on purpose."""
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    build_tiny_model(arch, train_tokenizer(corpus, vocab_size=300, pad_token=False),
                     tmp_path / arch, hidden=32, heads=2)
    lm = load_model(tmp_path / arch, device="cpu")
    (batch,) = list(generate_pairs(lm, PROMPTS[:3], cfg(max_new_tokens=6, batch_size=4), seed=1))
    assert len(batch) == 3
    for pair in batch:
        assert 1 <= pair.a.completion_tokens <= 6 and 1 <= pair.b.completion_tokens <= 6
        assert pair.a.prompt_tokens == pair.b.prompt_tokens > 0


def test_versus_base_pairs_one_tuned_and_one_base_response(gpt2_dir, gpt2_policy_dir, gpt2_lm,
                                                           tmp_path):
    """Next round, base against tuned: response a from the policy, b from the base, the same
    seed for both; one copy of the weights (the adapter is switched off for the base)."""
    from desktop_app.core.data.store import Store
    from desktop_app.ml.generation.pair_job import generate_pending_pairs

    lm = load_model(gpt2_dir, device="cpu", adapter=gpt2_policy_dir, versus_base=True)
    merged = load_model(gpt2_dir, device="cpu", adapter=gpt2_policy_dir)
    cfg = SamplingConfig(max_new_tokens=8, batch_size=4)
    prompts = [PromptInput(i, f"Tell me about the cat {i}") for i in range(4)]
    [pairs] = list(generate_pairs(lm, prompts, cfg, seed=5, max_retries=0))
    from desktop_app.ml.generation.sampling import derive_seed
    seed = derive_seed(5, 0, 0)
    base = [s[0].text for s in sample_batch(gpt2_lm, prompts, 1, cfg, seed)]
    tuned = [s[0].text for s in sample_batch(merged, prompts, 1, cfg, seed)]
    assert [p.b.text for p in pairs] == base
    # Merged and unmerged LoRA round differently; a near-tie token may differ, rarely.
    assert sum(p.a.text == t for p, t in zip(pairs, tuned)) >= 3
    assert base != tuned

    with Store(tmp_path / "rlhf.db") as store:
        store.add_prompts([p.text for p in prompts])
        generate_pending_pairs(store, lm, cfg, limit=4, seed=5)
        pair = store.next_pending()
        a = pair.left if pair.left_is_a else pair.right
        b = pair.right if pair.left_is_a else pair.left
        assert a["adapter"] == str(gpt2_policy_dir) and b["adapter"] is None


def test_a_huge_prompt_is_cut_before_it_is_tokenised(any_lm):
    """A 50 MB prompt once cost gigabytes to tokenise, only for all but its end to be dropped:
    only its last budget x 32 characters reach the tokenizer now."""
    from desktop_app.ml.generation.sampling import encode_prompt

    seen = []

    class Spy:
        def __init__(self, tokenizer):
            self.tokenizer = tokenizer
            self.chat_template = getattr(tokenizer, "chat_template", None)

        def apply_chat_template(self, *args, **kwargs):
            return self.tokenizer.apply_chat_template(*args, **kwargs)

        def __call__(self, text, **kwargs):
            seen.append(len(text))
            return self.tokenizer(text, **kwargs)

    huge = "tell me more " * 400_000 + "Final question?"
    ids = encode_prompt(Spy(any_lm.tokenizer), PromptInput(0, huge), max_tokens=50)
    assert 0 < len(ids) <= 50 and seen and max(seen) <= 50 * 32
    # The end is what is kept: it holds the question (and the generation prompt).
    assert "Final question?" in any_lm.tokenizer.decode(ids)
    # Generation goes through the same budget.
    rows = sample_batch(any_lm, [PromptInput(0, huge)], 1,
                        SamplingConfig(max_new_tokens=4), seed=0)
    assert rows[0][0].prompt_tokens <= any_lm.model.config.max_position_embeddings
