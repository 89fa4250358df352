"""The training loop every method runs in: one run's whole life, written once.

    train(Method, workspace, cfg, ...)
      1. resume?   the run checked and its checkpoint found (core.runs.session), before any
                   model is loaded; its own stored config replaces ``cfg``
      2. prepare   the method's data, models and optimiser (``Trainer.prepare``)
      3. run       a new run and its folder, or the resumed run rolled back to its checkpoint
      4. loop      step, record, progress, evaluate, checkpoint; a stop turns into a checkpoint
      5. end       the artifact written all at once, the checkpoint removed, the run completed

A failure once the run exists ends it as failed with one sentence (``core.runs.session``): a
guard rail (a non-finite loss, a KL past its limit), a device out-of-memory (with the method's
advice) and a full disk are *returned* as a failed result, the last checkpoint kept, so the app
stays usable; any other exception is re-raised after the run is marked failed. Device memory is
freed either way.

A method subclasses ``Trainer`` and supplies only what is its own; see docs/architecture.md
("Adding a training method").

Under torchrun (``training.distributed``) every rank runs this same loop on its shard of the
data: rank 0 alone creates or reopens the run, records metrics, writes checkpoints and the
artifact and reports progress; the other ranks follow it (``FollowerSession``) and take part in
the collectives. A stop request is agreed on by all ranks at each step boundary. Only methods
that say ``distributed = True`` run there; the others refuse with one sentence.
"""

from __future__ import annotations

import gc
import shutil
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch

from desktop_app.core.config import TrainingConfig
from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError
from desktop_app.core.events import Emit, Log, Progress, StopToken, ignore
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.runs.session import (
    FollowerSession,
    GuardRail,
    Resumed,
    RunSession,
    is_disk_full,
)
from desktop_app.ml.models.loader import _first_line
from desktop_app.ml.training.distributed import RankLost, world
from desktop_app.ml.training.files import is_oom, memory_gib, rng_state, set_rng_state, write_folder
from desktop_app.ml.training.optim import Optimiser


class TrainingSetupError(UserError):
    """A training run cannot start (its model does not fit, its checkpoint is unreadable)."""


