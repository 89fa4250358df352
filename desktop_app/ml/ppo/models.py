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
non-pad token, as the sequence classifier does (``reward_adapter``, shared with the playground).
The value model starts as a trainable copy of the reward model (its LoRA weights and head), as
in TRL, where the value model is initialised from the reward model.

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
from dataclasses import dataclass
from pathlib import Path

import torch

from desktop_app.core.errors import UserError
from desktop_app.ml.models.device import DeviceChoice
from desktop_app.ml.models.folder_check import inspect_model_folder
from desktop_app.ml.models.loader import LoadedModel, _first_line
from desktop_app.ml.models.lora_switch import only_adapter, tuner_layers
from desktop_app.ml.models.quantize import QuantizationError, load_kwargs, place, quantization_of
from desktop_app.ml.reward.adapter import (
    AdapterError,
    add_adapter,
    causal_config,
    head_from,
    last_token_scores,
    load_lora_weights,
    position_ids,
    reward_weights,
)
from desktop_app.ml.reward.model import (
    RewardModelError,
    _is_conv1d,
    _quiet_transformers,
    _zero_dropout,
    check_base_model,
    load_tokenizer,
    lora_targets,
    reward_tokenizer,
)

POLICY, VALUE, REWARD, REFERENCE = "policy", "value", "reward", "reference"


class PPOModelError(UserError):
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
                              adapter=POLICY, quantize=quantization_of(peft_model))

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
        from desktop_app.ml.ppo.algorithm import entropy_from_logits, logprobs_from_logits

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
        return last_token_scores(hidden, sequences, attention_mask, self.reward_pad_id,
                                 self.reward_head)

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
        load_lora_weights(self.peft, name, folder / "adapter_model.safetensors")


# ---- building --------------------------------------------------------------------------------

def build_ppo_models(base_model: str | Path, reward_adapter: str | Path, device: DeviceChoice,
                     lora: LoraSpec, *, policy_adapter: str | Path | None = None,
                     seed: int = 0, quantize: str = "none") -> PPOModels:
    """Base causal LM + the four adapters/heads, on ``device`` at ``device.dtype``; the base's
    block linears in 8 or 4 bits when ``quantize`` says so (QLoRA: all four adapters sit on
    the one quantised base).

    ``policy_adapter``: start from an existing causal-LM LoRA adapter (its frozen copy becomes
    the reference); None starts from the base (reference = adapters off)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = check_base_model(base_model)
    reward_dir = Path(reward_adapter).expanduser()
    if not (reward_dir / "adapter_config.json").is_file():
        raise PPOModelError(f"{reward_dir} is not a reward adapter folder: no adapter_config.json.")
    reward_pad_id = reward_tokenizer(reward_dir, folder).pad_token_id
    tokenizer = load_tokenizer(folder)  # right padding; generate_tokens pads prompts itself

    # 1. The base, with its own dropout off: dropout would make the PPO ratio noisy.
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        _zero_dropout(config)
        with _quiet_transformers():
            base = AutoModelForCausalLM.from_pretrained(
                folder, config=config, local_files_only=True,
                **load_kwargs(quantize, device.device, device.torch_dtype))
    except Exception as exc:
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError, QuantizationError)):
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
    try:
        reference = None
        if policy_adapter is not None:
            start = Path(policy_adapter).expanduser()
            policy_config = causal_config(start / "adapter_config.json")
        model = get_peft_model(base, policy_config, adapter_name=POLICY)
        if policy_adapter is not None:
            load_lora_weights(model, POLICY, start / "adapter_model.safetensors")
            add_adapter(model, REFERENCE, causal_config(start / "adapter_config.json"), start)
            load_lora_weights(model, REFERENCE, start / "adapter_model.safetensors")
            reference = REFERENCE

        # 3. The reward adapter on the same body, and its head; the value model as a copy of
        #    both.
        lora_weights, head_weights = reward_weights(reward_dir)
        reward_config = causal_config(reward_dir / "adapter_config.json")
        add_adapter(model, REWARD, reward_config, reward_dir)
        load_lora_weights(model, REWARD, lora_weights, source=reward_dir)
        add_adapter(model, VALUE, copy.deepcopy(reward_config), reward_dir)
        load_lora_weights(model, VALUE, lora_weights, source=reward_dir)
        reward_head = head_from(head_weights, reward_dir)
    except AdapterError as exc:
        raise PPOModelError(str(exc)) from exc
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
    model = place(model, device.device)
    reward_head.to(device.device)
    value_head.to(device.device)
    model.eval()
    return PPOModels(model, tokenizer, reward_head, value_head, device, str(folder),
                     reward_pad_id, reference)
