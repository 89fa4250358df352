"""Turn a GGUF file (llama.cpp's one-file format) into a standard model folder in the workspace.

Everything downstream (inspecting, loading, LoRA training, export) works on Hugging Face folders:
config.json, safetensors weights, tokenizer files. So a GGUF is converted once, through
transformers' own GGUF support (which dequantises), into ``models/NAME``, and is from then on a
model like any other. Nothing touches the network (``local_files_only=True``).

The folder appears all at once or not at all: it is written into a hidden temporary sibling
(``models/.NAME.*.importing``) and renamed into place only after ``inspect_model_folder``
accepted it; any failure or a cancel removes the temporary folder. An existing model folder is
never overwritten: the import is refused with a message naming it (``ModelFolderExists``), since
the likeliest cause is importing the same file twice, and a second copy would only take disk
space. The GUI offers another name instead.

What can go wrong before any heavy work is read from the file's header here, without
transformers: not a GGUF at all, cut short, a split file, no tensors. Each is a one-line
``GGUFImportError`` that names the file.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import secrets
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

from desktop_app.core.errors import UserError, free_bytes, human_bytes
from desktop_app.core.events import Cancelled, Emit, Progress, StopToken, ignore
from desktop_app.ml.models.stack import building_a_model


class GGUFImportError(UserError):
    """The GGUF file cannot be turned into a model folder; the message names it and says why."""


class ModelFolderExists(GGUFImportError):
    """The model folder the import would create is already there."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class ImportedModel:
    path: str          # the new model folder
    architecture: str  # transformers' class, e.g. LlamaForCausalLM
    parameters: int


@dataclass(frozen=True)
class GGUFSummary:
    """What the header says, read in milliseconds (tensor data is never touched)."""

    architecture: str           # general.architecture, llama.cpp's name (llama, qwen2, …)
    parameters: int             # elements over all tensors
    dtype: str                  # the float type the folder will be saved in (see _folder_dtype)
    chat_template: str | None
    end_token_ids: list[int] = field(default_factory=list)  # EOS, then end-of-turn/-message


STAGES = ["Reading the GGUF header", "Checking disk space", "Reading the configuration",
          "Loading the tokenizer", "Loading and dequantising the weights",
          "Saving the model folder", "Checking the saved folder"]

# Tokenizer files, config and generation config: a few MB for a 150k-token vocabulary.
_FOLDER_EXTRA_BYTES = 64 * 2**20


def import_gguf(file: str | Path, models_dir: str | Path, name: str | None = None,
                emit: Emit = ignore, stop: StopToken | None = None) -> ImportedModel:
    """Convert ``file`` into ``models_dir/NAME`` (NAME: ``name`` or the file's stem, made safe
    for a folder name). Raises ``GGUFImportError`` (``ModelFolderExists`` when NAME is taken)
    and ``Cancelled`` when ``stop`` is requested between stages; leaves nothing behind then."""
    file = Path(file).expanduser()
    models_dir = Path(models_dir).expanduser()
    target = models_dir / folder_name(file, name)

    def stage(index: int) -> None:
        if stop is not None:
            stop.raise_if_requested()
        emit(Progress(index, len(STAGES), STAGES[index]))

    # 1. The header: is this a whole GGUF file, and how big is the model in it?
    stage(0)
    summary = read_summary(file)

    # 2. Room for the folder, before minutes of dequantising.
    stage(1)
    _refuse_existing(target)
    _check_disk_space(file, models_dir, summary)
    _check_memory(file, summary)

    models_dir.mkdir(parents=True, exist_ok=True)
    # Hidden, and unique so that two imports of one name never share it; mkdir (not mkdtemp,
    # which makes it private to this user) so the folder gets the usual permissions.
    tmp = models_dir / f".{target.name}.{secrets.token_hex(4)}.importing"
    tmp.mkdir()
    try:
        # 3-6. Configuration, tokenizer and weights through transformers, saved into tmp.
        architecture = _convert(file, tmp, summary, stage)
        # 7. Only a folder the app accepts is put in place; the rename is atomic.
        stage(6)
        _check_folder(file, tmp)
        _refuse_existing(target)  # another import of the same name may have finished meanwhile
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    emit(Progress(len(STAGES), len(STAGES), f"Imported {target.name}"))
    return ImportedModel(path=str(target.resolve()), architecture=architecture,
                         parameters=summary.parameters)


