"""The memory plan of a job before it starts: its estimated peak (``estimate``), where it runs,
how much memory is free there, whether it fits, and if not, which changes would make it fit
and what each one saves. The CLI's ``rlhf-desk plan COMMAND ...`` and the pages' start
buttons show it; the trainers use it to turn gradient checkpointing on when they need it."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.core.config import (
    DPOConfig,
    EvalConfig,
    PPOConfig,
    RewardConfig,
    RLOOConfig,
    SamplingConfig,
)
from desktop_app.ml.planning import estimate as est
from desktop_app.ml.planning.shape import model_shape

# Prompt tokens assumed when the workspace has no prompts to measure.
DEFAULT_PROMPT_TOKENS = 64
# Characters per token assumed when a model has no tokenizer.json to count with: low on purpose
# (most English text runs 3.5-4.5), so lengths err long.
CHARS_PER_TOKEN = 3.0
# The commands that train (their configs are TrainingConfigs: precision, checkpointing, ...).
TRAINING = ("train-reward", "train-ppo", "train-rloo", "train-dpo")


@dataclass
class Job:
    """What to plan: a command, its model and its settings. ``config`` is the command's config
    (SamplingConfig for generate, RewardConfig, PPOConfig, RLOOConfig, DPOConfig, EvalConfig);
    ``device``/``dtype`` apply to generate, whose config has neither."""

    command: str  # generate | train-reward | train-ppo | train-rloo | train-dpo | evaluate
    model: str
    config: Any
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"  # generate's; the others carry it in their config
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    pair_tokens: int | None = None  # longest judged pair (prompt + response), when known
    reward_rank: int | None = None  # LoRA rank of the reward model PPO/evaluation uses


@dataclass
class Plan:
    command: str
    peak_bytes: int
    device: str  # e.g. "cpu", "cuda:0"
    available_bytes: int | None  # free memory there (None: unknown)
    fits: bool
    breakdown: dict[str, int]
    advice: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gradient_checkpointing: bool = False  # the plan assumes it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """Several lines for the CLI: the verdict, the parts, and the advice."""
        verdict = "fits" if self.fits else "does NOT fit"
        lines = [f"{self.command}: {self.summary()} It {verdict}."]
        lines += [f"  {name:<12} {gib(size):>10}" for name, size in self.breakdown.items()]
        lines += [f"  ({note})" for note in self.notes]
        if self.advice:
            lines.append("To make it fit, try:")
            lines += [f"  - {line}" for line in self.advice]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: "Needs about 2.3 GiB; 11.8 GiB free on CUDA." """
        where = self.device.upper() if self.device != "cpu" else "the CPU (main memory)"
        if self.available_bytes is None:
            return f"Needs about {gib(self.peak_bytes)} on {where}."
        return (f"Needs about {gib(self.peak_bytes)}; {gib(self.available_bytes)} free on "
                f"{where}.")


def plan_job(job: Job) -> Plan:
    """Estimate ``job``'s peak memory and compare it with what is free where it would run."""
    from desktop_app.ml.models.device import available_memory_bytes

    setup = _setup(job)
    estimate = _estimate(job, setup)
    available = available_memory_bytes(setup.device)
    fits = available is None or estimate.peak_bytes <= available
    plan = Plan(job.command, estimate.peak_bytes, setup.device, available, fits,
                estimate.breakdown, notes=estimate.notes,
                gradient_checkpointing=bool(getattr(job.config, "gradient_checkpointing",
                                                    False)))
    if not fits:
        plan.advice = _advice(job, estimate.peak_bytes, available)
    return plan


def needs_checkpointing(job: Job) -> bool:
    """Whether a training job fits only with gradient checkpointing: the trainers then turn it
    on themselves (a person who asks for it gets it regardless)."""
    if getattr(job.config, "gradient_checkpointing", True):
        return False
    plan = plan_job(job)
    if plan.fits:
        return False
    return plan_job(_variant(job, gradient_checkpointing=True)).fits


def turn_on_checkpointing_if_needed(job: Job, emit) -> None:
    """A trainer's first step: when the job fits only with gradient checkpointing, turn it on
    (in ``job.config``, so the run records it) and say so. A plan that cannot be made (an
    unusual architecture) never stops training: the run then goes as configured."""
    from desktop_app.core.events import Log
    try:
        needed = needs_checkpointing(job)
    except Exception as exc:  # noqa: BLE001 - the plan is advice, not a gate
        emit(Log(f"No memory plan for this run ({exc}); it runs as configured.", "warning"))
        return
    if needed:
        job.config.gradient_checkpointing = True
        emit(Log("Gradient checkpointing is on: the memory plan says this run would not fit "
                 "without it (about a third slower).", "warning"))


# ---- the workspace's lengths -----------------------------------------------------------------

