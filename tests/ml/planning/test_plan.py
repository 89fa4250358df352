"""The memory planner: the model's sizes counted right, weights as transformers and
bitsandbytes store them, the verdict and the advice, `rlhf-desk plan`, and the trainers turning
gradient checkpointing on when only that makes a run fit. (How close the estimates come to
measured peaks is bench/bench_plan.py's job: it runs real jobs, minutes each.)"""

from __future__ import annotations

import json

import pytest
import torch

from desktop_app.cli import main
from desktop_app.core.config import PPOConfig, RewardConfig, SamplingConfig
from desktop_app.ml.planning import plan as planning
from desktop_app.ml.planning.estimate import Setup, weight_bytes
from desktop_app.ml.planning.plan import Job, needs_checkpointing, plan_job
from desktop_app.ml.planning.shape import ShapeError, model_shape

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning",
                                        "ignore:.*is_gradient_checkpointing:FutureWarning")


@pytest.mark.parametrize("fixture", ["gpt2_dir", "llama_chat_dir"])
def test_the_shape_counts_what_lora_and_quantisation_apply_to(request, fixture):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from desktop_app.ml.reward.model import _is_conv1d, lora_targets
    folder = request.getfixturevalue(fixture)
    shape = model_shape(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert shape.n_params == sum(p.numel() for p in model.parameters())
    targets = lora_targets(model, "all-linear")
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=targets,
                                            fan_in_fan_out=_is_conv1d(model, targets)))
    lora = sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n)
    assert lora == 4 * shape.lora_width  # exactly what all-linear LoRA of rank 4 adds


def test_weights_match_what_transformers_and_bitsandbytes_allocate(llama_chat_dir):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM

    from desktop_app.ml.models.quantize import load_kwargs
    shape = model_shape(llama_chat_dir)
    for quantize in ("none", "4bit", "8bit"):
        model = AutoModelForCausalLM.from_pretrained(
            llama_chat_dir, local_files_only=True, **load_kwargs(quantize, "cpu", torch.float32))
        measured = model.get_memory_footprint()
        estimate = weight_bytes(shape, Setup("cpu", "float32", quantize))
        assert estimate == pytest.approx(measured, rel=0.05), quantize


def test_a_missing_config_is_a_message_naming_the_folder(tmp_path):
    with pytest.raises(ShapeError, match=str(tmp_path)):
        model_shape(tmp_path)


def test_a_job_that_does_not_fit_says_so_with_advice_that_works(gpt2_dir, monkeypatch):
    job = Job("train-reward", str(gpt2_dir), RewardConfig(batch_size=64, max_length=1024,
                                                          device="cpu"))
    roomy = plan_job(job)
    assert roomy.fits and roomy.advice == []
    assert roomy.peak_bytes == sum(roomy.breakdown.values())
    assert set(roomy.breakdown) >= {"baseline", "weights", "adapters", "optimizer",
                                    "activations"}
    # Free memory just above the weights: the activations do not fit; checkpointing, a shorter
    # max length or smaller micro-batches would.
    tight = roomy.peak_bytes - roomy.breakdown["activations"] // 3
    monkeypatch.setattr("desktop_app.ml.models.device.available_memory_bytes",
                        lambda device: tight)
    plan = plan_job(job)
    assert not plan.fits and plan.available_bytes == tight
    assert plan.advice and "(fits)" in plan.advice[0]
    assert any("gradient checkpointing" in a for a in plan.advice)
    assert needs_checkpointing(job)
    assert not needs_checkpointing(Job("train-reward", str(gpt2_dir),
                                       RewardConfig(device="cpu", gradient_checkpointing=True)))


def test_ppo_and_generation_plans_grow_with_their_batches(llama_chat_dir):
    small = plan_job(Job("train-ppo", str(llama_chat_dir), PPOConfig(device="cpu")))
    big = plan_job(Job("train-ppo", str(llama_chat_dir),
                       PPOConfig(device="cpu", batch_size=64, mini_batch_size=64,
                                 max_new_tokens=512)))
    assert big.peak_bytes > small.peak_bytes
    gen = plan_job(Job("generate", str(llama_chat_dir), SamplingConfig(), device="cpu"))
    more = plan_job(Job("generate", str(llama_chat_dir), SamplingConfig(batch_size=64),
                        device="cpu"))
    assert more.breakdown["kv_cache"] == 8 * gen.breakdown["kv_cache"]


def test_cli_plan_prints_the_documented_json(tmp_path, gpt2_dir, capsys):
    ws = tmp_path / "ws"
    code = main(["--workspace", str(ws), "plan", "train-reward", "--model", str(gpt2_dir),
                 "--batch-size", "4", "--device", "cpu", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"peak_bytes", "device", "available_bytes", "fits", "breakdown", "advice"} <= set(data)
    assert data["device"] == "cpu" and data["fits"] is True
    assert data["peak_bytes"] == sum(data["breakdown"].values())

    code = main(["--workspace", str(ws), "plan", "generate", "--model", str(gpt2_dir),
                 "--quantize", "none", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "generate: Needs about" in out and "kv_cache" in out


def test_cli_plan_without_a_model_is_one_line(tmp_path, capsys):
    code = main(["--workspace", str(tmp_path / "ws"), "plan", "train-reward"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "--model" in err


@pytest.mark.slow
def test_a_trainer_turns_checkpointing_on_when_only_that_fits(tmp_path, gpt2_dir, monkeypatch):
    from reward.test_reward_train import FAST, make_workspace

    from desktop_app.core.data.store import Store
    from desktop_app.core.events import Log
    from desktop_app.ml.reward.train import train_reward_model
    ws = make_workspace(tmp_path / "ws", n_prompts=30)
    cfg = RewardConfig(**dict(FAST, epochs=0.5), device="cpu")
    with Store(ws.db_path) as store:
        job = Job("train-reward", str(gpt2_dir), RewardConfig(**dict(FAST), device="cpu"),
                  pair_tokens=planning.pair_tokens(store, str(gpt2_dir)))
    plan = plan_job(job)
    tight = plan.peak_bytes - plan.breakdown["activations"] // 4
    monkeypatch.setattr("desktop_app.ml.models.device.available_memory_bytes",
                        lambda device: tight)
    events = []
    result = train_reward_model(ws, cfg, base_model=str(gpt2_dir), emit=events.append)
    assert result.status == "completed"
    with Store(ws.db_path) as store:
        assert store.get_run(result.run_id).config["gradient_checkpointing"] is True
    assert any(isinstance(e, Log) and "checkpointing is on" in e.message for e in events)
