"""Reward-model training (LoRA + scalar head, Bradley-Terry loss) as a job: it reports through
``emit`` and honours a stop token, so the GUI runs it on a worker thread and the CLI in the
foreground, the same way.

    check_reward_data    counts of usable judgments; refuses too few before any run exists
    train_reward_model   the job
      1. data      judgments -> split by prompt (a resume reuses the run's saved split) -> tokens
      2. model     base + LoRA + score head on the device, AdamW over the trainable weights
      3. run       a new run and its folder, or the resumed run restored from its checkpoint
      4. loop      seeded micro-batch order, accumulate, clip, step; log, evaluate, checkpoint
      5. end       final evaluation; adapter, tokenizer and reward statistics saved; completed

The run folder ``runs/NNNN-reward`` holds adapter/ (a standard PEFT adapter including the score
head, plus the tokenizer), checkpoint/ (adapter + trainer_state.pt), split.json, config.json
and reward_stats.json (reward mean/std over a sample of the judged responses, for PPO's
normalisation).

The run's life (creating or resuming it, checkpoints, cancel, the end, failures) is the shared
training loop's (``ml.training.loop``); this module supplies what is the reward model's own.

Under torchrun each rank takes every N-th pair of each (global) micro-batch, divides its loss by
the whole step's pair count and sums its statistics with the other ranks'
(``ml.training.distributed``): the steps are those of one process with the same batch size and
seed, so a run may even resume under a different number of processes.
Too few judgments, an unusable model folder or a run that cannot be resumed raise a
``UserError`` before any run is created or reopened; once the run exists, a non-finite loss
or a device out-of-memory ends it as "failed" and the job returns a ``RewardResult`` whose
``error`` says why.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import astuple, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from desktop_app.core.config import RewardConfig
from desktop_app.core.events import Emit, Log, StopToken, ignore
from desktop_app.core.runs.lineage import policy_runs_in_data
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.runs.session import GuardRail, Resumed, write_json
from desktop_app.ml.planning.plan import Job, pair_tokens, turn_on_checkpointing_if_needed
from desktop_app.ml.reward.data import EncodedPair, PairEncoder
from desktop_app.ml.reward.model import build_reward_model, check_base_model, load_tokenizer
from desktop_app.ml.reward.pairs import (
    RewardTrainingError,
    Split,
    check_reward_data,
    preference_examples,
    saved_split,
    split_by_prompt,
)
from desktop_app.ml.reward.shared_prompt import pair_rewards
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
class RewardResult:
    run_id: int
    status: str  # completed | cancelled | failed
    step: int
    total_steps: int
    val_accuracy: float | None
    val_loss: float | None
    samples_per_s: float  # training pairs per second of training (evaluation not counted)
    artifact: str | None  # the adapter folder, when completed
    error: str | None = None


# ---- loss ------------------------------------------------------------------------------------

def pair_losses(r_chosen: torch.Tensor, r_rejected: torch.Tensor, tie: torch.Tensor,
                margin: float = 0.0, center: float = 0.0) -> torch.Tensor:
    """Per-pair loss. A winner: Bradley-Terry, -logsigmoid(rc - rr - margin). A tie: the same
    likelihood with a label of one half, lowest when both rewards are equal. Centering
    (TRL's center_rewards_coefficient) adds c * (rc + rr)^2, pulling the rewards' mean to 0."""
    d = r_chosen - r_rejected
    won = -F.logsigmoid(d - margin)
    tied = -(0.5 * F.logsigmoid(d) + 0.5 * F.logsigmoid(-d))
    loss = torch.where(tie, tied, won)
    if center:
        loss = loss + center * (r_chosen + r_rejected) ** 2
    return loss


# ---- the job ---------------------------------------------------------------------------------

def train_reward_model(workspace, cfg: RewardConfig | None, *, base_model: str | None = None,
                       resume_run_id: int | None = None, emit: Emit = ignore,
                       stop: StopToken | None = None) -> RewardResult:
    """Train (or resume) a reward model on the workspace's judgments; see the module docstring.

    A resume continues the run with the configuration and the split it was started with (``cfg``
    is then ignored), so its result equals an uninterrupted run's; on the base model it was
    started on unless ``base_model`` says otherwise."""
    return train(RewardTrainer, workspace, cfg, resume_run_id=resume_run_id, emit=emit,
                 stop=stop, base_model=base_model)


@dataclass
class PairStats:
    """Sums over pairs that add up across batches: the loss, the pairs, the decided pairs (not
    ties), the correctly ordered ones, the margin over decided pairs, and the rewards' sum, sum
    of squares and count. Summed on the device as a tensor in this order (one sync a step)."""

    loss: float = 0.0
    pairs: float = 0.0
    decided: float = 0.0
    correct: float = 0.0
    margin: float = 0.0
    reward_sum: float = 0.0
    reward_squares: float = 0.0
    rewards: float = 0.0

    def __add__(self, other: "PairStats") -> "PairStats":
        return PairStats(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def reward_mean_std(self) -> tuple[float, float]:
        count = max(self.rewards, 1.0)
        mean = self.reward_sum / count
        return mean, math.sqrt(max(self.reward_squares / count - mean * mean, 0.0))

    def summary(self) -> dict[str, float | None]:
        mean, std = self.reward_mean_std()
        return {"loss": self.loss / self.pairs if self.pairs else None,
                "accuracy": self.correct / self.decided if self.decided else None,
                "margin": self.margin / self.decided if self.decided else None,
                "reward_mean": mean, "reward_std": std}


class RewardTrainer(Trainer):
    kind = RunKind.REWARD
    config_type = RewardConfig
    oom_advice = ("try a 4-bit base (quantize 4bit), a smaller batch size (with more gradient "
                  "accumulation), a shorter max length, or gradient checkpointing; `rlhf-desk "
                  "plan train-reward ...` estimates each")
    artifact_name = "adapter"
    checkpoint_parts = ("adapter",)
    progress_message = "Training reward model"
    finished_message = "Reward model trained"
    distributed = True

    # ---- data and model ----------------------------------------------------------------------

    def prepare(self, resumed: Resumed | None, *, base_model: str | None) -> None:
        cfg, store = self.cfg, self.store
        # Data. A new run splits the judgments now; a resume takes its run's saved split.
        if resumed is not None:
            train, val = saved_split(store, resumed.run.folder(self.workspace.runs_dir),
                                      resumed.run.id)
        else:
            check_reward_data(store, cfg)
            examples = preference_examples(store.preference_rows(), cfg.ties)
            train, val = split_by_prompt(examples, cfg.val_fraction, cfg.seed)
        self.split = Split.of(train, val)
        if resumed is not None:
            base_model = base_model or resumed.base_model
            if resumed.base_model != str(Path(base_model).expanduser().resolve()):
                self.emit(Log(f"Run {resumed.run.id} was started on {resumed.base_model}; "
                              f"resuming it on {base_model}.", "warning"))
        if not base_model:
            raise RewardTrainingError("Which base model? Pass --model PATH.")
        self.base_model = str(Path(base_model).expanduser().resolve())

        # Device, number formats, tokenizer and model; the head and LoRA start from the seed
        # (a resume then loads the checkpoint's adapter instead).
        choice, self.autocast_dtype = resolve_precision(cfg)
        self.device = choice.device
        self.tokenizer = load_tokenizer(check_base_model(self.base_model))
        if resumed is None:
            turn_on_checkpointing_if_needed(
                Job("train-reward", self.base_model, cfg,
                    pair_tokens=pair_tokens(store, self.base_model)),
                self.emit)
        torch.manual_seed(cfg.seed)
        adapter = resumed.checkpoint / "adapter" if resumed is not None else None
        self.model = model = build_reward_model(
            self.base_model, self.tokenizer, choice, cfg=cfg, trainable=True,
            adapter_dir=adapter, train_dropout=False, quantize=cfg.quantize)
        # fp32 master weights: LoRA and the head train in fp32 while the frozen base may sit in
        # bf16/fp16 and autocast runs the matmuls in half precision.
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        for _, p in named:
            p.data = p.data.float()
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(model.get_base_model())
        model.train()
        self.world = world()
        self.world.same_weights([p for _, p in named])  # one starting point on every rank
        self.optimiser = Optimiser(named, cfg, self.device, self.autocast_dtype)

        encoder = PairEncoder(self.tokenizer, cfg.max_length)
        self.train = [encoder.encode_pair(e) for e in train]
        self.val = [encoder.encode_pair(e) for e in val]
        self.truncated = sum(p.truncated for p in self.train + self.val)
        self.batches_per_epoch = math.ceil(len(self.train) / cfg.batch_size)
        self.total_steps = max(1, math.ceil(cfg.epochs * self.batches_per_epoch / cfg.grad_accum))
        self._order_epoch, self._order = -1, []
        self.window, self.last_eval = LogWindow.empty(PairStats), None
        self.last_eval_stats: tuple[int, PairStats] | None = None  # (step, held-out sums)
        self.session_pairs, self.session_seconds = 0, 0.0
        self.rank_pairs = 0  # training pairs this rank itself computed (its shard)
        # Lineage: the PPO runs whose policies generated pairs in this data; the newest is the
        # parent (round k's reward model learns from round k-1's policy).
        self.policy_runs = policy_runs_in_data(store) if resumed is None else []
        self.parent_run_id = self.policy_runs[-1] if self.policy_runs else None

    def run_config(self) -> dict:
        return self.cfg.to_dict() | {"base_model": self.base_model,
                                     "judgments": len(self.train) + len(self.val),
                                     "policy_run_ids": self.policy_runs}

    def write_run_files(self, folder: Path) -> None:
        self.split.save(folder / "split.json")

    def start_message(self) -> str:
        ties = sum(p.tie for p in self.train + self.val)
        where = self.where()
        return (f"Reward run {self.run_id}: {len(self.train)} training pairs, {len(self.val)} "
                f"validation pairs ({ties} ties), {self.truncated} truncated to "
                f"{self.cfg.max_length} tokens; {self.total_steps} steps on {where}.")

    # ---- one step ----------------------------------------------------------------------------

    def train_step(self) -> dict[str, float] | None:
        """One optimiser step over ``grad_accum`` micro-batches; None when stopped first."""
        started = time.perf_counter()
        cfg, n_micro = self.cfg, self.cfg.grad_accum
        lr = learning_rate(cfg, self.step, self.total_steps)
        self.optimiser.set_lr(lr)
        batches = [self._micro_batch(self.step * n_micro + k) for k in range(n_micro)]
        # Each pair weighs the same whatever micro-batch it is in (the last of an epoch is
        # smaller): summed losses over the pairs of the whole step.
        step_pairs = sum(len(b) for b in batches)
        sums = torch.zeros(8, device=self.device)
        for indices in batches:
            # Under torchrun the loop agrees on stopping between steps: a rank stopping alone
            # here would leave the others waiting in the gradient sum.
            if self.stop.requested and not self.world.active:
                self.optimiser.adamw.zero_grad(set_to_none=True)
                return None
            pairs = [self.train[i] for i in self.world.shard(indices)]
            if not pairs:  # a last micro-batch smaller than the number of ranks
                continue
            losses, rc, rr, tie = self._losses(pairs)
            self.optimiser.backward(losses.sum() / step_pairs)
            sums += _batch_sums(losses.detach(), rc.detach(), rr.detach(), tie)
            self.rank_pairs += len(pairs)
        grad_norm = self.optimiser.clip()
        self.world.sum_(sums)
        # One device sync per step: every number the logs need, and the loss check.
        *values, norm = torch.cat([sums, grad_norm.reshape(1).to(sums.device)]).tolist()
        stats = PairStats(*values)
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

    def _losses(self, pairs: list[EncodedPair]):
        # Each pair's prompt runs once for both responses (shared_prompt); same values.
        with autocast(self.autocast_dtype, self.device):
            rc, rr, tie = pair_rewards(self.model, pairs, self.tokenizer.pad_token_id,
                                       self.device)
        losses = pair_losses(rc, rr, tie, self.cfg.margin, self.cfg.center_rewards_coefficient)
        return losses, rc, rr, tie

    def _micro_batch(self, index: int) -> list[int]:
        """Training-pair indices of micro-batch ``index`` of the whole run. The order of each
        epoch is drawn from (seed, epoch) alone, so any step's data is known without replaying
        the ones before it: a resume sees exactly the batches the uninterrupted run would."""
        epoch, position = divmod(index, self.batches_per_epoch)
        if epoch != self._order_epoch:
            self._order = list(range(len(self.train)))
            random.Random(f"reward-order:{self.cfg.seed}:{epoch}").shuffle(self._order)
            self._order_epoch = epoch
        size = self.cfg.batch_size
        return self._order[position * size:(position + 1) * size]

    def _window_metrics(self) -> dict[str, float]:
        w, self.window = self.window, LogWindow.empty(PairStats)
        values = {f"train/{k}": v for k, v in w.stats.summary().items() if v is not None}
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
        stats = self._score_pairs(self.val, check_stop=True)
        if stats is None:
            return None
        self.last_eval = stats.summary()
        self.last_eval_stats = (self.step, stats)
        values = {f"eval/{k}": v for k, v in self.last_eval.items() if v is not None}
        values["eval/pairs"] = stats.decided   # validation pairs with a winner: accuracy's n
        return values

    def _score_pairs(self, pairs: list[EncodedPair], check_stop: bool) -> PairStats | None:
        """Summed statistics over ``pairs`` in eval mode (no dropout, no gradients); under
        torchrun each rank scores its share and the sums are added up."""
        sums = torch.zeros(8, device=self.device)
        pairs = self.world.shard(pairs)
        check_stop = check_stop and not self.world.active  # see train_step
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(pairs), self.cfg.batch_size):
                    if check_stop and self.stop.requested:
                        return None
                    losses, rc, rr, tie = self._losses(pairs[start:start + self.cfg.batch_size])
                    sums += _batch_sums(losses, rc, rr, tie)
        finally:
            self.model.train()
        return PairStats(*self.world.sum_(sums).tolist())

    # ---- checkpoints and the end -------------------------------------------------------------

    def checkpoint_state(self) -> dict:
        return {"micro_batch": self.step * self.cfg.grad_accum,
                "epoch": self.step * self.cfg.grad_accum / self.batches_per_epoch,
                "window": self.window.state()}

    def load_checkpoint_state(self, state: dict) -> None:
        self.window = LogWindow.from_state(state["window"], PairStats)

    def save_checkpoint_files(self, folder: Path) -> None:
        self.model.save_pretrained(folder / "adapter")  # read back by prepare on resume

    def save_artifact(self, folder: Path) -> None:
        """The adapter (with the score head) and the tokenizer (with its pad token)."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def after_artifact(self, run_folder: Path) -> None:
        """The reward statistics PPO normalises with: a mean and a standard deviation over the
        judged responses, which a sample estimates to a few percent. The final evaluation has
        just scored the held-out pairs (drawn from the same responses), so they count, and
        training pairs make up the rest of the sample. Scoring every training pair cost a
        third of an epoch, a sixth of a default run."""
        stats, scored = PairStats(), 0
        step, val_stats = self.last_eval_stats or (None, None)
        if step == self.step:  # the final evaluation scored the held-out responses already
            stats, scored = val_stats, len(self.val)
        if scored < STATS_PAIRS:
            stats = stats + self._score_pairs(
                stats_sample(self.train, self.cfg.seed, STATS_PAIRS - scored), check_stop=False)
        if self.world.active:
            shares = self.world.gather(self.rank_pairs)
            self.emit(Log(f"Training pairs computed per rank this session: "
                          f"{', '.join(map(str, shares))} (of {sum(shares)})."))
        if not self.world.is_main:
            return
        mean, std = stats.reward_mean_std()
        write_json(run_folder / "reward_stats.json",
                   {"mean": mean, "std": std, "responses": int(stats.rewards), "step": self.step})

    def result(self, status: RunStatus, artifact: str | None = None,
               error: str | None = None) -> RewardResult:
        last = self.last_eval or {}
        seconds = self.session_seconds
        return RewardResult(
            run_id=self.run_id, status=str(status), step=self.step,
            total_steps=getattr(self, "total_steps", 0),
            val_accuracy=last.get("accuracy"), val_loss=last.get("loss"),
            samples_per_s=self.session_pairs / seconds if seconds else 0.0,
            artifact=artifact, error=error)

    def release(self) -> None:
        self.model = self.optimiser = None


# ---- helpers ---------------------------------------------------------------------------------

# Pairs scored for reward_stats.json: 512 responses put the mean within about 0.05 standard
# deviations and the standard deviation within about 3%.
STATS_PAIRS = 256


def stats_sample(pairs: list, seed: int, n: int) -> list:
    """Up to ``n`` of ``pairs``, drawn from ``seed`` alone (the same on every rank and on
    resume), in their original order."""
    if len(pairs) <= n:
        return pairs
    chosen = sorted(random.Random(f"reward-stats:{seed}").sample(range(len(pairs)), n))
    return [pairs[i] for i in chosen]


def _batch_sums(losses: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor,
                tie: torch.Tensor) -> torch.Tensor:
    """``PairStats`` of one batch, as a tensor on the device (its fields in order)."""
    decided = (~tie).float()
    d = rc - rr
    r = torch.cat([rc, rr])
    return torch.stack([losses.sum(), torch.tensor(float(len(rc)), device=rc.device),
                        decided.sum(), ((d > 0).float() * decided).sum(), (d * decided).sum(),
                        r.sum(), (r * r).sum(), torch.tensor(float(r.numel()), device=rc.device)])
