"""The model card (``README.md``) written into an exported policy folder.

Hugging Face model-card style: YAML front matter (``base_model``, ``library_name``, ``tags``)
then Markdown saying where the model came from: the base model, how many judgments trained it
(the reward model's for PPO, the policy's own for DPO), the runs with their settings and final
metrics, the date and the RLHF Desk version. Plain Python (no torch, no Qt): the facts come
from the store and the run folders, so the card can be rendered and tested without a model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from desktop_app import __version__
from desktop_app.core.data.store import Store
from desktop_app.core.runs.record import Run, RunKind, RunStatus
from desktop_app.core.wording import count

CARD_NAME = "README.md"
TAGS = ("rlhf", "lora", "rlhf-desk")   # and the method's own: "ppo" or "dpo"
# What each policy method is, in a sentence of the card.
METHODS = {RunKind.PPO: "LoRA policy, per-token KL penalty to the reference, GAE, clipped "
                        "policy and value losses",
           RunKind.RLOO: "LoRA policy, k responses per prompt, each against the others of its "
                         "prompt (no value model), KL penalty to the reference, clipped "
                         "policy loss",
           RunKind.DPO: "LoRA policy trained straight on the judged pairs against a frozen "
                        "reference (no reward model, no sampling)"}

# Shown first, in this order, when a run has them; other metrics follow alphabetically. Timings
# and memory say how the machine did, not what the model learned: left out.
METRIC_ORDER = (
    "eval/accuracy", "eval/loss", "eval/margin", "eval/reward_mean", "eval/reward_std",
    "train/accuracy", "train/loss", "train/margin",
    "eval/rewards/accuracies", "eval/rewards/margins", "eval/rewards/chosen",
    "eval/rewards/rejected", "train/rewards/accuracies", "train/rewards/margins",
    "objective/scores", "objective/raw_scores", "objective/kl", "objective/rlhf_reward",
    "objective/non_score_reward", "objective/entropy", "objective/kl_coef", "policy/approxkl",
    "policy/clipfrac", "loss/policy", "loss/value", "val/ratio", "val/clipfrac",
    "val/var_explained", "response/length_mean", "response/eos_share",
)
HIDDEN_METRIC = re.compile(r"^time/|memory|samples_per_s|/lr$|grad_norm")


@dataclass
class RunFacts:
    """What the card says about one run."""

    run_id: int
    kind: RunKind
    status: RunStatus
    created_at: str
    finished_at: str | None
    config: dict
    final_metrics: dict[str, float]
    first_score: float | None = None  # PPO: objective/scores at the first logged step

    @classmethod
    def of(cls, store: Store, run: Run) -> RunFacts:
        first = None
        if run.kind == RunKind.PPO:
            scores = store.metrics(run.id, "objective/scores")
            first = scores[0]["value"] if scores else None
        return cls(run.id, run.kind, run.status, run.created_at, run.finished_at,
                   dict(run.config), store.final_metrics(run.id), first)


@dataclass
class CardFacts:
    """Everything the card says; :func:`collect_card_facts` gathers it from a workspace."""

    base_model: str
    merged: bool
    ppo: RunFacts                       # the policy run (PPO or DPO)
    reward: RunFacts | None = None      # PPO's reward run
    train_pairs: int | None = None      # the pairs that trained it (split.json)
    val_pairs: int | None = None
    judged: int | None = None           # judgments in the workspace when exported
    by_choice: dict[str, int] = field(default_factory=dict)
    exported_at: str = ""
    version: str = __version__
    name: str = ""                      # the card's title (the export folder's name)


def collect_card_facts(workspace, store: Store, ppo_run_id: int, *, merged: bool,
                       name: str = "") -> CardFacts:
    """The facts for policy run ``ppo_run_id``. A PPO run's parent is the reward run it
    trained against, whose ``split.json`` says how many pairs the feedback came from; a DPO
    run trained on the pairs of its own ``split.json``."""
    run = store.get_run(ppo_run_id)
    if run is None:
        raise ValueError(f"There is no run {ppo_run_id}.")
    ppo = RunFacts.of(store, run)
    reward = reward_run = None
    against_reward = run.kind in (RunKind.PPO, RunKind.RLOO)
    if against_reward:
        reward_id = run.parent_run_id or run.config.get("reward_run_id")
        reward_run = store.get_run(int(reward_id)) if reward_id is not None else None
        reward = RunFacts.of(store, reward_run) if reward_run is not None else None
    trained_by = reward_run if against_reward else run
    train_pairs = val_pairs = None
    if trained_by is not None:
        split = _read_json(_run_dir(workspace, trained_by) / "split.json")
        if isinstance(split, dict):
            train_pairs = len(split.get("train") or [])
            val_pairs = len(split.get("val") or [])
    stats = store.stats()
    return CardFacts(
        base_model=str(run.config.get("base_model") or "unknown"), merged=merged, ppo=ppo,
        reward=reward, train_pairs=train_pairs, val_pairs=val_pairs, judged=stats["judged"],
        by_choice=dict(stats["by_choice"]),
        exported_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), name=name)


def write_model_card(folder: str | Path, facts: CardFacts) -> Path:
    path = Path(folder) / CARD_NAME
    path.write_text(render_model_card(facts), encoding="utf-8")
    return path


def hub_id(base_model: str) -> str | None:
    """``org/name`` for a model in the Hugging Face cache (``.../models--org--name/snapshots/
    HASH``) or one named by its hub id; None for a plain local folder."""
    match = re.search(r"models--([^/\\]+?)--([^/\\]+)", base_model)
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    if re.fullmatch(r"[\w.-]+/[\w.-]+", base_model) and not Path(base_model).exists():
        return base_model
    return None


def render_model_card(facts: CardFacts) -> str:
    base = facts.base_model
    base_name = hub_id(base) or (Path(base).name or base)
    library = "transformers" if facts.merged else "peft"
    lines = ["---", f"base_model: {_yaml_str(base_name)}", f"library_name: {library}",
             "pipeline_tag: text-generation", "tags:"]
    method = facts.ppo.kind.noun  # "PPO", "DPO"
    tags = [*TAGS[:1], method.lower(), *TAGS[1:]]
    lines += [f"- {tag}" for tag in tags]
    lines += ["---", "",
              f"# {facts.name or f'RLHF Desk policy ({method} run {facts.ppo.run_id})'}", ""]

    what = ("the LoRA policy merged into the base weights: a full model folder"
            if facts.merged else "a LoRA adapter (PEFT) for the base model")
    trained_on = (f" trained on {facts.train_pairs} human preference pairs"
                  if facts.train_pairs is not None else "")
    against_reward = facts.ppo.kind in (RunKind.PPO, RunKind.RLOO)
    how = (f"with {method} (LoRA) against a reward model" if against_reward
           else f"with {method} (LoRA) straight from the judgments")
    lines += [(f"`{base_name}` tuned {how}{trained_on}, made with RLHF Desk {facts.version}. "
               f"This folder holds {what}."), ""]

    lines += ["## Use it", "", "```python"]
    if facts.merged:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "",
                  'model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER")',
                  'tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")']
    else:
        lines += ["from peft import PeftModel",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "",
                  f"base = AutoModelForCausalLM.from_pretrained({_py_str(base)})",
                  'model = PeftModel.from_pretrained(base, "PATH/TO/THIS/FOLDER")',
                  f"tokenizer = AutoTokenizer.from_pretrained({_py_str(base)})",
                  "# or model.merge_and_unload() for a plain transformers model"]
    lines += ["```", ""]

    lines += ["## Base model", "", f"- name: `{base_name}`", f"- path: `{base}`"]
    init = facts.ppo.config.get("init_policy")
    if init:
        lines.append(f"- {method} started from the policy adapter `{init}`")
    lines.append("")

    lines += ["## Human feedback", ""]
    if facts.train_pairs is not None:
        which = "reward model" if against_reward else method
        lines.append(f"- {which} trained on {facts.train_pairs} judged pairs, validated on "
                     f"{facts.val_pairs} (split by prompt)")
    left_out = [f"{facts.ppo.config[k]} {label}" for k, label in
                (("ties_left_out", "ties"), ("both_bad_left_out", "both-bad"))
                if facts.ppo.config.get(k)]
    if left_out:
        lines.append(f"- left out (no winner): {', '.join(left_out)}")
    if facts.judged is not None:
        lines.append(f"- judgments in the workspace at export: {facts.judged}"
                     + _choices(facts.by_choice))
    lines.append("")

    if facts.reward is not None:
        lines += _run_section("Reward model", facts.reward,
                              "LoRA + scalar head, Bradley-Terry loss")
    elif against_reward:
        lines += ["## Reward model", "",
                  "The reward run of this policy is no longer in the workspace.", ""]
    lines += _run_section(method, facts.ppo, METHODS.get(facts.ppo.kind, method))

    lines += ["## Provenance", "", f"- exported: {facts.exported_at}",
              f"- RLHF Desk version: {facts.version}", ""]
    return "\n".join(lines)


# ---- helpers ---------------------------------------------------------------------------------

def _run_section(title: str, run: RunFacts, method: str) -> list[str]:
    lines = [f"## {title}: run {run.run_id}", "",
             f"{method}. Status {run.status}; started {run.created_at[:19]}"
             + (f", finished {run.finished_at[:19]}" if run.finished_at else "") + ".", ""]
    lines += [_quantisation_line(run.config.get("quantize", "none")), ""]
    if run.kind == RunKind.PPO and run.first_score is not None and "objective/scores" in (
            run.final_metrics):
        lines += [(f"Reward-model score (objective/scores): {_fmt(run.first_score)} at the "
                   f"first step, {_fmt(run.final_metrics['objective/scores'])} at the last."), ""]
    metrics = _ordered_metrics(run.final_metrics)
    if metrics:
        lines += ["Final metrics:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in metrics]
        lines.append("")
    settings = {k: v for k, v in sorted(run.config.items()) if k not in ("run_id",)}
    if settings:
        lines += ["<details><summary>Settings</summary>", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in settings.items()]
        lines += ["", "</details>", ""]
    return lines


def _quantisation_line(quantize: str) -> str:
    """Which base the adapter was trained on; it is a standard adapter either way."""
    if quantize in ("4bit", "8bit"):
        kind = "a 4-bit NF4 (QLoRA)" if quantize == "4bit" else "an 8-bit (LLM.int8)"
        return (f"Trained on {kind} base (bitsandbytes). The adapter is a standard PEFT "
                "adapter: it applies to the full-precision base, and a merged export merges it "
                "into the full-precision weights.")
    return "Trained on the full-precision base (no quantisation)."


def _choices(by_choice: dict[str, int]) -> str:
    counts = {"with a winner": by_choice.get("a", 0) + by_choice.get("b", 0),
              "tie": by_choice.get("tie", 0), "both bad": by_choice.get("both_bad", 0),
              "skipped": by_choice.get("skip", 0)}
    parts = [count(n, label) if label == "tie" else f"{n} {label}"
             for label, n in counts.items() if n]
    return f" ({', '.join(parts)})" if parts else ""


def _ordered_metrics(metrics: dict[str, float]) -> list[tuple[str, float]]:
    known = [(name, metrics[name]) for name in METRIC_ORDER if name in metrics]
    rest = sorted((n, v) for n, v in metrics.items()
                  if n not in METRIC_ORDER and not HIDDEN_METRIC.search(n))
    return known + rest


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _yaml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML scalar


def _py_str(text: str) -> str:
    return repr(text)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _run_dir(workspace, run: Run) -> Path:
    if run.artifact:
        return Path(run.artifact).parent
    return run.folder(workspace.runs_dir)
