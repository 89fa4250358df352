"""Reward data: examples from store rows, the split by prompt, tokens and truncation, batches."""

from __future__ import annotations

import json

import torch

from desktop_app.ml.generation.sampling import PromptInput, encode_prompt
from desktop_app.ml.reward.data import EncodedPair, PairEncoder, collate
from desktop_app.ml.reward.pairs import (
    PairExample,
    Split,
    fingerprint,
    preference_examples,
    split_by_prompt,
)


def rows(n_prompts: int, per_prompt: int = 2, tie_every: int = 0) -> list[dict]:
    out = []
    for p in range(n_prompts):
        for _ in range(per_prompt):
            cid = len(out) + 1
            out.append({"comparison_id": cid, "prompt_id": 100 + p, "prompt": f"prompt {p}",
                        "prompt_messages": None, "chosen": f"good {cid}",
                        "rejected": f"bad {cid}", "tie": bool(tie_every and cid % tie_every == 0)})
    return out


def test_ties_kept_or_left_out():
    data = rows(5, tie_every=3)
    assert sum(e.tie for e in preference_examples(data, "equal")) == 3
    dropped = preference_examples(data, "drop")
    assert len(dropped) == len(data) - 3 and not any(e.tie for e in dropped)


def test_split_by_prompt_is_disjoint_seeded_and_sized():
    examples = preference_examples(rows(20, per_prompt=3), "equal")
    train, val = split_by_prompt(examples, 0.25, seed=1)
    train_prompts, val_prompts = {e.prompt_id for e in train}, {e.prompt_id for e in val}
    assert not train_prompts & val_prompts
    assert len(val_prompts) == 5 and len(train) + len(val) == len(examples)
    # Every pair of a prompt goes with it.
    assert all(len([e for e in val if e.prompt_id == p]) == 3 for p in val_prompts)
    assert split_by_prompt(examples, 0.25, seed=1) == (train, val)
    assert {e.prompt_id for e in split_by_prompt(examples, 0.25, seed=2)[1]} != val_prompts


def test_split_keeps_one_prompt_on_each_side():
    two = preference_examples(rows(2), "equal")
    train, val = split_by_prompt(two, 0.05, seed=0)
    assert len({e.prompt_id for e in val}) == 1 and len({e.prompt_id for e in train}) == 1
    train, val = split_by_prompt(two, 0.0, seed=0)
    assert val == [] and len(train) == 4
    one = preference_examples(rows(1), "equal")
    assert split_by_prompt(one, 0.5, seed=0) == (one, [])


def test_saved_split_selects_the_same_pairs_and_fingerprints_content(tmp_path):
    examples = preference_examples(rows(10), "equal")
    train, val = split_by_prompt(examples, 0.2, seed=0)
    split = Split.of(train, val)
    split.save(tmp_path / "split.json")
    assert json.loads((tmp_path / "split.json").read_text())["val"] == [e.comparison_id
                                                                        for e in val]
    # New judgments since: ignored.
    more = examples + preference_examples(
        [{**r, "comparison_id": r["comparison_id"] + 1000} for r in rows(3)], "equal")
    loaded = Split.load(tmp_path / "split.json")
    assert loaded.select(more) == (train, val)
    assert fingerprint(train + val) == loaded.digest
    # An edited judgment changes the fingerprint.
    edited = [PairExample(**{**e.__dict__, "chosen": "other"}) if e == train[0] else e
              for e in examples]
    assert fingerprint(sum(loaded.select(edited), [])) != loaded.digest


# ---- tokens ----------------------------------------------------------------------------------

def test_response_ends_with_eos_without_a_template(plain_tokenizer):
    encoder = PairEncoder(plain_tokenizer, 64)
    assert encoder.response_text("Hi", None, "Yo") == "Yo<|endoftext|>"
    (ids, cut), = encoder.encode_texts("Hi", None, ["Yo"])
    assert not cut
    assert ids[:len(encode_prompt(plain_tokenizer, PromptInput(0, "Hi")))] == \
        encode_prompt(plain_tokenizer, PromptInput(0, "Hi"))
    assert ids[-1] == plain_tokenizer.eos_token_id


def test_response_ends_the_turn_like_the_chat_template(chat_tokenizer):
    encoder = PairEncoder(chat_tokenizer, 64)
    assert encoder.response_text("Hi", None, "Yo") == "Yo<|end|>"
    (ids, _), = encoder.encode_texts("Hi", None, ["Yo"])
    assert chat_tokenizer.decode(ids) == "<|user|>Hi<|end|><|assistant|>Yo<|end|>"
    conversation = [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                    {"role": "user", "content": "C"}]
    (ids, _), = encoder.encode_texts("ignored", conversation, ["D"])
    assert chat_tokenizer.decode(ids) == \
        "<|user|>A<|end|><|assistant|>B<|end|><|user|>C<|end|><|assistant|>D<|end|>"


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_the_response(plain_tokenizer):
    long_prompt = "Please write a short poem about the sea. " * 10
    response = "The cat sat on the mat."
    response_ids = plain_tokenizer(response + "<|endoftext|>", add_special_tokens=False)[
        "input_ids"]
    encoder = PairEncoder(plain_tokenizer, 24)
    (ids, cut), = encoder.encode_texts(long_prompt, None, [response])
    assert cut and len(ids) == 24
    assert ids[-len(response_ids):] == response_ids  # the whole response survives
    prompt_ids = encode_prompt(plain_tokenizer, PromptInput(0, long_prompt))
    assert ids[:24 - len(response_ids)] == prompt_ids[-(24 - len(response_ids)):]  # its end

    # A response longer than max_length on its own keeps its beginning.
    short = PairEncoder(plain_tokenizer, 4)
    (ids, cut), = short.encode_texts("Hi", None, [response])
    assert cut and ids == response_ids[:4]


def test_truncated_pairs_are_flagged(plain_tokenizer):
    encoder = PairEncoder(plain_tokenizer, 16)
    short = PairExample(1, 1, "Hi", None, "Yo", "No", False)
    long = PairExample(2, 1, "Hi", None, "Yo", "The cat sat on the mat and looked at the rain.",
                       False)
    assert not encoder.encode_pair(short).truncated
    assert encoder.encode_pair(long).truncated


def test_collate_puts_chosen_then_rejected_in_one_right_padded_batch():
    pairs = [EncodedPair([1, 2, 3], [4], False, False), EncodedPair([5], [6, 7], True, False)]
    batch = collate(pairs, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [5, 0, 0], [4, 0, 0], [6, 7, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert batch["tie"].tolist() == [False, True]
    assert batch["input_ids"].dtype == torch.long
