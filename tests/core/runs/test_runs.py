"""Run records: their folder, the JSON they print as, and whether a later step can use one."""

import json

import pytest

from desktop_app.core.errors import UserError, describe
from desktop_app.core.runs.record import Run, RunKind, RunStatus, UnusableRun, run_dir


def test_runs_come_out_of_the_store_as_records(store, workspace):
    reward = store.create_run(RunKind.REWARD, {"base_model": "m"})
    assert store.get_run(reward).status == RunStatus.RUNNING
    store.finish_run(reward, RunStatus.CANCELLED)
    run = store.get_run(reward)
    assert isinstance(run, Run) and (run.kind, run.status) == (RunKind.REWARD, "cancelled")
    assert run.resumable and run.config == {"base_model": "m"}
    assert run.folder(workspace.runs_dir) == workspace.runs_dir / f"{reward:04d}-reward"
    assert run_dir(workspace.runs_dir, 12, RunKind.PPO).name == "0012-ppo"
    # The JSON is what the rows always were: plain strings, in the table's column order.
    assert list(json.loads(json.dumps(run.to_dict()))) == [
        "id", "kind", "config", "status", "error", "artifact", "parent_run_id", "created_at",
        "finished_at"]
    assert run.to_dict()["kind"] == "reward" and type(run.to_dict()["status"]) is str


def test_only_a_completed_run_with_its_artifact_on_disk_is_usable(tmp_path):
    adapter = tmp_path / "adapter"
    run = Run(id=3, kind=RunKind.PPO, status=RunStatus.COMPLETED, artifact=str(adapter))
    with pytest.raises(UnusableRun, match=r"artifact of PPO run 3 is missing"):
        run.require_artifact(RunKind.PPO, "exporting")
    adapter.mkdir()
    assert run.usable_artifact() is None  # a folder, but no adapter in it
    (adapter / "adapter_config.json").write_text("{}")
    assert run.require_artifact(RunKind.PPO, "exporting") == adapter

    with pytest.raises(UnusableRun, match="Run 3 is a PPO run; scoring needs a reward-model run"):
        run.require_artifact(RunKind.REWARD, "scoring")
    failed = Run(id=3, kind=RunKind.PPO, status=RunStatus.FAILED, artifact=str(adapter))
    assert failed.usable_artifact() is None
    with pytest.raises(UnusableRun) as caught:
        failed.require_artifact(RunKind.PPO, "exporting")
    assert str(caught.value) == "PPO run 3 is failed; exporting needs a completed PPO run."
    assert isinstance(caught.value, UserError)
    assert describe(caught.value) == (str(caught.value), False)