class Trainer(ABC):
    """One training method. ``prepare`` builds everything; the loop calls the rest.

    Set by the method's class: ``kind``, ``config_type``, ``oom_advice``, ``artifact_name`` (the
    folder its result is saved in) and ``checkpoint_parts`` (what a complete checkpoint holds
    besides trainer_state.pt). Set by ``prepare``: ``device``, ``optimiser`` and
    ``total_steps``."""

    kind: ClassVar[RunKind]
    config_type: ClassVar[type[TrainingConfig]]
    oom_advice: ClassVar[str]
    artifact_name: ClassVar[str]
    checkpoint_parts: ClassVar[tuple[str, ...]]
    progress_message: ClassVar[str]   # "Training reward model"
    finished_message: ClassVar[str]   # "Reward model trained"
    # True when the method shards its data by rank and divides its losses by the global
    # batch, so that it trains under torchrun (``training.distributed``).
    distributed: ClassVar[bool] = False

    device: str
    optimiser: Optimiser
    total_steps: int
    parent_run_id: int | None = None

    def __init__(self, workspace, store: Store, cfg: TrainingConfig, emit: Emit,
                 stop: StopToken):
        self.workspace, self.store, self.cfg, self.emit, self.stop = (
            workspace, store, cfg, emit, stop)
        self.run_id: int | None = None
        self.step = 0

    # ---- what every method supplies ----------------------------------------------------------

    @abstractmethod
    def prepare(self, resumed: Resumed | None, **inputs: Any) -> None:
        """Data, models and optimiser, for a new run or for ``resumed`` (its checkpoint's
        adapters may be loaded here). Raises a ``UserError`` for anything the person can fix."""

    @abstractmethod
    def train_step(self) -> dict[str, float] | None:
        """Optimiser step ``self.step`` (0-based). Returns the metrics to record at the step
        it completes (empty when none are due), or None when stopped before it changed
        anything. Raises ``GuardRail`` to end the run."""

    @abstractmethod
    def save_artifact(self, folder: Path) -> None:
        """The method's result (an adapter with its tokenizer) into the empty ``folder``."""

    @abstractmethod
    def result(self, status: RunStatus, artifact: str | None = None,
               error: str | None = None):
        """The method's result record (what the CLI prints with ``--json``)."""

    # ---- what a method may supply ------------------------------------------------------------

    def run_config(self) -> dict:
        """What the new run records as its config (config.json and the database)."""
        return self.cfg.to_dict()

    def write_run_files(self, folder: Path) -> None:
        """Files a new run needs to resume exactly (its split, its prompt ids)."""
        return None

    def where(self) -> str:
        """Where the steps run: 'cpu', or '2 processes (cuda:0 on rank 0)' under torchrun."""
        ranks = world()
        return f"{ranks.size} processes ({self.device} on rank 0)" if ranks.active \
            else str(self.device)

    def start_message(self) -> str:
        return f"{self.kind.capitalized} run {self.run_id}: {self.total_steps} steps on " \
               f"{self.where()}."

    def after_step(self, values: dict[str, float]) -> None:
        """Checks on a recorded step (raise ``GuardRail`` to stop)."""
        return None

    def progress_extra(self, values: dict[str, float]) -> dict[str, Any]:
        return {}

    def eval_due(self) -> bool:
        return False

    def evaluate(self) -> dict[str, float] | None:
        """Validation metrics at this step; None when stopped part-way (redone on resume)."""
        return {}

    def checkpoint_state(self) -> dict:
        """The method's own resumable state, saved in trainer_state.pt."""
        return {}

    def load_checkpoint_state(self, state: dict) -> None:
        return None

    def load_checkpoint_files(self, folder: Path) -> None:
        """Weights of a checkpoint that ``prepare`` did not already load."""
        return None

    def after_artifact(self, run_folder: Path) -> None:
        """Anything saved beside the artifact (e.g. reward statistics). Called on every rank
        under torchrun (it may take part in collectives); only rank 0 writes."""
        return None

    @abstractmethod
    def save_checkpoint_files(self, folder: Path) -> None:
        """The trainable weights into the checkpoint folder being written."""

    @abstractmethod
    def release(self) -> None:
        """Drop models and optimiser (``Loop`` then frees the device)."""


def train(trainer_type: type[Trainer], workspace, cfg: TrainingConfig | None, *,
          resume_run_id: int | None = None, emit: Emit = ignore, stop: StopToken | None = None,
          **inputs: Any):
    """Train a new run of ``trainer_type`` with ``cfg``, or resume run ``resume_run_id`` with
    the config it was started with (``cfg`` is then ignored and may be None). ``inputs`` go
    to ``Trainer.prepare``. Opens its own Store: the GUI runs this on a worker thread."""
    stop = stop or StopToken()
    ranks = world()
    if ranks.active and not trainer_type.distributed:
        raise TrainingSetupError(f"{trainer_type.kind.capitalized} training does not run under "
                                 "torchrun yet; run it as one process.")
    if not ranks.is_main:
        emit = ignore  # rank 0 reports for the job
    store = Store(workspace.db_path)
    try:
        resumed = None
        if resume_run_id is not None:
            resumed = RunSession.find_resumable(store, workspace.runs_dir, resume_run_id,
                                                trainer_type.kind, trainer_type.checkpoint_parts)
            cfg = resumed.config(trainer_type.config_type)
        else:
            cfg.validate()
        ranks.barrier()  # every rank has read the run before rank 0 reopens it
        trainer = trainer_type(workspace, store, cfg, emit, stop)
        if resumed is not None:
            trainer.run_id = resumed.run.id
        loop = Loop(trainer)
        loop.prepare(resumed, inputs)
        loop.open_run(resumed)
        return loop.run()
    finally:
        store.close()


