"""RLOO (or GRPO's group normalisation) against a trained reward model, as a job: PPO's run
without its value model.

    train_rloo   the job
      1. setup    as PPO's (``ml.ppo.train``): reward run, prompts, one base with the policy
                  and reward adapters (no value adapter), AdamW over the policy's LoRA
      2. step     k responses to each of batch_size / k prompts, sampled from the policy
                  -> scores (normalised with the reward run's statistics, clipped, no-EOS
                  penalty) -> sequence reward = score - kl_coef * KL to the reference
                  (summed over the response's tokens, padding after EOS masked)
                  -> advantage of each response within its prompt's group (``algorithm``:
                  leave-one-out, or GRPO's normalisation; scaled to unit variance over the
                  batch unless whiten_advantages is off) on every one of its tokens
                  -> update epochs x mini-batches of PPO's clipped policy loss, clip, AdamW
                  -> metrics (PPO's names, plus the spread of rewards within groups)
      3. end      policy adapter (+ tokenizer) saved; completed

Under torchrun each rank samples the k responses to its share of the step's prompts (whole
groups), and the advantages' scale and the metrics are taken over all ranks, as in PPO.

Everything else (the run's life, checkpoints, cancel and resume, the KL guard rail, samples,
the result record) is PPO's: ``RLOOTrainer`` is a ``PPOTrainer`` whose step is its own. The
run folder ``runs/NNNN-rloo`` holds policy/, checkpoint/ (policy/ + trainer_state.pt),
prompts.json and config.json.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from desktop_app.core.config import RLOOConfig
from desktop_app.core.events import Emit, StopToken, ignore
from desktop_app.core.runs.record import RunKind
from desktop_app.core.runs.session import GuardRail
from desktop_app.ml.ppo import algorithm as core
from desktop_app.ml.ppo.models import POLICY
from desktop_app.ml.ppo.train import PPOResult, PPOTrainer, _Rollout
from desktop_app.ml.rloo import algorithm as rloo
from desktop_app.ml.training.files import memory_gib
from desktop_app.ml.training.loop import train
from desktop_app.ml.training.optim import autocast

# Everything a step reports, in this order: PPO's names where they apply.
METRICS = ("objective/scores", "objective/raw_scores", "objective/kl", "objective/non_score_reward",
           "objective/rlhf_reward", "objective/group_reward_std", "objective/entropy",
           "objective/kl_coef", "policy/approxkl", "policy/clipfrac", "loss/policy", "val/ratio",
           "response/length_mean", "response/eos_share", "train/grad_norm", "time/generation_s",
           "time/scoring_s", "time/optimization_s", "memory_gib")


def train_rloo(workspace, cfg: RLOOConfig | None, *, base_model: str | None = None,
               reward_run_id: int | None = None, resume_run_id: int | None = None,
               emit: Emit = ignore, stop: StopToken | None = None) -> PPOResult:
    """Tune a LoRA policy on ``base_model`` with RLOO against reward run ``reward_run_id``, or
    resume run ``resume_run_id`` (its own configuration, base model and reward run)."""
    return train(RLOOTrainer, workspace, cfg, resume_run_id=resume_run_id, emit=emit, stop=stop,
                 base_model=base_model, reward_run_id=reward_run_id)


class RLOOTrainer(PPOTrainer):
    kind = RunKind.RLOO
    config_type = RLOOConfig
    oom_advice = ("try a 4-bit base (quantize 4bit), gradient checkpointing, a smaller batch or "
                  "mini-batch size (with gradient accumulation), fewer new tokens, or a smaller "
                  "LoRA rank; `rlhf-desk plan train-rloo ...` estimates each")
    checkpoint_parts = ("policy",)
    progress_message = "RLOO"
    finished_message = "RLOO finished"
    plan_command = "train-rloo"
    with_value = False

    def prompts_per_step(self) -> int:
        return self.cfg.batch_size // self.cfg.k

    def start_message(self) -> str:
        cfg = self.cfg
        return (f"RLOO run {self.run_id}: {len(self.prompts)} prompts, {cfg.k} responses to "
                f"each of {self.prompts_per_step()} prompts per step ({cfg.advantage} "
                f"advantages), {self.total_steps} steps on {self.where()}, reward model of run "
                f"{self.reward_run_id}.")

    def train_step(self) -> dict[str, float] | None:
        cfg, k = self.cfg, self.cfg.k
        # a. Rollouts: k responses per prompt, side by side.
        t0 = time.perf_counter()
        batch = self._shard_of_step(self._prompt_batch(self.step))  # whole groups per rank
        out, attention = self._rollouts(batch, k)
        if out is None:
            return None
        seq, width, mask = out.sequences, out.prompt_width, out.completion_mask
        t1 = time.perf_counter()

        # b. Scores, old and reference log-probs (no gradients); sequence rewards; advantages.
        with torch.no_grad(), autocast(self.autocast_dtype, self.device):
            raw, old_logp, entropy, ref_logp, _ = self._score(seq, attention, width)
        stats = self.reward_stats
        scores = core.normalise_scores(raw, stats["mean"], stats["std"], cfg.score_clip)
        penalised = core.apply_missing_eos_penalty(scores, out.finished, cfg.missing_eos_penalty)
        kl = core.kl_per_token(old_logp, ref_logp, cfg.kl_estimator).masked_fill(~mask, 0.0)
        kl_sum = kl.sum(1)
        kl_coef = self.kl_ctl.value
        rewards = penalised - kl_coef * kl_sum
        advantages = rloo.advantages(rewards, k, cfg.advantage)
        if cfg.whiten_advantages:
            # Within-group means are already 0; only the scale changes (the variance of every
            # rank's advantages under torchrun).
            advantages = advantages * torch.rsqrt(self._variance(advantages) + 1e-8)
        token_advantages = advantages[:, None].expand_as(old_logp).masked_fill(~mask, 0.0)
        zeros = torch.zeros_like(old_logp)
        rollout = _Rollout(seq, attention, width, mask, old_logp, zeros, token_advantages, zeros)
        summary = {
            "objective/scores": scores.mean(), "objective/raw_scores": raw.float().mean(),
            "objective/kl": kl_sum.mean(), "objective/non_score_reward": -kl_coef * kl_sum.mean(),
            "objective/rlhf_reward": rewards.mean(),
            "objective/group_reward_std": rloo.group_spread(rewards, k),
            "objective/entropy": core.masked_mean(entropy, mask),
            "response/length_mean": mask.sum(1).float().mean(),
            "response/eos_share": out.finished.float().mean()}
        summary = self._mean_over_ranks(summary)
        if not all(math.isfinite(v) for v in summary.values()):
            raise GuardRail(f"Scores, log-probabilities or KL became non-finite at step "
                            f"{self.step + 1}; try a lower learning rate.")
        t2 = time.perf_counter()

        # c. The clipped policy update (PPO's, with no value loss).
        trained = self._optimise(rollout)
        t3 = time.perf_counter()

        self.kl_ctl.update(summary["objective/kl"], len(seq) * self.world.size)
        values = summary | trained
        values["objective/kl_coef"] = kl_coef
        values["time/generation_s"] = t1 - t0
        values["time/scoring_s"] = t2 - t1
        values["time/optimization_s"] = t3 - t2
        values["memory_gib"] = memory_gib(self.device)
        if (self.step + 1) % cfg.sample_every == 0 or self.step == 0:
            self._emit_samples([p for p in batch for _ in range(k)], out, scores, kl_sum)
        return {name: values[name] for name in METRICS
                if name in values and math.isfinite(values[name])}

    def _variance(self, values: torch.Tensor) -> torch.Tensor:
        """The (unbiased) variance of ``values``, over every rank's under torchrun."""
        if not self.world.active:
            return values.var()
        n, total, squares = self.world.sum_(torch.stack([
            torch.tensor(float(values.numel()), device=values.device), values.sum(),
            (values * values).sum()]))
        return (squares - total * total / n) / (n - 1).clamp(min=1)

    def save_checkpoint_files(self, folder: Path) -> None:
        self.models.save_adapter(POLICY, folder / "policy")

    def load_checkpoint_files(self, folder: Path) -> None:
        self.models.load_adapter_weights(POLICY, folder / "policy")