def folder_name(file: str | Path, name: str | None = None) -> str:
    """``name`` or the file's stem, as a folder name that works on every system: letters,
    digits, '.', '_' and '-'; anything else becomes '-'."""
    text = name if name else Path(file).name.removesuffix(".gguf").removesuffix(".GGUF")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_")[:100].rstrip(".-_")
    return safe or "model"


def free_folder_name(models_dir: str | Path, name: str) -> str:
    """``name``, or the first of NAME-2, NAME-3, … that is not taken in ``models_dir``."""
    models_dir = Path(models_dir)
    candidate, n = name, 1
    while (models_dir / candidate).exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


# ---- conversion ------------------------------------------------------------------------------

def _convert(file: Path, out: Path, summary: GGUFSummary, stage) -> str:
    """Read the configuration, tokenizer and weights through transformers and save them into
    ``out``. Returns the model's class name."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    where = dict(pretrained_model_name_or_path=str(file.parent), gguf_file=file.name,
                 local_files_only=True)

    stage(2)
    config = _guard(file, lambda: AutoConfig.from_pretrained(**where), summary)

    stage(3)
    tokenizer = _guard(file, lambda: AutoTokenizer.from_pretrained(**where), summary)
    if not tokenizer.chat_template and summary.chat_template:
        tokenizer.chat_template = summary.chat_template  # kept, whatever the tokenizer made of it

    # The weights, unpacked to plain tensors (dequantize=True: with a GGUF kernel installed,
    # transformers would otherwise keep them in blocks, which cannot be saved), in the dtype
    # chosen from the header. The config read above is passed on, so the file's metadata is
    # not parsed a second time (seconds for a large vocabulary).
    stage(4)
    dtype = getattr(torch, summary.dtype)
    with building_a_model():
        model = _guard(file, lambda: AutoModelForCausalLM.from_pretrained(
            **where, config=config, dtype=dtype, quantization_config=GgufConfig(dequantize=True)),
            summary)
    # A plain model now: nothing of the GGUF loading may end up in the saved config.
    model.hf_quantizer = None
    vars(model.config).pop("quantization_config", None)
    _set_generation_tokens(model, tokenizer, summary)

    stage(5)
    model.save_pretrained(out)  # safetensors, sharded when large
    tokenizer.save_pretrained(out)
    return type(model).__name__


def _set_generation_tokens(model, tokenizer, summary: GGUFSummary) -> None:
    """generation_config.json must stop where llama.cpp stops: on EOS and on the end-of-turn
    token (SmolLM2's <|im_end|>, Llama 3's <|eot_id|>), which a GGUF names apart from EOS and
    transformers does not carry over."""
    ids = list(dict.fromkeys([*summary.end_token_ids,
                              *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None
                                else [])]))
    generation = model.generation_config
    if ids:
        generation.eos_token_id = ids if len(ids) > 1 else ids[0]
    if generation.bos_token_id is None:
        generation.bos_token_id = tokenizer.bos_token_id
    if generation.pad_token_id is None and tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id


def _check_folder(file: Path, folder: Path) -> None:
    from desktop_app.ml.models.folder_check import ModelFolderError, inspect_model_folder

    try:
        inspect_model_folder(folder)
    except ModelFolderError as exc:
        reason = str(exc).replace(str(folder), "the converted folder")
        raise GGUFImportError(f"Cannot import {file}: {reason}") from exc


def _refuse_existing(target: Path) -> None:
    if target.exists():
        raise ModelFolderExists(
            f"{target} already exists, and an import never replaces a model folder: use that "
            "one, delete it, or import under another name.", target)


def _check_disk_space(file: Path, models_dir: Path, summary: GGUFSummary) -> None:
    needed = summary.parameters * _ITEMSIZE[summary.dtype] + _FOLDER_EXTRA_BYTES
    free = free_bytes(models_dir)
    if free is not None and needed > free:
        raise GGUFImportError(
            f"Cannot import {file}: the model folder needs about {human_bytes(needed)} "
            f"({summary.dtype}) but the disk holding {models_dir} has only {human_bytes(free)} "
            "free.")


def _check_memory(file: Path, summary: GGUFSummary) -> None:
    """transformers dequantises the whole model into main memory, and saving it briefly holds a
    second copy of some tensors: about twice the folder's size at the peak."""
    from desktop_app.ml.models.device import available_memory_bytes

    needed = 2 * summary.parameters * _ITEMSIZE[summary.dtype]
    free = available_memory_bytes("cpu")
    if free is not None and needed > free:
        raise GGUFImportError(
            f"Cannot import {file}: dequantising it needs about {human_bytes(needed)} of main "
            f"memory and only {human_bytes(free)} is free.")


