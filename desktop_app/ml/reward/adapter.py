"""A reward run's adapter attached to a causal LM, so one copy of the base weights both
generates and scores.

A reward adapter is trained on ``AutoModelForSequenceClassification``. Its LoRA weights sit on
the body modules the causal LM shares (``transformer.h.*`` for GPT-2, ``model.layers.*`` for
Llama-style models; checked on load: every saved LoRA weight must find its layer), and its
saved ``score`` head reads the body's final hidden state at the last non-pad token. Loading both
into the causal LM under an adapter name gives the sequence classifier's scores without a second
base model in memory. PPO (``ppo_models``) and the playground both do this.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from desktop_app.core.errors import UserError
from desktop_app.ml.models.loader import _first_line
from desktop_app.ml.models.lora_switch import only_adapter, tuner_layers

HEAD_NAMES = ("score", "classifier")


class AdapterError(UserError):
    """An adapter folder cannot be read or does not fit the base model; the message says which
    folder and why."""


# ---- reading adapter folders -----------------------------------------------------------------

def causal_config(path: Path):
    """A saved LoRA config reused for the causal LM: same targets, rank and scale; no
    modules_to_save (the score head is applied separately, not as a module of the LM)."""
    from peft import LoraConfig

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"Cannot read the adapter config {path}: {exc}") from exc
    if data.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{path.parent} is a {data.get('peft_type')} adapter; only LoRA "
                           "adapters can share the base model.")
    known = set(LoraConfig.__dataclass_fields__)
    # The base it names is the one it is being attached to; a path saved on another machine
    # would only make peft warn.
    data = {k: v for k, v in data.items() if k in known and k != "base_model_name_or_path"}
    data.update(task_type="CAUSAL_LM", modules_to_save=None, inference_mode=False)
    return LoraConfig(**data)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise AdapterError(f"Cannot read the adapter weights {path}: {_first_line(exc)}") from exc


def is_head_key(key: str) -> bool:
    parts = key.split(".")
    return any(p in HEAD_NAMES for p in parts) and "lora_A" not in parts and "lora_B" not in parts


def reward_weights(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A reward adapter's (LoRA weights, score-head weights)."""
    if not (folder / "adapter_config.json").is_file():
        raise AdapterError(f"{folder} is not a reward adapter folder: no adapter_config.json.")
    weights = read_safetensors(folder / "adapter_model.safetensors")
    head = {k: v for k, v in weights.items() if is_head_key(k)}
    if not head:
        raise AdapterError(f"The reward adapter in {folder} has no score head; it cannot score "
                           "responses.")
    return {k: v for k, v in weights.items() if not is_head_key(k)}, head


def head_from(weights: dict[str, torch.Tensor], source: Path) -> torch.nn.Linear:
    """The score head as a float32 linear layer (the body may be bf16/fp16)."""
    weight = next(v for k, v in weights.items() if k.endswith(".weight"))
    bias = next((v for k, v in weights.items() if k.endswith(".bias")), None)
    if weight.ndim != 2 or weight.shape[0] != 1:
        raise AdapterError(f"The reward head in {source} has shape {tuple(weight.shape)}; a "
                           "single-output head is needed.")
    head = torch.nn.Linear(weight.shape[1], 1, bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight.float())
        if bias is not None:
            head.bias.copy_(bias.float())
    return head


# ---- attaching -------------------------------------------------------------------------------

def add_adapter(model, name: str, config, source: Path) -> None:
    try:
        model.add_adapter(name, config)
    except ValueError as exc:  # peft: "Target modules ... not found in the base model"
        raise AdapterError(f"The adapter in {source} does not fit this base model: "
                           f"{_first_line(exc)}") from exc


