"""The CLI's commands for training elsewhere (``core/jobs``):

    export-job COMMAND [that command's options] OUT_DIR   a job folder for a cluster
    run-job JOB_DIR [--model DIR] [--resume RUN_ID]       what the folder's launch.sh runs
    import-run JOB_DIR                                    the finished run, back home

``run-job`` is the training command itself (``train-reward`` and so on, under torchrun or
not) with the settings from job.json, in the job's own workspace.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from desktop_app.core.jobs.folder import COMMANDS, NEEDS_REWARD, JobError, JobFolder
from desktop_app.core.wording import count


def cmd_export_job(args: argparse.Namespace, out) -> int:
    from desktop_app.cli import CliError, _config_from_args, _open_store
    from desktop_app.core.jobs.export import export_job
    from desktop_app.ml.planning.plan import CONFIGS
    command = args.job_command
    if getattr(args, "resume", None) is not None:
        raise CliError("export-job starts a new run; to continue an exported one, run its "
                       "launch.sh with --resume RUN_ID")
    if not args.model:
        raise CliError("--model is required: the base model the job trains on")
    if not (Path(args.model).expanduser() / "config.json").is_file():
        raise CliError(f"{args.model} is not a model folder (it has no config.json)")
    if command in NEEDS_REWARD and args.reward is None:
        raise CliError("--reward RUN_ID is required: the reward model the policy is tuned "
                       "against")
    cfg = _config_from_args(CONFIGS[command], args)
    workspace, store = _open_store(args)
    with store:
        _check_data(store, command, cfg)
    job = export_job(workspace, command, cfg, args.out_dir, base_model=args.model,
                     reward_run_id=getattr(args, "reward", None))
    what = (count(job.prompts, "prompt") if command in NEEDS_REWARD
            else count(job.pairs, "judged pair"))
    out.result({"folder": str(job.folder), "job_id": job.job["job_id"], "command": command,
                "pairs": job.pairs, "prompts": job.prompts},
               f"Wrote the {command} job ({what}) to {job.folder}.\n"
               f"Run it there with {job.folder / 'launch.sh'} (see its README.md), then bring "
               f"it back with `rlhf-desk --workspace {workspace.root} import-run "
               f"{job.folder}`.")
    return 0


def _check_data(store, command: str, cfg) -> None:
    """What the training command checks before it starts: refused here, not on the cluster."""
    if command == "train-reward":
        from desktop_app.ml.reward.pairs import check_reward_data
        check_reward_data(store, cfg)
    elif command == "train-dpo":
        from desktop_app.ml.dpo.judgments import check_dpo_data
        check_dpo_data(store, cfg)


def cmd_run_job(args: argparse.Namespace, out) -> int:
    from desktop_app import cli
    folder = JobFolder(Path(args.job_dir).expanduser().resolve())
    job = folder.read()
    command = job["command"]
    if args.workspace is None:
        args.workspace = str(folder.workspace_dir)
    if not (Path(args.workspace) / "rlhf.db").is_file():
        raise JobError(f"{args.workspace} holds no job workspace (rlhf.db is missing)")
    model = args.model or job["base_model"]
    if not (Path(model).expanduser() / "config.json").is_file():
        raise JobError(f"The base model {model} is not on this machine (no config.json there); "
                       "give its folder with --model (launch.sh: BASE_MODEL).")
    # The training command's own arguments, as if typed: the same checks, result and output.
    train_args = argparse.Namespace(**vars(args))
    config = dict(job["job_config"])
    if config.get("init_policy") and not os.path.isabs(config["init_policy"]):
        config["init_policy"] = str(folder.path_in(config["init_policy"]))
    for name, value in config.items():
        setattr(train_args, name, value)
    train_args.model = model
    train_args.reward = job["source"].get("reward_run_id")
    run = {"train-reward": cli.cmd_train_reward, "train-dpo": cli.cmd_train_dpo,
           "train-ppo": cli.cmd_train_ppo, "train-rloo": cli.cmd_train_rloo}[command]
    return run(train_args, out)


def cmd_import_run(args: argparse.Namespace, out) -> int:
    from desktop_app.cli import _open_store
    from desktop_app.core.jobs.importing import import_run
    workspace, store = _open_store(args)
    with store:
        imported = import_run(store, workspace.runs_dir, args.job_dir, run_id=args.run)
    run = imported.run
    others = (f" The job has other completed runs ({', '.join(map(str, imported.others))}): "
              "import one with --run RUN_ID." if imported.others else "")
    out.result(run.to_dict() | {"job_run_id": imported.job_run_id,
                                "metrics": imported.metrics},
               f"Imported the job's run {imported.job_run_id} as {run.label} "
               f"({count(imported.metrics, 'metric point')}).{others}\n"
               f"{run.kind.capitalized if run.kind.trains_policy else 'Reward model'}: "
               f"{run.artifact}")
    return 0


def add_job_commands(command, sub_parser_class, add_common, train_options: dict) -> None:
    """The three commands, on the CLI's parser (``command`` adds one)."""
    p = command("export-job", cmd_export_job,
                "write a training job to a folder that trains on another machine (a cluster, "
                "a multi-GPU workstation) with torchrun: `export-job COMMAND [that command's "
                "options] OUT_DIR`, e.g. `export-job train-dpo --model DIR --epochs 2 job/`; "
                "bring the run back with import-run")
    jobs = p.add_subparsers(dest="job_command", metavar="COMMAND",
                            parser_class=sub_parser_class, required=True)
    for name in COMMANDS:
        job = jobs.add_parser(name, help=f"a {name} job",
                              description=f"A job folder that runs `rlhf-desk {name}` with "
                                          "these options elsewhere.")
        add_common(job, top=False)
        train_options[name](job)
        for action in job._actions:  # a job starts a new run; launch.sh --resume continues it
            if action.dest == "resume":
                action.help = argparse.SUPPRESS
        job.add_argument("out_dir", metavar="OUT_DIR",
                         help="the job folder to write (new, or empty)")

    p = command("run-job", cmd_run_job,
                "run an exported job (what its launch.sh runs, under torchrun or not): the "
                "training command with the job's settings, in the job's workspace")
    p.add_argument("job_dir", metavar="JOB_DIR")
    p.add_argument("--model", help="the base model's folder on this machine (default: its "
                                   "path where the job was exported)")
    p.add_argument("--resume", type=int, metavar="RUN_ID",
                   help="continue the job's cancelled or interrupted run from its checkpoint")

    p = command("import-run", cmd_import_run,
                "bring an exported job's finished run into this workspace: metrics, artifact "
                "and lineage (it then shows on the Runs page like any run)")
    p.add_argument("job_dir", metavar="JOB_DIR")
    p.add_argument("--run", type=int, metavar="RUN_ID",
                   help="which completed run of the job (its id in the job's workspace; "
                        "default: the newest)")
