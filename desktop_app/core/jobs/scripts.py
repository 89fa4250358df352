"""The files of a job folder a person runs or reads: ``launch.sh`` (torchrun on one node of
NNODES, settings from the environment), ``slurm.sbatch`` (an example around it) and
``README.md``."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from desktop_app.core.jobs.folder import JobFolder

LAUNCH = r"""#!/usr/bin/env bash
# RLHF Desk job {job_id}: {command} on {model_name}, exported {exported_at}.
# Run it once on every node; it starts one training process per GPU with torchrun (NCCL on
# GPUs, gloo on the CPU). The trained run is written to workspace/ (node 0's), for
# `rlhf-desk import-run THIS_FOLDER` on the machine the job came from. See README.md.
#
# Settings, from the environment:
#   BASE_MODEL         the base model's folder on this machine
#                      (default: {base_model})
#   NNODES             how many machines take part (default 1)
#   NODE_RANK          this machine's number, 0 to NNODES-1 (default 0); node 0 writes the run
#   NPROC_PER_NODE     processes on this machine, one per GPU (default: every visible GPU;
#                      1 on a machine without one)
#   MASTER_ADDR        the address of node 0 (default 127.0.0.1)
#   MASTER_PORT        a free port on node 0 (default 29500)
#   RLHF_DESK_SCRATCH  a node-local folder to train in (SQLite must not be shared between
#                      machines over a network file system); node 0 copies its workspace back
#   RLHF_DESK          the rlhf-desk command (default: rlhf-desk on PATH)
#   TORCHRUN           the torchrun command (default: torchrun on PATH)
# Arguments go to `rlhf-desk run-job`: e.g. `./launch.sh --resume RUN_ID` continues a run
# that was cancelled or interrupted from its last checkpoint.
set -euo pipefail
JOB="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
BASE_MODEL="${{BASE_MODEL:-{base_model_sh}}}"
NNODES="${{NNODES:-1}}"
NODE_RANK="${{NODE_RANK:-0}}"
MASTER_ADDR="${{MASTER_ADDR:-127.0.0.1}}"
MASTER_PORT="${{MASTER_PORT:-29500}}"
RLHF_DESK="${{RLHF_DESK:-$(command -v rlhf-desk || true)}}"
TORCHRUN="${{TORCHRUN:-torchrun}}"
if [ -z "${{NPROC_PER_NODE:-}}" ]; then
  NPROC_PER_NODE="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
  [ "${{NPROC_PER_NODE:-0}}" -gt 0 ] || NPROC_PER_NODE=1
fi
if [ -z "$RLHF_DESK" ]; then
  echo "launch.sh: rlhf-desk is not on PATH; install RLHF Desk or set RLHF_DESK" >&2
  exit 2
fi
if [ ! -d "$BASE_MODEL" ]; then
  echo "launch.sh: the base model $BASE_MODEL is not on this machine; set BASE_MODEL" >&2
  exit 2
fi

WORKSPACE="$JOB/workspace"
if [ -n "${{RLHF_DESK_SCRATCH:-}}" ]; then
  WORKSPACE="$RLHF_DESK_SCRATCH/rlhf-desk-job-{job_id}/workspace"
  rm -rf "$WORKSPACE"
  mkdir -p "$(dirname "$WORKSPACE")"
  cp -a "$JOB/workspace" "$WORKSPACE"
fi

status=0
"$TORCHRUN" --nnodes "$NNODES" --node-rank "$NODE_RANK" --nproc-per-node "$NPROC_PER_NODE" \
  --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
  "$RLHF_DESK" --workspace "$WORKSPACE" run-job "$JOB" --model "$BASE_MODEL" "$@" || status=$?

if [ -n "${{RLHF_DESK_SCRATCH:-}}" ] && [ "$NODE_RANK" = 0 ]; then
  cp -a "$WORKSPACE/." "$JOB/workspace/"  # the run, its metrics and checkpoints come home
fi
exit "$status"
"""

SLURM = r"""#!/usr/bin/env bash
# An example Slurm batch script for RLHF Desk job {job_id} ({command} on {model_name}).
# Adjust the nodes, GPUs, time and the Python environment to your cluster, then submit it from
# the job folder:  cd THIS_FOLDER && sbatch slurm.sbatch
#SBATCH --job-name=rlhf-desk-{kind}
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%j.out
set -euo pipefail
# source ~/venvs/rlhf-desk/bin/activate    # wherever RLHF Desk is installed

JOB="${{SLURM_SUBMIT_DIR:-$PWD}}"
export BASE_MODEL="${{BASE_MODEL:-/path/to/{model_name}}}"
export NNODES="$SLURM_JOB_NUM_NODES"
export NPROC_PER_NODE="${{SLURM_GPUS_ON_NODE:-4}}"
export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export MASTER_PORT="${{MASTER_PORT:-29500}}"
# Node-local disk: each node trains on its own copy of the job's workspace.
export RLHF_DESK_SCRATCH="${{SLURM_TMPDIR:-${{TMPDIR:-/tmp}}}}"

