"""The RunController's interface, with fake jobs and no model: launch → progress → the result
line; cancel → the cancelled line; a failure → one red sentence; warnings apart from the status
line; and which run Resume continues."""

from __future__ import annotations

import re
import threading
from types import SimpleNamespace

import pytest
from PySide6.QtWidgets import QWidget
from waiting import poll_until

from desktop_app.core.events import Log, Metric, Progress
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.gui.training.controller import (
    Checkpoints,
    RunController,
    error_text,
    training_outcome,
)


class Points:
    """A chart feed that remembers what it was given."""

    def __init__(self) -> None:
        self.points: list[tuple[str, float, float]] = []

    def add_point(self, name: str, step: float, value: float) -> None:
        self.points.append((name, step, value))


@pytest.fixture
def host(qtbot):
    from desktop_app.gui.app import create_app
    create_app()
    widget = QWidget()
    qtbot.addWidget(widget)
    return widget


def make(host, **kw) -> tuple[RunController, Points, list]:
    charts = Points()
    run = RunController(host, "No training yet.",
                        training_outcome(lambda result: f"adapter saved to {result.artifact}"),
                        details=lambda extra: [f"{extra['rate']:.1f} pairs/s"]
                        if "rate" in extra else [], charts=charts, **kw)
    seen: list = []
    run.started.connect(lambda: seen.append("started"))
    run.event.connect(lambda event: seen.append(type(event).__name__))
    run.result.connect(lambda result: seen.append(("result", result.status)))
    run.failed.connect(lambda message: seen.append(("failed", message)))
    run.finished.connect(lambda: seen.append("finished"))
    return run, charts, seen


def test_launch_progress_and_the_result_line(qtbot, host):
    run, charts, seen = make(host)
    assert run.status.text() == "No training yet." and not run.running
    go_on = threading.Event()

    def work(emit, stop):
        emit(Metric(1, "train/loss", 0.5))
        emit(Progress(1, 4, "Training", extra={"eta_s": 75, "rate": 2.5, "memory_gib": 1.5}))
        go_on.wait(30)
        return SimpleNamespace(status=RunStatus.COMPLETED, run_id=7, step=4, error=None,
                               artifact="runs/0007-reward/adapter")

    assert run.launch(work, "fake-train", "Loading the base model…", needs_stack=False)
    assert run.running and seen == ["started"]
    assert run.status.text() == "Loading the base model…" and run.progress.maximum() == 0
    assert not run.launch(work, "second", "…", needs_stack=False)  # one run at a time
    qtbot.waitUntil(lambda: run.progress.maximum() == 4, timeout=30_000)
    assert run.progress.value() == 1 and run.progress.format() == "step %v / %m"
    assert run.status.text() == "Training   ·   ETA 1:15   ·   2.5 pairs/s   ·   1.50 GiB"
    assert charts.points == [("train/loss", 1, 0.5)]

    with qtbot.waitSignal(run.finished, timeout=30_000):
        go_on.set()
    assert not run.running and run.last_result.run_id == 7
    assert re.fullmatch(r"Run #7 finished in 0:0\d: adapter saved to runs/0007-reward/adapter",
                        run.status.text()), run.status.text()
    assert seen == ["started", "Metric", "Progress", ("result", RunStatus.COMPLETED), "finished"]


def test_cancel_says_so_and_the_result_says_where_it_stopped(qtbot, host):
    run, _, seen = make(host)

    def work(emit, stop):
        emit(Progress(2, 10, "Training"))
        poll_until(lambda: stop.requested, timeout=60)  # a long step, until cancelled
        return SimpleNamespace(status=RunStatus.CANCELLED, run_id=3, step=2, error=None)

    run.launch(work, "fake-train", "Loading…", needs_stack=False)
    qtbot.waitUntil(lambda: run.progress.value() == 2, timeout=30_000)
    run.cancel()
    assert run.status.text() == "Stopping after this step and saving a checkpoint…"
    with qtbot.waitSignal(run.finished, timeout=30_000):
        pass
    assert run.status.text() == ("Run #3 cancelled at step 2; its checkpoint is kept — press "
                                 "Resume to continue.")
    assert seen[-2:] == [("result", RunStatus.CANCELLED), "finished"]


def test_a_failure_is_one_red_sentence_and_the_bar_stops(qtbot, host):
    run, _, seen = make(host)

    def work(emit, stop):
        raise ValueError("The file has no prompts.")

    with qtbot.waitSignal(run.finished, timeout=30_000):
        run.launch(work, "fake-train", "Loading…", needs_stack=False)
    [(_, message)] = [s for s in seen if isinstance(s, tuple)]
    assert "The file has no prompts." in message and "Traceback" not in message
    assert run.status.text() == error_text(message)
    assert run.progress.maximum() == 1 and not run.running  # not busy-looking any more


def test_warnings_collect_apart_and_are_cleared_by_the_next_run(qtbot, host):
    run, _, _ = make(host, warnings=True, step_format="%v / %m",
                     stopping_text="Stopping… (nothing is stored)")

    def work(emit, stop):
        emit(Log("The policy was optimised against this reward model.", "warning"))
        emit(Log("Scoring with the reward model"))
        return SimpleNamespace(status=RunStatus.CANCELLED, run_id=1, step=0, error=None)

    with qtbot.waitSignal(run.finished, timeout=30_000):
        run.launch(work, "fake-eval", "Loading the policies…", needs_stack=False)
    assert run.warnings.text() == "⚠  The policy was optimised against this reward model."
    assert not run.warnings.isHidden()
    run.launch(lambda emit, stop: (_ for _ in ()).throw(ValueError("x")), "again", "…",
               needs_stack=False)
    assert run.warnings.text() == "" and run.warnings.isHidden()
    with qtbot.waitSignal(run.finished, timeout=30_000):
        pass


def test_resume_finds_the_newest_run_of_its_kind_with_a_checkpoint(host, workspace, store):
    run, _, _ = make(host, checkpoints=Checkpoints(store, workspace.runs_dir, RunKind.REWARD))
    assert run.resumable_run() is None
    first = store.create_run(RunKind.REWARD, {"base_model": "m"})
    store.finish_run(first, RunStatus.CANCELLED)
    assert run.resumable_run() is None  # it kept no checkpoint
    (store.get_run(first).folder(workspace.runs_dir) / "checkpoint").mkdir(parents=True)
    assert run.resumable_run().id == first
    other = store.create_run(RunKind.PPO, {"base_model": "m"})
    store.finish_run(other, RunStatus.FAILED)
    assert run.resumable_run().id == first  # another kind's run does not count
    newer = store.create_run(RunKind.REWARD, {"base_model": "m"})
    store.finish_run(newer, RunStatus.COMPLETED)
    assert run.resumable_run() is None  # the newest one finished: nothing to resume
