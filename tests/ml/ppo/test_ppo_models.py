"""One base model, four roles: the reward adapter scores as RewardScorer does, the reference is
the starting policy and stays so, only the policy and value weights train."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from desktop_app.core.config import RewardConfig
from desktop_app.ml.models.device import DeviceChoice
from desktop_app.ml.ppo.algorithm import logprobs_from_logits
from desktop_app.ml.ppo.models import (
    POLICY,
    REWARD,
    VALUE,
    LoraSpec,
    PPOModelError,
    build_ppo_models,
)
from desktop_app.ml.reward.model import RewardScorer, build_reward_model, load_tokenizer

pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # builds and runs policy and reward models

CPU = DeviceChoice("cpu", "float32")
SPEC = LoraSpec(r=4, alpha=8, dropout=0.0, target_modules="all-linear")
PROMPT = "Question 3: tell me about the cat"
RESPONSES = ["the cat sat on the mat", "a dog ran", "", "Paris is the capital of France."]


def make_reward_adapter(base: Path, out: Path, seed: int = 0) -> Path:
    """A reward adapter as training saves it, with random (non-zero) LoRA weights and head, so
    that scoring through it differs clearly from the base."""
    tokenizer = load_tokenizer(base)
    torch.manual_seed(seed)
    model = build_reward_model(base, tokenizer, CPU, cfg=RewardConfig(lora_r=4, lora_alpha=8))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "score" in name:
                p.normal_(0, 0.3)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=["gpt2", "llama", "gpt2_nopad"])
def setup(request, tmp_path_factory):
    base = request.getfixturevalue({"gpt2": "gpt2_dir", "llama": "llama_chat_dir",
                                    "gpt2_nopad": "gpt2_nopad_dir"}[request.param])
    adapter = make_reward_adapter(base, tmp_path_factory.mktemp(f"rw-{request.param}") / "a")
    return Path(base), adapter


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


def test_reward_in_ppo_equals_reward_scorer(setup):
    base, adapter = setup
    scorer = RewardScorer.load(base, adapter, device="cpu")
    expected = scorer.score(PROMPT, RESPONSES)
    models = build_ppo_models(base, adapter, CPU, SPEC)
    rows = [ids for ids, _ in scorer.encoder.encode_texts(PROMPT, None, RESPONSES)]
    ids, mask = left_pad(rows, scorer.tokenizer.pad_token_id)  # PPO rows are left-padded
    with torch.no_grad():
        got = models.scores(ids, mask)
    assert got.tolist() == pytest.approx(expected, abs=1e-4)
    assert len(set(round(x, 4) for x in expected)) > 1  # a real, non-constant reward model


def base_logprobs(base: Path, rows: list[list[int]], n_response: int) -> list[torch.Tensor]:
    """log p of each row's last ``n_response`` tokens under the plain base model, row by row
    (no padding at all)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base).eval()
    out = []
    with torch.no_grad():
        for row in rows:
            logits = model(input_ids=torch.tensor([row])).logits[0, -n_response - 1:-1]
            out.append(logprobs_from_logits(logits, torch.tensor(row[-n_response:])))
    return out


