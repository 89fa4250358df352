"""A training command run by torchrun as a subprocess of the app (the training pages' "GPUs").

The app starts ``python -m torch.distributed.run --standalone --nproc-per-node N -m
desktop_app.cli --workspace W COMMAND OPTIONS --json`` in a session of its own and follows it
the way it follows a job on a thread (``run_under_torchrun`` is a job function: it takes
``emit`` and a ``StopToken``):

- **metrics** come from the run's rows in the database (``Store.metrics_since``), the source
  the Runs page charts too;
- **progress, log lines and a method's own events** (PPO's samples): rank 0's CLI writes every
  other event to an events file named by ``RLHF_DESK_EVENTS`` (``EventFile``: one JSON object
  a line, the event's class and fields), read here as it grows;
- **cancel** is SIGTERM to torchrun, which passes it to every rank; the ranks stop together at
  the end of a step and keep a checkpoint (the CLI treats SIGTERM under torchrun as Ctrl+C);
- **the result** is rank 0's one JSON line, as the method's result record.

The job's output goes to ``logs/torchrun-….log`` in the workspace, named in any error.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError
from desktop_app.core.events import Emit, Metric, Progress, StopToken
from desktop_app.core.runs.record import RunKind

ENV_EVENTS = "RLHF_DESK_EVENTS"
POLL_S = 0.25


class TorchrunJobError(UserError):
    """The torchrun job ended without a result (its message says why and where the log is)."""


def config_options(cfg) -> list[str]:
    """A config as the training command's options (``cli._add_config_options`` reads them)."""
    options: list[str] = []
    for f in dataclasses.fields(cfg):
        flag, value = "--" + f.name.replace("_", "-"), getattr(cfg, f.name)
        if isinstance(value, bool):
            options.append(flag if value else "--no-" + flag[2:])
        else:
            options += [flag, repr(value) if isinstance(value, float) else str(value)]
    return options


def run_under_torchrun(workspace, command: str, options: list[str], *, nproc: int,
                       kind: RunKind, result_type: type, emit: Emit, stop: StopToken,
                       resume_run_id: int | None = None) -> Any:
    """Run ``rlhf-desk COMMAND OPTIONS`` on ``nproc`` processes; return its result record."""
    logs = workspace.root / "logs"
    logs.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log, out, events = (logs / f"torchrun-{stamp}{suffix}" for suffix in
                        (".log", ".out", ".events"))
    with Store(workspace.db_path) as store:
        last_id = max((r.id for r in store.list_runs()), default=0)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(nproc), "-m", "desktop_app.cli", "--workspace", str(workspace.root), command,
            *options, "--json"]
    env = os.environ | {ENV_EVENTS: str(events), "HF_HUB_OFFLINE": "1",
                        "TRANSFORMERS_OFFLINE": "1"}
    emit(Progress(0, 0, f"Starting {nproc} processes"))
    with log.open("w") as err, out.open("w") as stdout:
        # Its own session: Ctrl+C in the app's terminal is the app's to handle (it cancels the
        # job, which then stops with a checkpoint), not a signal straight to every rank.
        proc = subprocess.Popen(argv, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    try:
        _follow(proc, workspace, kind, events, emit, stop, resume_run_id, last_id)
    finally:
        if proc.poll() is None:  # only when following failed: never leave ranks behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return _result(proc.returncode, out, log, result_type, events)


def _follow(proc: subprocess.Popen, workspace, kind: RunKind, events: Path, emit: Emit,
            stop: StopToken, run_id: int | None, last_id: int) -> None:
    """Relay events and metrics until the job ends; a stop becomes SIGTERM to torchrun."""
    read = EventReader(events)
    marker, signalled = 0, False
    with Store(workspace.db_path) as store:
        while True:
            ended = proc.poll() is not None
            for event in read.new():
                emit(event)
            if run_id is None:
                run_id = next((r.id for r in store.list_runs()
                               if r.id > last_id and r.kind == kind), None)
            if run_id is not None:
                points, marker = store.metrics_since(run_id, marker)
                for p in points:
                    if p["value"] is not None:
                        emit(Metric(p["step"], p["name"], p["value"]))
            if ended:
                return
            if stop.requested and not signalled:
                proc.send_signal(signal.SIGTERM)  # torchrun passes it to every rank
                signalled = True
            time.sleep(POLL_S)


def _result(code: int, out: Path, log: Path, result_type: type, events: Path) -> Any:
    lines = [line for line in out.read_text(encoding="utf-8", errors="replace").splitlines()
             if line.startswith("{")]
    out.unlink(missing_ok=True)
    events.unlink(missing_ok=True)
    if lines:
        data = json.loads(lines[-1])
        return result_type(**{f.name: data.get(f.name) for f in dataclasses.fields(result_type)})
    said = [line.split(": error: ", 1)[1] for line in
            log.read_text(encoding="utf-8", errors="replace").splitlines()
            if ": error: " in line and line.startswith("rlhf-desk")]
    reason = said[0].rstrip(".") if said else f"torchrun exited with status {code}"
    raise TorchrunJobError(f"The job on several processes ended without a result: {reason} "
                           f"(its log: {log}).")


# ---- the events file ------------------------------------------------------------------------

class EventFile:
    """Rank 0's events, for the app: ``emit`` for ``cli._train`` that passes each event on to
    ``forward`` (the progress bar) and appends every one but metrics (the app reads those from
    the database) to ``path``. Progress is written at most five times a second."""

    def __init__(self, path: str | os.PathLike, forward: Emit):
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._forward, self._last = forward, 0.0

    def __call__(self, event: Any) -> None:
        self._forward(event)
        if isinstance(event, Metric) or not dataclasses.is_dataclass(event):
            return
        if isinstance(event, Progress):
            now = time.monotonic()
            if now - self._last < 0.2 and not (event.total and event.done >= event.total):
                return
            self._last = now
        kind = type(event)
        record = {"event": f"{kind.__module__}.{kind.__qualname__}",
                  "fields": dataclasses.asdict(event)}
        self._file.write(json.dumps(record, allow_nan=False, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class EventReader:
    """The events ``EventFile`` wrote, as they arrive: whole lines only, each turned back into
    its event (a class of RLHF Desk's own, nothing else)."""

    def __init__(self, path: Path):
        self._path, self._offset = path, 0

    def new(self) -> list[Any]:
        try:
            with self._path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        events = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            event = _event_of(line)
            if event is not None:
                events.append(event)
        return events


def _event_of(line: str) -> Any:
    try:
        record = json.loads(line)
        module, _, name = record["event"].rpartition(".")
        if not module.startswith("desktop_app."):
            return None
        kind = getattr(importlib.import_module(module), name)
        return kind(**record["fields"]) if dataclasses.is_dataclass(kind) else None
    except (ValueError, KeyError, TypeError, AttributeError, ImportError):
        return None