def _guard(file: Path, action, summary: GGUFSummary):
    """Run one transformers step, turning what it raises into one sentence naming the file.
    OSErrors (a full disk, permissions) keep their own sentence (``core.errors.explain``)."""
    import torch

    try:
        return action()
    except (Cancelled, OSError):
        raise
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise GGUFImportError(
            f"Cannot import {file}: dequantising needs about "
            f"{human_bytes(summary.parameters * _ITEMSIZE[summary.dtype] * 2)} of memory, more "
            "than this computer has free.") from exc
    except Exception as exc:
        if not _transformers_reads(summary.architecture):
            import transformers

            raise GGUFImportError(
                f"Cannot import {file}: transformers {transformers.__version__} cannot read the "
                f"'{summary.architecture}' architecture from GGUF files.") from exc
        raise GGUFImportError(f"Cannot import {file}: {_first_line(exc)}") from exc


def _transformers_reads(architecture: str) -> bool:
    """Whether transformers lists ``architecture`` among those it reads from GGUF (older and
    newer readers keep separate lists); True when it cannot tell, so its own message shows."""
    try:
        from transformers.integrations.gguf import GGUF_CONFIG_ARCHS
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:
        return True
    # transformers renames a few before checking (qwen2moe -> qwen2_moe, gpt-oss -> gpt_oss).
    plain = lambda name: name.replace("_", "").replace("-", "")  # noqa: E731
    known = {plain(n) for n in [*GGUF_CONFIG_ARCHS, *GGUF_SUPPORTED_ARCHITECTURES]}
    return plain(architecture) in known


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    return text or type(exc).__name__


# ---- the header ------------------------------------------------------------------------------
# gguf.GGUFReader parses every metadata array into numpy views, which takes seconds for a
# 50k-token vocabulary (5.6 s for SmolLM2-135M); the walk below skips the arrays and reads the
# same header in milliseconds. The gguf package supplies the tensor types' block sizes.

_GGML_F32, _GGML_F16, _GGML_BF16 = 0, 1, 30
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}

# GGUF metadata value types: fixed-size ones by struct format; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _CutShort(Exception):
    """The header runs past the end of the file."""


def read_summary(file: str | Path) -> GGUFSummary:
    """Read ``file``'s header: refuse what is not a whole, single-file GGUF with tensors."""
    file = Path(file)
    try:
        import gguf  # noqa: F401 - transformers needs it to read the file; say so up front
    except ImportError as exc:
        raise GGUFImportError(f"Cannot import {file}: reading GGUF files needs the gguf package "
                              "(pip install 'rlhf-desk[gguf]').") from exc
    if not file.exists():
        raise GGUFImportError(f"Cannot import {file}: it does not exist.")
    if not file.is_file():
        raise GGUFImportError(f"Cannot import {file}: it is not a file.")
    with file.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise GGUFImportError(f"Cannot import {file}: it is not a GGUF file (it does not start "
                                  "with the GGUF signature).")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as blob:
            try:
                return _summarise(file, _Header(blob))
            except _CutShort as exc:
                raise GGUFImportError(f"Cannot import {file}: it is cut short (its header ends "
                                      "early); the download or copy did not finish.") from exc


