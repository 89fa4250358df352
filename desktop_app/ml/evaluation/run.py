"""Evaluating one policy against another on held-out prompts.

``run_evaluation`` is the one job behind the Evaluate page and ``rlhf-desk evaluate``:

1. resolve the two policies (the base model, or a completed PPO run's policy adapter) and the
   held-out prompts;
2. sample one response from each policy per prompt, both with the same seed per batch;
3. blind (human) evaluation: store the responses as evaluation pairs (response a is always
   policy A's; the side each is shown on is drawn at random and stored) and leave the run
   'judging' until the person has judged them (``core.evaluation.results.record_human_result``);
4. automatic evaluation, whenever a reward model is available: score both responses with it
   and record its win rate of A over B as metrics and a per-prompt ``results.jsonl``.

Both evaluations of one run judge the same responses, so a gap between the person's and the
reward model's verdict says something about the reward model, not about sampling luck.
"""

from __future__ import annotations

import gc
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from desktop_app.core.config import EvalConfig
from desktop_app.core.data.formats import FormatError, parse_file
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.errors import UserError
from desktop_app.core.evaluation.results import record_auto_result
from desktop_app.core.evaluation.win_rate import WinRate, win_rate_from_scores
from desktop_app.core.events import Cancelled, Emit, Log, Progress, StopToken, ignore
from desktop_app.core.runs.record import POLICY_KINDS, RunKind, RunStatus
from desktop_app.core.runs.session import RunSession
from desktop_app.ml.generation.sampling import PromptInput, Sample, derive_seed, sample_batch
from desktop_app.ml.models.loader import LoadedModel, ModelLoadError, load_model
from desktop_app.ml.reward.model import RewardModelError, RewardScorer


class EvaluationError(UserError):
    """The evaluation cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Policy:
    """``run_id`` None is the base model; else a PPO run whose ``adapter`` is its policy."""

    run_id: int | None
    adapter: str | None
    label: str
    base_model: str | None  # what the PPO run trained on (None for "base")
    reward_run_id: int | None  # the reward model the PPO run optimised

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "adapter": self.adapter, "label": self.label}


@dataclass
class EvalOutcome:
    run_id: int
    status: str  # completed | judging | cancelled
    pairs: int
    automatic: WinRate | None = None
    reward_run_id: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = {"run_id": self.run_id, "status": self.status, "pairs": self.pairs,
                "reward_run_id": self.reward_run_id, "warnings": self.warnings}
        if self.automatic is not None:
            data.update(self.automatic.to_dict())
        return data


# ---- choosing what to compare ------------------------------------------------------------------

def parse_policy(text: str) -> int | None:
    """'base' → None; '12' or 'ppo-12' or 'run-12' → 12."""
    value = str(text).strip().lower()
    if value in ("base", "base model"):
        return None
    for prefix in ("ppo-", "ppo", "run-", "run"):
        if value.startswith(prefix) and value[len(prefix):].isdigit():
            value = value[len(prefix):]
    if not value.isdigit():
        raise EvaluationError(f"'{text}' is not a policy: use 'base' or the id of a completed "
                              "PPO run (see `rlhf-desk runs`).")
    return int(value)


def resolve_policy(store: Store, run_id: int | None) -> Policy:
    if run_id is None:
        return Policy(None, None, "base model", None, None)
    run = store.get_run(run_id)
    if run is None:
        raise EvaluationError(f"There is no run {run_id}.")
    adapter = run.require_artifact(POLICY_KINDS, "an evaluation")
    return Policy(run_id, str(adapter), run.label, run.config.get("base_model"),
                  run.parent_run_id if run.kind in (RunKind.PPO, RunKind.RLOO) else None)


def default_reward_run(store: Store) -> int | None:
    """The newest completed reward model: trained on the most judgments, and (when it came
    after the PPO run) not the one the policy was optimised against."""
    runs = store.finished_runs(RunKind.REWARD)
    return runs[-1].id if runs else None


def eval_prompts(store: Store, prompt_file: str | None,
                 limit: int) -> tuple[list[PromptInput], str]:
    """The prompts to evaluate on and where they came from.

    A file's prompts are added to the workspace as held out (the ones already there keep
    their status, with a warning when they have training judgments); without a file, the
    workspace's held-out prompts are used."""
    if prompt_file:
        try:
            parsed = parse_file(prompt_file)
        except FormatError as exc:
            raise EvaluationError(str(exc)) from exc
        records = [(p.text, p.messages) for p in parsed.prompts]
        records += [(p.prompt, p.prompt_messages) for p in parsed.pairs]
        if not records:
            raise EvaluationError(f"{Path(prompt_file).name}: no prompts in the file.")
        added = store.add_prompts(records, source=Path(prompt_file).name)
        store.set_held_out(added.ids)
        by_text = {r["text"]: r["id"] for r in store.list_prompts()}
        ids = list(dict.fromkeys(by_text[text.strip()] for text, _ in records))
        rows = [store.get_prompt(pid) for pid in ids][:limit]
        source = Path(prompt_file).name
    else:
        rows = store.held_out_prompts()[:limit]
        source = "held-out prompts"
        if not rows:
            raise EvaluationError(
                "The workspace has no held-out prompts to evaluate on. Hold some out on the "
                "Prompts page (select prompts → Hold out), or give a prompts file "
                "(--prompts FILE).")
    prompts = []
    for row in rows:
        messages = row["messages"]
        if isinstance(messages, str):
            messages = json.loads(messages)
        prompts.append(PromptInput(row["id"], row["text"], messages or None))
    return prompts, source