def load_lora_weights(model, adapter: str, weights, source: Path | None = None) -> None:
    """Put saved LoRA weights into adapter ``adapter``; every saved weight must find its module
    (the sequence classifier's body paths must match the causal LM's)."""
    from peft import set_peft_model_state_dict

    if not isinstance(weights, dict):
        source = source or Path(weights).parent
        weights = read_safetensors(Path(weights))
    try:
        result = set_peft_model_state_dict(model, weights, adapter_name=adapter)
    except RuntimeError as exc:  # torch: "size mismatch for ...": another model's adapter
        raise AdapterError(f"The adapter in {source} does not fit this base model: "
                           f"{_first_line(exc)}") from exc
    unexpected = [k for k in result.unexpected_keys if "lora_" in k]
    if unexpected:
        raise AdapterError(
            f"The adapter in {source} does not fit this base model: {len(unexpected)} of its "
            f"weights have no matching layer (e.g. {unexpected[0]}).")


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... over the real tokens of each (left-padded) row, as generate() uses them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_token_scores(hidden: torch.Tensor, sequences: torch.Tensor,
                      attention_mask: torch.Tensor, pad_id: int | None,
                      head: torch.nn.Linear) -> torch.Tensor:
    """The head read where the sequence classifier reads it: at the rightmost token that is
    neither masked out nor the pad token. One float32 score per row."""
    real = attention_mask.bool()
    if pad_id is not None:
        real = real & (sequences != pad_id)
    positions = torch.arange(sequences.shape[1], device=sequences.device)
    last = (positions * real).argmax(dim=1)
    rows = torch.arange(sequences.shape[0], device=sequences.device)
    return head(hidden[rows, last].float()).squeeze(-1)


class RewardOnBody:
    """The reward model as a view of a peft causal LM that carries the reward adapter under
    ``adapter``. Called like the sequence classifier (``.logits`` is rows x 1), so
    ``reward_model.RewardScorer`` scores with it unchanged."""

    def __init__(self, peft_model, adapter: str, head: torch.nn.Linear, pad_id: int | None):
        self.peft = peft_model
        self.adapter = adapter
        self.head = head
        self.pad_id = pad_id

    def eval(self) -> RewardOnBody:
        self.peft.eval()
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 use_cache: bool = False):
        from types import SimpleNamespace

        body = self.peft.get_base_model().base_model  # LlamaModel, GPT2Model: no LM head
        # Layers are looked up per call: a policy adapter attached later may add new ones, and
        # they must be switched off too while the reward adapter scores.
        with only_adapter(tuner_layers(self.peft), self.adapter):
            hidden = body(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids(attention_mask),
                          use_cache=False).last_hidden_state
        scores = last_token_scores(hidden, input_ids, attention_mask, self.pad_id, self.head)
        return SimpleNamespace(logits=scores.unsqueeze(-1))


def attach_reward(model, folder: str | Path, name: str, pad_id: int | None):
    """Add the reward adapter in ``folder`` to ``model`` (a causal LM, or a peft model around
    one) as frozen adapter ``name``. Returns (the peft model, now carrying it; its
    ``RewardOnBody``). The caller keeps the returned model: a bare causal LM gets wrapped.
    An adapter that does not fit raises ``AdapterError`` and leaves ``model`` as it was."""
    from peft import PeftModel, get_peft_model

    folder = Path(folder).expanduser()
    lora, head_weights = reward_weights(folder)
    config = causal_config(folder / "adapter_config.json")
    head = head_from(head_weights, folder)
    wrapped = not isinstance(model, PeftModel)
    if wrapped:
        try:
            model = get_peft_model(model, config, adapter_name=name)
        except ValueError as exc:  # peft: "Target modules ... not found in the base model"
            raise AdapterError(f"The adapter in {folder} does not fit this base model: "
                               f"{_first_line(exc)}") from exc
    else:
        add_adapter(model, name, config, folder)
    try:
        load_lora_weights(model, name, lora, source=folder)
    except AdapterError:
        # Take the half-attached adapter out again: the base must generate as before. (A bare
        # model was changed in place by the wrapping; unload() puts its own layers back.)
        if wrapped:
            model.unload()
        else:
            model.delete_adapter(name)
        raise
    for param_name, p in model.named_parameters():
        if f".{name}." in param_name:
            p.requires_grad_(False)
    device = next(model.parameters()).device
    return model, RewardOnBody(model, name, head.to(device), pad_id)
