"""DPO as a job: the policy trained straight on the judged pairs against a frozen reference, no
reward model and no sampling. It reports through ``emit`` and honours a stop token, so the GUI
runs it on a worker thread and the CLI in the foreground, the same way.

    train_dpo   the job
      1. data      judgments with a winner -> split by prompt as the reward model splits them
                   (a resume reuses the run's saved split) -> prompt + response tokens, with
                   each response's first token (``ml.dpo.data``)
      2. model     one base + the policy LoRA; the reference is the base with adapters off, or
                   a frozen copy of the starting policy (``ml.policy.model``)
      3. loop      seeded micro-batch order, accumulate, clip, step; log, evaluate, checkpoint
      4. end       final evaluation; the policy adapter and tokenizer saved; completed

Reference log-probabilities are computed once per pair, the first time the pair is used, and
kept (in checkpoints too): every later epoch and every evaluation reuses them, so the reference
costs one pass without gradients over the data, not one per epoch.

Metrics use the names the field uses (TRL's), for training and validation: ``loss``,
``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``, ``rewards/margins``,
``logps/chosen`` and ``logps/rejected``, as ``train/...`` and ``eval/...``.

The run folder ``runs/NNNN-dpo`` holds policy/ (a standard PEFT adapter for
``AutoModelForCausalLM``, tokenizer included: it goes wherever a PPO policy goes),
checkpoint/ (policy/ + trainer_state.pt), split.json and config.json. The run's life is the
shared training loop's (``ml.training.loop``).

Under torchrun each rank takes every N-th pair of each global micro-batch, as the reward model
does (``ml.training.distributed``): its loss is divided by the whole step's pair count, the
statistics are summed over the ranks, and each rank caches the reference log-probabilities of
the pairs it computes (a checkpoint keeps rank 0's; the rest are computed again after a
resume, to the same values).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import astuple, dataclass
from pathlib import Path

import torch

from desktop_app.core.config import DPOConfig
from desktop_app.core.events import Emit, StopToken, ignore
from desktop_app.core.runs.lineage import policy_runs_in_data, run_of_adapter
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.runs.session import GuardRail, Resumed
from desktop_app.ml.dpo.data import EncodedPreference, PreferenceEncoder, collate
from desktop_app.ml.dpo.judgments import DPOData, DPOTrainingError, check_dpo_data, dpo_data
from desktop_app.ml.dpo.loss import dpo_losses, response_logps
from desktop_app.ml.planning.plan import Job, pair_tokens, turn_on_checkpointing_if_needed
from desktop_app.ml.policy.model import POLICY, LoraSpec, build_policy_model
from desktop_app.ml.reward.pairs import Split, saved_split
from desktop_app.ml.training.distributed import world
from desktop_app.ml.training.files import memory_gib
from desktop_app.ml.training.loop import Trainer, train
from desktop_app.ml.training.optim import (
    Optimiser,
    autocast,
    enable_gradient_checkpointing,
    learning_rate,
    resolve_precision,
)
from desktop_app.ml.training.window import LogWindow


@dataclass
class DPOResult:
    run_id: int
    status: str  # completed | cancelled | failed
    step: int
    total_steps: int
    val_accuracy: float | None  # the implicit reward's accuracy on the validation pairs
    val_margin: float | None    # its mean margin there (chosen minus rejected reward)
    samples_per_s: float        # training pairs per second of training
    artifact: str | None        # the policy adapter folder, when completed
    error: str | None = None


def train_dpo(workspace, cfg: DPOConfig | None, *, base_model: str | None = None,
              resume_run_id: int | None = None, emit: Emit = ignore,
              stop: StopToken | None = None) -> DPOResult:
    """Train (or resume) a DPO policy on the workspace's judgments; see the module docstring.
    A resume continues with the run's own config, split and base model, so its result equals
    an uninterrupted run's."""
    return train(DPOTrainer, workspace, cfg, resume_run_id=resume_run_id, emit=emit, stop=stop,
                 base_model=base_model)


# ---- statistics ----------------------------------------------------------------------------

