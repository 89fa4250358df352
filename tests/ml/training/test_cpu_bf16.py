"""bf16 on the CPU. A CPU with bf16 instructions (AVX512-BF16, AMX, Arm's BF16) multiplies bf16
3-4x faster than fp32, so "auto" picks it there, for loading and for training. The rest of the
suite pins fp32 (RLHF_DESK_CPU_BF16=0 in tests/conftest.py) so that its numbers do not depend on
the CPU; these tests force bf16 on, which works on any CPU (slowly without the instructions)."""

from __future__ import annotations

import pytest
import torch
from reward.test_reward_train import FAST, make_workspace

from desktop_app.core.config import PPOConfig, RewardConfig
from desktop_app.core.errors import UserError
from desktop_app.ml.models import device as device_module
from desktop_app.ml.models.device import CPU_BF16_ENV, cpu_has_fast_bf16, pick_device
from desktop_app.ml.models.loader import load_model
from desktop_app.ml.reward.train import RewardTrainer, train_reward_model
from desktop_app.ml.training.optim import resolve_precision

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setenv(CPU_BF16_ENV, "1")


def test_auto_follows_the_cpu_flags_and_the_override(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV)
    for flags, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(device_module, "_cpu_flags_say_bf16", lambda f=flags: f)
        assert cpu_has_fast_bf16() is flags
        assert pick_device("cpu", "auto").dtype == expected
        choice, autocast = resolve_precision(RewardConfig(device="cpu"))
        assert (choice.dtype, autocast) == (expected, torch.bfloat16 if flags else None)
    monkeypatch.setenv(CPU_BF16_ENV, "1")  # the override wins over the flags
    assert pick_device("cpu", "auto").dtype == "bfloat16"
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    monkeypatch.setattr(device_module, "_cpu_flags_say_bf16", lambda: True)
    assert pick_device("cpu", "auto").dtype == "float32"


def test_explicit_precisions_on_the_cpu():
    # bf16 may be asked for on any CPU; fp32 stays fp32 on a bf16 CPU; fp16 needs CUDA.
    choice, autocast = resolve_precision(RewardConfig(device="cpu", precision="bf16"))
    assert (choice.dtype, autocast) == ("bfloat16", torch.bfloat16)
    assert resolve_precision(RewardConfig(device="cpu", precision="fp32"))[1] is None
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        resolve_precision(RewardConfig(device="cpu", precision="fp16"))


def test_loading_on_a_bf16_cpu_gives_bf16_weights_that_generate(bf16_cpu, llama_chat_dir):
    from desktop_app.core.config import SamplingConfig
    from desktop_app.ml.generation.sampling import PromptInput, sample_batch

    lm = load_model(llama_chat_dir, device="cpu")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    cfg = SamplingConfig(max_new_tokens=8, batch_size=2)
    out = sample_batch(lm, [PromptInput(1, "Hello there")], 2, cfg, seed=0)
    assert len(out[0]) == 2 and all(s.completion_tokens > 0 for s in out[0])


@pytest.mark.slow
def test_reward_training_in_bf16_learns_with_fp32_master_weights(bf16_cpu, tmp_path, gpt2_dir,
                                                                 monkeypatch):
    seen = {}
    prepare = RewardTrainer.prepare

    def spy(self, *args, **kwargs):
        prepare(self, *args, **kwargs)
        seen["trainable"] = {p.dtype for p in self.model.parameters() if p.requires_grad}
        seen["frozen"] = {p.dtype for p in self.model.parameters() if not p.requires_grad}
        seen["autocast"] = self.autocast_dtype

    monkeypatch.setattr(RewardTrainer, "prepare", spy)
    ws = make_workspace(tmp_path / "ws")
    result = train_reward_model(ws, RewardConfig(**FAST), base_model=str(gpt2_dir))
    assert result.status == "completed", result.error
    assert seen == {"trainable": {torch.float32}, "frozen": {torch.bfloat16},
                    "autocast": torch.bfloat16}
    assert result.val_accuracy >= 0.9  # the synthetic preference, as in fp32


@pytest.mark.slow
def test_a_ppo_step_runs_in_bf16(bf16_cpu, tmp_path, gpt2_dir):
    from desktop_app.ml.ppo.train import train_ppo

    ws = make_workspace(tmp_path / "ws", n_prompts=20)
    reward = train_reward_model(ws, RewardConfig(**FAST | {"epochs": 1.0}),
                                base_model=str(gpt2_dir))
    result = train_ppo(ws, PPOConfig(steps=2, batch_size=4, mini_batch_size=2, ppo_epochs=1,
                                     max_new_tokens=8, sample_every=1),
                       base_model=str(gpt2_dir), reward_run_id=reward.run_id)
    assert result.status == "completed", result.error
    assert result.kl is not None and abs(result.kl) < 50
