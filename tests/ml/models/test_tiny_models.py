"""The in-process tiny models: tokenizer, one model per architecture, the demo training loop."""

from __future__ import annotations

import pytest
import torch

from desktop_app.core.events import Cancelled, Metric, Progress, StopToken
from desktop_app.ml.models.tiny import (
    ARCHITECTURES,
    CHAT_TEMPLATE,
    build_tiny_model,
    train_causal_lm,
)


def test_tokenizer_round_trips_any_text(plain_tokenizer):
    text = "The cat sat — on a mat ☂ that it had never seen before."
    ids = plain_tokenizer(text)["input_ids"]
    assert plain_tokenizer.decode(ids) == text  # byte level: nothing is unknown
    assert plain_tokenizer.eos_token == plain_tokenizer.bos_token == "<|endoftext|>"
    assert plain_tokenizer.pad_token == "<|pad|>"
    assert plain_tokenizer.pad_token_id != plain_tokenizer.eos_token_id
    assert len(plain_tokenizer) <= 320


def test_tokenizer_without_pad_token(chat_tokenizer):
    assert chat_tokenizer.pad_token is None
    assert chat_tokenizer.pad_token_id is None


def test_chat_template_renders_turns(chat_tokenizer):
    assert chat_tokenizer.chat_template == CHAT_TEMPLATE
    text = chat_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
         {"role": "user", "content": "Bye"}],
        add_generation_prompt=True, tokenize=False)
    assert text == "<|user|>Hi<|end|><|assistant|>Hello<|end|><|user|>Bye<|end|><|assistant|>"
    # Role markers are single special tokens, and decoding can drop them.
    ids = chat_tokenizer(text, add_special_tokens=False)["input_ids"]
    end_id = chat_tokenizer.convert_tokens_to_ids("<|end|>")
    assert ids.count(end_id) == 3
    assert chat_tokenizer.decode(ids, skip_special_tokens=True) == "HiHelloBye"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_build_every_architecture(arch, plain_tokenizer, tmp_path):
    model = build_tiny_model(arch, plain_tokenizer, tmp_path / arch, hidden=32, heads=2)
    assert model.config.vocab_size == len(plain_tokenizer)
    assert model.config.eos_token_id == plain_tokenizer.eos_token_id
    assert model.config.pad_token_id == plain_tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == plain_tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == plain_tokenizer.pad_token_id
    assert not model.training
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[5, 6, 7]])).logits
    assert logits.shape == (1, 3, len(plain_tokenizer))
    saved = {p.name for p in (tmp_path / arch).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= saved


def test_build_is_seeded(plain_tokenizer):
    a = build_tiny_model("llama", plain_tokenizer, seed=3, hidden=32, heads=2)
    b = build_tiny_model("llama", plain_tokenizer, seed=3, hidden=32, heads=2)
    c = build_tiny_model("llama", plain_tokenizer, seed=4, hidden=32, heads=2)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_chat_model_stops_at_end_of_turn(chat_tokenizer):
    model = build_tiny_model("gpt2", chat_tokenizer, hidden=32, heads=2)
    end_id = chat_tokenizer.convert_tokens_to_ids("<|end|>")
    assert end_id in model.generation_config.eos_token_id
    assert chat_tokenizer.eos_token_id in model.generation_config.eos_token_id
    assert model.config.pad_token_id is None


def test_unknown_architecture(plain_tokenizer):
    with pytest.raises(ValueError, match="bert"):
        build_tiny_model("bert", plain_tokenizer)


@pytest.mark.slow  # trains a model
def test_training_lowers_loss_and_learns_to_stop(chat_tokenizer):
    model = build_tiny_model("gpt2", chat_tokenizer, hidden=48, heads=2, layers=1)
    texts = [chat_tokenizer.apply_chat_template(
        [{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False)
        for q, a in [("hi", "hello"), ("bye", "see you"), ("cat?", "meow")]] * 4
    events = []
    # A generous time budget: max_steps must be what ends it, even on a busy machine.
    stats = train_causal_lm(model, chat_tokenizer, texts, seconds=600, max_steps=120,
                            batch_size=8, seq_len=32, lr=1e-2, emit=events.append)
    assert stats["steps"] == 120
    assert stats["loss_last"] < 0.5 * stats["loss_first"]
    assert not model.training
    assert any(isinstance(e, Progress) for e in events)
    assert any(isinstance(e, Metric) and e.name == "loss/train" for e in events)

    # The trained model answers and closes its turn with <|end|>.
    prompt = chat_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                                add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([chat_tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=10, pad_token_id=chat_tokenizer.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    end_id = chat_tokenizer.convert_tokens_to_ids("<|end|>")
    assert end_id in new
    assert chat_tokenizer.decode(new[:new.index(end_id)]) == "hello"


def test_training_stops_on_request(plain_tokenizer, corpus):
    model = build_tiny_model("gpt2", plain_tokenizer, hidden=32, heads=2)
    stop = StopToken()

    def emit(event):
        if isinstance(event, Progress) and event.done >= 11:
            stop.stop()

    with pytest.raises(Cancelled):
        train_causal_lm(model, plain_tokenizer, corpus, seconds=30, max_steps=1000,
                        batch_size=4, seq_len=16, emit=emit, stop=stop)
    assert not model.training


def test_training_respects_time_budget(plain_tokenizer, corpus):
    model = build_tiny_model("gpt2", plain_tokenizer, hidden=32, heads=2)
    stats = train_causal_lm(model, plain_tokenizer, corpus, seconds=0.0, max_steps=1000,
                            batch_size=4, seq_len=16)
    assert stats["steps"] == 1  # at least one step, however small the budget
