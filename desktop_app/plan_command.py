"""``rlhf-desk plan COMMAND [that command's options]``: the memory plan of a job, from the same
options the job itself takes, with the workspace's own prompt and pair lengths."""

from __future__ import annotations

import argparse

from desktop_app.core.runs.record import RunKind
from desktop_app.ml.planning.plan import CONFIGS, Job, Plan, pair_tokens, plan_job, prompt_tokens


def plan_from_args(args: argparse.Namespace) -> Plan:
    from desktop_app.cli import CliError, _config_from_args, _open_store

    command = args.plan_command
    _, store = _open_store(args)
    with store:
        resume = getattr(args, "resume", None)
        if resume is not None:  # a resumed run keeps its own settings and base model
            run = store.get_run(resume)
            if run is None:
                raise CliError(f"there is no run {resume}")
            config = CONFIGS[command].from_dict(run.config)
            model = args.model or run.config.get("base_model")
        else:
            config = _config_from_args(CONFIGS[command], args)
            model = args.model
        reward_rank = None
        if command in ("train-ppo", "train-rloo") and args.reward is not None:
            reward_rank = _lora_rank(store, args.reward, RunKind.REWARD, CliError)
        if command == "evaluate":
            model = model or _evaluated_base(store, args, CliError)
            reward = args.reward if args.reward is not None else _newest_reward(store)
            reward_rank = _lora_rank(store, reward, RunKind.REWARD, CliError) if reward else None
        if not model:
            raise CliError("--model is required: the plan needs the base model's size")
        job = Job(command, model, config, device=getattr(args, "device", "auto"),
                  dtype=getattr(args, "dtype", "auto"),
                  quantize=getattr(args, "quantize", "none") or "none",
                  prompt_tokens=prompt_tokens(store, model),
                  pair_tokens=pair_tokens(store, model),
                  reward_rank=reward_rank)
    return plan_job(job)


def _lora_rank(store, run_id: int, kind: RunKind, error: type) -> int:
    run = store.get_run(run_id)
    if run is None or run.kind != kind:
        raise error(f"run {run_id} is not a {kind.value} run")
    return int(run.config.get("lora_r") or 16)


def _newest_reward(store) -> int | None:
    runs = store.finished_runs(RunKind.REWARD)
    return runs[-1].id if runs else None


def _evaluated_base(store, args: argparse.Namespace, error: type) -> str | None:
    """The base model of the PPO run being evaluated (what `evaluate` uses by default)."""
    from desktop_app.ml.evaluation.run import parse_policy

    for text in (args.a, args.b):
        run_id = parse_policy(text)
        if run_id is not None:
            run = store.get_run(run_id)
            if run is None:
                raise error(f"there is no run {run_id}")
            return run.config.get("base_model")
    return None
