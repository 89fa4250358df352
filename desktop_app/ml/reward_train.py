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
and reward_stats.json (reward mean/std over the training responses, for PPO normalisation).

Failures. Too few judgments, an unusable model folder or a run that cannot be resumed raise
``RewardTrainingError`` before any run is created or reopened. Once the run exists, a non-finite
loss or a device out-of-memory ends it as "failed" and the job *returns* a ``RewardResult``
whose ``error`` says why, in one sentence (the app stays usable, the last checkpoint stays);
any other exception marks the run failed and is re-raised.
"""

from __future__ import annotations

import gc
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.config import RewardConfig
from ..core.events import Emit, Log, Metric, Progress, StopToken, ignore
from ..core.store import Store
from .device import DeviceChoice, pick_device
from .model_loader import _first_line
from .reward_data import (
    EncodedPair,
    PairEncoder,
    PairExample,
    Split,
    collate,
    fingerprint,
    preference_examples,
    split_by_prompt,
)
from .reward_model import (
    RewardModelError,
    build_reward_model,
    check_base_model,
    load_tokenizer,
    rewards,
)
from .reward_pairs import (  # noqa: F401 - re-exported: the GUI's checks live there, torch-free
    KIND,
    RewardTrainingError,
    _validate,
    check_reward_data,
    run_dir_for,
)
from .training_support import (
    guarded,
    is_oom,
    memory_gib,
    remove_leftovers,
    rng_state,
    set_rng_state,
    write_folder,
    write_json,
)

_OOM_ADVICE = ("try a smaller batch size (with more gradient accumulation), a shorter max "
               "length, or gradient checkpointing")


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


def learning_rate(cfg: RewardConfig, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine,
    linear or constant. A pure function of the step (nanoGPT's get_lr), so the scheduler's
    whole state is the step number. Warm-up starts above zero and decay ends just above zero,
    so no step is wasted at lr 0."""
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / (warmup + 1)
    if cfg.scheduler == "constant":
        return cfg.lr
    progress = (step - warmup) / max(1, total_steps - warmup)
    if cfg.scheduler == "linear":
        return cfg.lr * (1.0 - progress)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---- the job ---------------------------------------------------------------------------------

def train_reward_model(workspace, cfg: RewardConfig, *, base_model: str,
                       resume_run_id: int | None = None, emit: Emit = ignore,
                       stop: StopToken | None = None) -> RewardResult:
    """Train (or resume) a reward model on the workspace's judgments; see the module docstring.

    A resume continues the run with the configuration and the split it was started with (``cfg``
    is then ignored), so its result equals an uninterrupted run's. Opens its own Store: it runs
    on a worker thread in the GUI."""
    stop = stop or StopToken()
    store = Store(workspace.db_path)
    try:
        trainer = _Trainer.prepare(workspace, store, cfg, base_model, resume_run_id, emit, stop)
        return guarded(trainer, _NonFiniteLoss, _OOM_ADVICE)
    finally:
        store.close()


class _NonFiniteLoss(Exception):
    pass


@dataclass
class _Window:
    """Sums since the last log, turned into averages when logged. Saved in checkpoints, so a
    resume logs exactly what an uninterrupted run would have."""

    steps: int = 0
    stats: list[float] = field(default_factory=lambda: [0.0] * 8)
    lr: float = 0.0
    grad_norm: float = 0.0
    grad_steps: int = 0
    seconds: float = 0.0  # not saved: wall time does not resume

    def add(self, stats: list[float], lr: float, grad_norm: float, seconds: float) -> None:
        self.steps += 1
        self.stats = [a + b for a, b in zip(self.stats, stats)]
        self.lr += lr
        if math.isfinite(grad_norm):  # an fp16 overflow step (skipped by the scaler)
            self.grad_norm += grad_norm
            self.grad_steps += 1
        self.seconds += seconds

    def state(self) -> dict:
        return {"steps": self.steps, "stats": self.stats, "lr": self.lr,
                "grad_norm": self.grad_norm, "grad_steps": self.grad_steps}


