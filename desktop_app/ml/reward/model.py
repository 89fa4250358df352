"""The reward model: a base causal LM read as a sequence classifier with one output (the
reward, read at the last token), plus a LoRA adapter. The score head is trained in full and
saved with the adapter (peft's ``modules_to_save``), so the adapter folder is complete:

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id   # tokenizer from the adapter folder
    model = PeftModel.from_pretrained(model, adapter_dir)

gives the scores ``RewardScorer`` gives. Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from pathlib import Path

import torch

from desktop_app.core.config import RewardConfig
from desktop_app.core.errors import UserError
from desktop_app.core.runs.record import RunKind
from desktop_app.ml.models.device import DeviceChoice, pick_device
from desktop_app.ml.models.folder_check import ModelFolderError, inspect_model_folder
from desktop_app.ml.models.loader import _first_line
from desktop_app.ml.models.quantize import (
    QuantizationError,
    keep_plain_cpu_layout_where_packing_fails,
    load_kwargs,
    place,
)
from desktop_app.ml.models.stack import building_a_model
from desktop_app.ml.reward.data import EncodedPair, PairEncoder, collate, pad_rows
from desktop_app.ml.reward.pairs import Split

DEFAULT_MAX_LENGTH = RewardConfig().max_length

# peft 0.21 still asks transformers 5 for the deprecated is_gradient_checkpointing on every
# wrap; the warning is theirs, not the user's. (A module-level filter: catch_warnings() is not
# thread-safe, and the GUI builds models on worker threads.)
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class RewardModelError(UserError):
    """A reward model cannot be built or loaded; the message says which folder and why."""


# ---- building --------------------------------------------------------------------------------

def check_base_model(path: str | Path) -> Path:
    """The base model folder, checked as for generation (same messages), or RewardModelError."""
    folder = Path(path).expanduser()
    try:
        inspect_model_folder(folder)
    except ModelFolderError as exc:
        raise RewardModelError(str(exc)) from exc
    return folder


def load_tokenizer(path: str | Path):
    """The tokenizer, right-padding, with a pad token: reusing EOS (as the model loader does)
    adds no embeddings, and the attention mask keeps padding out of every score."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise RewardModelError(f"Could not load the tokenizer in {path}: {_first_line(exc)}") \
            from exc
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise RewardModelError(f"{path} has neither a pad nor an end-of-sequence token, so "
                                   "responses cannot be batched.")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def reward_tokenizer(adapter: Path, base_model: str | Path):
    """The tokenizer a reward adapter was trained with: the one training saved beside it (pad
    token included) when present, else the base model's."""
    has_tokenizer = (adapter / "tokenizer_config.json").is_file()
    return load_tokenizer(adapter if has_tokenizer else base_model)


