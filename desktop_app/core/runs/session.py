"""One run's life in the store and on disk, the same for every job that records a run:
generating pairs, evaluating, and every training method (``ml.training.loop`` drives those).

    RunSession.start     a new run: its row (running, its lock held), its folder, config.json
    RunSession.resume    an unfinished run found, checked and reopened, its checkpoint located
    session.record       metrics: to the live charts and, in one write, to the store
    session.finish / cancel / fail
                         the run's end; ``fail`` turns the exception into one sentence

The store holds the run's lock while it runs: a run whose process died reads as interrupted,
and resuming a run that another live process holds raises ``RunBusy`` (a ``UserError``) before
any model is loaded. Nothing here imports torch.
"""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from desktop_app.core.atomic_files import atomic_text_file
from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError, describe, disk_full_message, free_bytes
from desktop_app.core.events import Emit, Metric, ignore
from desktop_app.core.runs.record import Run, RunKind, RunStatus, run_dir


class RunSetupError(UserError):
    """A run cannot be started or resumed; the message says why and what to do."""


class GuardRail(Exception):
    """A training guard rail ended the run (non-finite loss, KL past its limit): the message
    says what happened and what to change. The last checkpoint stays."""


def write_json(path: Path, data: dict) -> None:
    """All at once: a full disk or a crash never leaves half a file (core.atomic_files)."""
    with atomic_text_file(path) as out:
        out.write(json.dumps(data, indent=2))


