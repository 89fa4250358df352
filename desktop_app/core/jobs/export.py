"""``rlhf-desk export-job``: a training job as a folder that trains where the workspace is not.

The folder (``folder.py`` lists it) holds a workspace cut down to what the job reads, with the
ids its rows have at home: the reward model and DPO split their pairs by prompt id and order
them by comparison id, so the job trains on exactly the split and order it would train on here.
The data also goes out in TRL's format (``data/``), the reward model of PPO and RLOO is copied
into the job's workspace (its artifact path stored relative to that workspace, which moves
between machines), and ``scripts.py`` writes the launcher, a Slurm example and a README.

The folder is built beside its target and renamed into place at the end: a failure leaves no
half-written job.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_app import __version__
from desktop_app.core.config import TrainingConfig
from desktop_app.core.data.exports import export_judgments
from desktop_app.core.data.store import Store, now_iso
from desktop_app.core.jobs.folder import COMMANDS, FORMAT, NEEDS_REWARD, JobError, JobFolder
from desktop_app.core.jobs.scripts import write_scripts
from desktop_app.core.runs.lineage import policy_runs_in_data
from desktop_app.core.runs.record import RunKind, run_dir


@dataclass(frozen=True)
class ExportedJob:
    folder: Path
    job: dict[str, Any]
    pairs: int      # preference pairs in the job's data (reward model, DPO)
    prompts: int    # prompts (PPO, RLOO)


def export_job(workspace, command: str, cfg: TrainingConfig, out_dir: str | Path, *,
               base_model: str, reward_run_id: int | None = None) -> ExportedJob:
    """Write the job ``command`` with ``cfg`` (validated) on ``base_model`` to the new or empty
    folder ``out_dir``. The caller has checked the workspace's data as the command would."""
    if command not in COMMANDS:
        raise JobError(f"export-job runs {', '.join(COMMANDS)}; not {command}")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise JobError(f"{out} already exists and is not empty; give a new folder for the job")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
    except OSError as exc:
        raise JobError(f"cannot create the job folder {out}: {exc.strerror}") from None
    try:
        job, pairs, prompts = _build(JobFolder(partial), out, workspace, command, cfg,
                                     base_model=base_model, reward_run_id=reward_run_id)
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return ExportedJob(out, job, pairs, prompts)


def _build(folder: JobFolder, home: Path, workspace, command: str, cfg: TrainingConfig, *,
           base_model: str, reward_run_id: int | None) -> tuple[dict, int, int]:
    job_config = cfg.to_dict()
    source: dict[str, Any] = {"workspace": str(workspace.root), "reward_run_id": None,
                              "policy_run_ids": []}
    ws = folder.workspace_dir
    (ws / "runs").mkdir(parents=True)
    with Store(workspace.db_path) as at_home:
        reward = None
        if command in NEEDS_REWARD:
            reward = _reward_run(at_home, reward_run_id, COMMANDS[command])
            source["reward_run_id"] = reward.id
        else:
            source["policy_run_ids"] = policy_runs_in_data(at_home)
        _copy_database(at_home, ws / "rlhf.db")
    with Store(ws / "rlhf.db") as store:
        if command in NEEDS_REWARD:
            prompt_ids = _chosen_prompts(store, cfg)
            _keep_prompts_only(store, prompt_ids, keep_run=reward.id)
            # The job's workspace holds exactly the chosen prompts, none held out.
            job_config.update(prompts="all", prompt_file="")
            _copy_reward_model(store, ws, reward)
            prompts, pairs = len(prompt_ids), 0
            _write_prompts(store, folder.data_dir / "prompts.jsonl")
        else:
            _keep_judgments_only(store)
            prompts = 0
            folder.data_dir.mkdir()
            pairs = export_judgments(store, folder.data_dir / "preferences.jsonl").pairs
    _vacuum(ws / "rlhf.db")
    if getattr(cfg, "init_policy", ""):
        shutil.copytree(Path(cfg.init_policy).expanduser(), folder.path_in("init_policy"))
        job_config["init_policy"] = "init_policy"  # relative: run-job reads it in the folder
    job = {"format": FORMAT, "job_id": uuid.uuid4().hex, "command": command,
           "kind": str(COMMANDS[command]), "config": cfg.to_dict(), "job_config": job_config,
           "base_model": str(Path(base_model).expanduser().resolve()),
           "exported_at": now_iso(), "rlhf_desk_version": __version__,
           "source": source | {"pairs": pairs, "prompts": prompts}}
    folder.job_file.write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")
    write_scripts(folder, job, home)
    return job, pairs, prompts


def _reward_run(store: Store, run_id: int | None, kind: RunKind):
    run = store.get_run(run_id) if run_id is not None else None
    if run is None:
        raise JobError(f"There is no reward run {run_id}.")
    run.require_artifact(RunKind.REWARD, f"a {kind.noun} job")
    return run


