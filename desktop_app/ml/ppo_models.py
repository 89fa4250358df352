"""The four PPO models on ONE frozen copy of the base weights.

    base causal LM (frozen) ─┬─ LoRA "policy"  (trainable)            -> LM head  -> log-probs
                             ├─ LoRA "value"   (trainable) + value head           -> values
                             ├─ LoRA "reward"  (frozen)    + reward head          -> scores
                             └─ adapters off, or LoRA "reference" (frozen)        -> ref log-probs

A forward pass runs with exactly one adapter active (``PPOModels.use``). The reward model is the
reward run's adapter (trained on ``AutoModelForSequenceClassification``) loaded into the causal
LM: its LoRA weights sit on the same body modules (``transformer.h.*`` for GPT-2, ``model.layers.*``
for Llama-style models: the sequence classifier and the causal LM share the body's module paths,
checked on load), and its saved ``score`` head reads the body's final hidden state at the last
non-pad token, as the sequence classifier does. The value model starts as a trainable copy of
the reward model (its LoRA weights and head), as in TRL, where the value model is initialised
from the reward model.

The reference policy is the starting policy: the base with adapters off when PPO starts from
the base, or a frozen copy ("reference") of a starting adapter, because switching a fine-tuned
starting adapter off would give the wrong reference.

peft pitfall avoided here: ``PeftModel.set_adapter`` and ``disable_adapter`` also flip
``requires_grad`` (the active adapter becomes trainable, the others frozen). Switching adapters
between the policy and value passes that way would freeze the policy mid-step and make the
frozen reward adapter trainable. ``use`` switches the active adapter on the LoRA layers directly
and never touches ``requires_grad``; trainability is set once, in ``build_ppo_models``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import DeviceChoice
from .lora_switch import only_adapter, tuner_layers
from .model_inspect import inspect_model_folder
from .model_loader import LoadedModel, _first_line
from .reward_model import (
    RewardModelError,
    _is_conv1d,
    _quiet_transformers,
    _zero_dropout,
    check_base_model,
    load_tokenizer,
    lora_targets,
)

POLICY, VALUE, REWARD, REFERENCE = "policy", "value", "reward", "reference"
_HEAD_NAMES = ("score", "classifier")


class PPOModelError(Exception):
    """The PPO models cannot be built; the message says which folder and why."""


@dataclass
class LoraSpec:
    r: int
    alpha: int
    dropout: float
    target_modules: str


class PPOModels:
    """The base model with its adapters and heads; see the module docstring."""

    def __init__(self, peft_model, tokenizer, reward_head: torch.nn.Linear,
                 value_head: torch.nn.Linear, device: DeviceChoice, base_path: str,
                 reward_pad_id: int, reference: str | None):
        self.peft = peft_model
        self.tokenizer = tokenizer
        self.reward_head = reward_head
        self.value_head = value_head
        self.device = device
        self.base_path = base_path
        self.reward_pad_id = reward_pad_id
        self.reference = reference  # None: the base with adapters off
        self.base = peft_model.get_base_model()
        self.body = self.base.base_model  # GPT2Model, LlamaModel, ...: the part without LM head
        self._layers = tuner_layers(peft_model)
        self.lm = LoadedModel(model=peft_model, tokenizer=tokenizer,
                              info=inspect_model_folder(base_path), device=device, path=base_path,
                              adapter=POLICY)

    # ---- adapters ----------------------------------------------------------------------------

    def use(self, name: str | None):
        """Run the forward passes inside with only adapter ``name`` active (None = adapters
        off, the bare base). Never changes ``requires_grad``."""
        return only_adapter(self._layers, name)

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        named = [(n, p) for n, p in self.peft.named_parameters() if p.requires_grad]
        named += [(f"value_head.{n}", p) for n, p in self.value_head.named_parameters()]
        return named

    # ---- forward passes ----------------------------------------------------------------------

    def logprobs(self, adapter: str | None, sequences: torch.Tensor, attention_mask: torch.Tensor,
                 prompt_width: int, temperature: float = 1.0,
                 with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log p of each response token (columns after ``prompt_width``) under ``adapter`` at
        the sampling temperature, and optionally the entropy of each position (rows, T)."""
        from .ppo_core import entropy_from_logits, logprobs_from_logits

        n = sequences.shape[1] - prompt_width
        with self.use(adapter):
            out = self.peft(input_ids=sequences, attention_mask=attention_mask,
                            position_ids=position_ids(attention_mask), use_cache=False,
                            logits_to_keep=n + 1)
        logits = out.logits[:, :-1].float() / temperature
        logp = logprobs_from_logits(logits, sequences[:, prompt_width:])
        return logp, entropy_from_logits(logits) if with_entropy else None

    def reference_logprobs(self, sequences, attention_mask, prompt_width, temperature=1.0):
        return self.logprobs(self.reference, sequences, attention_mask, prompt_width,
                             temperature)[0]

    def hidden_states(self, adapter: str | None, sequences: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
        """The body's final hidden states (final norm included) under ``adapter``."""
        with self.use(adapter):
            out = self.body(input_ids=sequences, attention_mask=attention_mask,
                            position_ids=position_ids(attention_mask), use_cache=False)
        return out.last_hidden_state

    def values(self, sequences: torch.Tensor, attention_mask: torch.Tensor,
               prompt_width: int) -> torch.Tensor:
        """V(state before each response token): the value head on the hidden states of the
        positions that predict the response tokens, (rows, T), float32."""
        hidden = self.hidden_states(VALUE, sequences, attention_mask)
        hidden = hidden[:, prompt_width - 1:-1]
        return self.value_head(hidden.float()).squeeze(-1)

    def scores(self, sequences: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Reward-model score of each row, read where the sequence classifier reads it: at the
        rightmost token that is neither masked out nor the pad token."""
        hidden = self.hidden_states(REWARD, sequences, attention_mask)
        real = attention_mask.bool() & (sequences != self.reward_pad_id)
        positions = torch.arange(sequences.shape[1], device=sequences.device)
        last = (positions * real).argmax(dim=1)
        rows = torch.arange(sequences.shape[0], device=sequences.device)
        return self.reward_head(hidden[rows, last].float()).squeeze(-1)

    # ---- saving --------------------------------------------------------------------------------

    def save_adapter(self, name: str, out_dir: Path, tokenizer: bool = False) -> None:
        """A standard PEFT adapter folder (adapter_config.json + adapter_model.safetensors) for
        ``name``; loads with ``PeftModel.from_pretrained(AutoModelForCausalLM..., out_dir)``."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        state = get_peft_model_state_dict(self.peft, adapter_name=name)
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
                  str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = copy.deepcopy(self.peft.peft_config[name])
        config.inference_mode = True
        config.base_model_name_or_path = self.base_path
        config.save_pretrained(str(out_dir))
        if tokenizer:
            self.tokenizer.save_pretrained(str(out_dir))

    def load_adapter_weights(self, name: str, folder: Path) -> None:
        _load_lora_weights(self.peft, name, folder / "adapter_model.safetensors",
                           strict_prefix=None)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... over the real tokens of each (left-padded) row, as generate() uses them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


# ---- building --------------------------------------------------------------------------------

def build_ppo_models(base_model: str | Path, reward_adapter: str | Path, device: DeviceChoice,
                     lora: LoraSpec, *, policy_adapter: str | Path | None = None,
                     seed: int = 0) -> PPOModels:
    """Base causal LM + the four adapters/heads, on ``device`` at ``device.dtype``.

    ``policy_adapter``: start from an existing causal-LM LoRA adapter (its frozen copy becomes
    the reference); None starts from the base (reference = adapters off)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = check_base_model(base_model)
    reward_dir = Path(reward_adapter).expanduser()
    if not (reward_dir / "adapter_config.json").is_file():
        raise PPOModelError(f"{reward_dir} is not a reward adapter folder: no adapter_config.json.")
    has_tokenizer = (reward_dir / "tokenizer_config.json").is_file()
    reward_pad_id = load_tokenizer(reward_dir if has_tokenizer else folder).pad_token_id
    tokenizer = load_tokenizer(folder)  # right padding; generate_tokens pads prompts itself

    # 1. The base, with its own dropout off: dropout would make the PPO ratio noisy.
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        _zero_dropout(config)
        with _quiet_transformers():
            base = AutoModelForCausalLM.from_pretrained(folder, config=config,
                                                        dtype=device.torch_dtype,
                                                        local_files_only=True)
    except Exception as exc:
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
            raise
        raise PPOModelError(f"Could not load {folder} as a causal LM: {_first_line(exc)}") from exc
    if base.generation_config.pad_token_id is None:
        base.generation_config.pad_token_id = tokenizer.pad_token_id
    for p in base.parameters():
        p.requires_grad_(False)

    # 2. The policy: a fresh LoRA (B = 0, so it starts as the base), or a starting adapter.
    torch.manual_seed(seed)
    try:
        targets = lora_targets(base, lora.target_modules)
    except RewardModelError as exc:
        raise PPOModelError(str(exc)) from exc
    policy_config = LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                               lora_dropout=lora.dropout, target_modules=targets,
                               fan_in_fan_out=_is_conv1d(base, targets))
    reference = None
    if policy_adapter is not None:
        start = Path(policy_adapter).expanduser()
        policy_config = _causal_config(start / "adapter_config.json")
    model = get_peft_model(base, policy_config, adapter_name=POLICY)
    if policy_adapter is not None:
        _load_lora_weights(model, POLICY, start / "adapter_model.safetensors")
        _add_adapter(model, REFERENCE, _causal_config(start / "adapter_config.json"), start)
        _load_lora_weights(model, REFERENCE, start / "adapter_model.safetensors")
        reference = REFERENCE

    # 3. The reward adapter on the same body, and its head; the value model as a copy of both.
    reward_config = _causal_config(reward_dir / "adapter_config.json")
    weights = _read_safetensors(reward_dir / "adapter_model.safetensors")
    head = {k: v for k, v in weights.items() if _is_head_key(k)}
    if not head:
        raise PPOModelError(f"The reward adapter in {reward_dir} has no score head; it cannot "
                            "score responses.")
    lora_weights = {k: v for k, v in weights.items() if not _is_head_key(k)}
    _add_adapter(model, REWARD, reward_config, reward_dir)
    _load_lora_weights(model, REWARD, lora_weights, source=reward_dir)
    _add_adapter(model, VALUE, copy.deepcopy(reward_config), reward_dir)
    _load_lora_weights(model, VALUE, lora_weights, source=reward_dir)
    reward_head = _head(head, base.config, reward_dir)
    value_head = copy.deepcopy(reward_head)

    # 4. Trainable: the policy and value LoRA weights and the value head, in fp32 (the frozen
    #    base may be bf16/fp16). Everything else frozen, once and for all.
    for name, p in model.named_parameters():
        trainable = f".{POLICY}." in name or f".{VALUE}." in name
        p.requires_grad_(trainable)
        if trainable:
            p.data = p.data.float()
    reward_head.requires_grad_(False)
    value_head.requires_grad_(True)
    model.to(device.device)
    reward_head.to(device.device)
    value_head.to(device.device)
    model.eval()
    return PPOModels(model, tokenizer, reward_head, value_head, device, str(folder),
                     reward_pad_id, reference)


# ---- helpers ---------------------------------------------------------------------------------

def _causal_config(path: Path):
    """A saved LoRA config reused for the causal LM: same targets, rank and scale; no
    modules_to_save (the score head is applied separately, not as a module of the LM)."""
    from peft import LoraConfig

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PPOModelError(f"Cannot read the adapter config {path}: {exc}") from exc
    if data.get("peft_type", "LORA") != "LORA":
        raise PPOModelError(f"{path.parent} is a {data.get('peft_type')} adapter; PPO needs LoRA.")
    known = set(LoraConfig.__dataclass_fields__)
    data = {k: v for k, v in data.items() if k in known}
    data.update(task_type="CAUSAL_LM", modules_to_save=None, inference_mode=False)
    return LoraConfig(**data)


def _add_adapter(model, name: str, config, source: Path) -> None:
    try:
        model.add_adapter(name, config)
    except ValueError as exc:  # peft: "Target modules ... not found in the base model"
        raise PPOModelError(f"The adapter in {source} does not fit this base model: "
                            f"{_first_line(exc)}") from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise PPOModelError(f"Cannot read the adapter weights {path}: {_first_line(exc)}") from exc


def _is_head_key(key: str) -> bool:
    parts = key.split(".")
    return any(p in _HEAD_NAMES for p in parts) and "lora_A" not in parts and "lora_B" not in parts


def _load_lora_weights(model, adapter: str, weights, source: Path | None = None,
                       strict_prefix=None) -> None:
    """Put saved LoRA weights into adapter ``adapter``; every saved weight must find its module
    (the sequence classifier's body paths must match the causal LM's)."""
    from peft import set_peft_model_state_dict

    if not isinstance(weights, dict):
        source = source or Path(weights).parent
        weights = _read_safetensors(Path(weights))
    result = set_peft_model_state_dict(model, weights, adapter_name=adapter)
    unexpected = [k for k in result.unexpected_keys if "lora_" in k]
    if unexpected:
        raise PPOModelError(
            f"The adapter in {source} does not fit this base model: {len(unexpected)} of its "
            f"weights have no matching layer (e.g. {unexpected[0]}).")


def _head(weights: dict[str, torch.Tensor], config, source: Path) -> torch.nn.Linear:
    weight = next(v for k, v in weights.items() if k.endswith(".weight"))
    bias = next((v for k, v in weights.items() if k.endswith(".bias")), None)
    if weight.ndim != 2 or weight.shape[0] != 1:
        raise PPOModelError(f"The reward head in {source} has shape {tuple(weight.shape)}; a "
                            "single-output head is needed.")
    head = torch.nn.Linear(weight.shape[1], 1, bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight.float())
        if bias is not None:
            head.bias.copy_(bias.float())
    return head
