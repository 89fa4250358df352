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

The base, the policy and its reference (the starting policy: adapters off, or a frozen copy of
a starting adapter) are built as for every policy-training method (``ml.policy.model``); this
module adds the reward and value adapters and their heads.

peft pitfall avoided here: ``PeftModel.set_adapter`` and ``disable_adapter`` also flip
``requires_grad`` (the active adapter becomes trainable, the others frozen). Switching adapters
between the policy and value passes that way would freeze the policy mid-step and make the
frozen reward adapter trainable. ``use`` switches the active adapter on the LoRA layers directly
and never touches ``requires_grad``; trainability is set once, in ``build_ppo_models``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from desktop_app.core.errors import UserError
from desktop_app.ml.models.device import DeviceChoice
from desktop_app.ml.models.quantize import place
from desktop_app.ml.policy.model import (
    POLICY,
    REFERENCE,
    LoraSpec,
    PolicyModel,
    attach_policy,
    load_causal_base,
    set_trainable,
)
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
from desktop_app.ml.reward.model import check_base_model, load_tokenizer, reward_tokenizer

VALUE, REWARD = "value", "reward"
__all__ = ["POLICY", "REFERENCE", "VALUE", "REWARD", "LoraSpec", "PPOModels", "PPOModelError",
           "build_ppo_models"]


class PPOModelError(UserError):
    """The PPO models cannot be built; the message says which folder and why."""


class PPOModels(PolicyModel):
    """The policy model (``ml.policy.model``) with PPO's value and reward adapters and heads;
    see the module docstring."""

    def __init__(self, peft_model, tokenizer, reward_head: torch.nn.Linear,
                 value_head: torch.nn.Linear | None, device: DeviceChoice, base_path: str,
                 reward_pad_id: int, reference: str | None):
        super().__init__(peft_model, tokenizer, device, base_path, reference)
        self.reward_head = reward_head
        self.value_head = value_head
        self.reward_pad_id = reward_pad_id

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        named = super().trainable_parameters()
        if self.value_head is not None:
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

# ---- building --------------------------------------------------------------------------------

def build_ppo_models(base_model: str | Path, reward_adapter: str | Path, device: DeviceChoice,
                     lora: LoraSpec, *, policy_adapter: str | Path | None = None,
                     seed: int = 0, quantize: str = "none", value: bool = True) -> PPOModels:
    """Base causal LM + the four adapters/heads, on ``device`` at ``device.dtype``; the base's
    block linears in 8 or 4 bits when ``quantize`` says so (QLoRA: all four adapters sit on
    the one quantised base).

    ``policy_adapter``: start from an existing causal-LM LoRA adapter (its frozen copy becomes
    the reference); None starts from the base (reference = adapters off). ``value=False``
    leaves the value adapter and head out (RLOO has no value model)."""
    folder = check_base_model(base_model)
    reward_dir = Path(reward_adapter).expanduser()
    if not (reward_dir / "adapter_config.json").is_file():
        raise PPOModelError(f"{reward_dir} is not a reward adapter folder: no adapter_config.json.")
    reward_pad_id = reward_tokenizer(reward_dir, folder).pad_token_id
    tokenizer = load_tokenizer(folder)  # right padding; generate_tokens pads prompts itself

    # 1. The base (frozen, its own dropout off) and 2. the policy with its reference.
    base = load_causal_base(folder, device, quantize, tokenizer, PPOModelError)
    model, reference = attach_policy(base, lora, policy_adapter=policy_adapter, seed=seed,
                                     error=PPOModelError)
    try:
        # 3. The reward adapter on the same body, and its head; the value model as a copy of
        #    both.
        lora_weights, head_weights = reward_weights(reward_dir)
        reward_config = causal_config(reward_dir / "adapter_config.json")
        add_adapter(model, REWARD, reward_config, reward_dir)
        load_lora_weights(model, REWARD, lora_weights, source=reward_dir)
        if value:
            add_adapter(model, VALUE, copy.deepcopy(reward_config), reward_dir)
            load_lora_weights(model, VALUE, lora_weights, source=reward_dir)
        reward_head = head_from(head_weights, reward_dir)
    except AdapterError as exc:
        raise PPOModelError(str(exc)) from exc
    value_head = copy.deepcopy(reward_head) if value else None

    # 4. Trainable: the policy and value LoRA weights and the value head, in fp32 (the frozen
    #    base may be bf16/fp16). Everything else frozen, once and for all.
    set_trainable(model, (POLICY, VALUE) if value else (POLICY,))
    reward_head.requires_grad_(False)
    model = place(model, device.device)
    reward_head.to(device.device)
    if value_head is not None:
        value_head.requires_grad_(True)
        value_head.to(device.device)
    model.eval()
    return PPOModels(model, tokenizer, reward_head, value_head, device, str(folder),
                     reward_pad_id, reference)