class _Trainer:
    """The state of one training session; ``prepare`` builds it, ``run`` trains."""

    # ---- 1-3: data, model, run ---------------------------------------------------------------

    @classmethod
    def prepare(cls, workspace, store: Store, cfg: RewardConfig, base_model: str,
                resume_run_id: int | None, emit: Emit, stop: StopToken) -> "_Trainer":
        self = cls()
        self.workspace, self.store, self.emit, self.stop = workspace, store, emit, stop
        resume = resume_run_id is not None

        # 1. Data. A new run splits the judgments now; a resume takes its run's saved split.
        checkpoint = None
        if resume:
            run, checkpoint, cfg = _resumable(workspace, store, resume_run_id)
            self.run_dir = run_dir_for(workspace, resume_run_id)
            remove_leftovers(self.run_dir)  # of a save a crash cut short
            train, val = _saved_split(store, self.run_dir, resume_run_id)
        else:
            check_reward_data(store, cfg)
            examples = preference_examples(store.preference_rows(), cfg.ties)
            train, val = split_by_prompt(examples, cfg.val_fraction, cfg.seed)
        self.cfg = cfg
        self.base_model = str(Path(base_model).expanduser().resolve())

        # 2. Device, number formats, tokenizer and model.
        choice, self.autocast_dtype = _precision(cfg)
        self.device = choice.device
        emit(Progress(0, 0, "Loading the base model"))
        try:
            self.tokenizer = load_tokenizer(check_base_model(self.base_model))
            # The head and LoRA start from the seed; a resume then overwrites both.
            torch.manual_seed(cfg.seed)
            self.model = build_reward_model(
                self.base_model, self.tokenizer, choice, cfg=cfg, trainable=True,
                adapter_dir=checkpoint / "adapter" if checkpoint else None, train_dropout=False)
        except RewardModelError as exc:
            raise RewardTrainingError(str(exc)) from exc
        except BaseException as exc:
            if is_oom(exc):
                raise RewardTrainingError(f"The model does not fit in device memory: "
                                          f"{_OOM_ADVICE}.") from exc
            raise
        self._setup_model_and_optimizer()

        encoder = PairEncoder(self.tokenizer, cfg.max_length)
        self.train = [encoder.encode_pair(e) for e in train]
        self.val = [encoder.encode_pair(e) for e in val]
        truncated = sum(p.truncated for p in self.train + self.val)
        self.batches_per_epoch = math.ceil(len(self.train) / cfg.batch_size)
        self.total_steps = max(1, math.ceil(cfg.epochs * self.batches_per_epoch / cfg.grad_accum))
        self._order_epoch, self._order = -1, []

        # 3. The run: new, or the resumed one rolled back to its checkpoint.
        self.step, self.eval_pending, self.window = 0, False, _Window()
        self.last_eval: dict | None = None
        if resume:
            self.run_id = resume_run_id
            if run["config"].get("base_model") not in (None, self.base_model):
                emit(Log(f"Run {self.run_id} was started on {run['config']['base_model']}; "
                         f"resuming it on {self.base_model}.", "warning"))
            self._load_checkpoint(checkpoint)  # last: it restores the RNG state too
            store.reopen_run(self.run_id)
            store.delete_metrics_after(self.run_id, self.step)
            emit(Log(f"Resuming reward run {self.run_id} from step {self.step} of "
                     f"{self.total_steps}."))
        else:
            # Lineage: the PPO runs whose policies generated pairs in this data; the newest
            # is the parent (round k's reward model learns from round k-1's policy).
            policy_runs = _policy_runs_in_data(store)
            config = cfg.to_dict() | {"base_model": self.base_model,
                                      "judgments": len(train) + len(val),
                                      "policy_run_ids": policy_runs}
            self.run_id = store.create_run(KIND, config,
                                           parent_run_id=policy_runs[-1] if policy_runs else None)
            self.run_dir = run_dir_for(workspace, self.run_id)
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                Split.of(train, val).save(self.run_dir / "split.json")
                write_json(self.run_dir / "config.json", config | {"run_id": self.run_id})
            except OSError as exc:
                store.finish_run(self.run_id, "failed", error=_first_line(exc))
                raise RewardTrainingError(f"Cannot write the run folder {self.run_dir}: "
                                          f"{exc.strerror or exc}.") from exc
        ties = sum(p.tie for p in self.train + self.val)
        emit(Log(f"Reward run {self.run_id}: {len(self.train)} training pairs, {len(self.val)} "
                 f"validation pairs ({ties} ties), {truncated} truncated to {cfg.max_length} "
                 f"tokens; {self.total_steps} steps on {self.device}."))
        return self

    def _setup_model_and_optimizer(self) -> None:
        cfg, model = self.cfg, self.model
        # fp32 master weights: LoRA and the head train in fp32 while the frozen base may sit in
        # bf16/fp16 and autocast runs the matmuls in half precision.
        self.params = [p for p in model.parameters() if p.requires_grad]
        for p in self.params:
            p.data = p.data.float()
        self.param_names = [n for n, p in model.named_parameters() if p.requires_grad]
        if cfg.gradient_checkpointing:
            # Non-reentrant checkpointing works with frozen inputs. Input grads on the
            # embeddings are what peft needs should a model force reentrant checkpointing
            # (transformers 5 adds that hook itself; a second one is harmless).
            base = model.get_base_model()
            enable = getattr(base, "activation_checkpointing_enable", None)
            if enable is not None:
                enable({"use_reentrant": False})
            else:  # the name in earlier transformers 5 releases
                base.gradient_checkpointing_enable({"use_reentrant": False})
            base.enable_input_require_grads()
        model.train()
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=self.device.startswith("cuda") or None)
        self.scaler = (torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16
                       else None)

    # ---- 4: the loop -------------------------------------------------------------------------

    def run(self) -> RewardResult:
        cfg = self.cfg
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
        self.session_steps, self.session_pairs, self.session_seconds = 0, 0, 0.0
        if self.eval_pending and not self._evaluate():  # cancelled mid-evaluation last time
            return self._cancel(rng_state(self.device))
        while self.step < self.total_steps:
            started = time.perf_counter()
            rng = rng_state(self.device)  # a cancel mid-step resumes from the step's start
            stats = self._train_step()
            if stats is None:
                return self._cancel(rng)
            seconds = time.perf_counter() - started
            self.step += 1
            self.session_steps += 1
            self.session_seconds += seconds
            self.session_pairs += int(stats[1])
            self.window.add(stats[:8], self._lr, stats[8], seconds)
            self._progress()

            last = self.step == self.total_steps
            if self.step % cfg.log_every == 0 or last:
                self._log_train()
            if self.val and (self.step % cfg.eval_every == 0 or last):
                if not self._evaluate():
                    return self._cancel(rng_state(self.device))
            if self.step % cfg.checkpoint_every == 0 and not last:
                self._save_checkpoint(rng_state(self.device))
        return self._finish()

    def _train_step(self) -> list[float] | None:
        """One optimiser step over ``grad_accum`` micro-batches; None when stopped first.
        Returns the summed batch statistics followed by the gradient norm."""
        cfg, n_micro = self.cfg, self.cfg.grad_accum
        self._lr = learning_rate(cfg, self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr
        batches = [self._micro_batch(self.step * n_micro + k) for k in range(n_micro)]
        # Each pair weighs the same whatever micro-batch it is in (the last of an epoch is
        # smaller): summed losses over the pairs of the whole step.
        step_pairs = sum(len(b) for b in batches)
        stats = torch.zeros(8, device=self.device)
        for indices in batches:
            if self.stop.requested:
                self.optimizer.zero_grad(set_to_none=True)
                return None
            pairs = [self.train[i] for i in indices]
            batch = _to(collate(pairs, self.tokenizer.pad_token_id), self.device)
            with self._autocast():
                r = rewards(self.model, batch)
            rc, rr = r[:len(pairs)], r[len(pairs):]
            losses = pair_losses(rc, rr, batch["tie"], cfg.margin, cfg.center_rewards_coefficient)
            loss = losses.sum() / step_pairs
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            stats += _batch_stats(losses.detach(), rc.detach(), rr.detach(), batch["tie"])

        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        # One device sync per step: every number the logs need, and the loss check.
        values = torch.cat([stats, grad_norm.detach().float().reshape(1).to(stats.device)]).tolist()
        loss_value = values[0] / values[1]
        if not math.isfinite(loss_value):
            raise _NonFiniteLoss(f"Loss became {loss_value} at step {self.step + 1}; try a "
                                 "lower learning rate.")
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return values

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

    def _evaluate(self) -> bool:
        """Validation metrics at this step; False when stopped part-way (redone on resume)."""
        self.eval_pending = True
        sums = self._score_pairs(self.val, check_stop=True)
        if sums is None:
            return False
        self.eval_pending = False
        self.last_eval = _summary(sums)
        values = {f"eval/{k}": v for k, v in self.last_eval.items() if v is not None}
        values["eval/pairs"] = sums[2]   # validation pairs with a winner: accuracy's n
        self._record(values)
        return True

    def _score_pairs(self, pairs: list[EncodedPair], check_stop: bool) -> list[float] | None:
        """Summed batch statistics over ``pairs`` in eval mode (no dropout, no gradients)."""
        cfg = self.cfg
        stats = torch.zeros(8, device=self.device)
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(pairs), cfg.batch_size):
                    if check_stop and self.stop.requested:
                        return None
                    chunk = pairs[start:start + cfg.batch_size]
                    batch = _to(collate(chunk, self.tokenizer.pad_token_id), self.device)
                    with self._autocast():
                        r = rewards(self.model, batch)
                    rc, rr = r[:len(chunk)], r[len(chunk):]
                    losses = pair_losses(rc, rr, batch["tie"], cfg.margin,
                                         cfg.center_rewards_coefficient)
                    stats += _batch_stats(losses, rc, rr, batch["tie"])
        finally:
            self.model.train()
        return stats.tolist()

    # ---- reporting ---------------------------------------------------------------------------

    def _progress(self) -> None:
        per_step = self.session_seconds / max(1, self.session_steps)
        self.emit(Progress(self.step, self.total_steps, "Training reward model", extra={
            "eta_s": per_step * (self.total_steps - self.step),
            "samples_per_s": self.session_pairs / max(self.session_seconds, 1e-9),
            "memory_gib": memory_gib(self.device),
            "epoch": self.step * self.cfg.grad_accum / self.batches_per_epoch,
            "run_id": self.run_id}))

    def _log_train(self) -> None:
        w = self.window
        if not w.steps:
            return
        values = {f"train/{k}": v for k, v in _summary(w.stats).items() if v is not None}
        values["train/lr"] = w.lr / w.steps
        if w.grad_steps:
            values["train/grad_norm"] = w.grad_norm / w.grad_steps
        values["train/samples_per_s"] = w.stats[1] / max(w.seconds, 1e-9)
        values["train/memory_gib"] = memory_gib(self.device)
        self._record(values)
        self.window = _Window()

    def _record(self, values: dict[str, float]) -> None:
        """To the live charts and, in one write, to the store."""
        for name, value in values.items():
            self.emit(Metric(self.step, name, value))
        self.store.add_metrics(self.run_id, [(self.step, n, v) for n, v in values.items()])

    # ---- checkpoints and the end -------------------------------------------------------------

    def _save_checkpoint(self, rng: dict) -> None:
        """Written to a temporary folder, then swapped in: a crash mid-write leaves the previous
        checkpoint (``_checkpoint_dir`` also finds it as checkpoint.old)."""
        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp / "adapter")
            torch.save({
                "step": self.step,
                "total_steps": self.total_steps,
                "micro_batch": self.step * self.cfg.grad_accum,
                "epoch": self.step * self.cfg.grad_accum / self.batches_per_epoch,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "rng": rng,
                "window": self.window.state(),
                "eval_pending": self.eval_pending,
                "param_names": self.param_names,
            }, tmp / "trainer_state.pt")

        write_folder(self.run_dir / "checkpoint", write)

    def _load_checkpoint(self, checkpoint: Path) -> None:
        try:
            state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu",
                               weights_only=True)
        except Exception as exc:
            raise RewardTrainingError(f"The checkpoint of run {self.run_id} cannot be read "
                                      f"({_first_line(exc)}).") from exc
        if state["total_steps"] != self.total_steps or state["param_names"] != self.param_names:
            raise RewardTrainingError(f"The checkpoint of run {self.run_id} does not match its "
                                      "data or model any more, so it cannot be resumed.")
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.eval_pending = state["eval_pending"]
        w = state["window"]
        self.window = _Window(w["steps"], list(w["stats"]), w["lr"], w["grad_norm"],
                              w["grad_steps"])
        set_rng_state(state["rng"], self.device)

    def _cancel(self, rng: dict) -> RewardResult:
        self._save_checkpoint(rng)
        self.store.finish_run(self.run_id, "cancelled")
        self.emit(Log(f"Reward run {self.run_id} cancelled at step {self.step}; its checkpoint "
                      "is kept, so it can be resumed."))
        result = self.result("cancelled")
        self.release()
        return result

    def _finish(self) -> RewardResult:
        # 5. The adapter (with the score head) and the tokenizer (with its pad token) in one
        #    folder, then the reward statistics PPO normalises with.
        adapter = self.run_dir / "adapter"

        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)

        write_folder(adapter, write)
        sums = self._score_pairs(self.train, check_stop=False)
        mean, std = _mean_std(sums)
        write_json(self.run_dir / "reward_stats.json",
                    {"mean": mean, "std": std, "responses": int(sums[7]), "step": self.step})
        shutil.rmtree(self.run_dir / "checkpoint", ignore_errors=True)  # a completed run is final
        self.store.finish_run(self.run_id, "completed", artifact=str(adapter))
        self.emit(Progress(self.step, self.total_steps, "Reward model trained"))
        result = self.result("completed", artifact=str(adapter))
        self.release()
        return result

    def result(self, status: str, artifact: str | None = None,
               error: str | None = None) -> RewardResult:
        last = self.last_eval or {}
        seconds = getattr(self, "session_seconds", 0.0)
        return RewardResult(
            run_id=self.run_id, status=status, step=self.step, total_steps=self.total_steps,
            val_accuracy=last.get("accuracy"), val_loss=last.get("loss"),
            samples_per_s=getattr(self, "session_pairs", 0) / seconds if seconds else 0.0,
            artifact=artifact, error=error)

    def release(self) -> None:
        """Drop the model and optimiser now, not whenever the caller lets go of us: after an
        out-of-memory the device must be usable again at once."""
        self.model = self.optimizer = self.params = None
        if self.device.startswith("cuda"):
            # Only the device needs this: a full collection holds the GIL for a noticeable
            # while (the UI thread waits), and on the CPU reference counting already freed
            # the tensors.
            gc.collect()
            torch.cuda.empty_cache()

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)


