"""Load a local model folder for generation: inspect it, check that it fits, load tokenizer and
weights, and report each stage. Nothing here touches the network (``local_files_only=True``).

Every failure becomes a ``ModelLoadError`` whose message names the folder and the problem in
words a user can act on; the original exception stays attached (``__cause__``) for the logs.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from desktop_app.core.errors import UserError
from desktop_app.core.events import Emit, Progress, StopToken, ignore
from desktop_app.ml.models.device import DeviceChoice, available_memory_bytes, pick_device
from desktop_app.ml.models.folder_check import ModelFolderError, ModelInfo, inspect_model_folder
from desktop_app.ml.models.quantize import (
    QuantizationError,
    is_quantized,
    keep_plain_cpu_layout_where_packing_fails,
    load_kwargs,
)
from desktop_app.ml.models.quantize import check as check_quantize
from desktop_app.ml.models.stack import building_a_model

_OOM_ADVICE = ("try a smaller dtype (float16 or bfloat16), 4-bit quantisation, another device, "
               "or a smaller model")


class ModelLoadError(UserError):
    """The model could not be loaded; the message says which folder and why."""


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, in eval mode
    tokenizer: Any  # left-padding, always has a pad token
    info: ModelInfo
    device: DeviceChoice
    path: str
    adapter: str | None = None
    # Pairs pit the tuned policy against the base: the adapter stays unmerged so that it can
    # be switched off for the base model's response (one copy of the weights for both).
    versus_base: bool = False
    quantize: str = "none"  # "8bit"/"4bit": the base weights are bitsandbytes layers

    @property
    def label(self) -> str:
        """Where and how it runs, for status lines: "CUDA bf16" or "CUDA bf16 · 4-bit"."""
        return self.device.label() + ("" if self.quantize == "none" else f" · {self.quantize}")

    @property
    def eos_token_ids(self) -> list[int]:
        """Every token that ends a response: the tokenizer's EOS and the generation config's
        (chat models often stop on an end-of-turn token that only the latter names)."""
        ids: list[int] = []
        candidates = [self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id]
        for value in candidates:
            for token_id in value if isinstance(value, (list, tuple)) else [value]:
                if token_id is not None and int(token_id) not in ids:
                    ids.append(int(token_id))
        return ids


def load_model(path: str | Path, device: str = "auto", dtype: str = "auto",
               trust_remote_code: bool = False, emit: Emit = ignore,
               stop: StopToken | None = None, adapter: str | Path | None = None,
               versus_base: bool = False, quantize: str = "none") -> LoadedModel:
    """Load the causal LM in ``path`` onto ``device`` at ``dtype`` ("auto" picks for you),
    its linear layers quantised to 8 or 4 bits when ``quantize`` says so (``dtype`` is then
    the compute dtype and that of the layers left unquantised).

    Raises ``ModelLoadError`` for every problem, including a device or dtype this machine
    cannot provide, and ``Cancelled`` when ``stop`` is requested between stages."""
    folder = Path(path).expanduser()
    try:
        choice = pick_device(device, dtype)
        check_quantize(quantize)  # a known choice, and bitsandbytes installed for it
    except (ValueError, QuantizationError) as exc:  # e.g. CUDA asked for on a machine without it
        raise ModelLoadError(f"Cannot load {folder}: {exc}") from exc
    stages = ["Reading config", "Checking memory", "Loading tokenizer", "Loading weights",
              f"Moving to {choice.device}"]

    def stage(index: int) -> None:
        if stop is not None:
            stop.raise_if_requested()
        emit(Progress(index, len(stages), stages[index]))

    # 1. Is it a model we can use?
    stage(0)
    try:
        info = inspect_model_folder(folder, trust_remote_code=trust_remote_code)
    except ModelFolderError as exc:
        raise ModelLoadError(str(exc)) from exc

    # 2. Refuse early rather than swap the machine to death or crash the GPU halfway through.
    stage(1)
    _check_memory(folder, info, choice, quantize)

    # 3. Tokenizer: left padding, because generation appends on the right.
    stage(2)
    tokenizer = _guard(folder, "the tokenizer", lambda: _load_tokenizer(folder, trust_remote_code))

    # 4. Weights, in the chosen dtype, on the CPU first.
    stage(3)
    model = _guard(folder, "the weights",
                   lambda: _load_weights(folder, choice, trust_remote_code, quantize))

    # 4b. A tuned policy (a PEFT adapter, e.g. from PPO) is merged into the weights: generation
    #     then runs at the base model's speed, and the pairs record which adapter made them.
    #     Not into quantised weights: merging would round the adapter into 4/8 bits.
    if adapter is not None:
        merge = not versus_base and quantize == "none"
        model = _guard(folder, f"the adapter {adapter}",
                       lambda: _attach_adapter(model, adapter, merge=merge))

    # 5. Onto the device (a quantised model was placed there while loading). If the move runs
    #    out of memory, drop the half-moved model at once.
    stage(4)
    try:
        model = _guard(folder, f"the model onto {choice.device}",
                       lambda: model if is_quantized(model) else model.to(choice.device))
    except ModelLoadError:
        del model
        free_memory(choice)
        raise
    model.eval()
    _ensure_pad_token(folder, tokenizer, model)
    emit(Progress(len(stages), len(stages), f"Loaded {info.name} on {choice.label()}"))
    return LoadedModel(model=model, tokenizer=tokenizer, info=info, device=choice,
                       path=info.path, adapter=str(adapter) if adapter is not None else None,
                       versus_base=versus_base and adapter is not None, quantize=quantize)


# ---- stages ----------------------------------------------------------------------------------

def _check_memory(folder: Path, info: ModelInfo, choice: DeviceChoice, quantize: str) -> None:
    if quantize == "none":
        needed = info.memory_bytes(choice.dtype)
    else:  # the block linears in 8/4 bits, the rest at the dtype (the memory planner's count)
        from desktop_app.ml.models.folder_check import MEMORY_OVERHEAD_FACTOR
        from desktop_app.ml.planning.estimate import Setup, weight_bytes
        from desktop_app.ml.planning.shape import model_shape
        setup = Setup(choice.device, choice.dtype, quantize)
        needed = int(weight_bytes(model_shape(folder), setup) * MEMORY_OVERHEAD_FACTOR)
    free = available_memory_bytes(choice.device)
    if free is not None and needed > free:
        what = choice.dtype if quantize == "none" else f"{quantize} ({choice.dtype} compute)"
        raise ModelLoadError(
            f"{folder} needs about {_size(needed)} at {what} but only {_size(free)} is "
            f"free on {choice.label().split()[0]}: {_OOM_ADVICE}.")


def _load_tokenizer(folder: Path, trust_remote_code: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                         trust_remote_code=trust_remote_code,
                                         padding_side="left")


def _load_weights(folder: Path, choice: DeviceChoice, trust_remote_code: bool, quantize: str):
    from transformers import AutoModelForCausalLM

    with building_a_model():
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, trust_remote_code=trust_remote_code,
            **load_kwargs(quantize, choice.device, choice.torch_dtype))
    keep_plain_cpu_layout_where_packing_fails(model)
    return model


def _attach_adapter(model, adapter: str | Path, merge: bool = True):
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    return model.merge_and_unload() if merge else model


def _ensure_pad_token(folder: Path, tokenizer, model) -> None:
    """Batched generation needs a pad token. Reusing EOS adds no embeddings (no resize), and left
    padding plus the attention mask keep it from ever being attended to."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            eos = model.generation_config.eos_token_id
            eos = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
            if eos is None:
                raise ModelLoadError(f"{folder} has neither a pad nor an end-of-sequence token, so "
                                     "responses cannot be batched or stopped.")
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(int(eos))
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


