"""inspect_model_folder: cheap checks that refuse what we cannot use, in one plain sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from desktop_app.ml.models.folder_check import (
    MEMORY_OVERHEAD_FACTOR,
    ModelFolderError,
    display_name,
    inspect_model_folder,
)
from desktop_app.ml.models.tiny import ARCHITECTURES, build_tiny_model


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


# ---- what a good folder reports ---------------------------------------------------------------

def test_describes_a_gpt2_folder(gpt2_dir, gpt2_lm):
    info = inspect_model_folder(gpt2_dir)
    assert info.path == str(gpt2_dir.resolve())
    assert info.name == "tiny-gpt2"
    assert info.model_type == "gpt2"
    assert info.architecture == "GPT2LMHeadModel"
    assert info.weight_files == ["model.safetensors"]
    assert info.weights_dtype == "float32"
    assert info.has_tokenizer and not info.has_chat_template and not info.needs_remote_code
    assert info.n_params == sum(p.numel() for p in gpt2_lm.model.parameters())
    assert info.describe() == (f"GPT2LMHeadModel · {info.n_params / 1e3:.1f} K parameters · "
                               "chat template: no")


def test_sees_the_chat_template(llama_chat_dir):
    info = inspect_model_folder(llama_chat_dir)
    assert info.architecture == "LlamaForCausalLM"
    assert info.has_chat_template
    assert info.describe().endswith("chat template: yes")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_count_matches_the_model(arch, plain_tokenizer, tmp_path):
    model = build_tiny_model(arch, plain_tokenizer, tmp_path, hidden=32, heads=2)
    assert inspect_model_folder(tmp_path).n_params == sum(p.numel() for p in model.parameters())


def test_sharded_safetensors(gpt2_lm, tmp_path):
    gpt2_lm.model.save_pretrained(tmp_path, max_shard_size="50KB")
    gpt2_lm.tokenizer.save_pretrained(tmp_path)
    info = inspect_model_folder(tmp_path)
    assert len(info.weight_files) > 1
    assert all(f.startswith("model-") for f in info.weight_files)
    assert info.n_params == sum(p.numel() for p in gpt2_lm.model.parameters())


def test_pytorch_bin_weights_are_counted_on_meta_device(gpt2_dir, gpt2_lm, tmp_path):
    folder = copy_model(gpt2_dir, tmp_path / "bin")
    (folder / "model.safetensors").unlink()
    torch.save(gpt2_lm.model.state_dict(), folder / "pytorch_model.bin")
    info = inspect_model_folder(folder)
    assert info.weight_files == ["pytorch_model.bin"]
    assert info.n_params == sum(p.numel() for p in gpt2_lm.model.parameters())


def test_stored_causal_mask_buffers_are_not_parameters(gpt2_dir, tmp_path):
    # Old GPT-2 checkpoints store a 4-D "attn.bias" mask per layer; it is not a parameter.
    folder = copy_model(gpt2_dir, tmp_path / "old-gpt2")
    expected = inspect_model_folder(folder).n_params
    tensors = load_file(folder / "model.safetensors")
    tensors["transformer.h.0.attn.bias"] = torch.ones(1, 1, 64, 64)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    assert inspect_model_folder(folder).n_params == expected


def test_memory_estimate(gpt2_dir):
    info = inspect_model_folder(gpt2_dir)
    assert info.memory_bytes("float32") == int(info.n_params * 4 * MEMORY_OVERHEAD_FACTOR)
    assert info.memory_bytes("bfloat16") == int(info.n_params * 2 * MEMORY_OVERHEAD_FACTOR)
    assert info.memory_bytes("float16") == info.memory_bytes("bfloat16")
    with pytest.raises(ValueError):
        info.memory_bytes("int3")


def test_name_of_a_hub_cache_snapshot(gpt2_dir, tmp_path):
    snapshot = tmp_path / "models--someone--tiny-gpt2" / "snapshots" / "0123abcd"
    copy_model(gpt2_dir, snapshot)
    assert display_name(snapshot) == "someone/tiny-gpt2"
    assert inspect_model_folder(snapshot).name == "someone/tiny-gpt2"


# ---- what it refuses ---------------------------------------------------------------------------

def refuses(path, *words, trust_remote_code=False) -> str:
    with pytest.raises(ModelFolderError) as caught:
        inspect_model_folder(path, trust_remote_code=trust_remote_code)
    message = str(caught.value)
    assert str(path) in message, message  # names the folder
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message
    return message


def test_missing_folder(tmp_path):
    refuses(tmp_path / "nope", "does not exist")


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    refuses(tmp_path / "weights.bin", "not a folder")


def test_no_config(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    refuses(tmp_path, "not a model folder", "config.json")


def test_adapter_folder_is_named_as_such(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    refuses(tmp_path, "adapter")


def test_invalid_config(gpt2_dir, tmp_path):
    folder = copy_model(gpt2_dir, tmp_path / "bad")
    (folder / "config.json").write_text("{ not json")
    refuses(folder, "config.json", "not valid JSON")


def test_config_of_unknown_type(gpt2_dir, tmp_path):
    folder = copy_model(gpt2_dir, tmp_path / "alien")
    edit_config(folder, model_type="no-such-model", architectures=["AlienForCausalLM"])
    refuses(folder, "'no-such-model'", "does not know")
    edit_config(folder, model_type="")
    refuses(folder, "no model_type")


def test_no_weights(gpt2_dir, tmp_path):
    folder = copy_model(gpt2_dir, tmp_path / "empty")
    (folder / "model.safetensors").unlink()
    refuses(folder, "no weights")


def test_missing_shard(gpt2_lm, tmp_path):
    gpt2_lm.model.save_pretrained(tmp_path, max_shard_size="50KB")
    gpt2_lm.tokenizer.save_pretrained(tmp_path)
    sorted(tmp_path.glob("model-*.safetensors"))[-1].unlink()
    refuses(tmp_path, "missing")


def test_no_tokenizer(gpt2_dir, tmp_path):
    folder = copy_model(gpt2_dir, tmp_path / "notok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    refuses(folder, "no tokenizer")


def test_encoder_only_bert(plain_tokenizer, tmp_path):
    from transformers import BertConfig, BertForMaskedLM, BertModel

    config = BertConfig(vocab_size=len(plain_tokenizer), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    for model_class in (BertForMaskedLM, BertModel):
        folder = tmp_path / model_class.__name__
        model_class(config).save_pretrained(folder)
        plain_tokenizer.save_pretrained(folder)
        refuses(folder, "not a causal language model")


def test_bert_config_with_causal_head_class_is_still_refused(plain_tokenizer, tmp_path):
    # BertLMHeadModel is in transformers' causal-LM mapping, but a BERT trained as an encoder
    # (is_decoder false) is not one.
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=len(plain_tokenizer), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    BertForMaskedLM(config).save_pretrained(tmp_path)
    plain_tokenizer.save_pretrained(tmp_path)
    edit_config(tmp_path, architectures=["BertLMHeadModel"])
    refuses(tmp_path, "encoder-only")


def test_encoder_decoder_t5(plain_tokenizer, tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(plain_tokenizer), d_model=32, d_ff=64, d_kv=8,
                      num_layers=1, num_heads=2, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    plain_tokenizer.save_pretrained(tmp_path)
    refuses(tmp_path, "encoder-decoder")


def test_custom_code_needs_explicit_trust(gpt2_dir, tmp_path):
    folder = copy_model(gpt2_dir, tmp_path / "custom")
    edit_config(folder, auto_map={"AutoModelForCausalLM": "modeling_custom.CustomLM"})
    refuses(folder, "remote code")
    # With the user's consent it is inspected (no custom code runs to read safetensors headers).
    info = inspect_model_folder(folder, trust_remote_code=True)
    assert info.needs_remote_code
    assert info.n_params > 0


def test_custom_code_without_a_causal_lm_class(gpt2_dir, tmp_path):
    folder = copy_model(gpt2_dir, tmp_path / "custom-encoder")
    edit_config(folder, auto_map={"AutoModel": "modeling_custom.CustomEncoder"})
    refuses(folder, "AutoModelForCausalLM", trust_remote_code=True)


def test_corrupt_safetensors_header(gpt2_dir, tmp_path):
    folder = copy_model(gpt2_dir, tmp_path / "corrupt")
    (folder / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{{{{{")
    refuses(folder, "safetensors")
