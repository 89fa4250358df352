"""DPO's arithmetic against values worked out by hand, and the response-only mask with and
without a chat template."""

from __future__ import annotations

import math

import pytest
import torch

from desktop_app.ml.dpo.data import PreferenceEncoder, collate
from desktop_app.ml.dpo.loss import dpo_losses, response_logps
from desktop_app.ml.reward.pairs import PairExample


def logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# ---- the losses ------------------------------------------------------------------------------

def test_sigmoid_loss_and_rewards_by_hand():
    # Policy/reference log-probs of (chosen, rejected) for two pairs.
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.0]), torch.tensor([-11.0, -4.0])
    out = dpo_losses(pc, pr, rc, rr, beta=0.5)
    # Pair 1: chosen ratio +1, rejected -1, h = 2: loss -log σ(1); rewards 0.5 and -0.5.
    # Pair 2: chosen ratio 0, rejected +1, h = -1: loss -log σ(-0.5); rewards 0 and 0.5.
    assert out["loss"].tolist() == pytest.approx([-logsigmoid(1.0), -logsigmoid(-0.5)])
    assert out["chosen_rewards"].tolist() == pytest.approx([0.5, 0.0])
    assert out["rejected_rewards"].tolist() == pytest.approx([-0.5, 0.5])


def test_label_smoothing_is_conservative_dpo():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-10.0, -12.0, -11.0, -11.0))
    eps = 0.2
    out = dpo_losses(pc, pr, rc, rr, beta=0.5, label_smoothing=eps)
    # h = 2, beta * h = 1: (1 - eps) of "chosen wins" and eps of "rejected wins".
    expected = -(1 - eps) * logsigmoid(1.0) - eps * logsigmoid(-1.0)
    assert out["loss"].item() == pytest.approx(expected)
    # Smoothing keeps the loss from going to 0 however far the pair is separated.
    far = dpo_losses(torch.tensor([0.0]), torch.tensor([-100.0]), torch.tensor([0.0]),
                     torch.tensor([0.0]), beta=0.5, label_smoothing=eps)
    assert far["loss"].item() == pytest.approx(eps * 50.0, rel=1e-3)


def test_ipo_averages_per_token_and_targets_half_over_beta():
    # Chosen: 4 tokens, log-ratio sum +2 -> +0.5 a token; rejected: 2 tokens, -1 -> -0.5.
    pc, pr = torch.tensor([-6.0]), torch.tensor([-5.0])
    rc, rr = torch.tensor([-8.0]), torch.tensor([-4.0])
    out = dpo_losses(pc, pr, rc, rr, beta=0.25, loss="ipo",
                     chosen_tokens=torch.tensor([4]), rejected_tokens=torch.tensor([2]))
    h = 0.5 - (-0.5)
    assert out["loss"].item() == pytest.approx((h - 1 / (2 * 0.25)) ** 2)  # (1 - 2)^2 = 1
    assert out["chosen_rewards"].item() == pytest.approx(0.25 * 0.5)
    # At h = 1 / (2 beta) the IPO loss is zero: it stops pushing there.
    at_target = dpo_losses(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                           torch.tensor([0.0]), beta=0.25, loss="ipo",
                           chosen_tokens=torch.tensor([1]), rejected_tokens=torch.tensor([1]))
    assert at_target["loss"].item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="token counts"):
        dpo_losses(pc, pr, rc, rr, beta=0.1, loss="ipo")


def test_the_gradient_pushes_chosen_up_and_rejected_down():
    pc = torch.tensor([-5.0], requires_grad=True)
    pr = torch.tensor([-5.0], requires_grad=True)
    out = dpo_losses(pc, pr, torch.tensor([-5.0]), torch.tensor([-5.0]), beta=0.1)
    out["loss"].sum().backward()
    # d/dpc = -beta * σ(-beta h) = -0.05 at h = 0; d/dpr = +0.05.
    assert pc.grad.item() == pytest.approx(-0.05) and pr.grad.item() == pytest.approx(0.05)


def test_response_logps_sums_masked_tokens_only():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[False, True, True]])
    total, count = response_logps(logits, labels, mask)
    assert total.item() == pytest.approx(math.log(0.8) + math.log(1 / 3))
    assert count.item() == 2


# ---- the response mask -----------------------------------------------------------------------

@pytest.fixture(params=["plain", "chat"])
def tokenizer(request, plain_tokenizer, chat_tokenizer):
    return {"plain": plain_tokenizer, "chat": chat_tokenizer}[request.param]


def test_the_mask_covers_the_response_exactly(tokenizer):
    tok = tokenizer
    encoder = PreferenceEncoder(tok, max_length=128)
    example = PairExample(1, 1, "Tell me about the sea.", None, "The sea is blue.",
                          "I do not know anything about it at all.", False)
    pair = encoder.encode(example)
    prompt = encoder.pairs.prompt_ids(example.prompt, None)
    templated = bool(getattr(tok, "chat_template", None))
    for ids, start, text in ((pair.chosen, pair.chosen_start, example.chosen),
                             (pair.rejected, pair.rejected_start, example.rejected)):
        assert ids[:start] == prompt  # the prompt, rendered as generation renders it
        response = tok.decode(ids[start:])
        assert response.startswith(text)
        # Closed the way the model closes its turn: the chat template's end of turn, or EOS.
        end = encoder.pairs.response_text(example.prompt, None, text)[len(text):]
        assert end.strip() and response.endswith(end.strip())
        assert (end.strip() != tok.eos_token) == templated
        assert "Tell me" not in response
    batch = collate([pair], tok.pad_token_id or tok.eos_token_id)
    mask = batch["loss_mask"]
    assert mask.shape == batch["input_ids"].shape
    # Chosen row: exactly its response tokens; rejected row likewise; no padding, no prompt.
    assert mask[0].nonzero().flatten().tolist() == list(range(pair.chosen_start,
                                                              len(pair.chosen)))
    assert mask[1].nonzero().flatten().tolist() == list(range(pair.rejected_start,
                                                              len(pair.rejected)))
    assert int(batch["first"]) == min(pair.chosen_start, pair.rejected_start)


def test_a_long_prompt_is_cut_from_the_left_and_the_response_kept(plain_tokenizer):
    encoder = PreferenceEncoder(plain_tokenizer, max_length=24)
    long_prompt = " ".join(["the cat sat on the mat"] * 20)
    example = PairExample(1, 1, long_prompt, None, "a dog ran", "red ball", False)
    pair = encoder.encode(example)
    assert pair.truncated and len(pair.chosen) == 24
    assert plain_tokenizer.decode(pair.chosen[pair.chosen_start:]).startswith("a dog ran")