def test_reference_is_the_starting_policy_and_stays_so(setup):
    base, adapter = setup
    models = build_ppo_models(base, adapter, CPU, SPEC, seed=1)
    pad = models.tokenizer.pad_token_id
    rows = [[5, 6, 7, 8, 9, 10, 11], [7, 8, 9, 12, 13]]
    ids, mask = left_pad(rows, pad)
    n = 3
    expected = base_logprobs(base, rows, n)
    with torch.no_grad():
        ref = models.reference_logprobs(ids, mask, ids.shape[1] - n)
        policy = models.logprobs(POLICY, ids, mask, ids.shape[1] - n)[0]
        scores = models.scores(ids, mask)
    for i in range(len(rows)):
        torch.testing.assert_close(ref[i], expected[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(policy[i], expected[i], atol=1e-5, rtol=1e-5)  # LoRA B = 0

    # A few optimiser steps on the policy and value: the policy moves, the reference, the
    # reward model and the frozen base do not, and the frozen adapters stay frozen.
    names = [n for n, _ in models.trainable_parameters()]
    assert names and all(f".{POLICY}." in n or f".{VALUE}." in n or n.startswith("value_head")
                         for n in names)
    params = [p for _, p in models.trainable_parameters()]
    frozen_before = {n: p.detach().clone() for n, p in models.peft.named_parameters()
                     if not p.requires_grad}
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(3):
        logp, _ = models.logprobs(POLICY, ids, mask, ids.shape[1] - n)
        values = models.values(ids, mask, ids.shape[1] - n)
        loss = -logp.sum() + (values ** 2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert [n for n, _ in models.trainable_parameters()] == names
    with torch.no_grad():
        ref_after = models.reference_logprobs(ids, mask, ids.shape[1] - n)
        policy_after = models.logprobs(POLICY, ids, mask, ids.shape[1] - n)[0]
        scores_after = models.scores(ids, mask)
    torch.testing.assert_close(ref_after, ref)
    torch.testing.assert_close(scores_after, scores)
    assert (policy_after - policy).abs().max() > 1e-2
    assert (policy_after.sum(1) > policy.sum(1)).all()  # the update did what the loss asked
    for name, p in models.peft.named_parameters():
        if name in frozen_before:
            assert torch.equal(p, frozen_before[name]), name


def test_value_model_starts_as_the_reward_model(setup):
    base, adapter = setup
    models = build_ppo_models(base, adapter, CPU, SPEC)
    ids, mask = left_pad([[5, 6, 7, 8, 9]], models.tokenizer.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(models.hidden_states(VALUE, ids, mask),
                                   models.hidden_states(REWARD, ids, mask))
        assert not torch.allclose(models.hidden_states(VALUE, ids, mask),
                                  models.hidden_states(None, ids, mask))
    torch.testing.assert_close(models.value_head.weight, models.reward_head.weight)
    assert models.value_head.weight.requires_grad and not models.reward_head.weight.requires_grad
    assert models.value_head.weight.data_ptr() != models.reward_head.weight.data_ptr()


def test_starting_from_an_adapter_makes_a_frozen_copy_the_reference(tmp_path, gpt2_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reward = make_reward_adapter(gpt2_dir, tmp_path / "reward")
    # A "fine-tuned" starting policy: a PPO policy adapter with random weights, saved.
    first = build_ppo_models(gpt2_dir, reward, CPU, SPEC, seed=3)
    with torch.no_grad():
        for name, p in first.peft.named_parameters():
            if f"lora_B.{POLICY}" in name:
                p.normal_(0, 0.3)
    first.save_adapter(POLICY, tmp_path / "start", tokenizer=True)

    models = build_ppo_models(gpt2_dir, reward, CPU, SPEC, policy_adapter=tmp_path / "start")
    assert models.reference == "reference"
    rows = [[5, 6, 7, 8, 9, 10]]
    ids, mask = left_pad(rows, models.tokenizer.pad_token_id)
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(gpt2_dir),
                                      tmp_path / "start").eval()
    with torch.no_grad():
        expected = logprobs_from_logits(plain(input_ids=ids).logits[0, -4:-1], ids[0, -3:])
        ref = models.reference_logprobs(ids, mask, 3)[0]
        policy = models.logprobs(POLICY, ids, mask, 3)[0][0]
        bare = models.logprobs(None, ids, mask, 3)[0][0]
    torch.testing.assert_close(ref, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(policy, expected, atol=1e-5, rtol=1e-5)
    assert (bare - expected).abs().max() > 1e-3  # adapters off would be the wrong reference

    params = [p for _, p in models.trainable_parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    models.logprobs(POLICY, ids, mask, 3)[0].sum().neg().backward()
    optimizer.step()
    with torch.no_grad():
        torch.testing.assert_close(models.reference_logprobs(ids, mask, 3)[0], expected,
                                   atol=1e-5, rtol=1e-5)
        assert (models.logprobs(POLICY, ids, mask, 3)[0][0] - expected).abs().max() > 1e-3


def test_a_reward_adapter_of_another_model_is_refused(tmp_path, gpt2_dir, llama_chat_dir):
    reward = make_reward_adapter(llama_chat_dir, tmp_path / "reward")
    with pytest.raises(PPOModelError, match="does not fit this base model"):
        build_ppo_models(gpt2_dir, reward, CPU, SPEC)
    with pytest.raises(PPOModelError, match="not a reward adapter folder"):
        build_ppo_models(gpt2_dir, tmp_path, CPU, SPEC)
