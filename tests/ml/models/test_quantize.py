"""A quantised base (QLoRA) on tiny models, on the CPU: bitsandbytes 0.50 runs its 4-bit and
8-bit layers here (slowly, dequantising as it goes), so everything a GPU user relies on is
checked in CI: loading, generation, a reward step, a PPO run, and that the adapters trained on
the quantised base are plain PEFT adapters for the full-precision base."""

from __future__ import annotations

import pytest
import torch
from reward.test_reward_train import FAST, make_workspace

from desktop_app.core.config import PPOConfig, RewardConfig, SamplingConfig
from desktop_app.core.data.store import Store
from desktop_app.ml.generation.sampling import sample_batch
from desktop_app.ml.models.device import DeviceChoice
from desktop_app.ml.models.loader import ModelLoadError, load_model
from desktop_app.ml.models.quantize import (
    QuantizationError,
    is_quantized,
    keep_plain_cpu_layout_where_packing_fails,
    quantization_of,
)
from desktop_app.ml.ppo.train import train_ppo
from desktop_app.ml.reward.model import RewardScorer, build_reward_model, load_tokenizer, rewards
from desktop_app.ml.reward.train import train_reward_model

pytest.importorskip("bitsandbytes")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning",
                                        "ignore:.*is_gradient_checkpointing:FutureWarning")
CPU = DeviceChoice("cpu", "float32")


def _quantised_linears(model) -> list[str]:
    import bitsandbytes as bnb
    return [n for n, m in model.named_modules()
            if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))]


def test_cpu_packing_is_left_to_bitsandbytes_only_where_it_works():
    """bitsandbytes' AVX512-BF16 repacking fails on layers narrower than a block (the tiny
    models' 48 inputs; seen on a CI-like machine): those keep the plain layout. Checked on
    plain layers flagged as bitsandbytes flags them, so it holds on any CPU."""
    import bitsandbytes as bnb
    layers = [bnb.nn.Linear4bit(48, 64), bnb.nn.Linear4bit(64, 48), bnb.nn.Linear4bit(128, 64)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = True
    keep_plain_cpu_layout_where_packing_fails(torch.nn.Sequential(*layers))
    assert [m.support_avx512bf16_for_cpu for m in layers] == [False, False, True]


@pytest.mark.parametrize("quantize", ["4bit", "8bit"])
def test_loading_quantises_the_block_linears_and_generates(llama_chat_dir, quantize):
    lm = load_model(llama_chat_dir, device="cpu", quantize=quantize)
    assert lm.quantize == quantize and is_quantized(lm.model)
    assert quantization_of(lm.model) == quantize
    quantised = _quantised_linears(lm.model)
    assert quantised and all(".layers." in n for n in quantised)  # not the LM head
    full = load_model(llama_chat_dir, device="cpu")
    assert lm.model.get_memory_footprint() < full.model.get_memory_footprint()
    from desktop_app.ml.generation.sampling import PromptInput
    cfg = SamplingConfig(max_new_tokens=6, batch_size=2)
    prompts = [PromptInput(prompt_id=i, text="The cat sat") for i in (1, 2)]
    samples = sample_batch(lm, prompts, 2, cfg, seed=0)
    assert len(samples) == 2 and all(len(s) == 2 for s in samples)


def test_unknown_quantisation_is_refused_naming_the_folder(llama_chat_dir):
    with pytest.raises(ModelLoadError, match="tiny-llama-chat.*3bit"):
        load_model(llama_chat_dir, device="cpu", quantize="3bit")


def test_missing_bitsandbytes_says_what_to_install(llama_chat_dir, monkeypatch):
    from desktop_app.ml.models import quantize
    monkeypatch.setattr(quantize, "bitsandbytes_available", lambda: False)
    with pytest.raises(QuantizationError, match=r"rlhf-desk\[quant\]"):
        quantize.check("4bit")
    with pytest.raises(ModelLoadError, match="bitsandbytes"):
        load_model(llama_chat_dir, device="cpu", quantize="4bit")


def test_a_reward_step_on_a_4bit_base_moves_the_adapter_and_head_only(llama_chat_dir):
    tokenizer = load_tokenizer(llama_chat_dir)
    torch.manual_seed(0)
    model = build_reward_model(llama_chat_dir, tokenizer, CPU, cfg=RewardConfig(lora_r=4),
                               trainable=True, quantize="4bit")
    assert _quantised_linears(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    optimiser = torch.optim.AdamW(trainable, lr=1e-2)
    batch = tokenizer(["the cat sat on the mat", "a dog ran"], return_tensors="pt",
                      padding=True)
    # A nonzero lora_B gradient needs lora_B != 0 first: two steps.
    for _ in range(2):
        loss = -torch.nn.functional.logsigmoid(rewards(model, batch)[0] - rewards(model, batch)[1])
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert any("lora_A" in n for n in moved) and any("lora_B" in n for n in moved)
    assert any("score" in n for n in moved)
    assert all("lora_" in n or "score" in n for n in moved), sorted(moved)[:5]


@pytest.mark.slow
def test_reward_and_ppo_train_on_a_4bit_base_and_the_adapters_load_on_full_precision(
        tmp_path, llama_chat_dir):
    ws = make_workspace(tmp_path / "ws", n_prompts=40)
    cfg = RewardConfig(**FAST, quantize="4bit", device="cpu")
    reward = train_reward_model(ws, cfg, base_model=str(llama_chat_dir))
    assert reward.status == "completed", reward.error
    # It learns the synthetic preference about as well as on the full-precision base (same
    # data, split and seed): 4-bit rounding of a frozen base costs little.
    full_run = train_reward_model(ws, RewardConfig(**FAST, device="cpu"),
                                  base_model=str(llama_chat_dir))
    print(f"\nvalidation accuracy: 4-bit {reward.val_accuracy:.3f}, full precision "
          f"{full_run.val_accuracy:.3f}")
    assert reward.val_accuracy >= 0.85
    assert reward.val_accuracy >= full_run.val_accuracy - 0.1
    with Store(ws.db_path) as store:
        assert store.get_run(reward.run_id).config["quantize"] == "4bit"

    # The adapter trained on the 4-bit base loads on the full-precision one, unchanged, and
    # scores close to the quantised model (the base differs only by 4-bit rounding).
    full = RewardScorer.load(llama_chat_dir, reward.artifact, device="cpu")
    quantised = RewardScorer.load(llama_chat_dir, reward.artifact, device="cpu",
                                  quantize="4bit")
    assert not is_quantized(full.model) and is_quantized(quantised.model)
    pair = {"prompt": "Question 1", "chosen": "the cat banana sat", "rejected": "the cat sat"}
    a, b = full.score_pairs([pair]), quantised.score_pairs([pair])
    assert a[0][0] - a[1][0] == pytest.approx(b[0][0] - b[1][0], abs=1.0)

    ppo = train_ppo(ws, PPOConfig(steps=2, batch_size=4, mini_batch_size=2, ppo_epochs=1,
                                  max_new_tokens=6, quantize="4bit", device="cpu"),
                    base_model=str(llama_chat_dir), reward_run_id=reward.run_id)
    assert ppo.status == "completed", ppo.error
    policy = load_model(llama_chat_dir, device="cpu", adapter=ppo.artifact)
    assert not is_quantized(policy.model) and policy.adapter == ppo.artifact
