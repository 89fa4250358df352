"""``rlhf-desk import-run JOB``: a job's finished run joins the workspace it was exported from.

The run comes back as a completed run of its kind with its metrics, its artifact (the adapter
with its tokenizer, and a reward model's score statistics) and its lineage (the reward run of
PPO and RLOO, the policy runs whose pairs a reward model or DPO learnt from), under a new id.
Its config is the one asked for at export, with the base model's path here, plus what the run
recorded there (``world_size``, counts) and ``imported_from``: the job, its folder and the run's
id there, which also stops the same run being imported twice. Checkpoints stay in the job.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from desktop_app.core.data.store import Store
from desktop_app.core.jobs.folder import JobError, JobFolder
from desktop_app.core.runs.record import Run, RunKind, RunStatus, run_dir
from desktop_app.core.runs.session import write_json

# Files of the job's run folder that are its working state there, not its result.
LEFT_IN_THE_JOB = ("checkpoint", "checkpoint.old", "checkpoint.new")


@dataclass(frozen=True)
class ImportedRun:
    run: Run
    job_run_id: int
    metrics: int
    others: list[int]  # the job's other completed runs (launch.sh run more than once)


def import_run(store: Store, runs_dir: str | Path, job_dir: str | Path,
               run_id: int | None = None) -> ImportedRun:
    """The job's newest completed run, or its run ``run_id``, into the workspace."""
    folder = JobFolder(Path(job_dir).expanduser().resolve())
    job = folder.read()
    kind = folder.kind(job)
    done, others = _finished_run(folder, kind, run_id)
    _not_imported_yet(store, job, done)
    parent = _parent(store, job, kind)
    with Store(folder.workspace_dir / "rlhf.db") as there:
        points = [(p["step"], p["name"], p["value"], p["time"])
                  for p in there.metrics_since(done.id)[0]]
    artifact = done.folder(folder.workspace_dir / "runs") / Path(done.artifact).name
    if not artifact.is_dir():
        raise JobError(f"The job's {done.label} is completed but its {artifact.name} folder is "
                       f"missing from {artifact.parent}.")
    config = (done.config | job["config"]
              | {"base_model": job["base_model"],
                 "imported_from": {"job_id": job["job_id"], "folder": str(folder.root),
                                   "run_id": done.id,
                                   "base_model": done.config.get("base_model")}})
    if kind in (RunKind.REWARD, RunKind.DPO):  # the job's workspace had no policy runs
        config["policy_run_ids"] = list(job["source"].get("policy_run_ids") or [])

    runs = Path(runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    staging = runs / f".import-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(done.folder(folder.workspace_dir / "runs"), staging,
                        ignore=shutil.ignore_patterns(*LEFT_IN_THE_JOB))
        new_id = store.add_finished_run(
            kind, config, parent_run_id=parent, created_at=done.created_at,
            finished_at=done.finished_at,
            artifact_of=lambda rid: str(run_dir(runs, rid, kind) / artifact.name),
            metrics=points)
        try:
            # The folder's config.json, as a run of this workspace writes it.
            write_json(staging / "config.json", config | {"run_id": new_id})
            staging.rename(run_dir(runs, new_id, kind))
        except OSError:
            store.forget_run(new_id)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ImportedRun(store.get_run(new_id), done.id, len(points), others)


def _finished_run(folder: JobFolder, kind: RunKind,
                  run_id: int | None) -> tuple[Run, list[int]]:
    """The job's completed run (the newest, or ``run_id``) and its other completed runs, or
    an error that says where the job stands."""
    db = folder.workspace_dir / "rlhf.db"
    if not db.is_file():
        raise JobError(f"{folder.root} has no workspace/rlhf.db: it is not a whole job folder")
    with Store(db) as there:
        runs = [r for r in there.list_runs() if r.kind == kind]
    done = [r for r in runs if r.status == RunStatus.COMPLETED]
    if run_id is not None:
        runs = [r for r in runs if r.id == run_id]
        if not runs:
            raise JobError(f"The job in {folder.root} has no {kind.noun} run {run_id}.")
        done = [r for r in done if r.id == run_id]
    if done:
        return done[-1], [r.id for r in done[:-1]] if run_id is None else []
    if not runs:
        raise JobError(f"The job in {folder.root} has not run yet: start it with "
                       f"{folder.root / 'launch.sh'}, then import it.")
    last = runs[-1]
    if last.status == RunStatus.RUNNING:
        raise JobError(f"The job's {last.label} is still running; import it when it ends.")
    how = f"{last.status}" + (f" ({last.error.rstrip('.')})" if last.error else "")
    raise JobError(f"The job's {last.label} is {how}, not completed: continue it with "
                   f"`{folder.root / 'launch.sh'} --resume {last.id}`, then import it.")


def _not_imported_yet(store: Store, job: dict, done: Run) -> None:
    for run in store.list_runs():
        came = run.config.get("imported_from") or {}
        if came.get("job_id") == job["job_id"] and came.get("run_id") == done.id:
            raise JobError(f"That run was imported already, as {run.label}.")


def _parent(store: Store, job: dict, kind: RunKind) -> int | None:
    """PPO and RLOO: the reward run they were tuned against, which must be here. A reward
    model or DPO: the newest policy run whose pairs it learnt from, when it is still here."""
    source = job["source"]
    reward_id = source.get("reward_run_id")
    if reward_id is not None:
        reward = store.get_run(reward_id)
        if reward is None or reward.kind != RunKind.REWARD:
            raise JobError(f"The job was tuned against reward run {reward_id} of "
                           f"{source['workspace']}, and this workspace has no such reward run: "
                           "import it into the workspace it was exported from.")
        return reward_id
    policies = [r for r in source.get("policy_run_ids") or []
                if (run := store.get_run(r)) is not None and run.kind.trains_policy]
    return policies[-1] if policies else None
