"""The reward of chosen and rejected with their shared prompt run once equals the plain batch's,
and so do the gradients (the reward trainer relies on both)."""

from __future__ import annotations

import random

import pytest
import torch

from desktop_app.core.config import RewardConfig
from desktop_app.ml.models.device import DeviceChoice
from desktop_app.ml.reward import shared_prompt
from desktop_app.ml.reward.data import EncodedPair, PairEncoder
from desktop_app.ml.reward.model import build_reward_model, load_tokenizer
from desktop_app.ml.reward.pairs import PairExample
from desktop_app.ml.reward.shared_prompt import pair_rewards, shared_prefix

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
WORDS = "the cat sat on mat and looked at rain a dog".split()


def _pairs(tokenizer, n: int = 8, max_length: int = 256) -> list[EncodedPair]:
    rng = random.Random(0)
    encoder = PairEncoder(tokenizer, max_length)

    def words(lo, hi):
        return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))

    return [encoder.encode_pair(PairExample(i, i, words(1, 12), None, words(1, 9), words(1, 9),
                                            tie=i % 3 == 0)) for i in range(n)]


def _rewards_and_grads(model, pairs, pad_id, shared: bool, monkeypatch):
    if not shared:
        monkeypatch.setattr(shared_prompt, "_shared_batch", lambda *args: None)
    model.zero_grad()
    rc, rr, tie = pair_rewards(model, pairs, pad_id, "cpu")
    (torch.nn.functional.logsigmoid(rc - rr).sum() + rc.pow(2).sum()).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    monkeypatch.undo()
    return rc.detach(), rr.detach(), tie, grads


@pytest.mark.parametrize("folder", ["gpt2_dir", "llama_chat_dir"])  # learnt and rotary positions
def test_shared_prompt_gives_the_plain_batchs_rewards_and_gradients(folder, request, monkeypatch):
    path = request.getfixturevalue(folder)
    tokenizer = load_tokenizer(path)
    torch.manual_seed(0)
    model = build_reward_model(path, tokenizer, DeviceChoice("cpu", "float32"),
                               cfg=RewardConfig(lora_r=8), trainable=True, train_dropout=False)
    model.train()
    pairs = _pairs(tokenizer)
    assert shared_prompt._shared_batch(model, pairs, tokenizer.pad_token_id) is not None
    plain = _rewards_and_grads(model, pairs, tokenizer.pad_token_id, False, monkeypatch)
    shared = _rewards_and_grads(model, pairs, tokenizer.pad_token_id, True, monkeypatch)
    torch.testing.assert_close(shared[0], plain[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared[1], plain[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(shared[2], plain[2])
    torch.testing.assert_close(shared[3], plain[3], atol=1e-4, rtol=1e-4)
    assert plain[3].abs().max() > 0.1  # the gradients compared are not all zero


def test_where_the_trick_does_not_apply_the_plain_batch_is_used(gpt2_dir):
    tokenizer = load_tokenizer(gpt2_dir)
    model = build_reward_model(gpt2_dir, tokenizer, DeviceChoice("cpu", "float32"),
                               cfg=RewardConfig(lora_r=8))
    pad = tokenizer.pad_token_id
    assert shared_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert shared_prefix([1, 2, 3], [1, 2, 3]) == 2  # identical: each keeps its last token
    assert shared_prefix([5, 2], [1, 2]) == 0
    nothing_shared = [EncodedPair([5, 6, 7], [8, 6, 7], False, True)]
    assert shared_prompt._shared_batch(model, nothing_shared, pad) is None
    pad_tail = [EncodedPair([5, 6, pad], [5, 6, 7], False, False)]
    assert shared_prompt._shared_batch(model, pad_tail, pad) is None
    pairs = _pairs(tokenizer, 2)
    model.get_base_model().gradient_checkpointing_enable({"use_reentrant": False})
    assert shared_prompt._shared_batch(model, pairs, pad) is None
    rc, rr, _ = pair_rewards(model, pairs, pad, "cpu")  # the plain batch still scores them
    assert rc.shape == rr.shape == (2,)
