"""Typed configuration. Every field carries help text in ``metadata`` so that the CLI and the
GUI settings forms are generated from one place: a new option is one line here."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from desktop_app.core.errors import UserError

# Quantisation of the frozen base (desktop_app.ml.models.quantize says what each means).
QUANTIZE_CHOICES = ("none", "8bit", "4bit")


class ConfigError(UserError, ValueError):
    """A setting of the wrong type or outside its range; the message names it."""


def opt(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
        step: float | None = None, label: str | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with the metadata forms and argparse need."""
    meta = {"help": help, "min": minimum, "max": maximum, "step": step, "label": label,
            "choices": choices}
    return field(default=default, metadata=meta)


def validate_fields(config: Any) -> None:
    """Raise ConfigError (a ValueError) naming the first field of the wrong type, outside its
    documented range or choices. The one check every config goes through before anything is
    loaded or recorded (CLI options, GUI forms and stored run configs alike)."""
    for f in fields(config):
        value = getattr(config, f.name)
        lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        expected = type(f.default) if f.default is not MISSING else None
        if expected in (int, float, bool, str) and not _is_a(value, expected):
            raise ConfigError(f"{f.name} = {value!r} is not {_TYPE_WORDS[expected]}")
        if choices and value not in choices:
            raise ConfigError(f"{f.name} = {value!r} is not one of {', '.join(map(str, choices))}")
        # NaN compares false with everything, so it would slip through the range check below
        # (and JSON cannot even store it).
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} = {value} is not a finite number")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                lo is not None and value < lo or hi is not None and value > hi):
            raise ConfigError(f"{f.name} = {value} is outside [{lo}, {hi}]")


_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _is_a(value: Any, expected: type) -> bool:
    """Whether ``value`` fits a field whose default is of type ``expected`` (an int fits a float
    field; a bool fits nothing but a bool field)."""
    if isinstance(value, bool) or expected is bool:
        return isinstance(value, bool) and expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


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
class TrainingConfig(ConfigBase):
    """The fields every training method shares (optimiser, LoRA, number format, device, seed,
    checkpoints), declared once. A method's config subclasses this and adds its own; where its
    default differs it says so with ``shared(name, default)``."""

    lr: float = opt(1e-4, "Peak learning rate (AdamW) of the trainable weights (LoRA and any "
                          "head).", minimum=1e-7, maximum=1.0, step=1e-5, label="Learning rate")
    weight_decay: float = opt(0.0, "AdamW weight decay.", minimum=0.0, maximum=1.0, step=0.01)
    max_grad_norm: float = opt(1.0, "Gradient clipping (global norm; 0 = off).", minimum=0.0,
                               maximum=100.0, step=0.1, label="Max grad norm")
    grad_accum: int = opt(1, "Micro-batches each optimiser step's batch is split into (the "
                             "same result with less memory).", minimum=1, maximum=256, step=1,
                          label="Gradient accumulation")
    lora_r: int = opt(16, "LoRA rank.", minimum=1, maximum=512, step=1, label="LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha (scale = alpha / rank).", minimum=1, maximum=1024,
                          step=1, label="LoRA alpha")
    lora_dropout: float = opt(0.0, "Dropout on the LoRA path. Off by default: it adds noise to "
                                   "reward comparisons and to the PPO ratio, and costs ~30% of "
                                   "the speed.", minimum=0.0, maximum=0.9, step=0.05,
                              label="LoRA dropout")
    target_modules: str = opt("all-linear", "Layers that get LoRA: 'all-linear' (every linear "
                                            "layer of the blocks) or a comma-separated list of "
                                            "module names.", label="LoRA targets")
    gradient_checkpointing: bool = opt(False, "Trade compute for memory: recompute activations "
                                              "in the backward pass (about a third slower). "
                                              "Turned on for you when the memory plan says the "
                                              "job would not fit without it.")
    quantize: str = opt("none", "Store the frozen base weights in 8 or 4 bits (bitsandbytes; "
                                "4-bit is NF4 with double quantisation, QLoRA): far less GPU "
                                "memory, the adapters stay full precision. On the CPU it saves "
                                "little and is slower.", choices=QUANTIZE_CHOICES,
                        label="Quantise base")
    precision: str = opt("auto", "Autocast: auto = bf16 on a GPU that supports it, else fp16; "
                                 "on a CPU bf16 where it has bf16 instructions (AVX512-BF16, "
                                 "AMX), else fp32. fp16 needs CUDA.",
                         choices=("auto", "bf16", "fp16", "fp32"))
    device: str = opt("auto", "Where to train.", choices=("auto", "cpu", "cuda", "mps"))
    seed: int = opt(0, "Seed for the data split and order, sampling, LoRA init and dropout.",
                    minimum=0, maximum=2**31 - 1, step=1)
    checkpoint_every: int = opt(50, "Save a resumable checkpoint every N optimiser steps (and "
                                    "on cancel).", minimum=1, maximum=100000, step=10)