def _copy_database(store: Store, path: Path) -> None:
    """A consistent snapshot, even while the app writes judgments (SQLite's backup API)."""
    target = sqlite3.connect(str(path))
    try:
        store.db.conn.backup(target)
    finally:
        target.close()


def _keep_judgments_only(store: Store) -> None:
    """What the reward model and DPO read: the training judgments, their responses and
    prompts. Blind-evaluation pairs added to training stay (without their evaluation)."""
    with store.db.atomic():
        _drop_history_and_runs(store, keep_run=None)
        store.db.execute("DELETE FROM comparisons WHERE training = 0 OR choice IS NULL")
        store.db.execute("DELETE FROM generations WHERE id NOT IN (SELECT generation_a_id FROM "
                         "comparisons UNION SELECT generation_b_id FROM comparisons)")
        store.db.execute("DELETE FROM prompts WHERE id NOT IN (SELECT prompt_id FROM "
                         "comparisons)")


def _chosen_prompts(store: Store, cfg) -> list[int]:
    """The prompts PPO or RLOO would train on here (``ml/ppo/train._prompts``): a prompt
    file's, or the workspace's that are not held out (only the unjudged ones if asked)."""
    if cfg.prompt_file:
        from desktop_app.core.data.formats import FormatError, parse_file
        try:
            parsed = parse_file(cfg.prompt_file)
        except FormatError as exc:
            raise JobError(str(exc)) from None
        if parsed.pairs:
            raise JobError(f"{Path(cfg.prompt_file).name} holds preference pairs, not prompts.")
        store.add_prompts([(p.text, p.messages) for p in parsed.prompts],
                          source=Path(cfg.prompt_file).name)
        by_text = {r["text"]: r["id"] for r in store.list_prompts()}
        ids = [by_text[p.text.strip()] for p in parsed.prompts if p.text.strip() in by_text]
    else:
        ids = [r["id"] for r in store.list_prompts()
               if not r["held_out"] and (cfg.prompts == "all" or not r["judged"])]
    if not ids:
        raise JobError("The job has no prompts to train on: the workspace has none that are "
                       "not held out" + (" and not judged" if cfg.prompts == "unjudged" else "")
                       + "; import some first.")
    return ids


def _keep_prompts_only(store: Store, prompt_ids: list[int], keep_run: int) -> None:
    with store.db.atomic():
        _drop_history_and_runs(store, keep_run=keep_run)
        store.db.execute("DELETE FROM comparisons")
        store.db.execute("DELETE FROM generations")
        store.db.execute("CREATE TEMP TABLE keep (id INTEGER PRIMARY KEY)")
        store.db.conn.executemany("INSERT INTO keep VALUES (?)", [(i,) for i in prompt_ids])
        store.db.execute("DELETE FROM prompts WHERE id NOT IN (SELECT id FROM keep)")
        store.db.execute("UPDATE prompts SET held_out = 0")
        store.db.execute("DROP TABLE keep")


def _drop_history_and_runs(store: Store, keep_run: int | None) -> None:
    """Judgment history, claims and every run but ``keep_run`` go: the job needs none of them.
    Pairs of an evaluation that were added to training lose the evaluation first, or deleting
    the run would delete them too."""
    store.db.execute("DELETE FROM judgment_changes")
    store.db.execute("DELETE FROM prompt_claims")
    store.db.execute("UPDATE comparisons SET eval_run_id = NULL WHERE training = 1")
    store.db.execute("UPDATE runs SET parent_run_id = NULL")
    store.db.execute("DELETE FROM runs WHERE id IS NOT ?", [keep_run])


def _copy_reward_model(store: Store, ws: Path, reward) -> None:
    """The reward run's adapter and score statistics, into the job's workspace under the
    run's own folder name; the artifact path is stored relative to the workspace."""
    adapter = Path(reward.artifact)
    folder = run_dir(ws / "runs", reward.id, reward.kind)
    shutil.copytree(adapter, folder / adapter.name)
    stats = adapter.parent / "reward_stats.json"
    if stats.exists():
        shutil.copy2(stats, folder / stats.name)
    relative = (folder / adapter.name).relative_to(ws).as_posix()
    with store.db.atomic():
        store.db.execute("UPDATE runs SET artifact = ? WHERE id = ?", [relative, reward.id])
        store.db.execute("DELETE FROM metrics WHERE run_id = ?", [reward.id])


def _write_prompts(store: Store, path: Path) -> None:
    """TRL's prompt-only format: ``{"prompt": text}``, or the chat messages."""
    path.parent.mkdir(exist_ok=True)
    lines = []
    for row in store.list_prompts():
        full = store.get_prompt(row["id"])
        messages = json.loads(full["messages"]) if full.get("messages") else None
        lines.append(json.dumps({"prompt": messages or row["text"]}, ensure_ascii=False))
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _vacuum(path: Path) -> None:
    """Deleted rows leave free pages (and their text) in the file: the copy shrinks to what
    the job reads."""
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    finally:
        conn.close()
