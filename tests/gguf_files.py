"""GGUF files written in-process from a tiny model, for tests and benches: no downloads.

``write_gguf(model, tokenizer, path)`` writes what llama.cpp's converter (convert_hf_to_gguf.py)
would for a Llama checkpoint: F32 tensors under llama.cpp's names, the query and key weights
permuted the way llama.cpp wants them (transformers undoes it on load: LlamaTensorProcessor in
transformers/modeling_gguf_pytorch_utils.py), and the tokenizer as metadata (a byte-level BPE
vocabulary, its merges, the special tokens and the chat template).

``architecture`` overrides ``general.architecture`` (a name transformers cannot read, for the
refusal tests); ``truncate_gguf`` and ``not_gguf`` make the other broken files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# llama.cpp's token types (gguf.TokenType): a special token is CONTROL, the rest NORMAL.
_NORMAL, _CONTROL = 1, 3


def write_gguf(model, tokenizer, path: str | Path, *, architecture: str = "llama",
               name: str = "tiny llama") -> Path:
    """``model``: a transformers LlamaForCausalLM; ``tokenizer``: its byte-level BPE tokenizer
    (``desktop_app.ml.models.tiny.train_tokenizer``)."""
    import gguf

    path = Path(path)
    config = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    # 1. The shape, under the architecture's own keys (llama.block_count, …).
    head_dim = config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)

    # 2. The tokenizer.
    _add_tokenizer(writer, model, tokenizer)

    # 3. The weights, in torch's (out, in) order: the writer stores dimensions reversed, as ggml
    #    wants them, and transformers reverses them back.
    for gguf_name, tensor in _llama_tensors(model):
        writer.add_tensor(gguf_name, np.ascontiguousarray(tensor, dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tokenizer(writer, model, tokenizer) -> None:
    vocab_size = model.config.vocab_size
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")  # byte-level BPE, GPT-2 style
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([_CONTROL if i in special else _NORMAL for i in range(vocab_size)])
    model_json = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m)
                             for m in model_json["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    # A chat model's turns end on their own token: llama.cpp calls it end-of-turn (EOT).
    eos = model.generation_config.eos_token_id
    for token_id in eos if isinstance(eos, list) else [eos]:
        if token_id is not None and token_id != tokenizer.eos_token_id:
            writer.add_eot_token_id(int(token_id))
            break
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _llama_tensors(model):
    """(llama.cpp name, array) for every weight of a LlamaForCausalLM."""
    config = model.config
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    yield "token_embd.weight", state["model.embed_tokens.weight"]
    for i in range(config.num_hidden_layers):
        layer = f"model.layers.{i}."
        q = state[layer + "self_attn.q_proj.weight"]
        k = state[layer + "self_attn.k_proj.weight"]
        yield f"blk.{i}.attn_q.weight", permute(q, config.num_attention_heads,
                                                config.num_attention_heads)
        yield f"blk.{i}.attn_k.weight", permute(k, config.num_attention_heads,
                                                config.num_key_value_heads)
        yield f"blk.{i}.attn_v.weight", state[layer + "self_attn.v_proj.weight"]
        yield f"blk.{i}.attn_output.weight", state[layer + "self_attn.o_proj.weight"]
        yield f"blk.{i}.ffn_gate.weight", state[layer + "mlp.gate_proj.weight"]
        yield f"blk.{i}.ffn_up.weight", state[layer + "mlp.up_proj.weight"]
        yield f"blk.{i}.ffn_down.weight", state[layer + "mlp.down_proj.weight"]
        yield f"blk.{i}.attn_norm.weight", state[layer + "input_layernorm.weight"]
        yield f"blk.{i}.ffn_norm.weight", state[layer + "post_attention_layernorm.weight"]
    yield "output_norm.weight", state["model.norm.weight"]
    if not config.tie_word_embeddings:
        yield "output.weight", state["lm_head.weight"]


def permute(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """llama.cpp's reordering of the query/key rows (convert_hf_to_gguf.py, LlamaModel.permute):
    its rotary embedding pairs neighbouring values, Hugging Face's the two halves of a head."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def truncate_gguf(source: Path, target: Path, keep: float = 0.6) -> Path:
    """A copy of ``source`` cut off part way through its tensor data (an interrupted download)."""
    data = Path(source).read_bytes()
    Path(target).write_bytes(data[:int(len(data) * keep)])
    return Path(target)


def not_gguf(target: Path) -> Path:
    """A file named .gguf that is something else (here a JSON document)."""
    Path(target).write_text('{"model": "not really"}\n', encoding="utf-8")
    return Path(target)
