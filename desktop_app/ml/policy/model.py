"""A LoRA policy on one frozen causal-LM base, and its KL reference: what every policy-training
method (PPO, RLOO, DPO) starts from.

    base causal LM (frozen, dropout off, 8/4-bit when asked) ─┬─ LoRA "policy" (trainable)
                                                              └─ adapters off, or LoRA
                                                                 "reference" (frozen)

The reference is the starting policy: the base with adapters off when training starts from the
base, or a frozen copy ("reference") of the starting adapter when it starts from an earlier
policy (the next round), because switching a fine-tuned starting adapter off would give the
wrong reference.

    load_causal_base     the base, frozen, its own dropout off (dropout makes PPO's ratio and
                         DPO's log-probability differences noisy)
    attach_policy        the policy LoRA (fresh, B = 0, so it starts as the base; or a
                         starting adapter) and the reference copy when there is one
    build_policy_model   both, trainable weights in fp32, on the device: a ``PolicyModel``

PPO builds its value and reward adapters on top of the same two steps (``ml.ppo.models``).
peft pitfall avoided here: ``PeftModel.set_adapter`` and ``disable_adapter`` also flip
``requires_grad``; ``PolicyModel.use`` switches the LoRA layers directly (``lora_switch``) and
trainability is set once, when the model is built.
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
from desktop_app.ml.models.quantize import (
    QuantizationError,
    keep_plain_cpu_layout_where_packing_fails,
    load_kwargs,
    place,
    quantization_of,
)
from desktop_app.ml.models.stack import building_a_model
from desktop_app.ml.reward.adapter import (
    AdapterError,
    add_adapter,
    causal_config,
    load_lora_weights,
)
from desktop_app.ml.reward.model import (
    RewardModelError,
    _is_conv1d,
    _quiet_transformers,
    _zero_dropout,
    check_base_model,
    load_tokenizer,
    lora_targets,
)

POLICY, REFERENCE = "policy", "reference"


class PolicyModelError(UserError):
    """The policy model cannot be built; the message says which folder and why."""


@dataclass
class LoraSpec:
    r: int
    alpha: int
    dropout: float
    target_modules: str


class PolicyModel:
    """The base with its policy adapter (and reference); see the module docstring."""

    def __init__(self, peft_model, tokenizer, device: DeviceChoice, base_path: str,
                 reference: str | None):
        self.peft = peft_model
        self.tokenizer = tokenizer
        self.device = device
        self.base_path = base_path
        self.reference = reference  # None: the base with adapters off
        self.base = peft_model.get_base_model()
        self.body = self.base.base_model  # GPT2Model, LlamaModel, ...: the part without LM head
        self._layers = tuner_layers(peft_model)
        self.lm = LoadedModel(model=peft_model, tokenizer=tokenizer,
                              info=inspect_model_folder(base_path), device=device, path=base_path,
                              adapter=POLICY, quantize=quantization_of(peft_model))

    def use(self, name: str | None):
        """Run the forward passes inside with only adapter ``name`` active (None = adapters
        off, the bare base). Never changes ``requires_grad``."""
        return only_adapter(self._layers, name)

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.peft.named_parameters() if p.requires_grad]

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

def load_causal_base(folder: Path, device: DeviceChoice, quantize: str, tokenizer,
                     error: type[UserError] = PolicyModelError):
    """The base causal LM on ``device`` at ``device.dtype`` (block linears in 8 or 4 bits when
    ``quantize`` says so), every weight frozen, its own dropout off."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        _zero_dropout(config)
        with _quiet_transformers(), building_a_model():
            base = AutoModelForCausalLM.from_pretrained(
                folder, config=config, local_files_only=True,
                **load_kwargs(quantize, device.device, device.torch_dtype))
    except Exception as exc:
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError, QuantizationError)):
            raise
        raise error(f"Could not load {folder} as a causal LM: {_first_line(exc)}") from exc
    keep_plain_cpu_layout_where_packing_fails(base)
    if base.generation_config.pad_token_id is None:
        base.generation_config.pad_token_id = tokenizer.pad_token_id
    for p in base.parameters():
        p.requires_grad_(False)
    return base


def attach_policy(base, lora: LoraSpec, *, policy_adapter: str | Path | None, seed: int,
                  error: type[UserError] = PolicyModelError):
    """(peft model, reference): the policy LoRA on ``base``, fresh from ``seed`` (B = 0, so it
    starts as the base; reference None = adapters off) or loaded from ``policy_adapter`` (a
    causal-LM LoRA folder; its frozen copy "reference" is then the reference)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    try:
        targets = lora_targets(base, lora.target_modules)
    except RewardModelError as exc:
        raise error(str(exc)) from exc
    config = LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                        lora_dropout=lora.dropout, target_modules=targets,
                        fan_in_fan_out=_is_conv1d(base, targets))
    try:
        if policy_adapter is None:
            return get_peft_model(base, config, adapter_name=POLICY), None
        start = Path(policy_adapter).expanduser()
        if not (start / "adapter_config.json").is_file():
            raise AdapterError(f"{start} is not a policy adapter folder: no "
                               "adapter_config.json.")
        model = get_peft_model(base, causal_config(start / "adapter_config.json"),
                               adapter_name=POLICY)
        load_lora_weights(model, POLICY, start / "adapter_model.safetensors")
        add_adapter(model, REFERENCE, causal_config(start / "adapter_config.json"), start)
        load_lora_weights(model, REFERENCE, start / "adapter_model.safetensors")
        return model, REFERENCE
    except AdapterError as exc:
        raise error(str(exc)) from exc


def set_trainable(model, adapters: tuple[str, ...]) -> None:
    """Only the LoRA weights of ``adapters`` train, in fp32 (the frozen base may be bf16 or
    fp16); everything else is frozen, once and for all."""
    for name, p in model.named_parameters():
        trainable = any(f".{a}." in name for a in adapters)
        p.requires_grad_(trainable)
        if trainable:
            p.data = p.data.float()


def build_policy_model(base_model: str | Path, device: DeviceChoice, lora: LoraSpec, *,
                       policy_adapter: str | Path | None = None, seed: int = 0,
                       quantize: str = "none") -> PolicyModel:
    """The base, the trainable policy and its reference on ``device``; see the module
    docstring. Tokenizer: the base's, right padding (``generate_tokens`` pads prompts
    itself)."""
    folder = check_base_model(base_model)
    tokenizer = load_tokenizer(folder)
    base = load_causal_base(folder, device, quantize, tokenizer)
    model, reference = attach_policy(base, lora, policy_adapter=policy_adapter, seed=seed)
    set_trainable(model, (POLICY,))
    model = place(model, device.device)
    model.eval()
    return PolicyModel(model, tokenizer, device, str(folder), reference)
