"""A quantised base model (QLoRA): the frozen base weights stored in 8 or 4 bits through
bitsandbytes, with LoRA adapters and heads trained on top in full precision.

One choice, ``quantize`` in ("none", "8bit", "4bit"), applies to the one shared base of every
job: generation, the reward model, PPO's policy/value/reward adapters and evaluation.

- 4-bit is NF4 with double quantisation (the QLoRA recipe); its matmuls compute in the
  precision setting's dtype (bf16/fp16 on a GPU, fp32 on the CPU).
- 8-bit is LLM.int8().
- Only the linear layers inside the transformer blocks are quantised: the embeddings, the
  final norm, the LM head and any score/value head stay at the base dtype (transformers skips
  the output layer itself; ``_SKIP`` adds the heads of the reward model), so a trained head and
  the adapters are ordinary PEFT weights, loadable on the full-precision base.

A quantised model is placed on its device while it loads (``device_map``): bitsandbytes
weights are not moved with ``.to`` afterwards (8-bit refuses it outright).

bitsandbytes is an optional dependency (the ``quant`` extra); asking for 8/4-bit without it
is a ``QuantizationError`` that says what to install.
"""

from __future__ import annotations

from typing import Any

from desktop_app.core.config import QUANTIZE_CHOICES as CHOICES
from desktop_app.core.errors import UserError

LABELS = {"none": "none (full precision)", "8bit": "8-bit (LLM.int8)", "4bit": "4-bit NF4 (QLoRA)"}

# Heads that must stay trainable full-precision linears (the reward model's score head).
_SKIP = ["score", "classifier", "lm_head", "v_head"]


class QuantizationError(UserError):
    """The requested quantisation cannot be used here; the message says why."""


def check(quantize: str) -> None:
    """Raise QuantizationError unless ``quantize`` is a choice this installation can honour."""
    if quantize not in CHOICES:
        raise QuantizationError(f"Unknown quantisation {quantize!r}: choose "
                                f"{', '.join(CHOICES)}.")
    if quantize != "none" and not bitsandbytes_available():
        raise QuantizationError(f"{LABELS[quantize]} needs the bitsandbytes package: "
                                "pip install 'rlhf-desk[quant]' (or choose quantize = none).")


def bitsandbytes_available() -> bool:
    from importlib.util import find_spec

    return find_spec("bitsandbytes") is not None


def load_kwargs(quantize: str, device: str, torch_dtype) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained``: the dtype alone for a full-precision base;
    for a quantised one also the bitsandbytes config and the device to load onto."""
    check(quantize)
    if quantize == "none":
        return {"dtype": torch_dtype}
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch_dtype,
                                    llm_int8_skip_modules=_SKIP)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=_SKIP)
    return {"dtype": torch_dtype, "quantization_config": config, "device_map": {"": device}}


def is_quantized(model) -> bool:
    """Whether ``model`` (or the base under a PEFT wrapper) holds bitsandbytes weights."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_quantized", False)
                or getattr(base, "is_loaded_in_4bit", False)
                or getattr(base, "is_loaded_in_8bit", False))


def quantization_of(model) -> str:
    """"4bit", "8bit" or "none", read off a loaded model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "is_loaded_in_4bit", False):
        return "4bit"
    if getattr(base, "is_loaded_in_8bit", False):
        return "8bit"
    config = getattr(getattr(base, "config", None), "quantization_config", None)
    if config is not None:
        get = config.get if isinstance(config, dict) else lambda k: getattr(config, k, None)
        if get("load_in_4bit"):
            return "4bit"
        if get("load_in_8bit"):
            return "8bit"
    return "none"


def place(model, device: str):
    """Move a freshly built model to ``device``, unless its quantised weights were placed while
    loading (they cannot be moved; anything added since, such as LoRA weights, is moved
    layer by layer by peft onto its base layer's device)."""
    if is_quantized(model):
        return model
    return model.to(device)


def keep_plain_cpu_layout_where_packing_fails(model) -> None:
    """bitsandbytes (0.50) repacks a 4-bit layer for its CPU kernel the first time the layer
    runs without gradients on a CPU with AVX512-BF16, and the repacking fails ("shape '[32, 0]'
    is invalid") for a layer whose inputs are not a whole number of quantisation blocks or
    whose outputs are not a multiple of 32 (small models). Those layers keep the plain layout,
    dequantised as they go, as on any other CPU; every other layer is left to bitsandbytes."""
    for module in model.modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        blocksize = getattr(state, "blocksize", 64) or 64
        if module.in_features % blocksize or module.out_features % 32:
            module.support_avx512bf16_for_cpu = False