# ---- helpers ---------------------------------------------------------------------------------

def _resumable(workspace, store: Store, run_id: int) -> tuple[dict, Path, RewardConfig]:
    """The run, its checkpoint folder and its configuration, or why it cannot be resumed."""
    run = store.get_run(run_id)
    if run is None:
        raise RewardTrainingError(f"There is no run {run_id} to resume.")
    if run["kind"] != KIND:
        raise RewardTrainingError(f"Run {run_id} is a {run['kind']} run, not a reward-model run.")
    store.check_not_busy(run_id)  # before any model is loaded: another process runs it
    if run["status"] == "completed":
        raise RewardTrainingError(f"Run {run_id} is already completed; start a new run instead.")
    checkpoint = _checkpoint_dir(run_dir_for(workspace, run_id))
    if checkpoint is None:
        raise RewardTrainingError(f"Run {run_id} has no checkpoint to resume from.")
    cfg = RewardConfig.from_dict(run["config"])
    _validate(cfg)
    return run, checkpoint, cfg


def _checkpoint_dir(run_dir: Path) -> Path | None:
    for name in ("checkpoint", "checkpoint.old"):
        folder = run_dir / name
        if (folder / "trainer_state.pt").is_file() and (folder / "adapter").is_dir():
            return folder
    return None