def form_fields(config: Any) -> list:
    """A config's fields in the order forms and ``--help`` list them: a training method's own
    fields (epochs, steps, its loss) first, then the shared ones (``TrainingConfig``)."""
    every = fields(config)
    if not (isinstance(config, TrainingConfig) or (
            isinstance(config, type) and issubclass(config, TrainingConfig))):
        return list(every)
    common = TrainingConfig.__dataclass_fields__
    return [f for f in every if f.name not in common] + [f for f in every if f.name in common]


def shared(name: str, default: Any, of: type = None) -> Any:
    """Field ``name`` of ``of`` (``TrainingConfig`` unless said; its help, label and range)
    with another default: one definition for a setting two methods share."""
    base = (of or TrainingConfig).__dataclass_fields__[name]
    return field(default=default, metadata=base.metadata)


@dataclass
class RewardConfig(TrainingConfig):
    """Reward-model training: LoRA adapter + scalar head, Bradley-Terry loss."""

    lr: float = shared("lr", 2e-4)
    checkpoint_every: int = shared("checkpoint_every", 100)
    epochs: float = opt(2.0, "Passes over the training pairs (fractions allowed).",
                        minimum=0.1, maximum=100.0, step=0.5)
    batch_size: int = opt(8, "Pairs per micro-batch (chosen and rejected go through together).",
                          minimum=1, maximum=1024, step=1)
    max_length: int = opt(512, "Longest prompt + response in tokens; the prompt is cut from "
                               "the left so the response is kept.", minimum=16, maximum=32768,
                          step=64)
    warmup_ratio: float = opt(0.05, "Share of steps spent warming the learning rate up.",
                              minimum=0.0, maximum=0.5, step=0.01)
    scheduler: str = opt("cosine", "Learning-rate decay after warm-up.",
                         choices=("cosine", "linear", "constant"))
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
    min_pairs: int = opt(16, "Refuse to train with fewer usable training pairs than this.",
                         minimum=2, maximum=100000, step=1, label="Minimum pairs")


