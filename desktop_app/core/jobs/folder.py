"""What a job folder holds and how it is read.

    JOB/
      job.json        what to run: the command, its config as the job runs it and as it was
                      asked for, the base model's path where it was exported, and where the
                      job comes from (workspace, reward run, the policy runs in its data)
      workspace/      a workspace with only what the job reads, under the ids it has at home
                      (so the job splits and orders its data as it would there); the job's
                      run is written here
      data/           the same data in TRL's format, for reading or for TRL itself
      reward/         PPO and RLOO: the reward model (also registered in workspace/)
      init_policy/    when the job starts from a policy adapter
      launch.sh, slurm.sbatch, README.md
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_app.core.errors import UserError
from desktop_app.core.runs.record import RunKind

FORMAT = 1
JOB_FILE = "job.json"

# The commands a job can run, and the kind of run each records.
COMMANDS: dict[str, RunKind] = {"train-reward": RunKind.REWARD, "train-dpo": RunKind.DPO,
                                "train-ppo": RunKind.PPO, "train-rloo": RunKind.RLOO}
NEEDS_REWARD = ("train-ppo", "train-rloo")


class JobError(UserError):
    """A job folder that cannot be written, read, run or imported (the message says which
    folder and why)."""


@dataclass(frozen=True)
class JobFolder:
    root: Path

    @property
    def job_file(self) -> Path:
        return self.root / JOB_FILE

    @property
    def workspace_dir(self) -> Path:
        return self.root / "workspace"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def read(self) -> dict[str, Any]:
        """job.json, checked enough that a later KeyError cannot happen."""
        try:
            job = json.loads(self.job_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise JobError(f"{self.root} is not a job folder: it has no {JOB_FILE} (make one "
                           "with `rlhf-desk export-job`)") from None
        except (OSError, ValueError) as exc:
            raise JobError(f"{self.job_file} cannot be read: {exc}") from None
        if not isinstance(job, dict) or job.get("format") != FORMAT:
            raise JobError(f"{self.job_file} is not a job file this version of RLHF Desk "
                           f"reads (format {FORMAT})")
        missing = [k for k in ("job_id", "command", "config", "job_config", "base_model",
                               "source") if k not in job]
        if missing or job["command"] not in COMMANDS:
            what = f"misses {', '.join(missing)}" if missing else \
                f"names an unknown command {job['command']!r}"
            raise JobError(f"{self.job_file} {what}")
        return job

    def kind(self, job: dict[str, Any]) -> RunKind:
        return COMMANDS[job["command"]]

    def path_in(self, relative: str) -> Path:
        """A path job.json gives relative to the job folder, wherever the folder now is."""
        return self.root / relative
