"""Keeps a queue of generated pairs ahead of the annotator.

The queue itself is the set of pending comparisons in the store, so it survives restarts and
the next pair is one indexed query away. Whenever fewer pairs are waiting than the pace calls
for, a background job samples one more batch for the prompts that have none yet. Batch sizes
and the number kept ready follow the measured speeds of the model and of the person judging
(``core.pair_pacing``): the first batch is a single prompt, so the first pair shows after the
time one pair takes.

A "generate" run is recorded once a batch starts (its prompts are claimed for it), and removed
again if it ends without a single pair, so the Runs list only shows generation that happened.

While a training job runs, a model on the GPU is "parked": its weights move to main memory so
training gets the GPU's memory, and come back afterwards (``park``/``unpark``). A batch being
generated when training starts is cut short first: pairs already stored stay, the cut batch's
prompts simply get their pairs in a later batch.

Nothing here waits on the UI thread. A new model (``set_model``) is taken at once when no job
runs; otherwise the batch in progress is cut short (or the weights' move finishes) on its own
thread, and the model is taken when that job's ``finished`` arrives. Several requests meanwhile:
the last one wins.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from desktop_app.core.config import SamplingConfig
from desktop_app.core.data.store import Store
from desktop_app.core.events import Progress
from desktop_app.core.pair_pacing import Pace, next_batch_size, ready_target
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.runs.session import RunSession
from desktop_app.gui.jobs import Job

_KEEP = object()   # no model change waiting


class PairQueue(QObject):
    status_changed = Signal(str)
    progress = Signal(int, int)    # done, total of the batch in progress (0, 0 = idle)
    pairs_added = Signal(int)
    failed = Signal(str)

    def __init__(self, store: Store, parent: QObject | None = None):
        super().__init__(parent)
        self.store = store           # the UI thread's connection, for counts only
        self.db_path: Path = store.path
        self.lm = None
        self.cfg = SamplingConfig()
        self.target = 8              # the fewest pairs the person wants kept ready
        self.pace = Pace()
        self.paused = False
        self.job: Job | None = None
        self.session: RunSession | None = None  # the generate run of the current model
        self.run_pairs = 0
        self._run_started = 0.0
        self.tokens_per_s = 0.0
        self.last_status = "No model loaded: open one on the Models page."
        self.closed = False
        # Parking: None (the weights are on their device), "parking", "parked" or "unparking".
        self.parking: str | None = None
        self.move_job: Job | None = None
        self._want_parked = False
        self._after_unpark: list[Callable[[], None]] = []
        self._incoming = _KEEP       # a model asked for while a job still ran

    # -- control ---------------------------------------------------------------------------

    def set_model(self, lm) -> None:
        """Generate with ``lm`` from now on. Returns at once: while a batch is generated or the
        weights move, ``lm`` is taken when that job has ended (the batch is cut short; its pairs
        stay). Asked again meanwhile, the last model asked for is the one taken."""
        self._incoming = lm
        if self.busy:
            self.job.cancel()  # stops within a token; _take_incoming follows its finished
            self._set_status("Switching to the new model once the current batch stops…")
        elif self._moving:
            self._set_status("Switching to the new model once the old one has moved…")
        else:
            self._take_incoming()

    @property
    def run_id(self) -> int | None:
        """The generate run this model's pairs are recorded under (None before its first
        batch)."""
        return self.session.run_id if self.session is not None else None

    @property
    def wanted_model(self):
        """The model generation uses from now on: the last one asked for, even while it waits
        for a job to end (``lm`` is the one in use until then)."""
        return self.lm if self._incoming is _KEEP else self._incoming

    @property
    def _moving(self) -> bool:
        return self.move_job is not None and self.move_job.running

    def _take_incoming(self) -> None:
        """Use the model asked for last, once no job of the old one runs."""
        if self._incoming is _KEEP or self.busy or self._moving or self.closed:
            return
        lm, self._incoming = self._incoming, _KEEP
        self._finish_run(RunStatus.COMPLETED)
        self.parking, self.move_job = None, None  # a model being moved out is dropped here
        self.lm = lm
        self.pace = Pace(judge_seconds=self.pace.judge_seconds,
                         judgments_timed=self.pace.judgments_timed)  # a new model, a new speed
        self.tokens_per_s = 0.0
        if self._want_parked:
            self.park()  # loaded while training runs: it waits with generation paused
        else:
            self.paused = False
            self._run_after_unpark()  # an unpark still waiting on the old model is over
            self.top_up()

    def set_config(self, cfg: SamplingConfig) -> None:
        self.cfg = cfg

    def set_target(self, target: int) -> None:
        self.target = max(1, target)
        self.top_up()

    def judged_after(self, seconds: float) -> None:
        """The person judged a pair ``seconds`` after it showed: their pace sizes the queue."""
        self.pace.judged_after(seconds)

    @property
    def ready_target(self) -> int:
        """How many pairs are kept waiting now: at least ``target``, more when a full batch
        takes longer than judging the pairs already waiting."""
        return ready_target(self.pace, self.target, self.cfg.batch_size)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            self._set_status("Generation paused.")
        else:
            self.top_up()

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def top_up(self) -> None:
        """Start one more batch if the queue is short and nothing is running."""
        if self.busy or self.paused or self.closed or self._incoming is not _KEEP:
            return  # a model change waiting takes over when the job ends
        if self.parking is not None:  # e.g. Resume pressed while training runs
            self._set_status("The model waits in main memory until training ends; generation "
                             "resumes then.")
            return
        if self.lm is None:
            self._set_status("No model loaded: open one on the Models page.")
            return
        pending = self.store.pending_count()
        if pending >= self.ready_target:
            self._set_status(self._rate_text(f"{pending} pairs ready."))
            return
        model, adapter = self.lm.path, self.lm.adapter
        if not self.store.prompts_without_pairs(1, model=model, adapter=adapter, unclaimed=True,
                                                claimant=self.run_id):
            if self.store.prompts_without_pairs(1, model=model, adapter=adapter):
                self._set_status("Another generator (a second window, or rlhf-desk generate) "
                                 "is answering the remaining prompts.")
            else:
                self._set_status("Every prompt has a pair from this model: add or import "
                                 "prompts, or load a tuned policy for the next round.")
            return
        self._start_batch(next_batch_size(self.pace, pending, self.cfg.batch_size))

    def shutdown(self, wait_ms: int = 60000) -> None:
        """Stop after the current batch (its pairs are kept) and close the run."""
        self.closed = True
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.job.wait(wait_ms)
        if self.move_job is not None and self.move_job.running:
            self.move_job.wait(wait_ms)
        self._finish_run(RunStatus.COMPLETED)

    # -- room for training -----------------------------------------------------------------

    def park(self) -> None:
        """A training job is starting: if the model is on a GPU, cut the batch in progress short
        and move the weights to main memory. Call while generation is paused."""
        from desktop_app.ml.models.loader import on_accelerator

        self._want_parked = True
        if self.lm is None or not on_accelerator(self.lm) or self.parking in ("parking",
                                                                             "parked"):
            return
        if self.busy:
            self.job.cancel()  # generation stops within a token; _park_when_idle follows
            return
        self._move(to_cpu=True)

    def unpark(self, then: Callable[[], None] | None = None) -> None:
        """Training is over: bring parked weights back, then call ``then`` (at once when
        nothing was parked)."""
        self._want_parked = False
        if then is not None:
            self._after_unpark.append(then)
        if self.parking == "parked":
            self._move(to_cpu=False)
        elif self.parking is None:
            self._run_after_unpark()
        # "parking": _on_moved brings it straight back; "unparking": already on its way.

    def _move(self, to_cpu: bool) -> None:
        from desktop_app.ml.models.loader import move_weights

        lm = self.lm
        self.parking = "parking" if to_cpu else "unparking"
        self._set_status("Moving the model to main memory while training runs…" if to_cpu
                         else "Moving the model back to the GPU…")
        job = Job(lambda emit, stop: move_weights(lm, to_cpu), self, name="park-model")
        # A result arrives queued: by then another model may have replaced this one, or be
        # waiting to (then the moved model is dropped as it is, and the new one taken).
        job.succeeded.connect(lambda _: job is self.move_job and self._incoming is _KEEP
                              and self._on_moved(to_cpu))
        job.failed.connect(lambda message: job is self.move_job and self._incoming is _KEEP
                           and self._on_move_failed(message))
        job.finished.connect(self._take_incoming)
        self.move_job = job
        job.start()

    def _on_moved(self, to_cpu: bool) -> None:
        self.parking = "parked" if to_cpu else None
        if to_cpu:
            self._set_status("Generation paused: the model waits in main memory while "
                             "training runs.")
            if not self._want_parked:
                self._move(to_cpu=False)
        elif self._want_parked:
            self._move(to_cpu=True)
        else:
            self._run_after_unpark()
            self.top_up()  # resumed by hand while parked: it waited for this

    def _on_move_failed(self, message: str) -> None:
        # Where the weights are is no longer known: the model must be loaded again.
        self.parking = None
        self.lm = None
        self._finish_run(RunStatus.FAILED)
        self._set_status(f"Could not move the model: {message}. Load it again on the Models "
                         "page.")
        self.failed.emit(message)
        self._after_unpark.clear()

    def _run_after_unpark(self) -> None:
        callbacks, self._after_unpark = self._after_unpark, []
        for callback in callbacks:
            callback()

    # -- internals -------------------------------------------------------------------------

    def _start_batch(self, limit: int) -> None:
        from desktop_app.ml.generation.pair_job import generate_pending_pairs
        if self.run_id is None:
            self.session = RunSession.start(self.store, None, RunKind.GENERATE, {
                "model": self.lm.path, "adapter": self.lm.adapter,
                "device": self.lm.device.label(), "quantize": self.lm.quantize,
                "sampling": self.cfg.to_dict(),
                "source": "gui"})
            self.run_pairs = 0
            self._run_started = time.monotonic()
        # One job is one batch of ``limit`` prompts: its pairs show as soon as it ends.
        lm, run_id, db_path = self.lm, self.run_id, self.db_path
        cfg = dataclasses.replace(self.cfg, batch_size=limit)

        def work(emit, stop):
            with Store(db_path) as store:
                return generate_pending_pairs(store, lm, cfg, limit=limit, run_id=run_id,
                                              emit=emit, stop=stop)

        self.job = Job(work, self, name="generate-pairs")
        self.job.event.connect(self._on_event)
        self.job.succeeded.connect(self._on_done)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(lambda: self.progress.emit(0, 0))
        # Queued: the job must be fully done (busy False) before the weights move.
        self.job.finished.connect(lambda: QTimer.singleShot(0, self._park_when_idle))
        self.job.finished.connect(self._take_incoming)  # a model asked for meanwhile
        self._set_status(self._rate_text(f"Generating {limit} pair{'' if limit == 1 else 's'}…"))
        self.progress.emit(0, limit)
        self.job.start()

    def _on_event(self, event) -> None:
        if isinstance(event, Progress):
            self.tokens_per_s = event.extra.get("tokens_per_s", self.tokens_per_s)
            self.progress.emit(event.done, event.total)

    def _park_when_idle(self) -> None:
        if self._want_parked and self.parking is None and not self.busy and self.lm is not None:
            self.park()

    def _on_done(self, report) -> None:
        if report.pairs:
            self.tokens_per_s = report.tokens_per_s
            self.pace.batch_done(report.pairs, report.seconds)
            self.run_pairs += report.pairs
            if self.run_id is not None:
                # x is the run's pair count: one point per batch, in order.
                elapsed = time.monotonic() - self._run_started
                self.store.add_metrics(self.run_id, [
                    (self.run_pairs, "generate/tokens_per_s", report.tokens_per_s),
                    (self.run_pairs, "generate/seconds_per_pair", report.seconds / report.pairs),
                    (self.run_pairs, "generate/elapsed_s", elapsed),
                    (self.run_pairs, "generate/batch_pairs", report.pairs)])
        self.pairs_added.emit(report.pairs)
        # Queued, so the finished job is fully torn down before the next one starts.
        QTimer.singleShot(0, self.top_up)

    def _on_failed(self, message: str) -> None:
        # Pause instead of retrying in a loop; the user can fix settings and resume.
        self.paused = True
        self._set_status(f"Generation stopped: {message}")
        self.failed.emit(message)

    def _finish_run(self, status: RunStatus) -> None:
        """Close the generate run; one that produced no pair is removed, not listed."""
        session, self.session = self.session, None
        if session is None:
            return
        if status == RunStatus.FAILED:
            session.fail("the model could not be moved")
        else:
            session.finish()
        if not self.run_pairs and not self.store.run_has_pairs(session.run_id):
            self.store.delete_run(session.run_id)
        self.run_pairs = 0

    def _rate_text(self, text: str) -> str:
        return f"{text}  {self.tokens_per_s:.0f} tokens/s" if self.tokens_per_s else text

    def _set_status(self, text: str) -> None:
        self.last_status = text
        self.status_changed.emit(text)