def _saved_split(store: Store, run_dir: Path,
                 run_id: int) -> tuple[list[PairExample], list[PairExample]]:
    try:
        split = Split.load(run_dir / "split.json")
    except (OSError, ValueError, KeyError) as exc:
        raise RewardTrainingError(f"Run {run_id} cannot be resumed: its split.json is missing "
                                  "or unreadable.") from exc
    # Every row, ties included: the split names the pairs, whatever the tie setting.
    train, val = split.select(preference_examples(store.preference_rows(), "equal"))
    if fingerprint(train + val) != split.digest:
        raise RewardTrainingError(f"Run {run_id} cannot be resumed: some of its judgments were "
                                  "deleted or changed since it started.")
    return train, val


def _precision(cfg: RewardConfig) -> tuple[DeviceChoice, torch.dtype | None]:
    """Where to train, the dtype of the frozen base weights, and the autocast dtype (None for
    fp32). Half precision only on CUDA, where autocast runs it well; elsewhere all fp32."""
    try:
        device = pick_device(cfg.device, "float32").device
    except ValueError as exc:
        raise RewardTrainingError(str(exc)) from exc
    cuda = device.startswith("cuda")
    precision = cfg.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        raise RewardTrainingError(f"Precision {precision} needs a CUDA GPU; choose auto or fp32 "
                                  f"to train on {device}.")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise RewardTrainingError("This GPU does not support bf16; choose fp16 or auto.")
    names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
    choice = DeviceChoice(device, names[precision])
    return choice, None if precision == "fp32" else choice.torch_dtype


