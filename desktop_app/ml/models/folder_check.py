"""Look at a model folder without loading its weights: can we use it, and how big is it?

This runs whenever the user points the app at a folder, so it must stay cheap: it reads
config.json, lists files and reads the JSON headers of the safetensors files (a few KB each).
Every refusal is a ``ModelFolderError`` whose message names the folder and the problem in one
plain sentence, because that message goes straight into a dialog.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from desktop_app.core.errors import UserError
from desktop_app.ml.models.stack import building_a_model, import_stack

# Weights in memory are not the whole story: activations and the KV cache of a generation batch
# come on top. 25% is a rule of thumb for paired generation at modest batch sizes and lengths;
# it lets us refuse hopeless loads early, not promise that a borderline one will fit.
MEMORY_OVERHEAD_FACTOR = 1.25

_BYTES_PER_PARAM = {"bfloat16": 2, "float16": 2, "float32": 4}
_SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt",
                    "tiktoken.model")


class ModelFolderError(UserError):
    """The folder cannot be used as a causal language model; the message says why."""


@dataclass
class ModelInfo:
    path: str
    name: str
    model_type: str
    architecture: str
    n_params: int
    weight_files: list[str]
    weights_dtype: str | None  # dtype the weights are stored in, when known
    has_tokenizer: bool
    has_chat_template: bool
    needs_remote_code: bool

    def memory_bytes(self, dtype: str) -> int:
        """Estimated memory to run this model at ``dtype``: weights times MEMORY_OVERHEAD_FACTOR."""
        if dtype not in _BYTES_PER_PARAM:
            choices = ", ".join(_BYTES_PER_PARAM)
            raise ValueError(f"Unknown dtype {dtype!r}: choose one of {choices}.")
        return int(self.n_params * _BYTES_PER_PARAM[dtype] * MEMORY_OVERHEAD_FACTOR)

    def describe(self) -> str:
        """One line for lists and status bars."""
        template = "yes" if self.has_chat_template else "no"
        return (f"{self.architecture} · {format_count(self.n_params)} parameters · "
                f"chat template: {template}")


def inspect_model_folder(path: str | Path, trust_remote_code: bool = False) -> ModelInfo:
    """Check that ``path`` holds a causal LM with weights and a tokenizer; describe it."""
    folder = Path(path).expanduser()

    # 1. The folder exists and has a config.json.
    if not folder.exists():
        raise ModelFolderError(f"{folder} does not exist.")
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder.")
    if not (folder / "config.json").is_file():
        if (folder / "adapter_config.json").is_file():
            raise ModelFolderError(f"{folder} is an adapter, not a model folder: it has "
                                   "adapter_config.json but no config.json.")
        raise ModelFolderError(f"{folder} is not a model folder: no config.json.")
    raw = _read_config_json(folder)

    # 2. Custom code runs arbitrary Python from the folder; only with the user's explicit consent.
    needs_remote_code = "auto_map" in raw
    if needs_remote_code and not trust_remote_code:
        raise ModelFolderError(f"{folder} uses custom model code (auto_map in config.json): you "
                               "must explicitly allow remote code for this model to load it.")

    # 3. It is a decoder-only language model (the only kind we can sample from and tune).
    import_stack()  # transformers' first import must not race another thread's (ml.models.stack)
    config = _load_config(folder, raw, trust_remote_code)
    architecture = _check_causal_lm(folder, raw, config, needs_remote_code)

    # 4. Weights and a tokenizer are there.
    weight_files = _weight_files(folder)
    if not weight_files:
        raise ModelFolderError(f"{folder} has no weights: no *.safetensors or pytorch_model*.bin "
                               "files.")
    if not _has_tokenizer(folder):
        raise ModelFolderError(f"{folder} has no tokenizer files (tokenizer.json, "
                               "tokenizer.model or vocab.json).")

    # 5. Size, from the safetensors headers when there are any.
    if weight_files[0].endswith(".safetensors"):
        n_params, weights_dtype = _count_safetensors(folder, weight_files)
    else:
        n_params = _count_on_meta_device(folder, config, trust_remote_code)
        weights_dtype = _config_dtype(raw)

    return ModelInfo(
        path=str(folder.resolve()),
        name=display_name(folder),
        model_type=str(raw.get("model_type", "")),
        architecture=architecture,
        n_params=n_params,
        weight_files=weight_files,
        weights_dtype=weights_dtype,
        has_tokenizer=True,
        has_chat_template=_has_chat_template(folder),
        needs_remote_code=needs_remote_code,
    )


def display_name(folder: Path) -> str:
    """"org/name" for a snapshot in the Hugging Face cache, else the folder's own name."""
    parts = folder.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--"):].replace("--", "/")
    return folder.resolve().name


def format_count(n: int) -> str:
    """3_200_000 -> "3.2 M"."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.1f} {suffix}"
    return str(n)


# ---- config ----------------------------------------------------------------------------------

def _read_config_json(folder: Path) -> dict:
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{folder}/config.json cannot be read: {exc}.") from exc
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{folder}/config.json is not valid JSON ({exc}).") from exc
    if not isinstance(raw, dict):
        raise ModelFolderError(f"{folder}/config.json does not hold a JSON object.")
    return raw


def _load_config(folder: Path, raw: dict, trust_remote_code: bool):
    """transformers' own reading of config.json, which fills in per-model defaults."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = raw.get("model_type")
    if not model_type and "auto_map" not in raw:
        raise ModelFolderError(f"{folder}/config.json does not say which model type it is "
                               "(no model_type).")
    if "auto_map" not in raw and model_type not in CONFIG_MAPPING_NAMES:
        raise ModelFolderError(f"{folder} has model type {model_type!r}, which this version of "
                               "transformers does not know.")
    try:
        return AutoConfig.from_pretrained(folder, local_files_only=True,
                                          trust_remote_code=trust_remote_code)
    except Exception as exc:  # unknown model_type, bad values: transformers' message says which
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFolderError(f"{folder}/config.json cannot be used: {message}") from exc