class Loop:
    """Drives one ``Trainer`` through its run."""

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.world = world()
        self.main = self.world.is_main
        self.session: RunSession | None = None
        self.eval_pending = False
        self.session_steps, self.session_seconds = 0, 0.0

    def prepare(self, resumed: Resumed | None, inputs: dict) -> None:
        t = self.t
        t.emit(Progress(0, 0, "Loading the base model"))
        try:
            t.prepare(resumed, **inputs)
        except BaseException as exc:
            if is_oom(exc):
                self.free()
                raise TrainingSetupError(
                    f"The model does not fit in device memory: {t.oom_advice}.") from exc
            raise

    def open_run(self, resumed: Resumed | None) -> None:
        t = self.t
        runs_dir = t.workspace.runs_dir
        if resumed is not None:
            self._load_checkpoint(resumed.checkpoint)  # last: it restores the RNG state too
            self.session = (RunSession.reopen(t.store, runs_dir, resumed, t.step, t.emit)
                            if self.main else FollowerSession(runs_dir, t.run_id, t.kind))
            t.emit(Log(f"Resuming {t.kind.noun} run {t.run_id} from step {t.step} of "
                       f"{t.total_steps}."))
        elif self.main:
            config = t.run_config()
            if self.world.active:
                config["world_size"] = self.world.size
            self.session = RunSession.start(t.store, runs_dir, t.kind, config,
                                            parent_run_id=t.parent_run_id, emit=t.emit,
                                            files=t.write_run_files)
            t.run_id = self.world.from_main(self.session.run_id)
        else:
            t.run_id = self.world.from_main(None)
            self.session = FollowerSession(runs_dir, t.run_id, t.kind)
        t.emit(Log(t.start_message()))

    # ---- the loop ----------------------------------------------------------------------------

    def run(self):
        try:
            return self._run()
        except BaseException as exc:  # noqa: BLE001 - every way out leaves the run finished
            error = self._failure(exc)  # re-raises what is not a known way to fail
            status = RunStatus.INTERRUPTED if isinstance(exc, RankLost) else RunStatus.FAILED
        # Out of the except block, so the traceback no longer pins the model's tensors.
        self.t.emit(Log(error, "error"))
        result = self.t.result(status, error=error)
        self.free()
        return result

    def _run(self):
        t, cfg = self.t, self.t.cfg
        if t.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(t.device)
        if self.eval_pending and not self._evaluate():  # cancelled mid-evaluation last time
            return self._cancel(rng_state(t.device))
        while t.step < t.total_steps:
            started = time.perf_counter()
            rng = rng_state(t.device)  # a cancel mid-step resumes from the step's start
            stop = (self.world.any(t.stop.requested, t.device) if self.world.active
                    else t.stop.requested)
            if self.world.active:  # each rank its own random stream, fixed by (seed, step)
                torch.manual_seed(self.world.step_seed(cfg.seed, t.step))
            values = None if stop else t.train_step()
            if values is None:
                return self._cancel(rng)
            t.step += 1
            self.session_steps += 1
            self.session_seconds += time.perf_counter() - started
            if values:
                self.session.record(t.step, values)
            self._progress(values)
            t.after_step(values)
            last = t.step == t.total_steps
            if t.eval_due() and not self._evaluate():
                return self._cancel(rng_state(t.device))
            if t.step % cfg.checkpoint_every == 0 and not last:
                self._save_checkpoint(rng_state(t.device))
        return self._finish()

    def _evaluate(self) -> bool:
        self.eval_pending = True
        values = self.t.evaluate()
        if values is None:
            return False
        self.eval_pending = False
        if values:
            self.session.record(self.t.step, values)
        return True

    def _progress(self, values: dict[str, float]) -> None:
        t = self.t
        per_step = self.session_seconds / max(1, self.session_steps)
        extra = {"eta_s": per_step * (t.total_steps - t.step), "memory_gib": memory_gib(t.device),
                 "run_id": t.run_id} | t.progress_extra(values)
        t.emit(Progress(t.step, t.total_steps, t.progress_message, extra=extra))

    # ---- checkpoints -------------------------------------------------------------------------

    def _save_checkpoint(self, rng: dict) -> None:
        """Written to a temporary folder, then swapped in: a crash mid-write leaves the previous
        checkpoint (``find_resumable`` also finds it as checkpoint.old). By rank 0 alone: every
        rank holds the same trainable weights."""
        t = self.t
        if not self.main:
            return

        def write(tmp: Path) -> None:
            t.save_checkpoint_files(tmp)
            torch.save({"step": t.step, "total_steps": t.total_steps, "rng": rng,
                        "eval_pending": self.eval_pending}
                       | t.optimiser.state_dict() | t.checkpoint_state(),
                       tmp / "trainer_state.pt")

        write_folder(self.session.folder / "checkpoint", write)

    def _load_checkpoint(self, checkpoint: Path) -> None:
        t = self.t
        try:
            state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu",
                               weights_only=True)
            t.load_checkpoint_files(checkpoint)
        except Exception as exc:
            raise TrainingSetupError(f"The checkpoint of run {t.run_id} cannot be read "
                                     f"({_first_line(exc)}).") from exc
        if state["total_steps"] != t.total_steps or state["param_names"] != t.optimiser.names:
            raise TrainingSetupError(f"The checkpoint of run {t.run_id} does not match its data "
                                     "or model any more, so it cannot be resumed.")
        t.optimiser.load_state_dict(state)
        t.step = state["step"]
        self.eval_pending = state.get("eval_pending", False)
        t.load_checkpoint_state(state)
        set_rng_state(state["rng"], t.device)

    # ---- the end -----------------------------------------------------------------------------

    def _cancel(self, rng: dict):
        t = self.t
        self._save_checkpoint(rng)
        self.session.cancel()
        t.emit(Log(f"{t.kind.capitalized} run {t.run_id} cancelled at step {t.step}; its "
                   "checkpoint is kept, so it can be resumed."))
        result = t.result(RunStatus.CANCELLED)
        self.free()
        return result

    def _finish(self):
        t = self.t
        artifact = self.session.folder / t.artifact_name
        if self.main:
            write_folder(artifact, t.save_artifact)
        t.after_artifact(self.session.folder)
        if self.main:
            shutil.rmtree(self.session.folder / "checkpoint", ignore_errors=True)  # final now
        self.world.barrier()  # no rank reports the run done before rank 0 has written it
        self.session.finish(artifact)
        t.emit(Progress(t.step, t.total_steps, t.finished_message))
        result = t.result(RunStatus.COMPLETED, artifact=str(artifact))
        self.free()
        return result

    def _failure(self, exc: BaseException) -> str:
        """The sentence a guard rail, an out-of-memory or a full disk fails the run with;
        anything else fails the run and is raised on. A lost rank under torchrun interrupts
        the run instead: it resumes from its last checkpoint."""
        if isinstance(exc, RankLost):
            return self.session.interrupt(f"{exc} The run is interrupted; resume it from its "
                                          "last checkpoint.")
        if is_oom(exc):
            return self.session.fail(
                f"Ran out of device memory at step {self.t.step + 1}: {self.t.oom_advice}.")
        if isinstance(exc, GuardRail) or is_disk_full(exc):
            return self.session.fail(exc)  # the guard rail's own sentence; the disk named
        self.session.fail(exc)
        self.free()
        raise exc

    def free(self) -> None:
        """Drop the model and optimiser now, not whenever the caller lets go of the trainer:
        after an out-of-memory the device must be usable again at once."""
        self.t.release()
        if self.t.__dict__.get("device", "cpu").startswith("cuda"):
            # Only the device needs this: a full collection holds the GIL for a noticeable
            # while (the UI thread waits), and on the CPU reference counting already freed
            # the tensors.
            gc.collect()
            torch.cuda.empty_cache()