def _batch_stats(losses: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor,
                 tie: torch.Tensor) -> torch.Tensor:
    """Sums that add up across batches: loss, pairs, decided pairs (not ties), correct ones,
    margin over decided pairs, reward sum, reward square sum, reward count."""
    decided = (~tie).float()
    d = rc - rr
    r = torch.cat([rc, rr])
    return torch.stack([losses.sum(), torch.tensor(float(len(rc)), device=rc.device),
                        decided.sum(), ((d > 0).float() * decided).sum(), (d * decided).sum(),
                        r.sum(), (r * r).sum(), torch.tensor(float(r.numel()), device=rc.device)])


def _summary(sums: list[float]) -> dict[str, float | None]:
    loss, pairs, decided, correct, margin = sums[:5]
    mean, std = _mean_std(sums)
    return {"loss": loss / pairs if pairs else None,
            "accuracy": correct / decided if decided else None,
            "margin": margin / decided if decided else None,
            "reward_mean": mean, "reward_std": std}


def _mean_std(sums: list[float]) -> tuple[float, float]:
    total, squares, count = sums[5], sums[6], max(sums[7], 1.0)
    mean = total / count
    return mean, math.sqrt(max(squares / count - mean * mean, 0.0))


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _policy_runs_in_data(store: Store) -> list[int]:
    adapters = {str(Path(a)) for a in store.training_adapters()}
    return [r["id"] for r in store.list_runs()
            if r["kind"] == "ppo" and r["artifact"] and str(Path(r["artifact"])) in adapters]
