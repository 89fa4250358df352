"""The shared training loop, on a method with no language model: a linear regression trained
by the same machinery as the reward model and PPO. Each lifecycle rule is checked once here,
for every method: cancel keeps a checkpoint and resume ends where an uninterrupted run ends,
failures are classified with one sentence, half-written folders are cleaned up, and a run
another live process holds is refused."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from desktop_app.core.config import TrainingConfig, opt
from desktop_app.core.data.store import RunBusy, Store
from desktop_app.core.errors import UserError
from desktop_app.core.events import Log, Metric, StopToken
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.runs.session import GuardRail
from desktop_app.core.workspace import Workspace
from desktop_app.ml.training.loop import Trainer, train
from desktop_app.ml.training.optim import Optimiser


@dataclass
class LineConfig(TrainingConfig):
    steps: int = opt(12, "Optimiser steps.", minimum=1, maximum=1000)
    lr: float = opt(0.2, "Learning rate.", minimum=1e-7, maximum=1.0)
    checkpoint_every: int = opt(4, "Checkpoint every N steps.", minimum=1, maximum=1000)
    device: str = opt("cpu", "Where to train.", choices=("cpu",))


@dataclass
class LineResult:
    run_id: int
    status: str
    step: int
    artifact: str | None
    error: str | None


class LineTrainer(Trainer):
    """y = 3x - 1 from noisy points: one weight, one bias, dropout-free, seeded batches."""

    kind = RunKind.REWARD  # any kind the store knows; the loop does not care which
    config_type = LineConfig
    oom_advice = "use fewer points"
    artifact_name = "line"
    checkpoint_parts = ("weights.pt",)
    progress_message = "Fitting a line"
    finished_message = "Line fitted"
    on_step = None  # a test's hook: called with the step index before each step

    def prepare(self, resumed, *, points: int = 64) -> None:
        self.device = "cpu"
        torch.manual_seed(self.cfg.seed)
        self.model = torch.nn.Linear(1, 1)
        self.x = torch.linspace(-1, 1, points).unsqueeze(1)
        self.y = 3 * self.x - 1 + 0.1 * torch.randn_like(self.x)
        self.optimiser = Optimiser(list(self.model.named_parameters()), self.cfg, "cpu", None)
        self.total_steps = self.cfg.steps

    def train_step(self):
        if LineTrainer.on_step is not None:
            LineTrainer.on_step(self)
        if self.stop.requested:
            return None
        rows = torch.randint(0, len(self.x), (16,))  # the global RNG: resume must restore it
        loss = torch.nn.functional.mse_loss(self.model(self.x[rows]), self.y[rows])
        self.optimiser.backward(loss)
        self.optimiser.clip()
        self.optimiser.apply()
        if not torch.isfinite(loss):
            raise GuardRail(f"Loss became {loss.item()} at step {self.step + 1}.")
        return {"train/loss": loss.item()}

    def save_checkpoint_files(self, folder: Path) -> None:
        torch.save(self.model.state_dict(), folder / "weights.pt")

    def load_checkpoint_files(self, folder: Path) -> None:
        self.model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))

    def save_artifact(self, folder: Path) -> None:
        torch.save(self.model.state_dict(), folder / "weights.pt")

    def result(self, status, artifact=None, error=None):
        return LineResult(self.run_id, str(status), self.step, artifact, error)

    def release(self) -> None:
        self.model = self.optimiser = None


@pytest.fixture()
def ws(tmp_path) -> Workspace:
    return Workspace.open(tmp_path / "ws")


@pytest.fixture(autouse=True)
def no_hook():
    yield
    LineTrainer.on_step = None


def fit(ws, cfg=None, **kw):
    return train(LineTrainer, ws, cfg or LineConfig(), **kw)


def weights(result) -> dict:
    return torch.load(Path(result.artifact) / "weights.pt", weights_only=True)


def run_of(ws, run_id):
    with Store(ws.db_path) as store:
        return store.get_run(run_id)


def test_a_run_completes_with_its_artifact_and_metrics(ws):
    events = []
    result = fit(ws, emit=events.append)
    run = run_of(ws, result.run_id)
    assert (result.status, result.step, run.status) == ("completed", 12, RunStatus.COMPLETED)
    assert run.artifact == result.artifact and (Path(result.artifact) / "weights.pt").is_file()
    losses = [e.value for e in events if isinstance(e, Metric)]
    assert losses[-1] < losses[0] / 2  # it learns: the loop steps the optimiser
    folder = run.folder(ws.runs_dir)
    assert (folder / "config.json").is_file() and not (folder / "checkpoint").exists()
    assert [e.step for e in events if isinstance(e, Metric)] == list(range(1, 13))


def test_cancel_keeps_a_checkpoint_and_resume_equals_an_uninterrupted_run(ws):
    full = fit(ws)
    stop = StopToken()

    def stop_at_step_7(trainer):
        if trainer.step == 6:
            stop.stop()

    LineTrainer.on_step = stop_at_step_7
    events = []
    first = fit(ws, stop=stop, emit=events.append)
    assert (first.status, first.step) == ("cancelled", 6)
    assert any(isinstance(e, Log) and "cancelled at step 6" in e.message for e in events)
    assert run_of(ws, first.run_id).status == RunStatus.CANCELLED
    LineTrainer.on_step = None
    resumed = fit(ws, None, resume_run_id=first.run_id)
    assert (resumed.status, resumed.step, resumed.run_id) == ("completed", 12, first.run_id)
    for name, value in weights(full).items():
        assert torch.equal(value, weights(resumed)[name]), name
    with Store(ws.db_path) as store:  # each step's metric logged once, across the resume
        steps = [m["step"] for m in store.metrics(first.run_id, "train/loss")]
    assert steps == list(range(1, 13))
    with pytest.raises(UserError, match="already completed"):
        fit(ws, None, resume_run_id=first.run_id)


def test_a_guard_rail_fails_the_run_with_its_sentence_and_keeps_the_checkpoint(ws):
    def poison(trainer):
        if trainer.step == 5:
            with torch.no_grad():
                trainer.model.weight.fill_(float("nan"))

    LineTrainer.on_step = poison
    result = fit(ws)
    run = run_of(ws, result.run_id)
    assert (result.status, run.status) == ("failed", RunStatus.FAILED)
    assert run.error == result.error == "Loss became nan at step 6."
    assert (run.folder(ws.runs_dir) / "checkpoint" / "weights.pt").is_file()  # step 4's


@pytest.mark.parametrize("failure, expected", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
     "Ran out of device memory at step 3: use fewer points."),
    (OSError(errno.ENOSPC, "No space left on device", "/data/ws/runs/0001-reward"),
     "The disk holding /data/ws/runs/0001-reward is full"),
])
def test_out_of_memory_and_a_full_disk_fail_the_run_with_advice(ws, failure, expected):
    def fail(trainer):
        if trainer.step == 2:
            raise failure

    LineTrainer.on_step = fail
    result = fit(ws)
    assert result.status == "failed" and result.error.startswith(expected)
    assert run_of(ws, result.run_id).error == result.error
    assert result.artifact is None


def test_any_other_error_fails_the_run_and_is_raised(ws):
    def broken(trainer):
        raise KeyError("weights")

    LineTrainer.on_step = broken
    with pytest.raises(KeyError):
        fit(ws)
    with Store(ws.db_path) as store:
        (run,) = store.list_runs()
    assert (run.status, run.error) == (RunStatus.FAILED, "KeyError: 'weights'")


def test_a_method_that_does_not_shard_its_data_refuses_torchrun_in_one_sentence(ws,
                                                                               monkeypatch):
    """Every method has opted in (``distributed = True``); one that has not must say so, not
    train each rank on the whole data."""
    from desktop_app.ml.training import loop
    from desktop_app.ml.training.distributed import World
    assert not LineTrainer.distributed
    monkeypatch.setattr(loop, "world", lambda: World(rank=0, size=2))
    with pytest.raises(UserError, match="does not run under torchrun yet; run it as one "):
        fit(ws)
    assert run_of(ws, 1) is None


def test_a_bad_config_is_refused_before_any_run_exists(ws):
    with pytest.raises(UserError, match="lr = 5"):
        fit(ws, LineConfig(lr=5.0))
    with Store(ws.db_path) as store:
        assert store.list_runs() == []


def test_resume_cleans_up_half_written_folders_and_uses_checkpoint_old(ws):
    stop = StopToken()
    LineTrainer.on_step = lambda t: t.step == 5 and stop.stop()
    first = fit(ws, stop=stop)
    folder = run_of(ws, first.run_id).folder(ws.runs_dir)
    # A crash mid-swap: the new checkpoint half-written, the previous one set aside as .old.
    (folder / "checkpoint").rename(folder / "checkpoint.old")
    (folder / "checkpoint.tmp").mkdir()
    (folder / "checkpoint.tmp" / "weights.pt").write_bytes(b"half")
    (folder / "line.tmp").write_bytes(b"half")
    LineTrainer.on_step = None
    resumed = fit(ws, None, resume_run_id=first.run_id)
    assert resumed.status == "completed"
    assert not list(folder.glob("*.tmp"))


def test_refusals_name_the_run(ws):
    with pytest.raises(UserError, match="no run 42 to resume"):
        fit(ws, None, resume_run_id=42)
    with Store(ws.db_path) as store:
        other = store.create_run(RunKind.GENERATE, {})
        store.finish_run(other, RunStatus.COMPLETED)
        bare = store.create_run(RunKind.REWARD, LineConfig().to_dict())
        store.finish_run(bare, RunStatus.FAILED, error="x")
    with pytest.raises(UserError, match="is a generate run, not a reward-model run"):
        fit(ws, None, resume_run_id=other)
    with pytest.raises(UserError, match="no checkpoint to resume from"):
        fit(ws, None, resume_run_id=bare)


OWNER = textwrap.dedent("""
    import sys, time
    from desktop_app.core.data.store import Store
    from desktop_app.core.runs.record import RunKind
    store = Store(sys.argv[1])
    run_id = store.create_run(RunKind.REWARD, {})
    print(run_id, flush=True)
    time.sleep(600)
""")


def test_a_live_owner_blocks_resume_and_a_dead_one_means_interrupted(ws):
    """The owner is another process holding the run (as a training in a terminal would)."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(ws.db_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        run_id = int(owner.stdout.readline())
        with pytest.raises(RunBusy, match=f"still running in process {owner.pid}"):
            fit(ws, None, resume_run_id=run_id)
        assert run_of(ws, run_id).status == RunStatus.RUNNING
    finally:
        owner.kill()
        owner.wait()
    assert run_of(ws, run_id).status == RunStatus.INTERRUPTED


def test_every_trainer_subclass_supplies_the_methods_it_must():
    with pytest.raises(TypeError, match="abstract"):
        type("Half", (Trainer,), {"prepare": lambda self, resumed: None})(
            None, None, LineConfig(), print, StopToken())