# ---- the job -------------------------------------------------------------------------------------

def run_evaluation(workspace, store: Store, cfg: EvalConfig, *, a: Policy, b: Policy,
                   base_model: str | None = None, human: bool = True,
                   reward_run_id: int | None = None, automatic: bool = True,
                   prompt_file: str | None = None, emit: Emit = ignore,
                   stop: StopToken | None = None) -> EvalOutcome:
    """Generate both policies' responses and evaluate them (see the module docstring).

    ``human`` stores blind pairs for the person; ``automatic`` scores them with the reward
    model ``reward_run_id`` (default: the newest). Raises ``EvaluationError`` for anything
    the person has to fix; a stop request ends the run as cancelled with nothing stored."""
    stop = stop or StopToken()
    cfg.validate()
    if a.run_id == b.run_id:
        raise EvaluationError("Pick two different policies to compare.")
    base = _base_model(store, a, b, base_model, reward_run_id)
    if automatic and reward_run_id is None:
        reward_run_id = default_reward_run(store)
    reward_adapter = _reward_adapter(store, reward_run_id) if automatic and reward_run_id else None
    if not human and reward_adapter is None:
        raise EvaluationError("An automatic evaluation needs a completed reward model; train "
                              "one first (Reward model page, or rlhf-desk train-reward).")
    prompts, source = eval_prompts(store, prompt_file, cfg.max_prompts)
    warnings = _warnings(store, prompts, reward_run_id, a, b)
    for text in warnings:
        emit(Log(text, "warning"))

    # 1. The run, recorded before the work so a crash shows up as an interrupted run.
    config = cfg.to_dict() | {
        "mode": "human" if human else "automatic", "a": a.to_dict(), "b": b.to_dict(),
        "base_model": base, "reward_run_id": reward_run_id if reward_adapter else None,
        "prompt_source": source, "prompts": len(prompts), "warnings": warnings}
    parent = a.run_id if a.run_id is not None else b.run_id
    session = RunSession.start(store, workspace.runs_dir, RunKind.EVAL, config,
                               parent_run_id=parent, emit=emit)
    run_id = session.run_id
    try:
        responses = _generate(base, [a, b], prompts, cfg, emit, stop)
        outcome = EvalOutcome(run_id, RunStatus.JUDGING if human else RunStatus.COMPLETED,
                              len(prompts),
                              reward_run_id=reward_run_id if reward_adapter else None,
                              warnings=warnings)
        scores = None
        if reward_adapter is not None:
            scores = _score(base, reward_adapter, prompts, responses, cfg, emit, stop)
            outcome.automatic = win_rate_from_scores(scores[0], scores[1])
        if human:
            _store_pairs(store, run_id, base, [a, b], prompts, responses, cfg)
        _write_results(session.folder / "results.jsonl", prompts, responses, scores)
    except Cancelled:
        session.cancel(error="cancelled before the pairs were stored")
        emit(Log(f"Evaluation {run_id} cancelled; nothing was stored."))
        return EvalOutcome(run_id, RunStatus.CANCELLED, 0)
    except BaseException as exc:
        session.fail(exc)
        raise

    # 2. Record what is known now; a blind evaluation waits for the person.
    if outcome.automatic is not None:
        record_auto_result(store, run_id, outcome.automatic, scores[0], scores[1],
                           [len(r.text) for r in responses[0]], [len(r.text) for r in responses[1]])
    if human:
        session.wait_for_person(session.folder)
        emit(Log(f"Evaluation {run_id}: {len(prompts)} blind pairs ready to judge."))
    else:
        session.finish(session.folder)
    return outcome


# ---- steps ---------------------------------------------------------------------------------------

def _base_model(store: Store, a: Policy, b: Policy, given: str | None,
                reward_run_id: int | None) -> str:
    """The base both policies sit on: the PPO runs' (which must agree), else the one given,
    else the reward model's."""
    trained_on = {p.base_model for p in (a, b) if p.base_model}
    if len(trained_on) > 1:
        raise EvaluationError("The two PPO runs were trained on different base models; compare "
                              "policies of one base model.")
    if trained_on:
        base = trained_on.pop()
        if given and Path(given).expanduser().resolve() != Path(base).resolve():
            raise EvaluationError(f"The policies were trained on {base}, not on {given}.")
        return base
    if given:
        return str(Path(given).expanduser().resolve())
    if reward_run_id is not None:
        run = store.get_run(reward_run_id)
        if run and run.config.get("base_model"):
            return run.config["base_model"]
    raise EvaluationError("Which base model? Load one on the Models page, or pass --model PATH.")


