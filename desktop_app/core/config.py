"""Typed configuration. Every field carries help text in ``metadata`` so that the CLI and the
GUI settings forms are generated from one place: a new option is one line here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def opt(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
        step: float | None = None, label: str | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with the metadata forms and argparse need."""
    meta = {"help": help, "min": minimum, "max": maximum, "step": step, "label": label,
            "choices": choices}
    return field(default=default, metadata=meta)


def validate_fields(config: Any) -> None:
    """Raise ValueError naming the first field outside its documented range or choices."""
    for f in fields(config):
        value = getattr(config, f.name)
        lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"{f.name} = {value!r} is not one of {', '.join(map(str, choices))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                lo is not None and value < lo or hi is not None and value > hi):
            raise ValueError(f"{f.name} = {value} is outside [{lo}, {hi}]")


class ConfigBase:
    """What every config dataclass can do: round-trip through JSON and check its ranges."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Unknown keys (from an older or newer version's run config) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def validate(self) -> None:
        validate_fields(self)


@dataclass
class SamplingConfig(ConfigBase):
    """Nucleus sampling settings for paired generation."""

    temperature: float = opt(0.9, "Softmax temperature; higher gives more varied responses.",
                             minimum=0.05, maximum=2.0, step=0.05)
    top_p: float = opt(0.95, "Nucleus sampling: keep the smallest set of tokens whose "
                             "probability adds up to top-p.", minimum=0.05, maximum=1.0, step=0.01,
                       label="Top-p")
    top_k: int = opt(0, "Keep only the k most likely tokens (0 = off, the default).",
                     minimum=0, maximum=1000, step=1, label="Top-k")
    max_new_tokens: int = opt(128, "Longest response, in tokens.", minimum=1, maximum=4096,
                              step=16)
    repetition_penalty: float = opt(1.0, "Penalty for repeating tokens (1.0 = off).",
                                    minimum=1.0, maximum=2.0, step=0.05)
    batch_size: int = opt(8, "Prompts generated together (each gives two responses).",
                          minimum=1, maximum=256, step=1)



@dataclass
class RewardConfig(ConfigBase):
    """Reward-model training: LoRA adapter + scalar head, Bradley-Terry loss."""

    epochs: float = opt(2.0, "Passes over the training pairs (fractions allowed).",
                        minimum=0.1, maximum=100.0, step=0.5)
    lr: float = opt(2e-4, "Peak learning rate (AdamW) for the LoRA weights and the head.",
                    minimum=1e-7, maximum=1.0, step=1e-5, label="Learning rate")
    batch_size: int = opt(8, "Pairs per micro-batch (chosen and rejected go through together).",
                          minimum=1, maximum=1024, step=1)
    grad_accum: int = opt(1, "Micro-batches per optimiser step.", minimum=1, maximum=256,
                          step=1, label="Gradient accumulation")
    max_length: int = opt(512, "Longest prompt + response in tokens; the prompt is cut from "
                               "the left so the response is kept.", minimum=16, maximum=32768,
                          step=64)
    lora_r: int = opt(16, "LoRA rank.", minimum=1, maximum=512, step=1, label="LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha (scale = alpha / rank).", minimum=1, maximum=1024,
                          step=1, label="LoRA alpha")
    lora_dropout: float = opt(0.0, "Dropout on the LoRA path. Off by default, as in TRL's "
                                   "reward trainer: it adds noise to the comparison and costs "
                                   "~30% of the speed.", minimum=0.0, maximum=0.9, step=0.05,
                              label="LoRA dropout")
    target_modules: str = opt("all-linear", "Layers that get LoRA: 'all-linear' (every linear "
                                            "layer of the blocks) or a comma-separated list of "
                                            "module names.", label="LoRA targets")
    warmup_ratio: float = opt(0.05, "Share of steps spent warming the learning rate up.",
                              minimum=0.0, maximum=0.5, step=0.01)
    scheduler: str = opt("cosine", "Learning-rate decay after warm-up.",
                         choices=("cosine", "linear", "constant"))
    weight_decay: float = opt(0.0, "AdamW weight decay.", minimum=0.0, maximum=1.0, step=0.01)
    max_grad_norm: float = opt(1.0, "Gradient clipping (global norm).", minimum=0.0,
                               maximum=100.0, step=0.1, label="Max grad norm")
    margin: float = opt(0.0, "Required reward margin in the loss: -logsigmoid(rc - rr - m).",
                        minimum=0.0, maximum=10.0, step=0.1)
    ties: str = opt("equal", "Ties: 'equal' trains them toward equal rewards, 'drop' leaves "
                             "them out.", choices=("equal", "drop"))
    center_rewards_coefficient: float = opt(
        0.0, "Pulls rewards toward zero mean: adds c * mean((rc + rr)^2) to the loss.",
        minimum=0.0, maximum=1.0, step=0.001, label="Center rewards")
    val_fraction: float = opt(0.1, "Share of prompts held out for validation (split by prompt).",
                              minimum=0.0, maximum=0.5, step=0.05, label="Validation share")
    eval_every: int = opt(50, "Evaluate on the validation split every N optimiser steps "
                              "(and at the end).", minimum=1, maximum=100000, step=10)
    log_every: int = opt(5, "Log training metrics every N optimiser steps.", minimum=1,
                         maximum=10000, step=1)
    checkpoint_every: int = opt(100, "Save a resumable checkpoint every N optimiser steps "
                                     "(and on cancel).", minimum=1, maximum=100000, step=10)
    gradient_checkpointing: bool = opt(False, "Trade compute for memory (recompute activations).")
    precision: str = opt("auto", "Autocast: auto = bf16 on CUDA where supported, else fp16 on "
                                 "CUDA, else fp32.", choices=("auto", "bf16", "fp16", "fp32"))
    device: str = opt("auto", "Where to train.", choices=("auto", "cpu", "cuda", "mps"))
    min_pairs: int = opt(16, "Refuse to train with fewer usable training pairs than this.",
                         minimum=2, maximum=100000, step=1, label="Minimum pairs")
    seed: int = opt(0, "Seed for the split, data order, LoRA init and dropout.", minimum=0,
                    maximum=2**31 - 1, step=1)
