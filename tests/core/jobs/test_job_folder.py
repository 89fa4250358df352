"""A job folder without training (``core/jobs``): what export-job writes, and what import-run
takes back, on a workspace built row by row. The round trip with real training under torchrun
is `tests/ml/distributed/test_torchrun.py`."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from desktop_app.core.config import DPOConfig, PPOConfig, RewardConfig
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.errors import UserError
from desktop_app.core.jobs.export import export_job
from desktop_app.core.jobs.folder import JobError, JobFolder
from desktop_app.core.jobs.importing import import_run
from desktop_app.core.runs.record import RunKind, RunStatus
from desktop_app.core.workspace import Workspace


def judged_workspace(root: Path) -> Workspace:
    """12 prompts with judged pairs (winners, a tie, a both-bad), a pending pair, two held-out
    prompts with blind-evaluation pairs (one evaluation added to training), a PPO run whose
    adapter generated two of the pairs, and judgment history."""
    ws = Workspace.open(root)
    rng = random.Random(0)
    with Store(ws.db_path) as store:
        ids = store.add_prompts([f"Prompt {i}" for i in range(14)]).ids
        policy = store.create_run(RunKind.PPO, {"base_model": "/m"})
        adapter = ws.runs_dir / "0001-ppo" / "policy"
        store.finish_run(policy, RunStatus.COMPLETED, artifact=str(adapter))
        pairs = [(pid, GenerationIn(f"good {pid}", "m"), GenerationIn(f"bad {pid}", "m"))
                 for pid in ids[:12]]
        pairs.append((ids[0], GenerationIn("tuned", "m", adapter=str(adapter)),
                      GenerationIn("tuned too", "m", adapter=str(adapter))))
        cids = store.add_pairs(pairs, rng=rng)
        for cid in cids[:10]:
            store.judge(cid, "a")
        store.judge(cids[10], "tie")
        store.judge(cids[11], "both_bad")
        store.judge(cids[12], "b")
        store.unjudge(cids[0])  # a changed verdict: history
        store.judge(cids[0], "b")
        store.add_pairs([(ids[1], GenerationIn("x", "m"), GenerationIn("y", "m"))], rng=rng)
        store.set_held_out(ids[12:])
        for k, pid in enumerate(ids[12:]):
            run = store.create_run(RunKind.EVAL, {})
            store.finish_run(run, RunStatus.COMPLETED)
            cid, = store.add_pairs([(pid, GenerationIn(f"e{k}", "m"), GenerationIn(f"f{k}", "m"))],
                                   rng=rng, eval_run_id=run)
            store.judge(cid, "a")
            if k == 0:
                store.add_eval_to_training(run)
    return ws


def reward_run(ws: Workspace) -> int:
    """A completed reward run with an adapter folder and its score statistics."""
    with Store(ws.db_path) as store:
        run_id = store.create_run(RunKind.REWARD, {"base_model": "/m", "lora_r": 8})
        folder = ws.runs_dir / f"{run_id:04d}-reward"
        (folder / "adapter").mkdir(parents=True)
        (folder / "adapter" / "adapter_config.json").write_text("{}")
        (folder / "reward_stats.json").write_text('{"mean": 0.5, "std": 2.0}')
        (folder / "checkpoint").mkdir()
        store.finish_run(run_id, RunStatus.COMPLETED, artifact=str(folder / "adapter"))
    return run_id


@pytest.fixture
def home(tmp_path):
    return judged_workspace(tmp_path / "home")


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "models" / "tiny-base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_a_reward_job_holds_the_training_judgments_under_their_own_ids(home, model, tmp_path):
    with Store(home.db_path) as store:
        wanted = store.preference_rows()
        runs_before = [r.to_dict() for r in store.list_runs()]
    cfg = RewardConfig(epochs=2.0, seed=7)

    job = export_job(home, "train-reward", cfg, tmp_path / "job", base_model=str(model))

    folder = JobFolder(tmp_path / "job")
    assert job.folder == folder.root
    with Store(folder.workspace_dir / "rlhf.db") as there:
        # The same pairs under the same ids (the split and order depend on them), including
        # the evaluation pairs added to training; pending and blind-only pairs, history and
        # runs stay home.
        assert there.preference_rows() == wanted
        assert there.list_runs() == []
        assert there.pending_count() == 0
        assert there.db.execute("SELECT COUNT(*) FROM judgment_changes").fetchone() == (0,)
        assert there.db.execute("SELECT COUNT(*) FROM comparisons WHERE choice = 'both_bad'"
                                ).fetchone() == (1,)  # DPO reports what it leaves out
    data = [json.loads(line) for line in (folder.data_dir / "preferences.jsonl").open()]
    assert len(data) == job.pairs == sum(not r["tie"] for r in wanted)
    assert {tuple(sorted(d)) for d in data} == {("chosen", "prompt", "rejected")}

    spec = folder.read()
    assert spec["command"] == "train-reward" and spec["config"] == cfg.to_dict()
    assert spec["job_config"] == cfg.to_dict()
    assert spec["base_model"] == str(model.resolve())
    assert spec["source"]["policy_run_ids"] == [1]  # the PPO run whose pairs are judged
    for script in ("launch.sh", "slurm.sbatch"):
        path = folder.root / script
        assert os.access(path, os.X_OK)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0, script
    launch = (folder.root / "launch.sh").read_text()
    assert "run-job" in launch and str(model.resolve()) in launch
    assert f"import-run {folder.root}" in (folder.root / "README.md").read_text()
    with Store(home.db_path) as store:  # home is as it was
        assert [r.to_dict() for r in store.list_runs()] == runs_before
        assert store.preference_rows() == wanted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "job", "models"]


def test_a_ppo_job_carries_its_reward_model_and_the_prompts_it_would_train_on(home, model,
                                                                              tmp_path):
    reward = reward_run(home)
    cfg = PPOConfig(prompts="unjudged", steps=3)
    job = export_job(home, "train-ppo", cfg, tmp_path / "job", base_model=str(model),
                     reward_run_id=reward)

    # The job folder moves to another machine: the reward model goes with it.
    moved = tmp_path / "elsewhere" / "job"
    moved.parent.mkdir()
    shutil.move(job.folder, moved)
    folder = JobFolder(moved)
    with Store(folder.workspace_dir / "rlhf.db") as there:
        runs = there.list_runs()
        prompts = there.list_prompts()
    assert [(r.id, r.kind) for r in runs] == [(reward, RunKind.REWARD)]
    adapter = runs[0].usable_artifact()
    assert adapter is not None and adapter.is_relative_to(moved)
    assert json.loads((adapter.parent / "reward_stats.json").read_text())["std"] == 2.0
    assert not (adapter.parent / "checkpoint").exists()
    # Unjudged prompts that are not held out: prompt 12 (unjudged, but held out) and 13 (held
    # out) stay home; every judged one too.
    with Store(home.db_path) as store:
        unjudged = [r["id"] for r in store.list_prompts()
                    if not r["judged"] and not r["held_out"]]
    assert [p["id"] for p in prompts] == unjudged and job.prompts == len(unjudged)
    assert not any(p["held_out"] for p in prompts)
    lines = (folder.data_dir / "prompts.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"prompt": p["text"]} for p in prompts]
    spec = folder.read()
    assert spec["config"]["prompts"] == "unjudged" and spec["job_config"]["prompts"] == "all"
    assert spec["source"]["reward_run_id"] == reward


def test_export_refuses_in_one_sentence_and_leaves_nothing_behind(home, model, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("mine")
    with pytest.raises(JobError, match="already exists and is not empty"):
        export_job(home, "train-dpo", DPOConfig(), taken, base_model=str(model))
    with pytest.raises(JobError, match="no reward run 99"):
        export_job(home, "train-rloo", PPOConfig(), tmp_path / "j1", base_model=str(model),
                   reward_run_id=99)
    with pytest.raises(UserError, match="Run 1 is a PPO run; a PPO job needs a reward-model"):
        export_job(home, "train-ppo", PPOConfig(), tmp_path / "j2", base_model=str(model),
                   reward_run_id=1)  # a PPO run
    reward = reward_run(home)
    with Store(home.db_path) as store:
        store.set_held_out([p["id"] for p in store.list_prompts()])
    with pytest.raises(JobError, match="no prompts to train on"):
        export_job(home, "train-ppo", PPOConfig(), tmp_path / "j3", base_model=str(model),
                   reward_run_id=reward)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "models", "taken"]
    assert [p.name for p in taken.iterdir()] == ["file"]


def finish_job_run(folder: JobFolder, kind: RunKind, status=RunStatus.COMPLETED) -> int:
    """What the job's training leaves in its workspace: a run with metrics, its artifact and
    a checkpoint, written as the trainer writes them (absolute paths of that machine)."""
    with Store(folder.workspace_dir / "rlhf.db") as there:
        run_id = there.create_run(kind, {"base_model": "/cluster/models/tiny-base",
                                         "world_size": 8, "judgments": 13})
        run_folder = folder.workspace_dir / "runs" / f"{run_id:04d}-{kind}"
        name = "adapter" if kind == RunKind.REWARD else "policy"
        (run_folder / name).mkdir(parents=True)
        (run_folder / name / "adapter_config.json").write_text("{}")
        (run_folder / "checkpoint").mkdir()
        (run_folder / "checkpoint" / "trainer_state.pt").write_bytes(b"x" * 100)
        there.add_metrics(run_id, [(s, "train/loss", 1.0 / s) for s in range(1, 6)])
        there.finish_run(run_id, status, artifact=str(run_folder / name),
                         error=None if status == RunStatus.COMPLETED else "Cancelled.")
    return run_id


def test_import_brings_the_run_home_with_metrics_artifact_and_lineage(home, model, tmp_path):
    job = export_job(home, "train-dpo", DPOConfig(beta=0.2), tmp_path / "job",
                     base_model=str(model))
    folder = JobFolder(job.folder)
    job_run = finish_job_run(folder, RunKind.DPO)

    with Store(home.db_path) as store:
        imported = import_run(store, home.runs_dir, job.folder)
        run = imported.run
        metrics = store.metrics(run.id)
    assert (run.kind, run.status, imported.job_run_id) == (RunKind.DPO, "completed", job_run)
    assert run.parent_run_id == 1  # the PPO run whose pairs DPO learnt from
    assert run.config["beta"] == 0.2 and run.config["base_model"] == str(model.resolve())
    assert run.config["world_size"] == 8 and run.config["policy_run_ids"] == [1]
    assert run.config["imported_from"]["job_id"] == job.job["job_id"]
    assert [(m["step"], m["value"]) for m in metrics] == [(s, 1.0 / s) for s in range(1, 6)]
    assert run.usable_artifact() == home.runs_dir / f"{run.id:04d}-dpo" / "policy"
    assert not (home.runs_dir / f"{run.id:04d}-dpo" / "checkpoint").exists()
    written = json.loads((home.runs_dir / f"{run.id:04d}-dpo" / "config.json").read_text())
    assert written["run_id"] == run.id and written["beta"] == 0.2

    with Store(home.db_path) as store, pytest.raises(JobError, match=f"as DPO run {run.id}"):
        import_run(store, home.runs_dir, job.folder)


def test_import_says_where_an_unfinished_job_stands(home, model, tmp_path):
    reward = reward_run(home)
    job = export_job(home, "train-rloo", PPOConfig(), tmp_path / "job", base_model=str(model),
                     reward_run_id=reward)
    folder = JobFolder(job.folder)
    with Store(home.db_path) as store:
        with pytest.raises(JobError, match="has not run yet"):
            import_run(store, home.runs_dir, job.folder)
        cancelled = finish_job_run(folder, RunKind.RLOO, RunStatus.CANCELLED)
        with pytest.raises(JobError, match=f"cancelled .*launch.sh --resume {cancelled}"):
            import_run(store, home.runs_dir, job.folder)
        with pytest.raises(JobError, match="not a job folder"):
            import_run(store, home.runs_dir, tmp_path / "models")
    finish_job_run(folder, RunKind.RLOO)
    other = judged_workspace(tmp_path / "other")  # it has no reward run 4
    with Store(other.db_path) as store, pytest.raises(JobError, match="no such reward run"):
        import_run(store, other.runs_dir, job.folder)
    with Store(home.db_path) as store:
        run = import_run(store, home.runs_dir, job.folder).run
    assert (run.kind, run.parent_run_id) == (RunKind.RLOO, reward)
    assert list(home.runs_dir.glob(".import-*")) == []


def test_a_prompt_file_and_a_starting_policy_travel_with_the_job(home, model, tmp_path):
    """PPO on a prompt file: the job's workspace holds exactly the file's prompts (the home
    workspace gains none); a starting policy is copied in and named relative to the job."""
    reward = reward_run(home)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Prompt 3\nA new prompt\nAnother new one\n", encoding="utf-8")
    start = tmp_path / "start-policy"
    start.mkdir()
    (start / "adapter_config.json").write_text("{}")
    cfg = PPOConfig(prompt_file=str(prompts), init_policy=str(start))
    job = export_job(home, "train-ppo", cfg, tmp_path / "job", base_model=str(model),
                     reward_run_id=reward)
    folder = JobFolder(job.folder)
    with Store(folder.workspace_dir / "rlhf.db") as there:
        texts = [p["text"] for p in there.list_prompts()]
    assert texts == ["Prompt 3", "A new prompt", "Another new one"] and job.prompts == 3
    with Store(home.db_path) as store:
        assert "A new prompt" not in {p["text"] for p in store.list_prompts()}
    spec = folder.read()
    assert spec["job_config"]["prompt_file"] == "" and spec["job_config"]["init_policy"] == \
        "init_policy"
    assert spec["config"]["init_policy"] == str(start)
    assert (folder.root / "init_policy" / "adapter_config.json").is_file()


def test_a_job_run_twice_imports_its_newest_run_or_the_one_asked_for(home, model, tmp_path):
    job = export_job(home, "train-reward", RewardConfig(), tmp_path / "job",
                     base_model=str(model))
    folder = JobFolder(job.folder)
    first, second = finish_job_run(folder, RunKind.REWARD), finish_job_run(folder,
                                                                          RunKind.REWARD)
    with Store(home.db_path) as store:
        newest = import_run(store, home.runs_dir, job.folder)
        assert (newest.job_run_id, newest.others) == (second, [first])
        older = import_run(store, home.runs_dir, job.folder, run_id=first)
        assert (older.job_run_id, older.others) == (first, [])
        with pytest.raises(JobError, match="has no reward-model run 9"):
            import_run(store, home.runs_dir, job.folder, run_id=9)
