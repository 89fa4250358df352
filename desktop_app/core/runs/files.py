"""A run's files on disk, and deleting a run with them.

A run's folder is ``runs/NNNN-KIND`` in the workspace (``core.runs.record.run_dir``); its
artifact (adapter, policy, evaluation results) lives inside it. Deleting never leaves the
workspace's ``runs/`` folder: only direct children of it whose name starts with the run's
number are removed, a symbolic link is removed as a link (what it points to is left alone), and
an artifact anywhere else (say, a model exported to the desktop) is kept and reported.

``delete_run`` deletes the database rows first, in one transaction (``Store.delete_run``), then
the folders: a folder that cannot be removed is reported, and the run is gone either way, so
there is never a run half in the database.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from desktop_app.core.data.store import Store, StoreError
from desktop_app.core.errors import human_bytes as human_size
from desktop_app.core.runs.record import Run, RunKind, RunStatus, run_folder_prefix

__all__ = ["RunDeletion", "delete_run", "describe_deletion", "folder_size", "human_size",
           "run_folders"]


@dataclass
class RunDeletion:
    """What deleting a run removes (or, after ``delete_run``, removed)."""

    run_id: int
    kind: RunKind
    status: RunStatus
    metrics: int = 0
    comparisons: int = 0
    generations: int = 0
    children: list[int] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)          # artifacts outside runs/
    failed: list[tuple[Path, str]] = field(default_factory=list)  # folders not removed, why

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "kind": str(self.kind), "status": str(self.status),
                "metrics": self.metrics, "comparisons": self.comparisons,
                "generations": self.generations, "children": self.children,
                "folders": [str(p) for p in self.folders], "kept": [str(p) for p in self.kept],
                "failed": [{"path": str(p), "error": e} for p, e in self.failed]}


def _inside(path: Path, root: Path) -> Path | None:
    """``path`` relative to ``root`` when it lies inside it (no link followed), else None."""
    absolute = Path(os.path.abspath(path))
    for base in {Path(os.path.abspath(root)), root.resolve()}:
        try:
            rel = absolute.relative_to(base)
        except ValueError:
            continue
        if rel.parts and ".." not in rel.parts:
            return rel
    return None


def run_folders(runs_dir: str | os.PathLike, run: Run) -> tuple[list[Path], list[Path]]:
    """(folders of ``run`` under ``runs_dir`` that exist, artifacts of it kept because they lie
    outside ``runs_dir`` or in a folder that is not this run's)."""
    root = Path(runs_dir)
    prefix = run_folder_prefix(run.id)
    names = {run.folder(root).name}
    kept: list[Path] = []
    if run.artifact:
        rel = _inside(Path(run.artifact), root)
        if rel is not None and rel.parts[0].startswith(prefix):
            names.add(rel.parts[0])
        else:
            kept.append(Path(run.artifact))
    folders = []
    for name in sorted(names):
        if os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
            continue
        path = root / name
        if path.is_symlink() or path.exists():
            folders.append(path)
    return folders, kept


def folder_size(path: Path) -> int:
    """Bytes under ``path`` (links not followed); 0 when it cannot be read."""
    if path.is_symlink() or path.is_file():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)  # does not follow links inside the tree


def describe_deletion(store: Store, runs_dir: str | os.PathLike, run_id: int) -> RunDeletion:
    """What ``delete_run`` would remove, without removing anything. Raises StoreError for a
    run that does not exist or is still running."""
    run = store.get_run(run_id)
    if run is None:
        raise StoreError(f"there is no run {run_id}")
    counts = store.delete_run(run_id, dry_run=True)
    folders, kept = run_folders(runs_dir, run)
    return RunDeletion(run_id, run.kind, run.status, counts["metrics"],
                       counts["comparisons"], counts["generations"], counts["children"],
                       folders, kept)


def delete_run(store: Store, runs_dir: str | os.PathLike, run_id: int) -> RunDeletion:
    """Delete a run: its database rows in one transaction, then its folders under
    ``runs_dir``. Folders that could not be removed are listed in ``failed``."""
    plan = describe_deletion(store, runs_dir, run_id)
    store.delete_run(run_id)
    for folder in plan.folders:
        try:
            _remove(folder)
        except OSError as exc:
            plan.failed.append((folder, exc.strerror or str(exc)))
    return plan