def prompt_tokens(store, model: str | None = None) -> int:
    """Tokens of a long prompt of the workspace (the 90th percentile by characters), counted
    with ``model``'s tokenizer when it has a tokenizer.json, else estimated from characters.
    Cheap enough for the UI thread with tens of thousands of prompts (one query, one
    tokenisation, no torch)."""
    n = store.db.execute("SELECT count(*) FROM prompts").fetchone()[0]
    if not n:
        return DEFAULT_PROMPT_TOKENS
    text = store.db.execute("SELECT text FROM prompts ORDER BY length(text) "
                            "LIMIT 1 OFFSET ?", [int(0.9 * (n - 1))]).fetchone()[0]
    return max(8, _tokens(model, [text]) + _overhead(model))


def pair_tokens(store, model: str | None = None) -> int | None:
    """Tokens of the longest judged pair (prompt + the longer response): the five longest by
    characters, counted with ``model``'s tokenizer when it has a tokenizer.json (else
    estimated from characters), the most of them."""
    rows = store.db.execute(
        "SELECT p.text, ga.text, gb.text FROM comparisons c "
        "JOIN prompts p ON p.id = c.prompt_id "
        "JOIN generations ga ON ga.id = c.generation_a_id "
        "JOIN generations gb ON gb.id = c.generation_b_id "
        "WHERE c.choice IN ('a', 'b', 'tie') "
        "ORDER BY length(p.text) + max(length(ga.text), length(gb.text)) DESC LIMIT 5"
    ).fetchall()
    if not rows:
        return None
    return max(_tokens(model, [prompt]) + max(_tokens(model, [a]), _tokens(model, [b]))
               for prompt, a, b in rows) + _overhead(model)


def _tokens(model: str | None, texts: list[str]) -> int:
    tokenizer = _fast_tokenizer(model) if model else None
    if tokenizer is None:
        return sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts)
    return sum(len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False))


def _overhead(model: str | None) -> int:
    """Tokens a chat template (or BOS/EOS) adds around a prompt and its response: a system
    prompt and role markers need more than bare special tokens."""
    config = Path(model).expanduser() / "tokenizer_config.json" if model else None
    try:
        templated = config is not None and "chat_template" in config.read_text(encoding="utf-8")
    except OSError:
        templated = False
    return 40 if templated or (config is not None and (
        config.parent / "chat_template.jinja").is_file()) else 16


@functools.lru_cache(maxsize=4)
def _fast_tokenizer(model: str):
    """The model folder's tokenizer.json through the `tokenizers` library (no torch, no
    transformers: safe on the UI thread), or None."""
    path = Path(model).expanduser() / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        from tokenizers import Tokenizer
        return Tokenizer.from_file(str(path))
    except Exception:  # noqa: BLE001 - an unreadable tokenizer: fall back to characters
        return None


# ---- estimate --------------------------------------------------------------------------------

def _setup(job: Job) -> est.Setup:
    from desktop_app.ml.models.device import pick_device

    cfg = job.config
    if job.command in TRAINING:
        from desktop_app.ml.training.optim import resolve_precision
        choice, _ = resolve_precision(cfg)
        quantize = cfg.quantize
    elif job.command == "evaluate":
        choice, quantize = pick_device(cfg.device, "auto"), cfg.quantize
    else:
        choice, quantize = pick_device(job.device, job.dtype), job.quantize
    return est.Setup(choice.device, choice.dtype, quantize, _file_bytes(job.model))


def _estimate(job: Job, setup: est.Setup) -> est.Estimate:
    shape = model_shape(job.model)
    cfg = job.config
    if job.command == "generate":
        return est.generation(shape, setup, rows=2 * cfg.batch_size,
                              prompt_tokens=job.prompt_tokens, new_tokens=cfg.max_new_tokens)
    if job.command == "train-reward":
        length = min(cfg.max_length, job.pair_tokens or cfg.max_length)
        estimate = est.reward_training(
            shape, setup, pairs_per_micro_batch=math.ceil(cfg.batch_size / cfg.grad_accum),
            max_length=length, lora_rank=cfg.lora_r,
            checkpointing=cfg.gradient_checkpointing)
        return estimate
    if job.command in ("train-ppo", "train-rloo"):
        return est.ppo_training(
            shape, setup, rollout_rows=cfg.batch_size,
            rows_per_micro_batch=cfg.mini_batch_size // cfg.grad_accum,
            prompt_tokens=job.prompt_tokens, new_tokens=cfg.max_new_tokens,
            lora_rank=cfg.lora_r, reward_rank=job.reward_rank or cfg.lora_r,
            reference_adapter=bool(cfg.init_policy), checkpointing=cfg.gradient_checkpointing,
            value_model=job.command == "train-ppo")
    if job.command == "train-dpo":
        return est.dpo_training(
            shape, setup, pairs_per_micro_batch=math.ceil(cfg.batch_size / cfg.grad_accum),
            max_length=min(cfg.max_length, job.pair_tokens or cfg.max_length),
            lora_rank=cfg.lora_r, reference_adapter=bool(cfg.init_policy),
            checkpointing=cfg.gradient_checkpointing)
    if job.command == "evaluate":
        return est.evaluation(shape, setup, rows=cfg.batch_size,
                              prompt_tokens=job.prompt_tokens, new_tokens=cfg.max_new_tokens,
                              reward_rank=job.reward_rank or 16)
    raise ValueError(f"no memory plan for {job.command!r}")