def build_reward_model(base_model: str | Path, tokenizer, device: DeviceChoice, *,
                       cfg: RewardConfig | None = None, adapter_dir: str | Path | None = None,
                       trainable: bool = False, train_dropout: bool = True,
                       quantize: str = "none"):
    """Base model + score head + LoRA on ``device`` at ``device.dtype``, the base's block
    linears in 8 or 4 bits when ``quantize`` says so (QLoRA; the head stays full precision).

    A new adapter comes from ``cfg`` (call ``torch.manual_seed`` first: the head and LoRA are
    initialised randomly); an existing one is read from ``adapter_dir``. ``train_dropout=False``
    zeroes the base model's own dropout (TRL's reward trainer does the same: it only adds noise
    to the comparison), leaving LoRA's dropout as configured."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    # 1. Is it a model we can use?
    folder = check_base_model(base_model)

    # 2. The base as a sequence classifier with one label: the causal LM head is dropped and a
    #    fresh linear "score" head reads the hidden state of the last non-pad token.
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, num_labels=1)
        if not train_dropout:
            _zero_dropout(config)
        with _quiet_transformers(), building_a_model():
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, config=config, local_files_only=True,
                **load_kwargs(quantize, device.device, device.torch_dtype))
    except Exception as exc:
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError, QuantizationError)):
            raise
        raise RewardModelError(f"Could not load {folder} as a reward model: "
                               f"{_first_line(exc)}") from exc
    keep_plain_cpu_layout_where_packing_fails(model)
    model.config.pad_token_id = tokenizer.pad_token_id  # where each row's last token is found

    # 3. LoRA. peft adds the "score" head to modules_to_save for SEQ_CLS, so the head is
    #    trained in full and saved with the adapter, and is never given LoRA itself.
    if adapter_dir is not None:
        try:
            model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
        except Exception as exc:
            raise RewardModelError(f"Could not load the reward adapter in {adapter_dir}: "
                                   f"{_first_line(exc)}") from exc
    else:
        if cfg is None:
            raise ValueError("build_reward_model needs cfg or adapter_dir")
        targets = lora_targets(model, cfg.target_modules)
        lora = LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                          lora_dropout=cfg.lora_dropout, target_modules=targets,
                          fan_in_fan_out=_is_conv1d(model, targets))
        model = get_peft_model(model, lora)
    _dedupe_modules_to_save(model)
    _check_head_is_saved(model)
    return place(model, device.device)


def lora_targets(model, spec: str) -> list[str]:
    """Module names for LoRA: "all-linear" is every linear layer inside the transformer blocks
    (not the embeddings, not the head); otherwise a comma-separated list of names, each of
    which must match a layer (peft matches a name against the end of each module's path)."""
    from transformers.pytorch_utils import Conv1D

    linear = [name for name, m in model.named_modules()
              if isinstance(m, (torch.nn.Linear, Conv1D)) and name]
    if spec.strip().lower() == "all-linear":
        # Blocks sit in a ModuleList, so their paths have a numeric part: model.layers.3.mlp...
        in_blocks = [n for n in linear if re.search(r"\.\d+\.", f".{n}.")]
        if not in_blocks:
            raise RewardModelError("no linear layers found inside the model's transformer "
                                   "blocks; name the LoRA target modules explicitly.")
        leaves = sorted({n.rsplit(".", 1)[-1] for n in in_blocks})
        outside = {n.rsplit(".", 1)[-1] for n in linear if n not in in_blocks}
        # Short names keep adapter_config.json readable, unless one also names a layer
        # outside the blocks (the head included): then full paths, so nothing else matches.
        return in_blocks if outside & set(leaves) else leaves
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [t for t in names if not any(n == t or n.endswith("." + t) for n in linear)]
    if not names or unknown:
        known = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise RewardModelError(f"LoRA target {', '.join(unknown) or repr(spec)} matches no "
                               f"linear layer of this model; its layers are named "
                               f"{', '.join(known)}.")
    return names


def rewards(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One reward per row of a collated batch, as float32 on the model's device."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                use_cache=False)
    return out.logits[:, 0].float()


# ---- scoring ---------------------------------------------------------------------------------

class RewardScorer:
    """A trained reward model ready to score responses (eval mode, no gradients)."""

    def __init__(self, model, tokenizer, device: DeviceChoice, max_length: int,
                 batch_size: int = 16, stats: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.encoder = PairEncoder(tokenizer, max_length)
        self.batch_size = batch_size
        self.stats = stats  # reward mean/std over the training responses, when known

    @classmethod
    def load(cls, base_model_path: str | Path, adapter_dir: str | Path,
             device: str = "auto", batch_size: int = 16,
             quantize: str = "none") -> "RewardScorer":
        """The base model plus a saved reward adapter. The adapter folder's tokenizer (saved by
        training, pad token included) is used when present, else the base model's. Max length
        and reward statistics come from the run folder around the adapter, when it is one."""
        adapter = Path(adapter_dir).expanduser()
        if not (adapter / "adapter_config.json").is_file():
            raise RewardModelError(f"{adapter} is not a reward adapter folder: no "
                                   "adapter_config.json.")
        try:
            choice = pick_device(device, "auto")
        except ValueError as exc:
            raise RewardModelError(str(exc)) from exc
        check_base_model(base_model_path)
        tokenizer = reward_tokenizer(adapter, base_model_path)
        model = build_reward_model(base_model_path, tokenizer, choice, adapter_dir=adapter,
                                   quantize=quantize)
        return cls.for_run(model, tokenizer, choice, adapter, batch_size)

    @classmethod
    def for_run(cls, model, tokenizer, device: DeviceChoice, adapter: Path,
                batch_size: int = 16) -> "RewardScorer":
        """A scorer around ``model`` with the max length and reward statistics of the run
        folder around ``adapter``, when it is one."""
        run_config = _read_json(adapter.parent / "config.json") or {}
        max_length = int(run_config.get("max_length") or DEFAULT_MAX_LENGTH)
        return cls(model, tokenizer, device, max_length, batch_size,
                   stats=_read_json(adapter.parent / "reward_stats.json"))

    def score(self, prompt: str, responses: list[str],
              messages: list | None = None) -> list[float]:
        """The reward of each response to ``prompt`` (or to the conversation ``messages``)."""
        encoded = [ids for ids, _ in self.encoder.encode_texts(prompt, messages, responses)]
        scores: list[float] = []
        for start in range(0, len(encoded), 2 * self.batch_size):
            input_ids, attention_mask = pad_rows(encoded[start:start + 2 * self.batch_size],
                                                 self.tokenizer.pad_token_id)
            scores += self._forward(input_ids, attention_mask)
        return scores

    def score_pairs(self, rows: list[dict]) -> tuple[list[float], list[float]]:
        """Rewards of chosen and rejected for rows with prompt, prompt_messages (or messages),
        chosen and rejected: each pair goes through the model in one batch, as in training."""
        r_chosen: list[float] = []
        r_rejected: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            pairs = []
            for row in rows[start:start + self.batch_size]:
                messages = row.get("prompt_messages", row.get("messages"))
                (c, _), (r, _) = self.encoder.encode_texts(row["prompt"], messages,
                                                           [row["chosen"], row["rejected"]])
                pairs.append(EncodedPair(c, r, False, False))
            batch = collate(pairs, self.tokenizer.pad_token_id)
            values = self._forward(batch["input_ids"], batch["attention_mask"])
            r_chosen += values[:len(pairs)]
            r_rejected += values[len(pairs):]
        return r_chosen, r_rejected

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[float]:
        batch = {"input_ids": input_ids.to(self.device.device),
                 "attention_mask": attention_mask.to(self.device.device)}
        with torch.inference_mode():
            return rewards(self.model, batch).tolist()


def wrong_validation_pairs(workspace, run_id: int, limit: int = 50,
                           device: str = "auto") -> list[dict]:
    """Validation pairs of a reward run that its model ranks the wrong way round, the most
    confidently wrong first: prompt, chosen, rejected, r_chosen, r_rejected, margin
    (r_chosen - r_rejected, so negative). Ties have no right order and are left out."""
    from desktop_app.core.data.store import Store

    with Store(workspace.db_path) as store:
        run = store.get_run(run_id)
        if run is None or run.kind != RunKind.REWARD:
            raise RewardModelError(f"run {run_id} is not a reward-model run.")
        rows = {r["comparison_id"]: r for r in store.preference_rows()}
    run_dir = run.folder(workspace.runs_dir)
    adapter = Path(run.artifact) if run.artifact else run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        adapter = run_dir / "checkpoint" / "adapter"  # a cancelled run: its last checkpoint
    if not (adapter / "adapter_config.json").is_file() or not (run_dir / "split.json").is_file():
        raise RewardModelError(f"run {run_id} has no saved reward model yet.")
    val = [rows[i] for i in Split.load(run_dir / "split.json").val_ids
           if i in rows and not rows[i]["tie"]]
    if not val:
        return []
    scorer = RewardScorer.load(run.config["base_model"], adapter, device=device)
    r_chosen, r_rejected = scorer.score_pairs(val)
    wrong = [{"comparison_id": row["comparison_id"], "prompt": row["prompt"],
              "chosen": row["chosen"], "rejected": row["rejected"], "r_chosen": rc,
              "r_rejected": rr, "margin": rc - rr}
             for row, rc, rr in zip(val, r_chosen, r_rejected) if rc <= rr]
    wrong.sort(key=lambda w: w["margin"])
    return wrong[:limit]


# ---- helpers ---------------------------------------------------------------------------------

def _zero_dropout(config) -> None:
    """Every dropout probability in the config (names differ per architecture: attn_pdrop,
    hidden_dropout, attention_dropout, ...) set to 0, including a nested text config's."""
    configs = [config]
    if hasattr(config, "get_text_config") and config.get_text_config() is not config:
        configs.append(config.get_text_config())
    for c in configs:
        for key, value in list(vars(c).items()):
            if isinstance(value, float) and ("dropout" in key or key.endswith("pdrop")):
                setattr(c, key, 0.0)


def _is_conv1d(model, targets: list[str]) -> bool:
    """GPT-2 stores its linear layers transposed (Conv1D); LoRA must be told (fan_in_fan_out)."""
    from transformers.pytorch_utils import Conv1D

    hits = [m for name, m in model.named_modules()
            if any(name == t or name.endswith("." + t) for t in targets)]
    return bool(hits) and all(isinstance(m, Conv1D) for m in hits)


def _dedupe_modules_to_save(model) -> None:
    """peft adds its SEQ_CLS head names ("classifier", "score") to ``modules_to_save`` each time
    an adapter is made or loaded, so every resume wrote a longer list into adapter_config.json.
    Each name once, in its first place."""
    for config in model.peft_config.values():
        if getattr(config, "modules_to_save", None):
            config.modules_to_save = list(dict.fromkeys(config.modules_to_save))


def _check_head_is_saved(model) -> None:
    """Losing the score head on save is the classic reward-model bug; make it impossible."""
    config = model.peft_config[model.active_adapter]
    saved = set(getattr(config, "modules_to_save", None) or [])
    if not saved & {"score", "classifier"}:
        raise RewardModelError("the reward adapter does not save its score head "
                               "(modules_to_save); it cannot be used.")


@contextlib.contextmanager
def _quiet_transformers():
    """from_pretrained logs a report naming the new score head as missing: expected here."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