@dataclass
class PPOConfig(TrainingConfig):
    """PPO against a reward model: a LoRA policy and a LoRA value model on one frozen base,
    per-token KL penalty against the starting policy, GAE, clipped losses (TRL's names)."""

    steps: int = opt(200, "PPO steps: each samples one batch of responses, scores it and "
                          "trains on it.", minimum=1, maximum=1000000, step=10)
    batch_size: int = opt(16, "Prompts (one response each) sampled per PPO step.",
                          minimum=1, maximum=4096, step=1)
    mini_batch_size: int = opt(4, "Responses per optimiser step within a PPO epoch.",
                               minimum=1, maximum=4096, step=1, label="Mini-batch size")
    ppo_epochs: int = opt(4, "Passes over each batch of responses.", minimum=1, maximum=100,
                          step=1, label="PPO epochs")
    kl_coef: float = opt(0.05, "Weight of the per-token KL penalty against the starting "
                               "policy (the initial value when adaptive).", minimum=0.0,
                         maximum=10.0, step=0.01, label="KL coefficient")
    kl_estimator: str = opt("k1", "Per-token KL estimate: k1 = log p - log p_ref (unbiased, "
                                  "can be negative); k3 = (r - 1) - log r with r = p_ref / p "
                                  "(never negative, lower variance).", choices=("k1", "k3"),
                            label="KL estimator")
    target_kl: float = opt(0.0, "Adaptive KL control (Ziegler et al.): steer the KL per "
                                "response towards this value by adjusting the coefficient "
                                "(0 = fixed coefficient).", minimum=0.0, maximum=1000.0,
                           step=0.5, label="Target KL")
    kl_horizon: int = opt(10000, "Adaptive KL: responses over which the coefficient may change "
                                 "by about its current error.", minimum=1, maximum=10**8,
                          step=1000, label="KL horizon")
    max_kl: float = opt(50.0, "Stop the run when the KL per response exceeds this (0 = never): "
                              "the policy has drifted too far from where it started.",
                        minimum=0.0, maximum=10000.0, step=1.0, label="KL limit")
    gamma: float = opt(1.0, "Discount over response tokens.", minimum=0.0, maximum=1.0,
                       step=0.01)
    lam: float = opt(0.95, "GAE lambda: bias/variance trade-off of the advantages.",
                     minimum=0.0, maximum=1.0, step=0.01, label="GAE lambda")
    cliprange: float = opt(0.2, "Policy ratio clipping.", minimum=0.0, maximum=10.0, step=0.05,
                           label="Policy clip range")
    cliprange_value: float = opt(0.2, "Value prediction clipping around the rollout values.",
                                 minimum=0.0, maximum=100.0, step=0.05, label="Value clip range")
    vf_coef: float = opt(0.1, "Weight of the value loss.", minimum=0.0, maximum=100.0,
                         step=0.05, label="Value loss weight")
    whiten_advantages: bool = opt(True, "Normalise advantages to zero mean and unit variance "
                                        "over the batch's response tokens.")
    score_clip: float = opt(0.0, "Clip normalised reward-model scores to [-c, c] (0 = off).",
                            minimum=0.0, maximum=100.0, step=0.5, label="Score clip")
    missing_eos_penalty: float = opt(1.0, "Subtracted from the score of a response that never "
                                          "ends (no EOS within max new tokens).", minimum=0.0,
                                     maximum=100.0, step=0.5, label="No-EOS penalty")
    max_new_tokens: int = opt(64, "Longest response, in tokens.", minimum=1, maximum=4096,
                              step=16)
    temperature: float = opt(1.0, "Sampling temperature of the rollouts (log-probabilities "
                                  "are taken at the same temperature).", minimum=0.05,
                             maximum=2.0, step=0.05)
    top_p: float = opt(1.0, "Nucleus sampling for rollouts (1.0 = the full distribution, "
                            "which keeps the PPO ratio honest).", minimum=0.05, maximum=1.0,
                       step=0.01, label="Top-p")
    top_k: int = opt(0, "Top-k for rollouts (0 = off).", minimum=0, maximum=1000, step=1,
                     label="Top-k")
    prompts: str = opt("all", "Prompts to train on: every prompt of the workspace, or only "
                              "those without a judgment.", choices=("all", "unjudged"))
    init_policy: str = opt("", "Start from this policy adapter (e.g. an earlier PPO run's "
                               "policy/ folder) instead of the base model; a frozen copy of it "
                               "is then the KL reference.", label="Start from policy")
    prompt_file: str = opt("", "Train on the prompts of this file (.txt/.jsonl/.csv) instead; "
                               "they are added to the workspace (duplicates skipped) first.",
                           label="Prompt file")
    sample_every: int = opt(10, "Show a few (prompt, response, score, KL) samples every N "
                                "steps.", minimum=1, maximum=100000, step=1)

    def validate(self) -> None:
        validate_fields(self)
        if self.mini_batch_size > self.batch_size:
            raise ConfigError(f"mini_batch_size = {self.mini_batch_size} is larger than "
                             f"batch_size = {self.batch_size}")
        if self.mini_batch_size % self.grad_accum:
            raise ConfigError(f"mini_batch_size = {self.mini_batch_size} is not a multiple of "
                             f"grad_accum = {self.grad_accum}")


@dataclass
class RLOOConfig(TrainingConfig):
    """RLOO (Ahmadian et al., 2024) against a reward model: k responses per prompt, each
    judged against the mean of the other k - 1 (or, as GRPO does, normalised within its
    group); a clipped policy-ratio update with no value model. PPO's names where they apply."""

    steps: int = shared("steps", 200, PPOConfig)
    k: int = opt(4, "Responses sampled per prompt; each is compared with the others of its "
                    "prompt.", minimum=2, maximum=64, step=1, label="Responses per prompt")
    advantage: str = opt("rloo", "rloo: each response's reward minus the mean of the other "
                                 "k - 1 (leave-one-out). grpo: normalised within its group "
                                 "(minus the mean, divided by the standard deviation).",
                         choices=("rloo", "grpo"))
    whiten_advantages: bool = opt(True, "Scale the advantages to unit variance over the batch "
                                        "(their signs within each prompt's group are kept): "
                                        "the update's size then does not depend on how far "
                                        "apart the reward model's scores are.")
    batch_size: int = opt(16, "Responses sampled per step (batch size / k prompts), so a step "
                              "costs about what a PPO step of the same batch size costs.",
                          minimum=2, maximum=4096, step=1)
    mini_batch_size: int = shared("mini_batch_size", 4, PPOConfig)
    ppo_epochs: int = opt(2, "Passes over each batch of responses.", minimum=1, maximum=100,
                          step=1, label="Update epochs")
    kl_coef: float = shared("kl_coef", 0.05, PPOConfig)
    kl_estimator: str = shared("kl_estimator", "k1", PPOConfig)
    target_kl: float = shared("target_kl", 0.0, PPOConfig)
    kl_horizon: int = shared("kl_horizon", 10000, PPOConfig)
    max_kl: float = shared("max_kl", 50.0, PPOConfig)
    cliprange: float = shared("cliprange", 0.2, PPOConfig)
    score_clip: float = shared("score_clip", 0.0, PPOConfig)
    missing_eos_penalty: float = shared("missing_eos_penalty", 1.0, PPOConfig)
    max_new_tokens: int = shared("max_new_tokens", 64, PPOConfig)
    temperature: float = shared("temperature", 1.0, PPOConfig)
    top_p: float = shared("top_p", 1.0, PPOConfig)
    top_k: int = shared("top_k", 0, PPOConfig)
    prompts: str = shared("prompts", "all", PPOConfig)
    init_policy: str = shared("init_policy", "", PPOConfig)
    prompt_file: str = shared("prompt_file", "", PPOConfig)
    sample_every: int = shared("sample_every", 10, PPOConfig)

    def validate(self) -> None:
        validate_fields(self)
        if self.batch_size % self.k:
            raise ConfigError(f"batch_size = {self.batch_size} is not a multiple of k = "
                              f"{self.k} (responses per prompt)")
        if self.mini_batch_size > self.batch_size:
            raise ConfigError(f"mini_batch_size = {self.mini_batch_size} is larger than "
                             f"batch_size = {self.batch_size}")
        if self.mini_batch_size % self.grad_accum:
            raise ConfigError(f"mini_batch_size = {self.mini_batch_size} is not a multiple of "
                             f"grad_accum = {self.grad_accum}")