def _file_bytes(model: str) -> int:
    folder = Path(model).expanduser()
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) or sum(
        f.stat().st_size for f in folder.glob("pytorch_model*.bin"))


# ---- advice ----------------------------------------------------------------------------------

def _advice(job: Job, peak: int, available: int | None) -> list[str]:
    """Concrete changes, each with the peak it gives, the ones that fit first; when none fits
    alone, all of them together too."""
    cfg = job.config
    options: list[tuple[str, dict]] = []
    quantize = job.quantize if job.command == "generate" else cfg.quantize
    if quantize != "4bit":
        options.append(("4-bit base (--quantize 4bit)", {"quantize": "4bit"}))
    if job.command in TRAINING and not cfg.gradient_checkpointing:
        options.append(("gradient checkpointing (--gradient-checkpointing)",
                        {"gradient_checkpointing": True}))
    if job.command in ("train-reward", "train-dpo"):
        if cfg.batch_size > cfg.grad_accum:
            accum = min(cfg.batch_size, cfg.grad_accum * 2)
            options.append((f"gradient accumulation {accum} (--grad-accum {accum}: the same "
                            "result in smaller micro-batches)", {"grad_accum": accum}))
        if cfg.max_length > 128:
            half = cfg.max_length // 2
            options.append((f"max length {half} (--max-length {half})", {"max_length": half}))
    if job.command in ("train-ppo", "train-rloo"):
        if cfg.mini_batch_size > cfg.grad_accum and cfg.mini_batch_size % (cfg.grad_accum * 2) == 0:
            accum = cfg.grad_accum * 2
            options.append((f"gradient accumulation {accum} (--grad-accum {accum}: the same "
                            "result in smaller micro-batches)", {"grad_accum": accum}))
        if cfg.batch_size > 1 and (job.command == "train-ppo" or cfg.batch_size // 2 % cfg.k == 0):
            half, mini = cfg.batch_size // 2, min(cfg.mini_batch_size, cfg.batch_size // 2)
            options.append((f"batch size {half} (--batch-size {half} --mini-batch-size {mini})",
                            {"batch_size": half, "mini_batch_size": mini}))
    if job.command in ("generate", "evaluate") and cfg.batch_size > 1:
        half = cfg.batch_size // 2
        options.append((f"batch size {half} (--batch-size {half})", {"batch_size": half}))
    if job.command in ("generate", "evaluate", "train-ppo", "train-rloo") \
            and cfg.max_new_tokens > 32:
        half = cfg.max_new_tokens // 2
        options.append((f"max new tokens {half} (--max-new-tokens {half})",
                        {"max_new_tokens": half}))

    def rated(text: str, changes: dict) -> tuple[bool, int, str] | None:
        try:
            variant = _variant(job, **changes)
            new_peak = _estimate(variant, _setup(variant)).peak_bytes
        except Exception:  # noqa: BLE001 - a change this job cannot take: leave it out
            return None
        fits = available is None or new_peak <= available
        return not fits, new_peak, f"{text}: about {gib(new_peak)}" + (" (fits)" if fits else "")

    lines = sorted(r for r in (rated(t, c) for t, c in options) if r is not None)
    if len(options) > 1 and lines and lines[0][0]:  # nothing fits alone
        together = rated("all of these together", {k: v for _, c in options for k, v in c.items()})
        if together is not None:
            lines.append(together)
    return [line for _, _, line in lines]


def _variant(job: Job, **changes) -> Job:
    """``job`` with some settings changed (quantize of generate is the job's own)."""
    if job.command == "generate" and "quantize" in changes:
        return dataclasses.replace(job, quantize=changes.pop("quantize"))
    config = dataclasses.replace(job.config, **changes)
    return dataclasses.replace(job, config=config)


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


# Configs by command, for callers that build a Job from options.
CONFIGS = {"generate": SamplingConfig, "train-reward": RewardConfig, "train-ppo": PPOConfig,
           "train-rloo": RLOOConfig, "train-dpo": DPOConfig, "evaluate": EvalConfig}