def _check_causal_lm(folder: Path, raw: dict, config, needs_remote_code: bool) -> str:
    """Return the architecture name, or refuse encoder-only and encoder-decoder models."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", raw.get("model_type", ""))
    architectures = list(getattr(config, "architectures", None) or [])
    if getattr(config, "is_encoder_decoder", False):
        raise ModelFolderError(f"{folder} is an encoder-decoder model ({model_type}); only "
                               "decoder-only causal language models are supported.")
    if needs_remote_code:
        if "AutoModelForCausalLM" not in raw["auto_map"]:
            raise ModelFolderError(f"{folder} has custom code but no causal language model class "
                                   "(AutoModelForCausalLM missing from auto_map).")
        return architectures[0] if architectures else model_type

    causal_classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if architectures:
        causal = [a for a in architectures if a in causal_classes]
        if not causal:
            raise ModelFolderError(f"{folder} holds a {architectures[0]}, which is not a causal "
                                   "language model.")
        architecture = causal[0]
    elif model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]
    else:
        raise ModelFolderError(f"{folder} holds a {model_type or 'model of unknown type'}, which "
                               "has no causal language model class in this transformers.")
    # BERT-style encoders have a causal head class (BertLMHeadModel), but it only works on a
    # checkpoint trained as a decoder; anything else would generate noise.
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        raise ModelFolderError(f"{folder} is an encoder-only model ({model_type}), not a causal "
                               "language model.")
    return architecture


def _config_dtype(raw: dict) -> str | None:
    value = raw.get("dtype") or raw.get("torch_dtype")
    return value if isinstance(value, str) else None


# ---- files -----------------------------------------------------------------------------------

def _weight_files(folder: Path) -> list[str]:
    """The files holding the weights, safetensors first, as transformers would pick them."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ModelFolderError(f"{index} is not a valid weight index ({exc}).") from exc
            shards = sorted(set(weight_map.values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise ModelFolderError(f"{folder} is incomplete: weight file {missing[0]} is "
                                       "missing.")
            return shards
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"]
    # Some repos also ship other formats' files (consolidated.safetensors); prefer model*.
    for pattern in ("model*.safetensors", "*.safetensors", "pytorch_model*.bin"):
        found = sorted(p.name for p in folder.glob(pattern) if p.is_file())
        if found:
            return found
    return []


def _has_tokenizer(folder: Path) -> bool:
    return (any((folder / name).is_file() for name in _TOKENIZER_FILES)
            or any(folder.glob("*.tiktoken")))


def _has_chat_template(folder: Path) -> bool:
    # transformers 5 saves the template as chat_template.jinja; older folders keep it in
    # tokenizer_config.json or chat_template.json.
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    if (folder / "additional_chat_templates").is_dir():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("chat_template"))


# ---- parameter counting ----------------------------------------------------------------------

def _count_safetensors(folder: Path, files: list[str]) -> tuple[int, str | None]:
    """Sum element counts over the safetensors headers; the dtype holding most elements wins."""
    total = 0
    by_dtype: Counter[str] = Counter()
    for name in files:
        for key, entry in _read_safetensors_header(folder / name).items():
            if key == "__metadata__" or _is_buffer(key, entry["shape"]):
                continue
            numel = 1
            for dim in entry["shape"]:
                numel *= dim
            total += numel
            by_dtype[entry["dtype"]] += numel
    if not by_dtype:
        return total, None
    stored = by_dtype.most_common(1)[0][0]
    return total, _SAFETENSORS_DTYPES.get(stored, stored.lower())


def _read_safetensors_header(file: Path) -> dict:
    """A safetensors file starts with a little-endian u64 length and that many bytes of JSON."""
    try:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:  # real headers are kilobytes; this is not a safetensors file
                raise ValueError("header too large")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelFolderError(f"{file} is not a readable safetensors file ({exc}).") from exc
    if not isinstance(header, dict):
        raise ModelFolderError(f"{file} is not a readable safetensors file (bad header).")
    return header


def _is_buffer(key: str, shape: list[int]) -> bool:
    """Old checkpoints also store non-parameter buffers: GPT-2's 4-D causal masks ("attn.bias",
    "masked_bias") and rotary "inv_freq" tables. Counting them would inflate the size."""
    last = key.rsplit(".", 1)[-1]
    return last in ("masked_bias", "inv_freq") or (last == "bias" and len(shape) == 4)


def _count_on_meta_device(folder: Path, config, trust_remote_code: bool) -> int:
    """For .bin checkpoints (pickles we will not open just to count): build the model on the
    meta device, which allocates no memory, and count its parameters."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with building_a_model(), torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFolderError(f"{folder} cannot be sized from its config: {message}") from exc
    return sum(p.numel() for p in model.parameters())