@dataclass
class DPOStats:
    """Sums over pairs that add up across batches (summed on the device as a tensor in this
    order: one sync a step)."""

    loss: float = 0.0
    pairs: float = 0.0
    correct: float = 0.0          # chosen reward > rejected reward
    margin: float = 0.0           # chosen reward - rejected reward
    chosen_reward: float = 0.0
    rejected_reward: float = 0.0
    chosen_logp: float = 0.0      # the policy's summed log-probability of the chosen response
    rejected_logp: float = 0.0

    def __add__(self, other: "DPOStats") -> "DPOStats":
        return DPOStats(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def summary(self) -> dict[str, float]:
        n = self.pairs
        if not n:
            return {}
        return {"loss": self.loss / n, "rewards/chosen": self.chosen_reward / n,
                "rewards/rejected": self.rejected_reward / n,
                "rewards/accuracies": self.correct / n, "rewards/margins": self.margin / n,
                "logps/chosen": self.chosen_logp / n, "logps/rejected": self.rejected_logp / n}


def _batch_sums(out: dict[str, torch.Tensor], chosen_logp: torch.Tensor,
                rejected_logp: torch.Tensor) -> torch.Tensor:
    rc, rr = out["chosen_rewards"], out["rejected_rewards"]
    return torch.stack([out["loss"].detach().sum(), torch.tensor(float(len(rc)), device=rc.device),
                        (rc > rr).float().sum(), (rc - rr).sum(), rc.sum(), rr.sum(),
                        chosen_logp.detach().sum(), rejected_logp.detach().sum()])


# ---- the trainer ---------------------------------------------------------------------------

class DPOTrainer(Trainer):
    kind = RunKind.DPO
    config_type = DPOConfig
    oom_advice = ("try a 4-bit base (quantize 4bit), a smaller batch size (with more gradient "
                  "accumulation), a shorter max length, or gradient checkpointing; `rlhf-desk "
                  "plan train-dpo ...` estimates each")
    artifact_name = "policy"
    checkpoint_parts = ("policy",)
    progress_message = "DPO"
    finished_message = "DPO finished"
    distributed = True

    def prepare(self, resumed: Resumed | None, *, base_model: str | None) -> None:
        cfg, store = self.cfg, self.store
        # 1. Data: a new run splits the judgments now; a resume takes its saved split.
        if resumed is not None:
            base_model = resumed.base_model
            train_pairs, val_pairs = saved_split(store, resumed.run.folder(
                self.workspace.runs_dir), resumed.run.id, DPOTrainingError)
            self.data = DPOData(train_pairs, val_pairs, resumed.run.config.get("ties_left_out", 0),
                                resumed.run.config.get("both_bad_left_out", 0))
        else:
            check_dpo_data(store, cfg)
            self.data = dpo_data(store, cfg)
        if not base_model:
            raise DPOTrainingError("Which base model? Pass --model PATH.")
        self.base_model = str(Path(base_model).expanduser().resolve())
        self.split = Split.of(self.data.train, self.data.val)

        # 2. Device, number formats, the policy and its reference.
        choice, self.autocast_dtype = resolve_precision(cfg)
        self.device = choice.device
        if resumed is None:
            turn_on_checkpointing_if_needed(
                Job("train-dpo", self.base_model, cfg,
                    pair_tokens=pair_tokens(store, self.base_model)),
                self.emit)
        self.models = build_policy_model(
            self.base_model, choice,
            LoraSpec(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules),
            policy_adapter=cfg.init_policy or None, seed=cfg.seed, quantize=cfg.quantize)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(self.models.base)
        named = self.models.trainable_parameters()
        self.world = world()
        self.world.same_weights([p for _, p in named])  # one starting point on every rank
        self.optimiser = Optimiser(named, cfg, self.device, self.autocast_dtype)

        # 3. Tokens, steps, the reference cache (NaN: not computed yet).
        encoder = PreferenceEncoder(self.models.tokenizer, cfg.max_length)
        self.train = [encoder.encode(e) for e in self.data.train]
        self.val = [encoder.encode(e) for e in self.data.val]
        self.ref_train = torch.full((len(self.train), 2), math.nan, dtype=torch.float64)
        self.ref_val = torch.full((len(self.val), 2), math.nan, dtype=torch.float64)
        self.truncated = sum(p.truncated for p in self.train + self.val)
        self.batches_per_epoch = math.ceil(len(self.train) / cfg.batch_size)
        self.total_steps = max(1, math.ceil(cfg.epochs * self.batches_per_epoch / cfg.grad_accum))
        self._order_epoch, self._order = -1, []
        self.window, self.last_eval = LogWindow.empty(DPOStats), None
        self.session_pairs, self.session_seconds = 0, 0.0
        # Lineage: the policy it starts from, else the newest policy whose pairs are in the data.
        self.policy_runs = policy_runs_in_data(store) if resumed is None else []
        start = run_of_adapter(store, cfg.init_policy) if cfg.init_policy else None
        self.parent_run_id = start or (self.policy_runs[-1] if self.policy_runs else None)

    def run_config(self) -> dict:
        return self.cfg.to_dict() | {
            "base_model": self.base_model, "judgments": len(self.train) + len(self.val),
            "ties_left_out": self.data.ties, "both_bad_left_out": self.data.both_bad,
            "policy_run_ids": self.policy_runs}

    def write_run_files(self, folder: Path) -> None:
        self.split.save(folder / "split.json")

    def start_message(self) -> str:
        reference = ("a frozen copy of the starting policy" if self.models.reference
                     else "the base model")
        where = self.where()
        return (f"DPO run {self.run_id}: {len(self.train)} training pairs, {len(self.val)} "
                f"validation pairs ({self.data.ties} ties and {self.data.both_bad} both-bad "
                f"left out), {self.truncated} truncated to {self.cfg.max_length} tokens; "
                f"{self.total_steps} steps on {where}; reference: {reference}.")

    # ---- one step ----------------------------------------------------------------------------

    def train_step(self) -> dict[str, float] | None:
        started = time.perf_counter()
        cfg, n_micro = self.cfg, self.cfg.grad_accum
        lr = learning_rate(cfg, self.step, self.total_steps)
        self.optimiser.set_lr(lr)
        batches = [self._micro_batch(self.step * n_micro + k) for k in range(n_micro)]
        step_pairs = sum(len(b) for b in batches)
        sums = torch.zeros(8, device=self.device)
        try:
            for indices in batches:
                # Under torchrun the loop agrees on stopping between steps (see the reward
                # model's train_step).
                if self.stop.requested and not self.world.active:
                    self.optimiser.adamw.zero_grad(set_to_none=True)
                    return None
                indices = self.world.shard(indices)
                if not indices:  # a last micro-batch smaller than the number of ranks
                    continue
                out, logp_c, logp_r = self._losses(indices, self.train, self.ref_train,
                                                   training=True)
                self.optimiser.backward(out["loss"].sum() / step_pairs)
                sums += _batch_sums(out, logp_c, logp_r)
        finally:
            self.models.peft.eval()
        grad_norm = self.optimiser.clip()
        self.world.sum_(sums)
        *values, norm = torch.cat([sums, grad_norm.reshape(1).to(sums.device)]).tolist()
        stats = DPOStats(*values)
        loss = stats.loss / stats.pairs
        if not math.isfinite(loss):
            raise GuardRail(f"Loss became {loss} at step {self.step + 1}; try a lower "
                            "learning rate.")
        self.optimiser.apply()
        seconds = time.perf_counter() - started
        self.session_seconds += seconds
        self.session_pairs += int(stats.pairs)
        self.window.add(stats, lr, norm, seconds)
        done = self.step + 1
        if done % cfg.log_every == 0 or done == self.total_steps:
            return self._window_metrics()
        return {}

    def _losses(self, indices: list[int], pairs: list[EncodedPreference],
                cache: torch.Tensor, training: bool = False):
        """The DPO losses of ``pairs[indices]``; the reference's log-probabilities come from
        ``cache``, computed (without gradients, in eval mode: no LoRA dropout) for the pairs
        that have none yet. ``training``: the policy's pass in train mode (LoRA dropout,
        gradient checkpointing)."""
        batch = {k: v.to(self.device) for k, v in collate(
            [pairs[i] for i in indices], self.models.tokenizer.pad_token_id).items()}
        n = len(indices)
        rows = torch.tensor(indices)
        if torch.isnan(cache[rows]).any():
            self.models.peft.eval()
            with torch.no_grad(), autocast(self.autocast_dtype, self.device):
                ref, _ = self._logps(self.models.reference, batch)
            cache[rows] = torch.stack([ref[:n], ref[n:]], dim=1).double().cpu()
        ref = cache[rows].to(self.device, torch.float32)
        self.models.peft.train(training)
        with autocast(self.autocast_dtype, self.device):
            logp, tokens = self._logps(POLICY, batch)
        out = dpo_losses(logp[:n], logp[n:], ref[:, 0], ref[:, 1], beta=self.cfg.beta,
                         loss=self.cfg.loss, label_smoothing=self.cfg.label_smoothing,
                         chosen_tokens=tokens[:n], rejected_tokens=tokens[n:])
        return out, logp[:n], logp[n:]

    def _logps(self, adapter: str | None, batch: dict[str, torch.Tensor]):
        """Summed response log-probabilities (and response token counts) of every row under
        ``adapter`` (None: the base). Logits are computed from the batch's first response
        token on: the prompt before it needs none."""
        ids, first = batch["input_ids"], int(batch["first"])
        with self.models.use(adapter):
            out = self.models.peft(input_ids=ids, attention_mask=batch["attention_mask"],
                                   use_cache=False, logits_to_keep=ids.shape[1] - first + 1)
        return response_logps(out.logits[:, :-1], ids[:, first:], batch["loss_mask"][:, first:])

    def _micro_batch(self, index: int) -> list[int]:
        """Training-pair indices of micro-batch ``index`` of the whole run; each epoch's order
        is drawn from (seed, epoch) alone, so a resume sees the batches an uninterrupted run
        would."""
        epoch, position = divmod(index, self.batches_per_epoch)
        if epoch != self._order_epoch:
            self._order = list(range(len(self.train)))
            random.Random(f"dpo-order:{self.cfg.seed}:{epoch}").shuffle(self._order)
            self._order_epoch = epoch
        size = self.cfg.batch_size
        return self._order[position * size:(position + 1) * size]

    def _window_metrics(self) -> dict[str, float]:
        w, self.window = self.window, LogWindow.empty(DPOStats)
        values = {f"train/{k}": v for k, v in w.stats.summary().items()}
        values["train/lr"] = w.lr / w.steps
        if w.grad_steps:
            values["train/grad_norm"] = w.grad_norm / w.grad_steps
        values["train/samples_per_s"] = w.stats.pairs / max(w.seconds, 1e-9)
        values["train/memory_gib"] = memory_gib(self.device)
        return values

    def progress_extra(self, values: dict[str, float]) -> dict:
        return {"samples_per_s": self.session_pairs / max(self.session_seconds, 1e-9),
                "epoch": self.step * self.cfg.grad_accum / self.batches_per_epoch}

    # ---- evaluation --------------------------------------------------------------------------

    def eval_due(self) -> bool:
        return bool(self.val) and (self.step % self.cfg.eval_every == 0
                                   or self.step == self.total_steps)

    def evaluate(self) -> dict[str, float] | None:
        sums = torch.zeros(8, device=self.device)
        mine = self.world.shard(list(range(len(self.val))))  # all of them in one process
        with torch.no_grad():
            for start in range(0, len(mine), self.cfg.batch_size):
                if self.stop.requested and not self.world.active:
                    return None
                indices = mine[start:start + self.cfg.batch_size]
                sums += _batch_sums(*self._losses(indices, self.val, self.ref_val))
        self.last_eval = DPOStats(*self.world.sum_(sums).tolist()).summary()
        values = {f"eval/{k}": v for k, v in self.last_eval.items()}
        values["eval/pairs"] = float(len(self.val))
        return values

    # ---- checkpoints and the end -------------------------------------------------------------

    def checkpoint_state(self) -> dict:
        return {"epoch": self.step * self.cfg.grad_accum / self.batches_per_epoch,
                "window": self.window.state(), "ref_train": self.ref_train,
                "ref_val": self.ref_val}

    def load_checkpoint_state(self, state: dict) -> None:
        self.window = LogWindow.from_state(state["window"], DPOStats)
        if state["ref_train"].shape == self.ref_train.shape:
            self.ref_train, self.ref_val = state["ref_train"], state["ref_val"]

    def save_checkpoint_files(self, folder: Path) -> None:
        self.models.save_adapter(POLICY, folder / "policy")

    def load_checkpoint_files(self, folder: Path) -> None:
        self.models.load_adapter_weights(POLICY, folder / "policy")

    def save_artifact(self, folder: Path) -> None:
        self.models.save_adapter(POLICY, folder, tokenizer=True)

    def result(self, status: RunStatus, artifact: str | None = None,
               error: str | None = None) -> DPOResult:
        last = self.last_eval or {}
        seconds = self.session_seconds
        return DPOResult(
            run_id=self.run_id, status=str(status), step=self.step,
            total_steps=getattr(self, "total_steps", 0),
            val_accuracy=last.get("rewards/accuracies"), val_margin=last.get("rewards/margins"),
            samples_per_s=self.session_pairs / seconds if seconds else 0.0,
            artifact=artifact, error=error)

    def release(self) -> None:
        self.models = self.optimiser = None