# One launcher per node; each learns its node number from Slurm.
srun --ntasks-per-node=1 bash -c 'NODE_RANK="$SLURM_NODEID" exec "$0/launch.sh" "$@"' "$JOB" "$@"
"""

README = """# RLHF Desk job `{job_id}`

`{command}` on `{model_name}`, exported {exported_at} from the workspace `{workspace}`
(RLHF Desk {version}). {what}

## What is here

- `job.json`: the command, its settings (`config` as asked, `job_config` as the job runs
  them), the base model's path where the job was exported, and where the job comes from.
- `workspace/`: an RLHF Desk workspace with only what the job reads, under the ids it has at
  home, so the job splits and orders its data as it would there. The trained run is written
  here.
- `data/`: {data}.
{reward_row}{init_row}- `launch.sh`: the job under `torchrun`, one process per GPU; run it once
  on every node.
- `slurm.sbatch`: an example Slurm batch script around `launch.sh`.

## Run it

Each machine needs RLHF Desk {version} installed (as on the machine the job came from) and
the base model `{model_name}`: copy its folder there and name it with `BASE_MODEL`. No network
is used. `--batch-size` and the other settings in `job.json` are the whole step's, whatever
the number of processes: each process computes its share.

One machine with all its GPUs:

    BASE_MODEL=/models/{model_name} ./launch.sh

Two machines with 4 GPUs each (run on both, with `NODE_RANK` 0 and 1):

    BASE_MODEL=/models/{model_name} NNODES=2 NODE_RANK=0 NPROC_PER_NODE=4 \\
      MASTER_ADDR=node0.example MASTER_PORT=29500 ./launch.sh

With Slurm: edit `slurm.sbatch` (nodes, GPUs, the Python environment), then
`cd` here and `sbatch slurm.sbatch`.

Settings (all from the environment, see the top of `launch.sh`): `BASE_MODEL`, `NNODES`,
`NODE_RANK`, `NPROC_PER_NODE`, `MASTER_ADDR`, `MASTER_PORT`, and `RLHF_DESK_SCRATCH`: a
node-local folder to train in. Use it whenever the job folder is on a network file system
shared by several machines: SQLite must not be written from several machines, so each node
trains on its own copy and node 0 copies its workspace back here at the end.

Progress is printed by rank 0. `Ctrl+C` (or `scancel`) stops every process at the end of a
step and keeps a checkpoint; `./launch.sh --resume RUN_ID` continues it with the same number
of processes. If a process dies, the run is marked interrupted and resumes the same way.

## Bring the result home

Copy this folder back to the machine the job came from (or leave it where that machine reads
it), then, there:

    rlhf-desk --workspace {workspace} import-run {home}

(with the folder's path, wherever it came back to).

The run joins the workspace with its metrics, its {artifact} and its lineage: it shows on the
Runs page with its charts and can be evaluated and used for the next round like any other run.
"""


def write_scripts(folder: JobFolder, job: dict[str, Any], home: Path) -> None:
    """The three files, for the job folder that will be at ``home`` where it is exported."""
    values = _values(job, home)
    for name, text, executable in (("launch.sh", LAUNCH, True), ("slurm.sbatch", SLURM, True),
                                   ("README.md", README, False)):
        path = folder.root / name
        path.write_text(text.format(**values), encoding="utf-8")
        if executable:
            os.chmod(path, path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _values(job: dict[str, Any], home: Path) -> dict[str, str]:
    source = job["source"]
    command = job["command"]
    reward = source.get("reward_run_id")
    if reward is not None:
        what = (f"It tunes a policy against reward run {reward} on {source['prompts']} "
                "prompts.")
        data = "`prompts.jsonl`: the prompts, in TRL's prompt-only format (`{\"prompt\": ...}`)"
        reward_row = (f"- `workspace/runs/{int(reward):04d}-reward/`: reward run {reward}'s "
                      "adapter and score statistics.\n")
    else:
        what = f"It learns from {source['pairs']} judged pairs."
        data = ("`preferences.jsonl`: the judged pairs in TRL's preference format "
                "(`prompt`/`chosen`/`rejected`; ties, which TRL cannot say, are left out)")
        reward_row = ""
    init_row = ("- `init_policy/`: the policy adapter the job starts from.\n"
                if job["job_config"].get("init_policy") else "")
    base = job["base_model"]
    return {"job_id": job["job_id"], "command": command, "kind": job["kind"],
            "model_name": Path(base).name, "base_model": base,
            "base_model_sh": base.replace("\\", "\\\\").replace('"', '\\"').replace(
                "$", "\\$").replace("`", "\\`"),
            "exported_at": job["exported_at"], "workspace": source["workspace"],
            "version": job["rlhf_desk_version"], "what": what, "data": data,
            "reward_row": reward_row, "init_row": init_row,
            "home": str(home),
            "artifact": "reward model" if command == "train-reward" else "policy"}
