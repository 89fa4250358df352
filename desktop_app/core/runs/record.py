"""What a run is: its kind, its status, its folder, and whether it left something usable.

Every job the app runs (generating pairs, training a reward model or a policy, evaluating) is
a row in the ``runs`` table. ``Store.get_run`` / ``list_runs`` return ``Run`` records, so the
rest of the app reads ``run.kind`` and ``run.config`` rather than dict keys, and compares with
``RunKind.PPO`` / ``RunStatus.COMPLETED`` rather than string literals. The enums are ``StrEnum``:
they are stored in SQLite and written to JSON as the plain strings they always were.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from desktop_app.core.errors import UserError


class RunKind(StrEnum):
    GENERATE = "generate"
    REWARD = "reward"
    PPO = "ppo"
    RLOO = "rloo"
    DPO = "dpo"
    EVAL = "eval"

    @property
    def noun(self) -> str:
        return _TITLES[self]

    @property
    def trains_policy(self) -> bool:
        """Its artifact is a policy adapter (policy/): evaluated, chatted with, exported and
        used for the next round's pairs alike, whichever method trained it."""
        return self in POLICY_KINDS

    @property
    def capitalized(self) -> str:
        """'PPO', 'Reward-model': ``noun`` at the start of a sentence (str.capitalize would
        write 'Ppo')."""
        return self.noun[:1].upper() + self.noun[1:]


_TITLES = {RunKind.GENERATE: "generate", RunKind.REWARD: "reward-model",
           RunKind.PPO: "PPO", RunKind.RLOO: "RLOO", RunKind.DPO: "DPO",
           RunKind.EVAL: "evaluation"}
# The methods whose result is a policy, in the order the app offers them.
POLICY_KINDS = (RunKind.PPO, RunKind.RLOO, RunKind.DPO)


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    JUDGING = "judging"          # a blind evaluation whose pairs wait for the person
    INTERRUPTED = "interrupted"  # its process died (kill -9, power loss) before it finished

    @property
    def resumable(self) -> bool:
        """Given a checkpoint, a run that stopped this way can go on."""
        return self in (RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.INTERRUPTED)


def run_folder_prefix(run_id: int) -> str:
    """How the folders of run ``run_id`` begin: ``0012-``."""
    return f"{int(run_id):04d}-"


def run_dir(runs_dir: str | os.PathLike, run_id: int, kind: str) -> Path:
    """The folder of run ``run_id`` of ``kind``: ``runs/0012-ppo``. The one place that names it."""
    return Path(runs_dir) / f"{run_folder_prefix(run_id)}{kind}"


def kinds_noun(kinds: tuple[RunKind, ...]) -> str:
    """'reward-model'; 'policy (PPO, RLOO or DPO)' for the policy kinds."""
    if len(kinds) == 1:
        return kinds[0].noun
    names = [k.noun for k in kinds]
    return f"policy ({', '.join(names[:-1])} or {names[-1]})" if set(kinds) == set(
        POLICY_KINDS) else " or ".join(names)


class UnusableRun(UserError):
    """A run that another step needs (a reward model for PPO, a policy to evaluate) is not
    there, not of the right kind, not completed, or lost its artifact."""


@dataclass(frozen=True)
class Run:
    id: int
    kind: RunKind
    status: RunStatus
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    artifact: str | None = None
    parent_run_id: int | None = None
    created_at: str = ""
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: dict, root: str | os.PathLike | None = None) -> "Run":
        """The record of a ``runs`` row. An artifact stored as a relative path (an exported
        job's workspace, which moves between machines: ``core/jobs``) is read under ``root``,
        the workspace's folder."""
        config = row.get("config") or "{}"
        artifact = row.get("artifact")
        if artifact and root is not None and not os.path.isabs(artifact):
            artifact = str(Path(root) / artifact)
        return cls(id=row["id"], kind=RunKind(row["kind"]), status=RunStatus(row["status"]),
                   config=json.loads(config) if isinstance(config, str) else dict(config),
                   error=row.get("error"), artifact=artifact,
                   parent_run_id=row.get("parent_run_id"), created_at=row.get("created_at", ""),
                   finished_at=row.get("finished_at"))

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready plain values (``runs --json``, exports)."""
        # In the table's column order: ``runs --json`` reads as it did when runs were rows.
        return {"id": self.id, "kind": str(self.kind), "config": self.config,
                "status": str(self.status), "error": self.error, "artifact": self.artifact,
                "parent_run_id": self.parent_run_id, "created_at": self.created_at,
                "finished_at": self.finished_at}

    def folder(self, runs_dir: str | os.PathLike) -> Path:
        return run_dir(runs_dir, self.id, self.kind)

    @property
    def resumable(self) -> bool:
        """Stopped in a way that can go on, given a checkpoint (``RunStatus.resumable``)."""
        return self.status.resumable

    @property
    def label(self) -> str:
        """'PPO run 7', 'reward-model run 3': how messages name a run."""
        return f"{self.kind.noun} run {self.id}"

    @property
    def policy_label(self) -> str:
        """How lists of policies name a policy run: 'PPO run 7 (reward run 3)', 'RLOO run 8
        (reward run 3)', 'DPO run 9' (DPO learns from the judgments: no reward model)."""
        if self.kind in (RunKind.PPO, RunKind.RLOO) and self.parent_run_id is not None:
            return f"{self.kind.noun} run {self.id} (reward run {self.parent_run_id})"
        return f"{self.kind.noun} run {self.id}"

    def usable_artifact(self) -> Path | None:
        """The artifact (adapter, policy, results) of a completed run when it is still on disk;
        None otherwise. The one test of "a run later steps can build on"."""
        if self.status != RunStatus.COMPLETED or not self.artifact:
            return None
        path = Path(self.artifact)
        # A reward model and a policy are PEFT adapter folders: usable with their config.
        adapter = self.kind == RunKind.REWARD or self.kind.trains_policy
        whole = path / "adapter_config.json" if adapter else path
        return path if whole.exists() else None

    def require_artifact(self, kind: RunKind | tuple[RunKind, ...], needed_for: str) -> Path:
        """``usable_artifact`` for a run that must be of ``kind`` (or of one of several kinds,
        e.g. ``POLICY_KINDS``), or an ``UnusableRun`` that says what is wrong with it and what
        ``needed_for`` needs."""
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = kinds_noun(kinds)
        if self.kind not in kinds:
            raise UnusableRun(f"Run {self.id} is a {self.kind.noun} run; {needed_for} needs a "
                              f"{wanted} run.")
        if self.status != RunStatus.COMPLETED:
            raise UnusableRun(f"{self.kind.capitalized} run {self.id} is {self.status}; "
                              f"{needed_for} needs a completed {wanted} run.")
        path = self.usable_artifact()
        if path is None:
            raise UnusableRun(f"The artifact of {self.label} is missing "
                              f"({self.artifact or 'none was recorded'}).")
        return path