def _reward_adapter(store: Store, run_id: int) -> str:
    run = store.get_run(run_id)
    if run is None:
        raise EvaluationError(f"There is no reward-model run {run_id}.")
    return str(run.require_artifact(RunKind.REWARD, "an automatic evaluation"))


def _warnings(store: Store, prompts: list[PromptInput], reward_run_id: int | None,
              a: Policy, b: Policy) -> list[str]:
    out = []
    trained = store.trained_prompt_ids() & {p.prompt_id for p in prompts}
    if trained:
        out.append(f"{len(trained)} of the {len(prompts)} prompts have training judgments; a "
                   "reward model may have learnt them, so the evaluation is not fully held out.")
    optimised = {p.reward_run_id for p in (a, b) if p.reward_run_id is not None}
    if reward_run_id is not None and reward_run_id in optimised:
        out.append(f"Reward run {reward_run_id} is the one the policy was optimised against; its "
                   "verdict is biased towards the tuned policy. A reward model trained on newer "
                   "judgments gives a fairer automatic evaluation.")
    return out


def _generate(base: str, policies: list[Policy], prompts: list[PromptInput], cfg: EvalConfig,
              emit: Emit, stop: StopToken) -> list[list[Sample]]:
    """One response per prompt from each policy. Loads one policy at a time (the adapter
    merged, as for annotation), so memory holds one copy of the model."""
    sampling = cfg.sampling()
    out = []
    total = 2 * len(prompts)
    for index, policy in enumerate(policies):
        emit(Progress(index * len(prompts), total, f"Loading {policy.label}"))
        lm = _load(base, policy, cfg, stop)
        try:
            responses: list[Sample] = []
            for batch_index, start in enumerate(range(0, len(prompts), cfg.batch_size)):
                stop.raise_if_requested()
                batch = prompts[start:start + cfg.batch_size]
                seed = derive_seed(cfg.seed, batch_index, 0)  # the same for both policies
                samples = sample_batch(lm, batch, 1, sampling, seed, stop)
                stop.raise_if_requested()
                responses += [s[0] for s in samples]
                emit(Progress(index * len(prompts) + len(responses), total,
                              f"Sampling from {policy.label}"))
            out.append(responses)
        finally:
            del lm
            gc.collect()
    return out


def _load(base: str, policy: Policy, cfg: EvalConfig, stop: StopToken) -> LoadedModel:
    try:
        return load_model(base, device=cfg.device, adapter=policy.adapter, stop=stop,
                          quantize=cfg.quantize)
    except ModelLoadError as exc:
        raise EvaluationError(str(exc)) from exc


def _score(base: str, adapter: str, prompts: list[PromptInput], responses: list[list[Sample]],
           cfg: EvalConfig, emit: Emit, stop: StopToken) -> tuple[list[float], list[float]]:
    stop.raise_if_requested()
    emit(Progress(0, len(prompts), "Loading the reward model"))
    try:
        scorer = RewardScorer.load(base, adapter, device=cfg.device, quantize=cfg.quantize)
    except RewardModelError as exc:
        raise EvaluationError(str(exc)) from exc
    scores_a, scores_b = [], []
    for i, prompt in enumerate(prompts):
        stop.raise_if_requested()
        ra, rb = scorer.score(prompt.text, [responses[0][i].text, responses[1][i].text],
                              prompt.messages)
        scores_a.append(ra)
        scores_b.append(rb)
        emit(Progress(i + 1, len(prompts), "Scoring with the reward model"))
    del scorer
    gc.collect()
    return scores_a, scores_b


def _store_pairs(store: Store, run_id: int, base: str, policies: list[Policy],
                 prompts: list[PromptInput], responses: list[list[Sample]],
                 cfg: EvalConfig) -> None:
    sampling = cfg.sampling().to_dict()

    def generation(policy: Policy, sample: Sample) -> GenerationIn:
        return GenerationIn(text=sample.text, model=base, adapter=policy.adapter,
                            source="eval", sampling=sampling, seed=sample.seed,
                            batch_row=sample.row, prompt_tokens=sample.prompt_tokens,
                            completion_tokens=sample.completion_tokens,
                            finished=sample.finished, run_id=run_id)

    pairs = [(p.prompt_id, generation(policies[0], ra), generation(policies[1], rb))
             for p, ra, rb in zip(prompts, responses[0], responses[1])]
    # Sides are drawn per pair by add_pairs; seeded by the run so a rerun shows the same.
    store.add_pairs(pairs, rng=random.Random(cfg.seed * 7919 + run_id), source="eval",
                    eval_run_id=run_id)


def _write_results(path: Path, prompts: list[PromptInput], responses: list[list[Sample]],
                   scores: tuple[list[float], list[float]] | None) -> None:
    lines = []
    for i, prompt in enumerate(prompts):
        row = {"prompt_id": prompt.prompt_id, "prompt": prompt.text,
               "response_a": responses[0][i].text, "response_b": responses[1][i].text}
        if scores is not None:
            row |= {"reward_a": scores[0][i], "reward_b": scores[1][i]}
        lines.append(json.dumps(row, ensure_ascii=False))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
