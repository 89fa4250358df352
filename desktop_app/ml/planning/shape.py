"""The sizes a memory plan needs, read off a model folder without loading its weights: the
model is built on the meta device (no memory), and its layers are counted.

Counting the built model rather than reading config keys keeps this right for every
architecture transformers knows: fused or separate q/k/v, gated or plain MLPs, tied or
separate LM heads, grouped-query attention."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from desktop_app.core.errors import UserError


class ShapeError(UserError):
    """The model's config cannot be sized; the message names the folder."""


@dataclass(frozen=True)
class ModelShape:
    n_params: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    block_linear_params: int  # weights of the linear layers inside the blocks: what 8/4-bit
    #                           quantisation and LoRA ("all-linear") apply to
    largest_linear_params: int  # the biggest of them: bitsandbytes' CPU path dequantises one
    lora_width: int  # sum of (in + out) over the block linears: LoRA of rank r has r × this
    lm_head_params: int  # 0 when tied to the input embeddings

    @property
    def other_params(self) -> int:
        """Embeddings, norms, biases, the LM head: never quantised."""
        return self.n_params - self.block_linear_params

    @property
    def kv_width(self) -> int:
        """Keys plus values per token per layer, in elements."""
        return 2 * self.kv_heads * self.head_dim


def model_shape(folder: str | Path, trust_remote_code: bool = False) -> ModelShape:
    """The shape of the causal LM in ``folder`` (cached per folder and config.json version)."""
    path = Path(folder).expanduser().resolve()
    try:
        stamp = (path / "config.json").stat().st_mtime_ns
    except OSError as exc:
        raise ShapeError(f"{path} is not a model folder: no config.json.") from exc
    return _shape(str(path), stamp, trust_remote_code)


@functools.lru_cache(maxsize=32)
def _shape(path: str, _stamp: int, trust_remote_code: bool) -> ModelShape:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    from desktop_app.ml.models.stack import building_a_model, import_stack

    import_stack()
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True,
                                            trust_remote_code=trust_remote_code)
        with building_a_model(), torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShapeError(f"{path} cannot be sized from its config: {text}") from exc

    n_params = sum(p.numel() for p in model.parameters())
    block: list[tuple[int, int]] = []  # (in, out) of each linear inside a block
    for name, module in model.named_modules():
        # Blocks sit in a ModuleList, so their paths have a numeric part: model.layers.3.mlp...
        if not re.search(r"\.\d+\.", f".{name}."):
            continue
        if isinstance(module, torch.nn.Linear):
            block.append((module.in_features, module.out_features))
        elif isinstance(module, Conv1D):  # GPT-2 stores its linears transposed
            n_in, n_out = module.weight.shape
            block.append((n_in, n_out))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(_first(text, "hidden_size", "n_embd", "d_model"))
    heads = int(_first(text, "num_attention_heads", "n_head"))
    layers = int(_first(text, "num_hidden_layers", "n_layer", "num_layers"))
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    intermediate = int(_first(text, "intermediate_size", "n_inner", "ffn_dim", default=0)
                       or 4 * hidden)
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    return ModelShape(
        n_params=n_params, layers=layers, hidden=hidden, intermediate=intermediate,
        heads=heads, kv_heads=kv_heads, head_dim=head_dim,
        vocab=int(model.get_input_embeddings().weight.shape[0]),
        block_linear_params=sum(i * o for i, o in block),
        largest_linear_params=max((i * o for i, o in block), default=0),
        lora_width=sum(i + o for i, o in block),
        lm_head_params=0 if tied or head is None else head.weight.numel())


def _first(config, *names: str, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    if default is not None:
        return default
    raise ShapeError(f"the model's config has none of {', '.join(names)}")
