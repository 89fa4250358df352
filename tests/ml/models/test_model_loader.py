"""load_model and pick_device: stages, pad tokens, EOS sets, and errors a user can act on."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from desktop_app.core.events import Cancelled, Progress, StopToken
from desktop_app.ml.models import loader as model_loader
from desktop_app.ml.models.device import DeviceChoice, available_memory_bytes, pick_device
from desktop_app.ml.models.loader import LoadedModel, ModelLoadError, load_model

# ---- devices ---------------------------------------------------------------------------------

no_accelerator = pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="machine has a GPU")


@no_accelerator
def test_auto_picks_cpu_fp32_without_a_gpu():
    choice = pick_device()
    assert choice == DeviceChoice("cpu", "float32")
    assert choice.torch_dtype is torch.float32
    assert choice.label() == "CPU fp32"


def test_explicit_choices_override():
    assert pick_device("cpu", "bf16") == DeviceChoice("cpu", "bfloat16")
    assert pick_device("CPU", "float16").torch_dtype is torch.float16
    assert pick_device("cpu", "bfloat16").label() == "CPU bf16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_unavailable_device_is_refused():
    with pytest.raises(ValueError, match="CUDA"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="CUDA"):
        pick_device("cuda:1", "float16")


def test_unknown_device_or_dtype():
    with pytest.raises(ValueError, match="tpu"):
        pick_device("tpu")
    with pytest.raises(ValueError, match="int4"):
        pick_device("cpu", "int4")


def test_cpu_memory_is_known():
    assert available_memory_bytes("cpu") > 0


# ---- loading ---------------------------------------------------------------------------------

def test_loads_gpt2_with_its_pad_token(gpt2_dir):
    events = []
    lm = load_model(gpt2_dir, device="cpu", emit=events.append)
    assert isinstance(lm, LoadedModel)
    assert lm.path == str(gpt2_dir.resolve()) and lm.adapter is None
    assert lm.device == DeviceChoice("cpu", "float32")
    assert lm.info.architecture == "GPT2LMHeadModel"
    assert not lm.model.training
    assert lm.model.dtype == torch.float32
    assert lm.tokenizer.padding_side == "left"
    assert lm.tokenizer.pad_token == "<|pad|>"
    assert lm.model.generation_config.pad_token_id == lm.tokenizer.pad_token_id
    assert lm.eos_token_ids == [lm.tokenizer.eos_token_id]

    # Stages are reported in order, each out of the same total, ending complete.
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.done for p in progress] == list(range(len(progress)))
    assert {p.total for p in progress} == {len(progress) - 1}
    messages = [p.message for p in progress]
    assert messages[:5] == ["Reading config", "Checking memory", "Loading tokenizer",
                            "Loading weights", "Moving to cpu"]


def test_loads_gpt2_without_pad_token_reusing_eos(gpt2_nopad_dir):
    lm = load_model(gpt2_nopad_dir, device="cpu")
    assert lm.tokenizer.pad_token == lm.tokenizer.eos_token == "<|endoftext|>"
    assert lm.tokenizer.pad_token_id == lm.tokenizer.eos_token_id
    # No new token, so no embedding resize.
    assert len(lm.tokenizer) == lm.model.get_input_embeddings().weight.shape[0]


def test_loads_llama_with_chat_template_and_no_pad(llama_chat_dir):
    lm = load_model(llama_chat_dir, device="cpu", dtype="bfloat16")
    assert lm.info.has_chat_template and lm.tokenizer.chat_template
    assert lm.model.dtype == torch.bfloat16
    assert lm.device.label() == "CPU bf16"
    assert lm.tokenizer.pad_token_id == lm.tokenizer.eos_token_id
    assert len(lm.tokenizer) == lm.model.config.vocab_size
    # Both the tokenizer's EOS and the end-of-turn token from the generation config end a response.
    end_id = lm.tokenizer.convert_tokens_to_ids("<|end|>")
    assert sorted(lm.eos_token_ids) == sorted({end_id, lm.tokenizer.eos_token_id})


def test_eos_ids_are_a_union_without_duplicates(gpt2_lm, monkeypatch):
    eos = gpt2_lm.tokenizer.eos_token_id
    monkeypatch.setattr(gpt2_lm.model.generation_config, "eos_token_id", [eos, 7, 7])
    assert gpt2_lm.eos_token_ids == [eos, 7]
    monkeypatch.setattr(gpt2_lm.model.generation_config, "eos_token_id", None)
    assert gpt2_lm.eos_token_ids == [eos]


# ---- stopping --------------------------------------------------------------------------------

def test_stop_before_start(gpt2_dir):
    stop = StopToken()
    stop.stop()
    with pytest.raises(Cancelled):
        load_model(gpt2_dir, device="cpu", stop=stop)


def test_stop_between_stages(gpt2_dir, monkeypatch):
    stop = StopToken()
    seen = []

    def emit(event):
        seen.append(event.message)
        if event.message == "Loading tokenizer":
            stop.stop()

    def must_not_run(*args):
        raise AssertionError("weights loaded after a stop request")

    monkeypatch.setattr(model_loader, "_load_weights", must_not_run)
    with pytest.raises(Cancelled):
        load_model(gpt2_dir, device="cpu", emit=emit, stop=stop)
    assert seen[-1] == "Loading tokenizer"


# ---- errors ----------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_unavailable_device_is_a_load_error(gpt2_dir):
    with pytest.raises(ModelLoadError, match="CUDA") as caught:
        load_model(gpt2_dir, device="cuda")
    assert str(gpt2_dir) in str(caught.value)


def test_folder_problems_become_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json") as caught:
        load_model(tmp_path, device="cpu")
    assert str(tmp_path) in str(caught.value)


def test_refuses_a_model_that_cannot_fit(gpt2_dir, monkeypatch):
    monkeypatch.setattr(model_loader, "available_memory_bytes", lambda device: 1000)
    with pytest.raises(ModelLoadError) as caught:
        load_model(gpt2_dir, device="cpu")
    message = str(caught.value)
    assert str(gpt2_dir) in message and "MiB" in message
    assert "smaller dtype" in message and "another device" in message and "smaller model" in message


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
])
def test_out_of_memory_gives_advice(gpt2_dir, monkeypatch, error):
    def explode(*args):
        raise error

    monkeypatch.setattr(model_loader, "_load_weights", explode)
    with pytest.raises(ModelLoadError, match="does not fit in memory.*smaller dtype") as caught:
        load_model(gpt2_dir, device="cpu")
    assert str(gpt2_dir) in str(caught.value)


def test_broken_weights_name_the_folder_without_a_traceback(gpt2_dir, tmp_path):
    # A valid header but truncated data: inspection (headers only) passes, loading fails.
    folder = tmp_path / "truncated"
    shutil.copytree(gpt2_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    weights.write_bytes(data[:8 + header_len + 16])
    with pytest.raises(ModelLoadError) as caught:
        load_model(folder, device="cpu")
    message = str(caught.value)
    assert message.startswith(f"Could not load the weights in {folder}: ")
    assert "Traceback" not in message and "\n" not in message


def test_mismatched_tokenizer_file_is_a_load_error(gpt2_dir, tmp_path):
    folder = tmp_path / "badtok"
    shutil.copytree(gpt2_dir, folder)
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": "nonsense"}))
    with pytest.raises(ModelLoadError, match="Could not load the tokenizer in") as caught:
        load_model(folder, device="cpu")
    assert str(folder) in str(caught.value)


def test_adapter_is_merged_and_recorded(gpt2_dir, tmp_path):
    """A tuned policy (PEFT adapter) loads merged into the base: same outputs as PeftModel."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(gpt2_dir, local_files_only=True)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["c_attn"],
                                                 fan_in_fan_out=True))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)   # B starts at zero: make the adapter matter
    peft_model.save_pretrained(tmp_path / "policy")

    lm = load_model(gpt2_dir, device="cpu", adapter=tmp_path / "policy")
    assert lm.adapter == str(tmp_path / "policy")
    ids = torch.tensor([[5, 6, 7, 8]])
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(gpt2_dir, local_files_only=True), tmp_path / "policy")
    plain = load_model(gpt2_dir, device="cpu")
    with torch.no_grad():
        merged, expected, untuned = (m(input_ids=ids).logits
                                     for m in (lm.model, reference.eval(), plain.model))
    assert torch.allclose(merged, expected, atol=1e-4)
    assert not torch.allclose(merged, untuned, atol=1e-3)


def test_a_broken_adapter_is_a_clear_error(gpt2_dir, tmp_path):
    (tmp_path / "policy").mkdir()
    with pytest.raises(ModelLoadError, match="adapter"):
        load_model(gpt2_dir, device="cpu", adapter=tmp_path / "policy")