def remove_leftovers(folder: Path) -> None:
    """Half-written ``*.tmp`` files and folders of a save that a crash (kill -9, power loss)
    cut short. Never the ``.old`` copy, which may be the only checkpoint left."""
    for path in folder.glob("*.tmp"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass
class Resumed:
    """What ``RunSession.find_resumable`` found: the run as it was stored and its checkpoint."""

    run: Run
    checkpoint: Path

    @property
    def base_model(self) -> str:
        base = self.run.config.get("base_model")
        if not isinstance(base, str) or not base:
            raise RunSetupError(f"Run {self.run.id} cannot be resumed: its configuration names "
                                "no base model.")
        return base

    def config(self, config_type: type):
        """The run's stored configuration, checked as a new one would be."""
        try:
            config = config_type.from_dict(self.run.config)
            config.validate()
        except (TypeError, ValueError) as exc:
            raise RunSetupError(f"Run {self.run.id} cannot be resumed: its stored configuration "
                                f"is not valid ({exc}).") from None
        return config


class RunSession:
    """The run ``run_id`` of ``kind`` while this process runs it."""

    def __init__(self, store: Store, runs_dir: str | Path | None, run_id: int, kind: RunKind,
                 emit: Emit = ignore):
        self.store, self.run_id, self.kind, self.emit = store, run_id, kind, emit
        self.folder = run_dir(runs_dir, run_id, kind) if runs_dir is not None else None
        self.finished = False

    # ---- beginning ---------------------------------------------------------------------------

    @classmethod
    def start(cls, store: Store, runs_dir: str | Path | None, kind: RunKind,
              config: dict[str, Any], *, parent_run_id: int | None = None, emit: Emit = ignore,
              files: Callable[[Path], None] | None = None) -> "RunSession":
        """Record a new running run, make its folder, write ``config.json`` (the config and the
        run id) and whatever ``files(folder)`` writes. A folder that cannot be written fails
        the run at once, with a sentence naming the folder. A run that keeps no files (a
        generate run: its pairs are in the database) passes ``runs_dir=None``."""
        run_id = store.create_run(kind, config, parent_run_id=parent_run_id)
        session = cls(store, runs_dir, run_id, kind, emit)
        if session.folder is None:
            return session
        try:
            session.folder.mkdir(parents=True, exist_ok=True)
            if files is not None:
                files(session.folder)
            write_json(session.folder / "config.json", config | {"run_id": run_id})
        except OSError as exc:
            why = (disk_full_message(session.folder, free_bytes(session.folder))
                   if is_disk_full(exc) else exc.strerror or str(exc))
            session.fail(exc)
            raise RunSetupError(f"Cannot write the run folder {session.folder}: {why}") from exc
        return session

    @classmethod
    def find_resumable(cls, store: Store, runs_dir: str | Path, run_id: int, kind: RunKind,
                       checkpoint_parts: Iterable[str]) -> Resumed:
        """Run ``run_id`` and its newest complete checkpoint (``checkpoint``, or
        ``checkpoint.old`` when a crash cut the swap short), or a ``UserError`` saying why it
        cannot be resumed. Checked before any model is loaded."""
        run = store.get_run(run_id)
        if run is None:
            raise RunSetupError(f"There is no run {run_id} to resume.")
        if run.kind != kind:
            raise RunSetupError(f"Run {run_id} is a {run.kind.noun} run, not a {kind.noun} run.")
        store.check_not_busy(run_id)  # RunBusy: another live process is training it
        if run.status == RunStatus.COMPLETED:
            raise RunSetupError(f"Run {run_id} is already completed; start a new run instead.")
        folder = run.folder(runs_dir)
        for name in ("checkpoint", "checkpoint.old"):
            checkpoint = folder / name
            if (checkpoint / "trainer_state.pt").is_file() and all(
                    (checkpoint / part).exists() for part in checkpoint_parts):
                return Resumed(run, checkpoint)
        raise RunSetupError(f"Run {run_id} has no checkpoint to resume from.")

    @classmethod
    def reopen(cls, store: Store, runs_dir: str | Path, resumed: Resumed, step: int,
               emit: Emit = ignore) -> "RunSession":
        """Mark the run running again (its lock held) as of checkpoint step ``step``: metrics
        logged after it are dropped, so the resumed run logs them again exactly once."""
        run = resumed.run
        store.reopen_run(run.id)
        store.delete_metrics_after(run.id, step)
        session = cls(store, runs_dir, run.id, run.kind, emit)
        remove_leftovers(session.folder)
        return session

    # ---- during ------------------------------------------------------------------------------

    def record(self, step: int, values: dict[str, float]) -> None:
        """To the live charts and, in one write, to the store."""
        for name, value in values.items():
            self.emit(Metric(step, name, value))
        self.store.add_metrics(self.run_id, [(step, n, v) for n, v in values.items()])

    # ---- the end -----------------------------------------------------------------------------

    def finish(self, artifact: str | Path | None = None) -> None:
        self._end(RunStatus.COMPLETED, artifact=str(artifact) if artifact else None)

    def cancel(self, error: str | None = None) -> None:
        self._end(RunStatus.CANCELLED, error=error)

    def interrupt(self, message: str) -> str:
        """End the run as interrupted (another process of its job died): resumable from its
        checkpoint, like a run whose own process died."""
        self._end(RunStatus.INTERRUPTED, error=message)
        return message

    def fail(self, exc: BaseException | str) -> str:
        """End the run as failed; returns the sentence recorded as its error."""
        message = exc if isinstance(exc, str) else failure_message(exc)
        self._end(RunStatus.FAILED, error=message)
        return message

    def wait_for_person(self, artifact: str | Path) -> None:
        """A blind evaluation: its pairs are stored and wait for the person's judgments."""
        self.store.set_run_status(self.run_id, RunStatus.JUDGING)
        self.store.set_run_artifact(self.run_id, str(artifact))
        self.finished = True

    def _end(self, status: RunStatus, **fields: Any) -> None:
        if not self.finished:
            self.store.finish_run(self.run_id, status, **fields)
            self.finished = True


class FollowerSession(RunSession):
    """A run as a rank other than 0 sees it under torchrun: rank 0 writes the database and the
    run folder; this one only knows the run's id and folder, and writes nothing."""

    def __init__(self, runs_dir: str | Path, run_id: int, kind: RunKind):
        super().__init__(None, runs_dir, run_id, kind)

    def record(self, step: int, values: dict[str, float]) -> None:
        return None

    def wait_for_person(self, artifact: str | Path) -> None:
        self.finished = True

    def _end(self, status: RunStatus, **fields: Any) -> None:
        self.finished = True


def failure_message(exc: BaseException) -> str:
    """The one-line error a failed run records: a guard rail's or our own sentence as it is,
    a disk's failure explained, anything else named by its type."""
    if isinstance(exc, GuardRail):
        return str(exc)
    message, _ = describe(exc)
    return message[:500]