@dataclass
class DPOConfig(TrainingConfig):
    """DPO (Rafailov et al., 2023): the policy trained straight on the judged pairs, against a
    frozen reference (the starting policy); no reward model and no sampling. Sigmoid loss,
    IPO, and label smoothing (conservative DPO); TRL's names for what it reports."""

    lr: float = shared("lr", 5e-5)
    checkpoint_every: int = shared("checkpoint_every", 100)
    epochs: float = shared("epochs", 2.0, RewardConfig)
    beta: float = opt(0.1, "How strongly the policy is held near the reference (DPO's beta): "
                           "higher stays closer to where it started; lower follows the "
                           "judgments further.", minimum=0.001, maximum=10.0, step=0.01,
                      label="Beta")
    loss: str = opt("sigmoid", "sigmoid: DPO's loss. ipo: IPO's squared loss on per-token "
                               "average log-probabilities (Azar et al.), which stops pushing "
                               "once a pair is clearly separated.", choices=("sigmoid", "ipo"),
                    label="Loss")
    label_smoothing: float = opt(0.0, "Conservative DPO: the share of judgments assumed to be "
                                      "wrong (0 = trust every judgment). Sigmoid loss only.",
                                 minimum=0.0, maximum=0.49, step=0.05)
    batch_size: int = shared("batch_size", 8, RewardConfig)
    max_length: int = shared("max_length", 512, RewardConfig)
    warmup_ratio: float = shared("warmup_ratio", 0.1, RewardConfig)
    scheduler: str = shared("scheduler", "cosine", RewardConfig)
    val_fraction: float = shared("val_fraction", 0.1, RewardConfig)
    eval_every: int = shared("eval_every", 50, RewardConfig)
    log_every: int = shared("log_every", 5, RewardConfig)
    min_pairs: int = shared("min_pairs", 16, RewardConfig)
    init_policy: str = opt("", "Start from this policy adapter (an earlier PPO, RLOO or DPO "
                               "run's policy/ folder) instead of the base model; a frozen copy "
                               "of it is then the reference.", label="Start from policy")

    def validate(self) -> None:
        validate_fields(self)
        if self.loss == "ipo" and self.label_smoothing:
            raise ConfigError(f"label_smoothing = {self.label_smoothing} applies to the sigmoid "
                              "loss only, not to ipo")


@dataclass
class EvalConfig(SamplingConfig):
    """Evaluation of one policy against another: one sampled response from each per prompt.

    The two policies share a seed per batch (common random numbers), so a difference between
    their responses comes from the policies rather than from the dice."""

    temperature: float = opt(0.7, "Softmax temperature for both policies' responses.",
                             minimum=0.05, maximum=2.0, step=0.05)
    batch_size: int = opt(8, "Prompts generated together.", minimum=1, maximum=256, step=1)
    max_prompts: int = opt(64, "Evaluate on at most this many held-out prompts.",
                           minimum=1, maximum=100000, step=8)
    seed: int = opt(0, "Seed for sampling; the same seed gives the same responses.",
                    minimum=0, maximum=2**31 - 1, step=1)
    device: str = opt("auto", "Where to generate and score.",
                      choices=("auto", "cpu", "cuda", "mps"))
    quantize: str = shared("quantize", "none")

    def sampling(self) -> SamplingConfig:
        return SamplingConfig.from_dict(self.to_dict())
