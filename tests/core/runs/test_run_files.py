"""Deleting a run: database rows in one transaction, then its folders, never outside runs/."""

import os
from dataclasses import replace

import pytest

from desktop_app.core.data.store import GenerationIn, StoreError
from desktop_app.core.runs.files import delete_run, describe_deletion, run_folders


def _finished(store, kind, **kw):
    run = store.create_run(kind, kw.pop("config", {}), **kw)
    store.finish_run(run, "completed")
    return run


def test_delete_reward_run_with_folder_children_keep_but_lose_link(store, workspace):
    reward = _finished(store, "reward")
    store.add_metrics(reward, [(1, "train/loss", 1.0), (2, "train/loss", 0.5)])
    folder = workspace.runs_dir / f"{reward:04d}-reward"
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "weights.bin").write_bytes(b"x" * 10)
    store.set_run_artifact(reward, str(folder / "adapter"))
    ppo = _finished(store, "ppo", parent_run_id=reward)
    reward2 = _finished(store, "reward", config={"policy_run_ids": [ppo]}, parent_run_id=ppo)

    plan = describe_deletion(store, workspace.runs_dir, reward)
    assert (plan.metrics, plan.children, plan.folders) == (2, [ppo], [folder])
    assert folder.is_dir() and store.get_run(reward)   # describing deletes nothing

    done = delete_run(store, workspace.runs_dir, reward)
    assert done.failed == [] and not folder.exists()
    assert store.get_run(reward) is None and store.metrics(reward) == []
    assert store.get_run(ppo).parent_run_id is None
    assert describe_deletion(store, workspace.runs_dir, ppo).children == [reward2]


def test_running_run_is_refused_and_nothing_deleted(store, workspace):
    run = store.create_run("ppo", {})
    store.add_metrics(run, [(1, "objective/kl", 0.1)])
    folder = workspace.runs_dir / f"{run:04d}-ppo"
    folder.mkdir(parents=True)
    with pytest.raises(StoreError, match="still running"):
        delete_run(store, workspace.runs_dir, run)
    assert store.get_run(run) and store.metrics(run) and folder.is_dir()
    with pytest.raises(StoreError, match="no run 99"):
        delete_run(store, workspace.runs_dir, 99)
    assert store.get_run(run).status == "running"


def test_eval_run_takes_its_pairs_and_unshared_responses(store, workspace):
    policy = _finished(store, "ppo")
    ev = store.create_run("eval", {}, parent_run_id=policy)
    store.set_run_status(ev, "judging")
    pid = store.add_prompt("Held out")
    store.add_pairs([(pid, GenerationIn("a1", "m", run_id=ev), GenerationIn("b1", "m", run_id=ev)),
                     (pid, GenerationIn("a2", "m", run_id=ev), GenerationIn("b2", "m", run_id=ev))],
                    eval_run_id=ev)
    (first,) = store.add_pairs([(pid, GenerationIn("c", "m"), GenerationIn("d", "m"))])
    store.judge(first, "a")
    # A training pair that reuses one of the evaluation's responses keeps it.
    shared = store.db.execute("SELECT id FROM generations WHERE text = 'a1'").fetchone()[0]
    other = store.db.execute("SELECT id FROM generations WHERE text = 'c'").fetchone()[0]
    store.db.execute("INSERT INTO comparisons (prompt_id, generation_a_id, generation_b_id, "
                     "left_generation_id, created_at) VALUES (?, ?, ?, ?, 'now')",
                     [pid, shared, other, shared])
    store.db.conn.commit()

    plan = describe_deletion(store, workspace.runs_dir, ev)
    assert (plan.comparisons, plan.generations) == (2, 3)
    delete_run(store, workspace.runs_dir, ev)
    texts = {r[0] for r in store.db.execute("SELECT text FROM generations")}
    assert texts == {"a1", "c", "d"}
    assert store.db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 2
    assert store.stats()["judged"] == 1   # the training judgment is untouched


def test_never_leaves_the_runs_folder(store, workspace, tmp_path):
    outside = tmp_path / "exported-policy"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine", encoding="utf-8")
    run = _finished(store, "ppo")
    store.set_run_artifact(run, str(outside))
    # The run folder is a link to a folder outside: the link goes, the target stays.
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    workspace.runs_dir.mkdir()
    link = workspace.runs_dir / f"{run:04d}-ppo"
    os.symlink(target, link, target_is_directory=True)
    # Another run's folder, and an artifact path that climbs out with '..'.
    neighbour = workspace.runs_dir / f"{run + 1:04d}-ppo"
    neighbour.mkdir()
    folders, kept = run_folders(workspace.runs_dir, store.get_run(run))
    assert folders == [link] and kept == [outside]
    sneaky = replace(store.get_run(run), artifact=str(workspace.runs_dir / ".." / ".."))
    assert run_folders(workspace.runs_dir, sneaky)[0] == [link]
    other = replace(store.get_run(run), artifact=str(neighbour / "policy"))
    assert run_folders(workspace.runs_dir, other) == ([link], [neighbour / "policy"])

    done = delete_run(store, workspace.runs_dir, run)
    assert done.kept == [outside] and done.failed == []
    assert not os.path.lexists(link)
    assert (target / "keep.txt").exists() and (outside / "keep.txt").exists()
    assert neighbour.is_dir()


def test_folder_that_cannot_be_removed_is_reported_after_the_rows_are_gone(
        store, workspace, monkeypatch):
    from desktop_app.core.runs import files as run_files
    run = _finished(store, "reward")
    folder = workspace.runs_dir / f"{run:04d}-reward"
    folder.mkdir(parents=True)

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(run_files, "_remove", refuse)
    done = delete_run(store, workspace.runs_dir, run)
    assert done.failed == [(folder, "Permission denied")]
    assert store.get_run(run) is None and folder.is_dir()