# ---- errors ----------------------------------------------------------------------------------

def _guard(folder: Path, what: str, action):
    """Run one loading step, turning what transformers and torch raise into ModelLoadError."""
    try:
        return action()
    except ModelLoadError:
        raise
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise ModelLoadError(f"{folder} does not fit in memory: {_OOM_ADVICE}.") from exc
    except Exception as exc:
        message = _first_line(exc)
        if "out of memory" in message.lower() or "can't allocate memory" in message.lower():
            raise ModelLoadError(f"{folder} does not fit in memory: {_OOM_ADVICE}.") from exc
        raise ModelLoadError(f"Could not load {what} in {folder}: {message}") from exc


def _first_line(exc: BaseException) -> str:
    """The gist of an exception, without its traceback. Bare lookups (KeyError: 'added_tokens')
    mean nothing without their type, so those keep it."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    if not text or isinstance(exc, (KeyError, IndexError, AttributeError, TypeError)):
        return f"{type(exc).__name__} {text}".strip()
    return text


def on_accelerator(lm: LoadedModel) -> bool:
    """Whether the model's weights live in GPU (CUDA or MPS) memory rather than main memory."""
    return lm.device.on_accelerator


def move_weights(lm: LoadedModel, to_cpu: bool) -> None:
    """Move a loaded model's weights to main memory (``to_cpu``), making room on the GPU for a
    training job, or back to its own device. Nothing may use the model meanwhile. A quantised
    model stays where it is: bitsandbytes weights cannot be moved after loading, and they
    are a quarter (4-bit) or half (8-bit) of the full-precision size anyway."""
    if is_quantized(lm.model):
        return
    lm.model.to("cpu" if to_cpu else lm.device.device)
    free_memory(lm.device)


def free_memory(choice: DeviceChoice) -> None:
    """Give memory that dropped models held back: Python's garbage, then the GPU's cache."""
    gc.collect()
    if choice.device.startswith("cuda"):
        torch.cuda.empty_cache()
    elif choice.device.startswith("mps"):
        torch.mps.empty_cache()


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
