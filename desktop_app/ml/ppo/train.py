"""PPO against a trained reward model, as a job: it reports through ``emit`` and honours a stop
token, like reward training, so the GUI runs it on a worker thread and the CLI in the foreground.

    train_ppo   the job
      1. setup    reward run -> its adapter and reward statistics; prompts; one base model with
                  the policy, value, reward adapters (ppo_models); AdamW over policy + value
      2. run      a new run (kind "ppo", parent = the reward run) or the resumed one
      3. step     rollouts from the policy (sampling.generate_tokens, the annotation sampler)
                  -> scores (normalised with the reward run's mean/std, clipped, no-EOS penalty)
                  -> old, reference log-probs and values -> per-token KL penalty -> GAE
                  -> ppo_epochs x mini-batches of clipped policy + value loss, clip, AdamW
                  -> metrics (TRL's names), KL coefficient update, samples, checkpoint
      4. end      policy adapter (+ tokenizer) saved; completed

The run folder ``runs/NNNN-ppo`` holds policy/ (a standard PEFT adapter for
``AutoModelForCausalLM``, tokenizer included), checkpoint/ (policy/, value/, value_head.pt,
trainer_state.pt), prompts.json (the prompt ids the run draws from) and config.json.

The run's life (creating or resuming it, checkpoints, cancel, the end, failures) is the shared
training loop's (``ml.training.loop``); this module supplies what is PPO's own. Problems found
before the run exists raise a ``UserError``; once it exists, non-finite values, a device
out-of-memory and a KL past ``cfg.max_kl`` end it as "failed" and the job returns a
``PPOResult`` whose ``error`` says why.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from desktop_app.core.config import PPOConfig, SamplingConfig
from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError
from desktop_app.core.events import Emit, Log, StopToken, ignore
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.runs.session import GuardRail, Resumed, write_json
from desktop_app.ml.generation.sampling import (
    PromptInput,
    _prompt_budget,
    derive_seed,
    encode_prompt,
    generate_tokens,
)
from desktop_app.ml.planning.plan import Job, prompt_tokens, turn_on_checkpointing_if_needed
from desktop_app.ml.ppo import algorithm as core
from desktop_app.ml.ppo.models import POLICY, VALUE, LoraSpec, build_ppo_models
from desktop_app.ml.training.distributed import world
from desktop_app.ml.training.files import memory_gib
from desktop_app.ml.training.loop import Trainer, train
from desktop_app.ml.training.optim import (
    Optimiser,
    autocast,
    enable_gradient_checkpointing,
    resolve_precision,
)

SAMPLE_ROWS = 4

# Everything a step reports, in this order (TRL's names).
METRICS = ("objective/scores", "objective/raw_scores", "objective/kl", "objective/non_score_reward",
           "objective/rlhf_reward", "objective/entropy", "objective/kl_coef", "policy/approxkl",
           "policy/clipfrac", "loss/policy", "loss/value", "val/ratio", "val/clipfrac",
           "val/var_explained", "response/length_mean", "response/eos_share", "train/grad_norm",
           "time/generation_s", "time/scoring_s", "time/optimization_s", "memory_gib")


class PPOTrainingError(UserError):
    """PPO cannot start or go on; the message is one sentence for the user."""


@dataclass
class PPOResult:
    run_id: int
    status: str  # completed | cancelled | failed
    step: int
    total_steps: int
    score_first: float | None  # mean objective/scores over the first 10% of steps
    score_last: float | None  # ... and over the last 10% of the steps done
    kl: float | None  # objective/kl of the last step
    artifact: str | None  # the policy adapter folder, when completed
    error: str | None = None


@dataclass(frozen=True)
class Samples:
    """A few rollouts of one step for the sample table: dicts with prompt, response, score
    (normalised, as PPO uses it) and kl (summed over the response)."""

    step: int
    rows: list[dict] = field(default_factory=list)


# ---- the job ---------------------------------------------------------------------------------

def train_ppo(workspace, cfg: PPOConfig | None, *, base_model: str | None = None,
              reward_run_id: int | None = None,
              resume_run_id: int | None = None, emit: Emit = ignore,
              stop: StopToken | None = None) -> PPOResult:
    """Tune a LoRA policy on ``base_model`` against reward run ``reward_run_id``'s model, or
    resume run ``resume_run_id`` (its own configuration, base model and reward run are then
    used; ``cfg``, ``base_model`` and ``reward_run_id`` are ignored)."""
    return train(PPOTrainer, workspace, cfg, resume_run_id=resume_run_id, emit=emit, stop=stop,
                 base_model=base_model, reward_run_id=reward_run_id)


@dataclass
class _Rollout:
    sequences: torch.Tensor
    attention_mask: torch.Tensor
    prompt_width: int
    mask: torch.Tensor
    old_logp: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


class PPOTrainer(Trainer):
    kind = RunKind.PPO
    config_type = PPOConfig
    oom_advice = ("try a 4-bit base (quantize 4bit), gradient checkpointing, a smaller batch or "
                  "mini-batch size (with gradient accumulation), fewer new tokens, or a smaller "
                  "LoRA rank; `rlhf-desk plan train-ppo ...` estimates each")
    artifact_name = "policy"
    checkpoint_parts = ("policy", "value", "value_head.pt")
    progress_message = "PPO"
    finished_message = "PPO finished"
    # What RLOO (a subclass) changes: its memory plan's command and no value model.
    plan_command = "train-ppo"
    with_value = True
    # Under torchrun each rank samples, scores and trains on its share of each step's prompts;
    # advantages are whitened and metrics averaged over all ranks (``_shard_of_step``).
    distributed = True

    # ---- setup -------------------------------------------------------------------------------

    def prepare(self, resumed: Resumed | None, *, base_model: str | None,
                reward_run_id: int | None) -> None:
        store, cfg = self.store, self.cfg
        prompt_ids = None
        if resumed is not None:  # its own base model, reward run and prompts
            base_model = resumed.base_model
            reward_run_id = resumed.run.parent_run_id
            prompt_ids = _read_prompt_ids(resumed.run.folder(self.workspace.runs_dir),
                                          resumed.run.id)
        self.base_model = str(Path(base_model).expanduser().resolve())

        # 1. The reward run: adapter and the statistics its scores are normalised with.
        reward_adapter, self.reward_stats = _reward_model_of(store, reward_run_id,
                                                              self.kind.noun)
        self.reward_run_id = self.parent_run_id = reward_run_id
        if self.reward_stats is None:
            self.reward_stats = {"mean": 0.0, "std": 1.0}
            self.emit(Log(f"Reward run {reward_run_id} has no reward_stats.json; scores are "
                          "used without normalisation.", "warning"))

        # Prompts: a new run picks them now (and saves their ids); a resume reuses them.
        self.prompts = _prompts(store, cfg, prompt_ids)
        if not self.prompts:
            which = "without a judgment " if cfg.prompts == "unjudged" else ""
            raise PPOTrainingError(f"{self.kind.noun} needs prompts, and the workspace has no "
                                   f"prompts {which}to train on; import some first.")

        # Device, number formats, models.
        choice, self.autocast_dtype = resolve_precision(cfg)
        self.device = choice.device
        if resumed is None:
            reward_run = store.get_run(reward_run_id)
            turn_on_checkpointing_if_needed(
                Job(self.plan_command, self.base_model, cfg,
                    prompt_tokens=prompt_tokens(store, self.base_model),
                    reward_rank=int(reward_run.config.get("lora_r") or cfg.lora_r)),
                self.emit)
        self.models = build_ppo_models(
            self.base_model, reward_adapter, choice,
            LoraSpec(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules),
            policy_adapter=cfg.init_policy or None, seed=cfg.seed, quantize=cfg.quantize,
            value=self.with_value)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(self.models.base)
        named = self.models.trainable_parameters()
        self.world = world()
        self._check_world()
        self.world.same_weights([p for _, p in named])  # one starting point on every rank
        self.optimiser = Optimiser(named, cfg, self.device, self.autocast_dtype)
        self.kl_ctl = core.kl_controller(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
        tokenizer = self.models.tokenizer
        try:
            budget = _prompt_budget(self.models.base, cfg.max_new_tokens)
        except ValueError as exc:  # max_new_tokens leaves no room for a prompt
            raise PPOTrainingError(str(exc)) from exc
        self.prompt_tokens = {p.prompt_id: encode_prompt(tokenizer, p, budget)
                              for p in self.prompts}
        self.sampling = SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p,
                                       top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens,
                                       repetition_penalty=1.0, batch_size=cfg.batch_size)
        self.total_steps = cfg.steps
        self.history: list[dict[str, float]] = []  # per step: scores, kl

    def _check_world(self) -> None:
        """Under torchrun every rank needs a whole share of the step's prompts and of each
        mini-batch."""
        size, cfg = self.world.size, self.cfg
        if not self.world.active:
            return
        if self.prompts_per_step() % size or cfg.mini_batch_size % size:
            raise PPOTrainingError(
                f"Under torchrun with {size} processes, the prompts per step "
                f"({self.prompts_per_step()}) and --mini-batch-size ({cfg.mini_batch_size}) "
                f"must both be multiples of {size}.")
        if (cfg.mini_batch_size // size) % cfg.grad_accum:
            raise PPOTrainingError(
                f"Under torchrun with {size} processes each mini-batch holds "
                f"{cfg.mini_batch_size // size} rollouts per process, not a multiple of "
                f"--grad-accum {cfg.grad_accum}.")

    def _shard_of_step(self, batch: list[PromptInput]) -> list[PromptInput]:
        """This rank's prompts of the step (all of them in one process)."""
        return self.world.shard(batch)

    def _mean_over_ranks(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Each rank's means, averaged over the ranks (the shares are equal), in one sync."""
        stacked = torch.stack([v.float().reshape(()) for v in values.values()])
        if self.world.active:
            stacked = self.world.sum_(stacked) / self.world.size
        return dict(zip(values, stacked.tolist()))

    def run_config(self) -> dict:
        return self.cfg.to_dict() | {"base_model": self.base_model,
                                     "reward_run_id": self.reward_run_id}

    def write_run_files(self, folder: Path) -> None:
        write_json(folder / "prompts.json", {"prompt_ids": [p.prompt_id for p in self.prompts]})

    def start_message(self) -> str:
        cfg = self.cfg
        control = (f"adaptive KL (target {cfg.target_kl})" if cfg.target_kl > 0
                   else f"fixed KL coefficient {cfg.kl_coef}")
        return (f"PPO run {self.run_id}: {len(self.prompts)} prompts, {cfg.batch_size} "
                f"responses per step, {self.total_steps} steps on {self.where()}, {control}, "
                f"reward model of run {self.reward_run_id}.")

    # ---- one step ----------------------------------------------------------------------------

    def after_step(self, values: dict[str, float]) -> None:
        self.history.append({"scores": values["objective/scores"],
                             "kl": values["objective/kl"]})
        if self.cfg.max_kl > 0 and values["objective/kl"] > self.cfg.max_kl:
            raise GuardRail(f"KL reached {values['objective/kl']:.3g} at step {self.step}, past "
                            f"the limit of {self.cfg.max_kl:g}: the policy drifted too far from "
                            "where it started; lower the learning rate or raise the KL "
                            "coefficient.")

    def train_step(self) -> dict[str, float] | None:
        cfg = self.cfg
        # 3a. Rollouts: the policy samples one response per prompt, as the annotation loop does.
        t0 = time.perf_counter()
        batch = self._shard_of_step(self._prompt_batch(self.step))
        out, attention = self._rollouts(batch, 1)
        if out is None:
            return None
        seq, width, mask = out.sequences, out.prompt_width, out.completion_mask
        t1 = time.perf_counter()

        # 3b. Scores, reference and old log-probs, values: no gradients.
        with torch.no_grad(), autocast(self.autocast_dtype, self.device):
            raw, old_logp, entropy, ref_logp, old_values = self._score(seq, attention, width)
        stats = self.reward_stats
        scores = core.normalise_scores(raw, stats["mean"], stats["std"], cfg.score_clip)
        penalised = core.apply_missing_eos_penalty(scores, out.finished, cfg.missing_eos_penalty)
        kl = core.kl_per_token(old_logp, ref_logp, cfg.kl_estimator).masked_fill(~mask, 0.0)
        kl_coef = self.kl_ctl.value
        rewards, non_score = core.token_rewards(penalised, kl, mask, kl_coef)
        old_values = old_values.masked_fill(~mask, 0.0)
        advantages, returns = core.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = core.whiten(advantages, mask,
                                     total=self.world.sum_ if self.world.active else None)
        rollout = _Rollout(seq, attention, width, mask, old_logp, old_values, advantages, returns)
        kl_sum = kl.sum(1)
        summary = {
            "objective/scores": scores.mean(), "objective/raw_scores": raw.float().mean(),
            "objective/kl": kl_sum.mean(), "objective/non_score_reward": non_score.sum(1).mean(),
            "objective/rlhf_reward": (penalised + non_score.sum(1)).mean(),
            "objective/entropy": core.masked_mean(entropy, mask),
            "response/length_mean": mask.sum(1).float().mean(),
            "response/eos_share": out.finished.float().mean(),
            "val/var_explained": torch.tensor(
                core.explained_variance(old_values, returns, mask))}
        # One device sync for all of them (averaged over the ranks under torchrun).
        summary = self._mean_over_ranks(summary)
        var_explained = summary.pop("val/var_explained")
        if not all(math.isfinite(v) for v in summary.values()):
            raise GuardRail(f"Scores, log-probabilities or KL became non-finite at step "
                           f"{self.step + 1}; try a lower learning rate.")
        t2 = time.perf_counter()

        # 3c. Optimisation: ppo_epochs passes over shuffled mini-batches.
        train = self._optimise(rollout)
        t3 = time.perf_counter()

        # 3d. The KL coefficient follows the measured KL (adaptive control), for the next step.
        self.kl_ctl.update(summary["objective/kl"], len(batch) * self.world.size)
        values = summary | train
        values["objective/kl_coef"] = kl_coef
        values["val/var_explained"] = var_explained
        values["time/generation_s"] = t1 - t0
        values["time/scoring_s"] = t2 - t1
        values["time/optimization_s"] = t3 - t2
        values["memory_gib"] = memory_gib(self.device)
        if (self.step + 1) % cfg.sample_every == 0 or self.step == 0:
            self._emit_samples(batch, out, scores, kl_sum)
        return {k: values[k] for k in METRICS if k in values and math.isfinite(values[k])}

    def _rollouts(self, batch: list[PromptInput], n: int):
        """(generated tokens, attention mask over prompt and response) of ``n`` responses per
        prompt of ``batch``, sampled from the policy; (None, None) when stopped meanwhile."""
        with self.models.use(POLICY):
            out = generate_tokens(self.models.lm, [self.prompt_tokens[p.prompt_id] for p in batch],
                                  n, self.sampling,
                                  derive_seed(self.cfg.seed, self.step, self.world.rank),
                                  None if self.world.active else self.stop)
        if self.stop.requested and not self.world.active:  # torchrun: stop between steps
            return None, None
        seq, width = out.sequences, out.prompt_width
        columns = torch.arange(width, device=seq.device)
        lengths = torch.tensor(out.prompt_lengths, device=seq.device).repeat_interleave(n)
        prompt_mask = columns[None, :] >= (width - lengths)[:, None]
        return out, torch.cat([prompt_mask, out.completion_mask], dim=1).long()

    def _score(self, seq, attention, width):
        """Reward, policy (old) and reference log-probs and values (None without a value
        model), in mini-batch chunks."""
        models, cfg = self.models, self.cfg
        parts: list[list[torch.Tensor]] = [[] for _ in range(5)]
        for start in range(0, len(seq), cfg.mini_batch_size):
            end = start + cfg.mini_batch_size
            s, a = seq[start:end], attention[start:end]
            parts[0].append(models.scores(s, a).float())
            logp, ent = models.logprobs(POLICY, s, a, width, cfg.temperature, with_entropy=True)
            parts[1].append(logp)
            parts[2].append(ent)
            parts[3].append(models.reference_logprobs(s, a, width, cfg.temperature))
            if self.with_value:
                parts[4].append(models.values(s, a, width).float())
        return [torch.cat(p) if p else None for p in parts]

    def _optimise(self, r: _Rollout) -> dict[str, float]:
        cfg, models = self.cfg, self.models
        n = len(r.sequences)
        # Under torchrun a mini-batch is spread over the ranks: each takes its share of the
        # rollouts it sampled, and the summed gradient is the mean over ranks (1 / size).
        size = self.world.size
        mini_size = cfg.mini_batch_size // size
        micro = mini_size // cfg.grad_accum
        names = ("loss/policy", "loss/value", "policy/approxkl", "policy/clipfrac", "val/ratio",
                 "val/clipfrac", "micro_batches")
        sums = torch.zeros(len(names), device=r.sequences.device)
        norms: list[torch.Tensor] = []
        models.peft.train()
        try:
            for epoch in range(cfg.ppo_epochs):
                order = list(range(n))
                random.Random(f"ppo-order:{cfg.seed}:{self.step}:{epoch}").shuffle(order)
                for start in range(0, n, mini_size):
                    mini = order[start:start + mini_size]
                    for k in range(0, len(mini), micro):
                        rows = torch.tensor(mini[k:k + micro], device=r.sequences.device)
                        mask = r.mask[rows]
                        # Columns past the longest response of these rows are all padding.
                        t = int(mask.sum(1).max().item())
                        t = max(t, 1)
                        seq = r.sequences[rows, :r.prompt_width + t]
                        att = r.attention_mask[rows, :r.prompt_width + t]
                        mask = mask[:, :t]
                        share = len(rows) / len(mini) / size
                        # Policy and value have separate weights, so each loss goes backward
                        # before the other forward: only one pass's activations are held at a
                        # time (the same gradients, ~40% less peak memory).
                        with autocast(self.autocast_dtype, self.device):
                            logp, _ = models.logprobs(POLICY, seq, att, r.prompt_width,
                                                      cfg.temperature)
                        pl = core.policy_loss(logp, r.old_logp[rows, :t], r.advantages[rows, :t],
                                              mask, cfg.cliprange)
                        self.optimiser.backward(pl["loss"] * share)
                        if self.with_value:
                            with autocast(self.autocast_dtype, self.device):
                                v = models.values(seq, att, r.prompt_width).float()
                            vl = core.value_loss(v, r.old_values[rows, :t], r.returns[rows, :t],
                                                 mask, cfg.cliprange_value)
                            self.optimiser.backward(cfg.vf_coef * vl["loss"] * share)
                        else:  # RLOO: no value model
                            vl = {"loss": torch.zeros((), device=sums.device),
                                  "clipfrac": torch.zeros((), device=sums.device)}
                        sums += torch.stack([pl["loss"].detach(), vl["loss"].detach(),
                                             pl["approxkl"].detach(), pl["clipfrac"],
                                             pl["ratio"].detach(), vl["clipfrac"],
                                             torch.ones((), device=sums.device)])
                    norms.append(self.optimiser.clip())
                    self.optimiser.apply()
        finally:
            models.peft.eval()
        means = dict(zip(names, self.world.sum_(sums).tolist()))
        if not all(math.isfinite(v) for v in means.values()):
            raise GuardRail(f"The PPO loss became non-finite at step {self.step + 1}; try a "
                            "lower learning rate.")
        count = max(means.pop("micro_batches"), 1.0)
        finite = [x for x in torch.stack(norms).tolist() if math.isfinite(x)]
        return {name: value / count for name, value in means.items()} | {
            "train/grad_norm": sum(finite) / len(finite) if finite else float("nan")}

    def prompts_per_step(self) -> int:
        return self.cfg.batch_size

    def _prompt_batch(self, step: int) -> list[PromptInput]:
        """The prompts of ``step``: the run walks through its prompts in an order drawn anew
        each epoch from (seed, epoch) alone, so any step's prompts are known on resume."""
        n, size = len(self.prompts), self.prompts_per_step()
        batch = []
        for index in range(step * size, (step + 1) * size):
            epoch, position = divmod(index, n)
            order = list(range(n))
            random.Random(f"ppo-prompts:{self.cfg.seed}:{epoch}").shuffle(order)
            batch.append(self.prompts[order[position]])
        return batch

    # ---- reporting ---------------------------------------------------------------------------

    def progress_extra(self, values: dict[str, float]) -> dict:
        return {"score": values["objective/scores"], "kl": values["objective/kl"],
                "generation_s": values["time/generation_s"],
                "scoring_s": values["time/scoring_s"],
                "optimization_s": values["time/optimization_s"]}

    def _emit_samples(self, batch, out, scores, kl_sum) -> None:
        tokenizer = self.models.tokenizer
        rows = out.completions[:SAMPLE_ROWS].tolist()
        lengths = out.text_lengths[:SAMPLE_ROWS].tolist()
        texts = tokenizer.batch_decode([r[:n] for r, n in zip(rows, lengths)],
                                       skip_special_tokens=True)
        self.emit(Samples(self.step + 1, [
            {"prompt": p.text, "response": t, "score": s, "kl": k}
            for p, t, s, k in zip(batch, texts, scores[:SAMPLE_ROWS].tolist(),
                                  kl_sum[:SAMPLE_ROWS].tolist())]))

    # ---- checkpoints and the end -------------------------------------------------------------

    def checkpoint_state(self) -> dict:
        return {"kl_coef": self.kl_ctl.value, "history": self.history}

    def load_checkpoint_state(self, state: dict) -> None:
        self.kl_ctl.value = state["kl_coef"]
        self.history = list(state["history"])

    def save_checkpoint_files(self, folder: Path) -> None:
        self.models.save_adapter(POLICY, folder / "policy")
        self.models.save_adapter(VALUE, folder / "value")
        torch.save(self.models.value_head.state_dict(), folder / "value_head.pt")

    def load_checkpoint_files(self, folder: Path) -> None:
        self.models.load_adapter_weights(POLICY, folder / "policy")
        self.models.load_adapter_weights(VALUE, folder / "value")
        self.models.value_head.load_state_dict(
            torch.load(folder / "value_head.pt", map_location=self.device, weights_only=True))

    def save_artifact(self, folder: Path) -> None:
        self.models.save_adapter(POLICY, folder, tokenizer=True)

    def result(self, status: RunStatus, artifact: str | None = None,
               error: str | None = None) -> PPOResult:
        first, last = _score_ends(self.history, self.total_steps)
        return PPOResult(run_id=self.run_id, status=str(status), step=self.step,
                         total_steps=self.total_steps, score_first=first, score_last=last,
                         kl=self.history[-1]["kl"] if self.history else None,
                         artifact=artifact, error=error)

    def release(self) -> None:
        self.models = self.optimiser = None


# ---- helpers ---------------------------------------------------------------------------------

def _score_ends(history: list[dict], total_steps: int) -> tuple[float | None, float | None]:
    """Mean score over the first and the last 10% of the steps (at least one step each)."""
    if not history:
        return None, None
    k = max(1, math.ceil(0.1 * total_steps))
    head, tail = history[:k], history[-k:]
    return (sum(h["scores"] for h in head) / len(head), sum(h["scores"] for h in tail) / len(tail))


def _reward_model_of(store: Store, run_id: int | None,
                     needed_for: str = "PPO") -> tuple[Path, dict | None]:
    """The reward run's adapter folder and its reward statistics."""
    run = store.get_run(run_id) if run_id is not None else None
    if run is None:
        raise PPOTrainingError(f"There is no reward run {run_id}.")
    adapter = run.require_artifact(RunKind.REWARD, needed_for)
    try:
        stats = json.loads((adapter.parent / "reward_stats.json").read_text(encoding="utf-8"))
        stats = {"mean": float(stats["mean"]), "std": float(stats["std"]) or 1.0}
    except (OSError, ValueError, KeyError, TypeError):
        stats = None
    return adapter, stats


def _prompt_file_ids(store: Store, path: str) -> list[int]:
    """Import a prompts file into the workspace and return its prompts' ids, in file order."""
    from desktop_app.core.data.formats import FormatError, parse_file
    try:
        parsed = parse_file(path)
    except FormatError as exc:
        raise PPOTrainingError(str(exc)) from exc
    if parsed.pairs:
        raise PPOTrainingError(f"{Path(path).name} holds preference pairs, not prompts.")
    store.add_prompts([(p.text, p.messages) for p in parsed.prompts], source=Path(path).name)
    by_text = {r["text"]: r["id"] for r in store.list_prompts()}
    return list(dict.fromkeys(by_text[p.text] for p in parsed.prompts))


def _prompts(store: Store, cfg: PPOConfig, ids: list[int] | None) -> list[PromptInput]:
    if ids is None and cfg.prompt_file:
        ids = _prompt_file_ids(store, cfg.prompt_file)
    rows = store.list_prompts()
    if ids is None:
        # Held-out prompts are for evaluation: a policy trained on them would be measured on
        # its own training set.
        rows = [r for r in rows if not r["held_out"] and (cfg.prompts == "all" or not r["judged"])]
    else:
        by_id = {r["id"]: r for r in rows}
        rows = [by_id[i] for i in ids if i in by_id]
    out = []
    for r in rows:
        full = store.get_prompt(r["id"])
        messages = json.loads(full["messages"]) if full and full.get("messages") else None
        out.append(PromptInput(r["id"], r["text"], messages))
    return out


def _read_prompt_ids(run_dir: Path, run_id: int) -> list[int]:
    try:
        return list(json.loads((run_dir / "prompts.json").read_text(encoding="utf-8"))
                    ["prompt_ids"])
    except (OSError, ValueError, KeyError) as exc:
        raise PPOTrainingError(f"Run {run_id} cannot be resumed: its prompts.json is missing "
                               "or unreadable.") from exc