class _Header:
    """A cursor over the file's bytes that refuses to read past its end."""

    def __init__(self, blob: mmap.mmap):
        self.blob, self.pos, self.size = blob, 4, len(blob)

    def take(self, fmt: str):
        width = struct.calcsize(fmt)
        if self.pos + width > self.size:
            raise _CutShort
        values = struct.unpack_from(fmt, self.blob, self.pos)
        self.pos += width
        return values if len(values) > 1 else values[0]

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise _CutShort
        self.pos += n

    def string(self) -> str:
        length = self.take("<Q")
        start = self.pos
        self.skip(length)
        return bytes(self.blob[start:self.pos]).decode("utf-8", errors="replace")

    def value(self, kind: int, keep: bool):
        """One metadata value; arrays (vocabularies, merges) are skipped, not read."""
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            if keep:
                return self.string()
            self.skip(self.take("<Q"))
            return None
        if kind == _ARRAY:
            element, count = self.take("<I"), self.take("<Q")
            if element in _SCALARS:
                self.skip(count * struct.calcsize(_SCALARS[element]))
            else:
                for _ in range(count):
                    self.value(element, keep=False)
            return None
        raise ValueError(f"a metadata value of unknown type {kind}")


# Metadata the import needs; every other value is skipped.
_KEEP = {"general.architecture", "general.alignment", "split.count", "tokenizer.chat_template",
         "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
         "tokenizer.ggml.eom_token_id"}


def _summarise(file: Path, header: _Header) -> GGUFSummary:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    version = header.take("<I")
    if version not in (2, 3):
        raise GGUFImportError(f"Cannot import {file}: it is GGUF version {version}; only "
                              "versions 2 and 3 can be read.")
    tensor_count, kv_count = header.take("<Q"), header.take("<Q")
    # A damaged count would have us loop for ever: each entry takes at least 13 bytes.
    if (tensor_count + kv_count) * 13 > header.size:
        raise _CutShort

    metadata = {}
    try:
        for _ in range(kv_count):
            key = header.string()
            metadata[key] = header.value(header.take("<I"), keep=key in _KEEP)
    except ValueError as exc:
        raise GGUFImportError(f"Cannot import {file}: its metadata is damaged ({exc}).") from exc
    architecture = metadata.get("general.architecture")
    if not architecture:
        raise GGUFImportError(f"Cannot import {file}: its metadata does not say which "
                              "architecture it holds (no general.architecture).")
    if (metadata.get("split.count") or 1) > 1:
        raise GGUFImportError(
            f"Cannot import {file}: it is one part of a model split into "
            f"{metadata['split.count']} files; join them first (llama-gguf-split --merge).")

    # The tensor table: names, shapes, types and where each one's data lies.
    parameters, types, data_end = 0, set(), 0
    for _ in range(tensor_count):
        header.string()
        dims = [header.take("<Q") for _ in range(header.take("<I"))]
        kind, offset = header.take("<I"), header.take("<Q")
        try:
            block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError) as exc:
            raise GGUFImportError(f"Cannot import {file}: it holds tensors of an unknown type "
                                  f"({kind}).") from exc
        count = math.prod(dims)
        parameters += count
        types.add(kind)
        data_end = max(data_end, offset + count // block * block_bytes)
    if tensor_count == 0:
        raise GGUFImportError(f"Cannot import {file}: it holds no weights (a vocabulary-only "
                              "file?).")

    alignment = metadata.get("general.alignment") or 32
    data_start = -(-header.pos // alignment) * alignment
    if data_start + data_end > header.size:
        raise GGUFImportError(
            f"Cannot import {file}: it is cut short ({human_bytes(header.size)} of "
            f"{human_bytes(data_start + data_end)}); the download or copy did not finish.")

    ends = [metadata.get(f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom")]
    return GGUFSummary(architecture=str(architecture), parameters=parameters,
                       dtype=_folder_dtype(types), chat_template=metadata.get(
                           "tokenizer.chat_template"),
                       end_token_ids=[int(t) for t in ends if t is not None])


def _folder_dtype(types: set[int]) -> str:
    """The float type the model folder is saved in. A file of plain floats keeps its own
    (bf16 or f16 values are exact in it, and the folder is half the size of fp32). A quantized
    file is saved in fp32: a dequantised weight is a block scale times a small integer plus an
    offset, which needs more mantissa bits than a half type has, so fp32 keeps the values
    transformers computes exactly and the folder generates what the GGUF does. The price is
    about 4 bytes a parameter on disk (checked before converting)."""
    if not types <= {_GGML_F32, _GGML_F16, _GGML_BF16}:
        return "float32"
    if _GGML_BF16 in types:
        return "bfloat16"
    if _GGML_F16 in types:
        return "float16"
    return "float32"
