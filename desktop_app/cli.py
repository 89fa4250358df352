"""``rlhf-desk``: the GUI with no subcommand, and the same jobs headless for scripts and tests.

Every command takes ``--workspace DIR`` and ``--json`` before or after its name. With ``--json``
the last line on stdout is one JSON object with the result. Errors exit non-zero with one line
on stderr, never a traceback (set RLHF_DESK_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from desktop_app import __version__
from desktop_app.core.errors import UserError, describe
from desktop_app.core.runs.record import Run, RunKind, RunStatus
from desktop_app.core.wording import count

# No network, ever: set before transformers / huggingface_hub are imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# transformers' own tqdm bars would interleave with our progress line (and the GUI has its own).
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# transformers' GGUF reader draws its own tqdm bar, which only tqdm's variable (read when tqdm is
# first imported) turns off.
os.environ.setdefault("TQDM_DISABLE", "1")


class CliError(UserError):
    """A user-facing failure: printed as one line, exit status 1."""


# -- output helpers -----------------------------------------------------------------------

class Output:
    def __init__(self, as_json: bool, quiet: bool = False):
        self.as_json = as_json
        self.quiet = quiet  # a torchrun rank other than 0: rank 0 speaks for the job

    def info(self, text: str) -> None:
        """Human-readable lines; with --json they go to stderr so stdout stays parseable."""
        if not self.quiet:
            print(text, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def result(self, data: dict, text: str) -> None:
        if self.quiet:
            return
        if self.as_json:
            # Strict JSON: a NaN or infinity (a diverged metric, a config stored by an older
            # version) is written as null, never as the bare NaN that JSON parsers reject.
            print(json.dumps(_finite(data), ensure_ascii=False, allow_nan=False), flush=True)
        else:
            print(text, flush=True)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self) -> None:
        self._last = 0.0
        self._shown = False
        self.tty = sys.stderr.isatty()

    def __call__(self, event: Any) -> None:
        from desktop_app.core.events import Log, Progress
        if isinstance(event, Log):
            self.close()
            print(event.message, file=sys.stderr, flush=True)
            return
        if not isinstance(event, Progress):
            return
        now = time.monotonic()
        final = event.total and event.done >= event.total
        if now - self._last < 0.1 and not final:
            return
        self._last = now
        if event.total:
            filled = int(30 * event.done / event.total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {event.done}/{event.total}"
        else:
            bar = f"[{event.done}]"
        rate = event.extra.get("tokens_per_s")
        line = f"{bar} {event.message}" + (f" ({rate:.0f} tok/s)" if rate else "")
        if self.tty:
            print("\r" + line[:120].ljust(120), end="", file=sys.stderr, flush=True)
            self._shown = True
        elif final or now - getattr(self, "_printed", 0) > 5:
            self._printed = now
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._shown:
            print(file=sys.stderr, flush=True)
            self._shown = False


# -- commands -----------------------------------------------------------------------------

def _open_workspace(args: argparse.Namespace):
    from desktop_app.core.workspace import Workspace, resolve_workspace_dir
    return Workspace.open(resolve_workspace_dir(args.workspace))


def _open_store(args: argparse.Namespace):
    from desktop_app.core.data.store import Store
    workspace = _open_workspace(args)
    return workspace, Store(workspace.db_path)


def cmd_gui(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.gui.start import exit_on_ctrl_c
    exit_on_ctrl_c()  # before Qt is imported: see gui/start.py
    from desktop_app.gui.app import run_gui
    return run_gui(_open_workspace(args), model=getattr(args, "model", None))


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.workspace import Workspace, default_demo_dir
    from desktop_app.ml.models.demo import ensure_demo_workspace
    workspace = Workspace.open(args.workspace or default_demo_dir())
    bar = ProgressBar()
    out.info(f"Demo workspace: {workspace.root}")
    info = ensure_demo_workspace(workspace, emit=bar)
    bar.close()
    data = {"workspace": str(workspace.root), "model": info.model_path, "built": info.built,
            "build_seconds": round(info.seconds, 1), "prompts_added": info.prompts_added}
    if args.no_gui:
        out.result(data, f"Demo model ready at {info.model_path}"
                         + (f" (built in {info.seconds:.0f} s)" if info.built else " (cached)"))
        return 0
    from desktop_app.gui.start import exit_on_ctrl_c
    exit_on_ctrl_c()  # before Qt is imported: see gui/start.py
    from desktop_app.gui.app import run_gui
    return run_gui(workspace, model=info.model_path)


def cmd_import(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.data.importing import import_file
    _, store = _open_store(args)
    with store:
        report = import_file(store, args.file, max_chars=args.max_chars)
    for problem in report.problems[:50]:
        out.info(f"  skipped {problem}")
    if len(report.problems) > 50:
        out.info(f"  … and {len(report.problems) - 50} more malformed rows")
    out.result(report.to_dict(), report.summary())
    if report.malformed and not (report.imported or report.skipped):
        # Nothing usable at all: a script must not take that for success.
        print(f"rlhf-desk: error: {Path(args.file).name}: nothing imported, every row is "
              f"malformed ({report.malformed})", file=sys.stderr)
        return 1
    return 0


def cmd_generate(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.config import SamplingConfig
    from desktop_app.core.runs.session import RunSession
    from desktop_app.ml.generation.pair_job import generate_pending_pairs
    from desktop_app.ml.models.loader import load_model
    cfg = _config_from_args(SamplingConfig, args)
    _, store = _open_store(args)
    with store:
        bar = ProgressBar()
        lm = load_model(args.model, device=args.device, dtype=args.dtype,
                        trust_remote_code=args.trust_remote_code, emit=bar,
                        adapter=args.adapter, versus_base=args.versus_base,
                        quantize=args.quantize)
        bar.close()
        if not store.prompts_without_pairs(1, model=lm.path, adapter=lm.adapter):
            raise CliError("every prompt already has a pair from this model; import more "
                           "prompts, or generate from a tuned policy with --adapter")
        if args.versus_base and not args.adapter:
            raise CliError("--versus-base needs --adapter (the tuned policy to pit against "
                           "the base)")
        session = RunSession.start(store, None, RunKind.GENERATE, {
            "model": lm.path, "adapter": lm.adapter, "versus_base": lm.versus_base,
            "device": lm.device.label(), "quantize": lm.quantize, "sampling": cfg.to_dict(),
            "pairs": args.pairs, "seed": args.seed})
        run_id = session.run_id
        stop = _stop_on_ctrl_c()   # Ctrl+C: finish storing this batch, then stop
        try:
            report = generate_pending_pairs(store, lm, cfg, limit=args.pairs, seed=args.seed,
                                            run_id=run_id, emit=bar, stop=stop)
        except BaseException as exc:
            session.fail(exc)
            raise
        if stop.requested:
            session.cancel()
        else:
            session.finish()
        # x is the run's pair count, as the Judge page records its batches.
        store.add_metrics(run_id, [(report.pairs, "generate/tokens_per_s", report.tokens_per_s),
                                   (report.pairs, "generate/pairs", report.pairs)])
        bar.close()
    data = {"run_id": run_id, **report.to_dict()}
    out.result(data, f"Generated {report.pairs} pairs ({report.tokens_per_s:.1f} tokens/s"
                     + (f", {report.identical} identical pairs flagged" if report.identical else "")
                     + ")")
    return 0


def cmd_stats(args: argparse.Namespace, out: Output) -> int:
    workspace, store = _open_store(args)
    with store:
        stats = store.stats()
    stats["workspace"] = str(workspace.root)
    c = stats["by_choice"]
    text = (f"Workspace {workspace.root}\n"
            f"  prompts      {stats['prompts']} ({stats['prompts_without_pairs']} without a pair)\n"
            f"  generations  {stats['generations']}\n"
            f"  comparisons  {stats['comparisons']} ({stats['pending']} waiting to be judged)\n"
            f"  judgments    a {c['a']} · b {c['b']} · tie {c['tie']} · both bad {c['both_bad']}"
            f" · skip {c['skip']}\n"
            f"  runs         {sum(sum(s.values()) for s in stats['runs'].values())}")
    out.result(stats, text)
    return 0


def cmd_export(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.data.exports import export_judgments
    _, store = _open_store(args)
    with store:
        try:
            result = export_judgments(store, args.out, args.format, include_ties=args.ties)
        except ValueError as exc:  # a stored pair that cannot be written; the old file is kept
            raise CliError(f"cannot export: {exc}") from None
        by_choice = store.stats()["by_choice"]
    left_out = {"tie": 0 if args.ties else by_choice["tie"], "both_bad": by_choice["both_bad"],
                "skip": by_choice["skip"], "unusable": result.unusable}
    data = {"file": str(args.out), "format": args.format, "pairs": result.pairs,
            "ties": result.ties, "left_out": left_out}
    ties = f" ({count(result.ties, 'tie')})" if result.ties else ""
    unusable = (f", {result.unusable} with an empty or repeated response"
                if result.unusable else "")
    out.result(data, f"Wrote {result.pairs} pairs{ties} to {args.out} as {args.format} (left "
                     f"out: {left_out['tie']} ties, {left_out['both_bad']} both bad, "
                     f"{left_out['skip']} skipped{unusable})")
    return 0


def _stop_on_ctrl_c():
    """First Ctrl+C asks the job to stop cleanly (checkpoint kept); a second one interrupts.
    Under torchrun a SIGTERM counts as a Ctrl+C; the ranks agree to stop between steps."""
    import signal

    from desktop_app.core.events import StopToken
    stop = StopToken()

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        print("\nStopping after this step (Ctrl+C again to abort)…", file=sys.stderr, flush=True)
        stop.stop()

    try:
        signal.signal(signal.SIGINT, handler)
        if _under_torchrun():
            # torchrun passes a SIGTERM (a cluster's scancel, say) on to every process and
            # waits a while before killing them: time for each to stop at the step's end.
            signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        pass
    return stop


def cmd_train_reward(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.config import RewardConfig
    from desktop_app.ml.reward.train import check_reward_data, train_reward_model
    if args.resume is None:
        if not args.model:
            raise CliError("--model is required (or --resume RUN_ID)")
        cfg = _config_from_args(RewardConfig, args)
        workspace, store = _open_store(args)
        with store:
            counts = check_reward_data(store, cfg)
        out.info(f"{count(counts['train_pairs'], 'training pair')}, "
                 f"{count(counts['val_pairs'], 'validation pair')} "
                 f"({count(counts['ties'], 'tie')})")
    else:
        cfg, workspace = None, _open_workspace(args)
    result = _train(train_reward_model, workspace, cfg, args, base_model=args.model)
    acc = f"{result.val_accuracy:.3f}" if result.val_accuracy is not None else "n/a"
    out.result(dataclasses.asdict(result),
               f"Run {result.run_id} {result.status} at step {result.step}/"
               f"{result.total_steps}: validation accuracy {acc}, "
               f"{result.samples_per_s:.1f} pairs/s\nAdapter: {result.artifact}")
    return _exit_status(result)


def cmd_train_ppo(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.config import PPOConfig
    from desktop_app.ml.ppo.train import train_ppo
    return _train_against_reward(args, out, PPOConfig, train_ppo)


def cmd_train_rloo(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.config import RLOOConfig
    from desktop_app.ml.rloo.train import train_rloo
    return _train_against_reward(args, out, RLOOConfig, train_rloo)


def _train_against_reward(args: argparse.Namespace, out: Output, config_type: type,
                          train_fn: Callable) -> int:
    """train-ppo and train-rloo: a policy tuned against a reward run, the same result record."""
    cfg = None
    if args.resume is None:
        if not args.model or args.reward is None:
            raise CliError("--model and --reward RUN_ID are required (or --resume RUN_ID)")
        cfg = _config_from_args(config_type, args)
    result = _train(train_fn, _open_workspace(args), cfg, args, base_model=args.model,
                    reward_run_id=args.reward)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    out.result(dataclasses.asdict(result),
               f"Run {result.run_id} {result.status} at step {result.step}/"
               f"{result.total_steps}: score {fmt(result.score_first)} -> "
               f"{fmt(result.score_last)}, KL {fmt(result.kl)}\nPolicy: {result.artifact}")
    return _exit_status(result)


def cmd_train_dpo(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.config import DPOConfig
    from desktop_app.ml.dpo.judgments import check_dpo_data
    from desktop_app.ml.dpo.train import train_dpo
    if args.resume is None:
        if not args.model:
            raise CliError("--model is required (or --resume RUN_ID)")
        cfg = _config_from_args(DPOConfig, args)
        workspace, store = _open_store(args)
        with store:
            counts = check_dpo_data(store, cfg)
        out.info(f"{count(counts['train_pairs'], 'training pair')}, "
                 f"{count(counts['val_pairs'], 'validation pair')}; left out: "
                 f"{count(counts['ties_left_out'], 'tie')}, "
                 f"{counts['both_bad_left_out']} both-bad")
    else:
        cfg, workspace = None, _open_workspace(args)
    result = _train(train_dpo, workspace, cfg, args, base_model=args.model)
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    out.result(dataclasses.asdict(result),
               f"Run {result.run_id} {result.status} at step {result.step}/"
               f"{result.total_steps}: validation accuracy {fmt(result.val_accuracy)}, margin "
               f"{fmt(result.val_margin)}, {result.samples_per_s:.1f} pairs/s\n"
               f"Policy: {result.artifact}")
    return _exit_status(result)


def _train(train_fn: Callable, workspace, cfg, args: argparse.Namespace, **inputs):
    """Run a training job in the foreground with a progress bar; Ctrl+C stops it after the
    step (a checkpoint is kept). A resume takes the run's stored config (``cfg`` is None)."""
    bar = ProgressBar()
    emit: Callable = bar
    events = os.environ.get("RLHF_DESK_EVENTS")  # the app runs this job under torchrun
    if events:
        from desktop_app.core.jobs.torchrun import EventFile
        emit = EventFile(events, bar)
    stop = _stop_on_ctrl_c()
    try:
        return train_fn(workspace, cfg, resume_run_id=args.resume, emit=emit, stop=stop,
                        **inputs)
    finally:
        bar.close()
        if emit is not bar:
            emit.close()


def cmd_plan(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.plan_command import plan_from_args
    plan = plan_from_args(args)
    out.result(plan.to_dict(), plan.describe())
    return 0


def cmd_import_model(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.ml.models.folder_check import format_count
    from desktop_app.ml.models.gguf_import import import_gguf
    workspace = _open_workspace(args)
    bar = ProgressBar()
    stop = _stop_on_ctrl_c()  # Ctrl+C: stop after this stage, leaving nothing behind
    try:
        result = import_gguf(args.file, workspace.models_dir, name=args.name, emit=bar,
                             stop=stop)
    finally:
        bar.close()
    out.result({"path": result.path, "architecture": result.architecture,
                "parameters": result.parameters},
               f"Imported {args.file} as {result.path} ({result.architecture}, "
               f"{format_count(result.parameters)} parameters)")
    return 0


def cmd_export_model(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.ml.models.export import export_policy
    path = export_policy(_open_workspace(args), args.run_id, args.out_dir, merged=args.merged)
    out.result({"run_id": args.run_id, "out_dir": str(path), "merged": args.merged},
               f"Exported run {args.run_id} "
               f"{'merged into a full model' if args.merged else 'as a LoRA adapter'} to {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.core.config import EvalConfig
    from desktop_app.ml.evaluation.run import parse_policy, resolve_policy, run_evaluation
    workspace, store = _open_store(args)
    cfg = _config_from_args(EvalConfig, args)
    bar = ProgressBar()
    try:
        with store:
            a = resolve_policy(store, parse_policy(args.a))
            b = resolve_policy(store, parse_policy(args.b))
            outcome = run_evaluation(workspace, store, cfg, a=a, b=b, base_model=args.model,
                                     human=not args.auto, reward_run_id=args.reward,
                                     prompt_file=args.prompts, emit=bar, stop=_stop_on_ctrl_c())
    finally:
        bar.close()
    data = outcome.to_dict() | {"a": args.a, "b": args.b}
    for key in ("win_rate", "ci_low", "ci_high", "n"):
        data.setdefault(key, None)  # no reward model: the person's verdict comes later
    lines = [f"Evaluation run {outcome.run_id}: {outcome.status}, {outcome.pairs} prompts"]
    lines += [f"warning: {w}" for w in outcome.warnings]
    if outcome.automatic is not None:
        lines.append(f"Reward model (run {outcome.reward_run_id}): "
                     f"{outcome.automatic.describe(a.label, b.label)}")
    if outcome.status == RunStatus.JUDGING:
        lines.append("Blind pairs are waiting: judge them on the app's Evaluate page.")
    out.result(data, "\n".join(lines))
    return {RunStatus.COMPLETED: 0, RunStatus.JUDGING: 0,
            RunStatus.CANCELLED: 130}.get(outcome.status, 1)


def _run_ids(values: list[str], usage: str) -> list[int]:
    try:
        ids = [int(v) for v in values]
    except ValueError:
        raise CliError(f"usage: {usage} (run ids are numbers)") from None
    if not ids:
        raise CliError(f"usage: {usage}")
    return ids


def cmd_rank_pending(args: argparse.Namespace, out: Output) -> int:
    from desktop_app.ml.reward.uncertainty import score_pending_pairs
    _, store = _open_store(args)
    bar = ProgressBar()
    try:
        with store:
            reward = args.reward
            if reward is None:
                runs = store.finished_runs(RunKind.REWARD)
                if not runs:
                    raise CliError("no completed reward model to rank with; train one first")
                reward = runs[-1].id
            scored = score_pending_pairs(store, reward, device=args.device, emit=bar,
                                         stop=_stop_on_ctrl_c())
    finally:
        bar.close()
    out.result({"reward_run_id": reward, "scored": scored},
               f"Ranked {scored} pending pairs by reward run {reward}: the GUI's \"least "
               "certain first\" order serves the smallest |r_a - r_b| first.")
    return 0


def cmd_runs(args: argparse.Namespace, out: Output) -> int:
    workspace, store = _open_store(args)
    targets = list(args.targets)
    with store:
        if args.action == "show":
            if len(targets) != 1:
                raise CliError("usage: rlhf-desk runs show RUN_ID")
            run_id = _run_ids(targets, "rlhf-desk runs show RUN_ID")[0]
            run = store.get_run(run_id)
            if run is None:
                raise CliError(f"there is no run {run_id}")
            final = store.final_metrics(run_id)
            lines = [f"Run {run.id} ({run.kind}): {run.status}",
                     f"  started   {run.created_at}", f"  finished  {run.finished_at or '-'}",
                     f"  artifact  {run.artifact or '-'}"]
            if run.error:
                lines.append(f"  error     {run.error}")
            lines.append("  config")
            for k, v in sorted(run.config.items()):
                if isinstance(v, dict):  # a group (a generate run's sampling, imported_from)
                    lines.append(f"    {k}")
                    lines += [f"      {k2} = {v2}" for k2, v2 in v.items()]
                else:
                    lines.append(f"    {k} = {v}")
            if run.kind == RunKind.EVAL:
                lines += _evaluation_lines(store, run)
            if final:
                lines.append("  final metrics")
                lines += [f"    {k} = {v:.4g}" for k, v in sorted(final.items())]
            out.result(run.to_dict() | {"final_metrics": final}, "\n".join(lines))
            return 0
        if args.action == "export":
            from desktop_app.core.runs.export import write_metrics_csv
            usage = "rlhf-desk runs export RUN_ID [RUN_ID ...] OUT.csv"
            if len(targets) < 2:
                raise CliError(f"usage: {usage}")
            ids = _run_ids(targets[:-1], usage)
            path = targets[-1]
            points = write_metrics_csv(store, ids, path)
            out.result({"file": str(path), "run_ids": ids, "points": points},
                       f"Wrote {points} metric points of run{'s' * (len(ids) > 1)} "
                       f"{', '.join(map(str, ids))} to {path}")
            return 0
        if args.action == "delete":
            from desktop_app.core.runs.files import delete_run, describe_deletion
            usage = "rlhf-desk runs delete RUN_ID --yes"
            if len(targets) != 1:
                raise CliError(f"usage: {usage}")
            run_id = _run_ids(targets, usage)[0]
            plan = describe_deletion(store, workspace.runs_dir, run_id)
            if not args.yes:
                what = [f"{plan.metrics} metric points"] + [str(f) for f in plan.folders]
                if plan.comparisons:
                    what.append(f"{plan.comparisons} evaluation pairs")
                raise CliError(f"run {run_id} ({plan.kind}, {plan.status}) would be deleted with "
                               f"{', '.join(what)}; add --yes to delete it")
            result = delete_run(store, workspace.runs_dir, run_id)
            lines = [f"Deleted run {run_id} ({result.kind}): {result.metrics} metric points"
                     + (f", {result.comparisons} evaluation pairs" if result.comparisons else "")]
            lines += [f"  removed {f}" for f in result.folders
                      if f not in {p for p, _ in result.failed}]
            if result.children:
                lines.append("  runs that lost their link to it: "
                             + ", ".join(map(str, result.children)))
            for path, why in result.failed:
                out.info(f"rlhf-desk: warning: could not remove {path}: {why}")
            out.result(result.to_dict(), "\n".join(lines))
            return 1 if result.failed else 0
        if args.action is not None:
            raise CliError(f"unknown runs action {args.action!r} (expected: show, export, delete)")
        if targets:
            raise CliError("usage: rlhf-desk runs [show|export|delete] ...")
        from desktop_app.core.runs.summary import key_metric
        runs = [r.to_dict() | {"result": key_metric(r, store.final_metrics(r.id))[0]}
                for r in store.list_runs()]
        rows = [f"{r['id']:>4}  {r['kind']:<9} {r['status']:<11} {r['created_at'][:19]}  "
                f"{r['result']}" for r in runs]
        header = "  id  kind      status      started              result"
        out.result({"runs": runs}, "\n".join([header, *rows]) if runs else "No runs yet.")
    return 0


def _evaluation_lines(store, run: Run) -> list[str]:
    """An evaluation's verdicts in words (the person's hidden while they still judge)."""
    from desktop_app.core.evaluation.results import eval_summary
    summary = eval_summary(store, run)
    a, b = summary.a.get("label", "A"), summary.b.get("label", "B")
    lines = [f"  evaluation  A = {a}, B = {b}"]
    if run.status == RunStatus.JUDGING:
        lines.append(f"    you: {summary.pending} pairs still to judge (verdict hidden until "
                     "then)")
    elif summary.human is not None:
        lines.append(f"    you: {summary.human.describe(a, b)}")
    if summary.automatic is not None:
        lines.append(f"    reward model: {summary.automatic.describe(a, b)}")
    if run.status != RunStatus.JUDGING and summary.warning:
        lines.append(f"    warning: {summary.warning}")
    return lines


def _exit_status(result) -> int:
    """0 for a completed run, 130 for a cancelled one, 1 (with the reason) for a failed or
    interrupted one (another process of its torchrun job died)."""
    if result.status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
        if not _under_torchrun() or os.environ.get("RANK") == "0":  # rank 0 speaks for a job
            print(f"rlhf-desk: error: {result.error}", file=sys.stderr)
        return 1
    return 0 if result.status == RunStatus.COMPLETED else 130


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [lo, hi], or argparse's own one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside [{lo}, {hi}]")
        return value
    parse.__name__ = "whole number"  # argparse names the type in its "invalid ..." message
    return parse


def _add_config_options(parser: argparse.ArgumentParser, cls: type, skip: tuple = ()) -> None:
    """One --option per config field, with its help text: a new field needs no CLI code.
    The values are checked by the config's own ``validate`` (ranges, NaN), in one place."""
    from dataclasses import MISSING

    from desktop_app.core.config import form_fields
    for f in form_fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        kind = type(default)
        # argparse %-formats help texts: a literal "%" in a field's help ("~30% of") must be
        # doubled, or --help itself crashes.
        help_text = f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=help_text,
                                choices=f.metadata.get("choices"))


def _config_from_args(cls: type, args: argparse.Namespace):
    """The config the options describe, checked against each field's range and choices."""
    from dataclasses import fields
    given = {f.name: getattr(args, f.name) for f in fields(cls)
             if getattr(args, f.name, None) is not None}
    config = cls(**given)
    try:
        config.validate()
    except ValueError as exc:
        # "top_p = nan is not ..." -> "--top-p = nan is not ...": the name the user typed.
        text = str(exc)
        name = text.split(" ", 1)[0]
        if name in given:
            text = "--" + name.replace("_", "-") + text[len(name):]
        raise CliError(text) from None
    return config


# -- parser -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a script's log (or a person) gets the problem and where
    to look, not a screenful of usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_common(parser: argparse.ArgumentParser, top: bool) -> None:
    # Sub-parsers use SUPPRESS so a value given before the subcommand is not reset after it.
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--workspace", metavar="DIR", default=default,
                        help="workspace folder (default: $RLHF_DESK_WORKSPACE or the per-user one)")
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="print the result as one JSON object on the last line of stdout")


def _generate_options(p: argparse.ArgumentParser) -> None:
    """generate's options (also `plan generate`'s)."""
    from desktop_app.core.config import QUANTIZE_CHOICES, SamplingConfig
    p.add_argument("--model", required=True, help="model folder (config, weights, tokenizer)")
    p.add_argument("--adapter", help="a PEFT adapter folder to apply (e.g. a PPO policy): the "
                                     "next round's pairs come from the tuned model")
    p.add_argument("--versus-base", action="store_true",
                   help="with --adapter: each pair is one response from the tuned policy and "
                        "one from the base model")
    p.add_argument("--pairs", type=_int_in(1, 1_000_000), default=16,
                   help="how many pairs, 1 to 1000000 (default 16)")
    _add_config_options(p, SamplingConfig)
    p.add_argument("--seed", type=_int_in(0, 2**31 - 1), default=None,
                   help="random seed, 0 to 2147483647 (default: random, recorded)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--dtype", default="auto", help="auto | bfloat16 | float16 | float32")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="none",
                   help="store the base weights in 8 or 4 bits (bitsandbytes; 4-bit is NF4): "
                        "far less GPU memory (default none)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model folder's own Python code to run (off by default)")


def _train_reward_options(p: argparse.ArgumentParser) -> None:
    """train-reward's options (also `plan train-reward`'s)."""
    p.add_argument("--model", help="base model folder")
    p.add_argument("--resume", type=int, metavar="RUN_ID",
                   help="continue a cancelled or failed run from its last checkpoint")
    from desktop_app.core.config import RewardConfig
    _add_config_options(p, RewardConfig)


def _train_ppo_options(p: argparse.ArgumentParser) -> None:
    """train-ppo's options (also `plan train-ppo`'s)."""
    p.add_argument("--model", help="base model folder")
    p.add_argument("--reward", type=int, metavar="RUN_ID", help="the reward-model run to use")
    p.add_argument("--resume", type=int, metavar="RUN_ID",
                   help="continue a cancelled or failed PPO run from its last checkpoint")
    from desktop_app.core.config import PPOConfig
    _add_config_options(p, PPOConfig)


def _train_rloo_options(p: argparse.ArgumentParser) -> None:
    """train-rloo's options (also `plan train-rloo`'s)."""
    p.add_argument("--model", help="base model folder")
    p.add_argument("--reward", type=int, metavar="RUN_ID", help="the reward-model run to use")
    p.add_argument("--resume", type=int, metavar="RUN_ID",
                   help="continue a cancelled or failed RLOO run from its last checkpoint")
    from desktop_app.core.config import RLOOConfig
    _add_config_options(p, RLOOConfig)


def _train_dpo_options(p: argparse.ArgumentParser) -> None:
    """train-dpo's options (also `plan train-dpo`'s)."""
    p.add_argument("--model", help="base model folder")
    p.add_argument("--resume", type=int, metavar="RUN_ID",
                   help="continue a cancelled or failed DPO run from its last checkpoint")
    from desktop_app.core.config import DPOConfig
    _add_config_options(p, DPOConfig)


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    """evaluate's options (also `plan evaluate`'s)."""
    p.add_argument("--a", required=True, metavar="POLICY",
                   help="'base' or a completed policy run id (PPO, RLOO or DPO): the policy "
                        "whose win rate is reported")
    p.add_argument("--b", default="base", metavar="POLICY",
                   help="'base' (default) or a policy run id: the policy it is compared with")
    p.add_argument("--prompts", metavar="FILE",
                   help="prompts to evaluate on (added to the workspace as held out); default: "
                        "the workspace's held-out prompts")
    p.add_argument("--auto", action="store_true",
                   help="only the reward model judges: no blind pairs are stored")
    p.add_argument("--reward", type=int, metavar="RUN_ID",
                   help="the reward-model run that judges (default: the newest completed)")
    p.add_argument("--model", help="base model folder (default: the one the policy run used)")
    from desktop_app.core.config import EvalConfig
    _add_config_options(p, EvalConfig)

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rlhf-desk", description="RLHF Desk: judge paired generations, train reward "
        "models, and tune policies with PPO, RLOO or DPO on your own machine. With no command, "
        "opens the app.")
    parser.add_argument("--version", action="version", version=f"rlhf-desk {__version__}")
    parser.add_argument("--model", help="(GUI) model folder to load on start")
    parser.add_argument("--smoke-test", action="store_true",
                        help="check this installation (resources, torch/transformers/peft, the "
                             "main window on a temporary workspace, offscreen without a "
                             "display) and exit: 0 when it works")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _add_common(p, top=False)
        p.set_defaults(func=func)
        return p

    p = command("gui", cmd_gui, "open the app (the default)")
    p.add_argument("--model", help="model folder to load on start")
    p = command("demo", cmd_demo,
                "create the demo workspace (small model, sample prompts) and open it")
    p.add_argument("--no-gui", action="store_true", help="only build the demo workspace")
    p = command("import", cmd_import, "import prompts (.txt/.jsonl/.csv) or preference pairs")
    p.add_argument("file")
    from desktop_app.core.data.formats import DEFAULT_MAX_CHARS
    p.add_argument("--max-chars", type=_int_in(1, 10**9), default=DEFAULT_MAX_CHARS,
                   metavar="N", help="longest prompt or response to import, in characters; "
                   f"longer ones are reported as malformed (default {DEFAULT_MAX_CHARS})")

    p = command("generate", cmd_generate, "generate pairs for prompts that have none yet")
    _generate_options(p)

    p = command("train-reward", cmd_train_reward,
                "train a LoRA reward model (Bradley-Terry) on the workspace's judgments")
    _train_reward_options(p)

    p = command("train-ppo", cmd_train_ppo,
                "tune a LoRA policy with PPO against a trained reward model")
    _train_ppo_options(p)

    p = command("train-rloo", cmd_train_rloo,
                "tune a LoRA policy with RLOO (or GRPO's group normalisation) against a "
                "trained reward model: k responses per prompt, no value model")
    _train_rloo_options(p)

    p = command("train-dpo", cmd_train_dpo,
                "tune a LoRA policy with DPO straight from the judgments (no reward model)")
    _train_dpo_options(p)

    p = command("export-model", cmd_export_model,
                "export a policy run's policy (PPO, RLOO or DPO): the LoRA adapter, or --merged "
                "into a full model")
    p.add_argument("run_id", type=int, metavar="RUN_ID")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--merged", action="store_true",
                   help="merge LoRA into the base weights and save a full model folder")

    p = command("import-model", cmd_import_model,
                "turn a GGUF model file into a model folder in the workspace's models folder "
                "(dequantised: about 4 bytes a parameter on disk, 2 for an f16/bf16 file)")
    p.add_argument("file", metavar="FILE.gguf")
    p.add_argument("--name", help="the model folder's name (default: the file's name without "
                                  ".gguf); an existing folder is never replaced")

    p = command("runs", cmd_runs, "list runs; `runs show RUN_ID` for one run's details, "
                "`runs export RUN_ID [RUN_ID ...] OUT.csv` for their metrics, "
                "`runs delete RUN_ID --yes` to delete a run with its files")
    p.add_argument("action", nargs="?", metavar="ACTION", help="show | export | delete")
    p.add_argument("targets", nargs="*", metavar="ARG",
                   help="show/delete: RUN_ID; export: RUN_ID [RUN_ID ...] OUT.csv (columns "
                        "run_id, step, name, value)")
    p.add_argument("--yes", action="store_true",
                   help="delete: do it (without --yes, only say what would be deleted)")

    p = command("evaluate", cmd_evaluate,
                "compare two policies on held-out prompts: blind pairs to judge in the app, "
                "and the reward model's verdict; --auto for the reward model alone")
    _evaluate_options(p)

    p = command("plan", cmd_plan,
                "estimate a job's peak memory before running it, against the free memory "
                "where it would run: `plan COMMAND [that command's options]`, e.g. `plan "
                "train-ppo --model DIR --reward 3 --batch-size 16 --quantize 4bit`")
    jobs = p.add_subparsers(dest="plan_command", metavar="COMMAND", parser_class=_Parser,
                            required=True)
    for name, add_options in (("generate", _generate_options),
                              ("train-reward", _train_reward_options),
                              ("train-ppo", _train_ppo_options),
                              ("train-rloo", _train_rloo_options),
                              ("train-dpo", _train_dpo_options),
                              ("evaluate", _evaluate_options)):
        job = jobs.add_parser(name, help=f"the memory plan of {name}",
                              description=f"The memory plan of `rlhf-desk {name}` with these "
                                          "options; nothing is loaded or run.")
        _add_common(job, top=False)
        add_options(job)

    from desktop_app.serve.command import add_serve_command
    add_serve_command(command)

    from desktop_app.job_commands import add_job_commands
    add_job_commands(command, _Parser, _add_common,
                     {"train-reward": _train_reward_options, "train-dpo": _train_dpo_options,
                      "train-ppo": _train_ppo_options, "train-rloo": _train_rloo_options})

    p = command("rank-pending", cmd_rank_pending,
                "score pending pairs with a reward model so the least certain are judged first")
    p.add_argument("--reward", type=int, metavar="RUN_ID",
                   help="the reward-model run (default: the newest completed)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")

    command("stats", cmd_stats, "counts of prompts, generations, judgments and runs")
    p = command("export", cmd_export, "export judged pairs as a preference data set")
    p.add_argument("--format", choices=["trl", "trl-chat", "hh", "csv"], default="trl",
                   help="trl: TRL prompt/chosen/rejected JSONL, as message lists when any prompt "
                        "is a chat (the default); trl-chat: always TRL's conversational form; "
                        "hh: Anthropic HH-RLHF transcripts (chosen/rejected only); csv: "
                        "prompt,chosen,rejected. Skips and both-bad pairs are left out")
    p.add_argument("--ties", action="store_true",
                   help="include ties, with a true/false 'tie' column (tie rows have chosen=a, "
                        "rejected=b); without it ties are left out")
    p.add_argument("out", metavar="OUT")
    return parser


def main(argv: list[str] | None = None) -> int:
    # A file name that is not valid UTF-8 must not turn printing the result into a crash.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    rank = ""
    try:
        # Inside the handler: a failure while building the parser or printing --help is a
        # bug, but it must still end in one line, not a traceback.
        args = build_parser().parse_args(argv)
        quiet = False
        if _under_torchrun():
            from desktop_app.ml.training.distributed import init_from_env
            ranks = init_from_env()
            rank, quiet = f" (rank {ranks.rank})", not ranks.is_main
        out = Output(bool(args.json), quiet=quiet)
        if args.smoke_test:
            from desktop_app.smoke import run_smoke_test
            return run_smoke_test(out.info)
        func = getattr(args, "func", cmd_gui)
        return func(args, out)
    except KeyboardInterrupt:
        print(f"rlhf-desk{rank}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into a line
        if os.environ.get("RLHF_DESK_DEBUG"):
            raise
        import logging
        if logging.getLogger().handlers and not getattr(exc, "logged", False):
            # The GUI logs to its workspace: keep the traceback there.
            logging.getLogger("rlhf-desk").error("failed", exc_info=True)
        from desktop_app.core.events import Cancelled
        if isinstance(exc, Cancelled):
            print(f"rlhf-desk{rank}: cancelled", file=sys.stderr)
            return 130
        print(f"rlhf-desk{rank}: error: {_message(exc)}".splitlines()[0], file=sys.stderr)
        return 1
    finally:
        if rank:
            from desktop_app.ml.training.distributed import shutdown
            shutdown()


def _under_torchrun() -> bool:
    """Started by torchrun with more than one process (its environment says so; checked
    without importing torch, which most commands never need)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ


def _message(exc: Exception) -> str:
    """One sentence for a failure (``core.errors.describe``); a bug is said as such."""
    sentence, is_bug = describe(exc)
    if is_bug:
        return f"unexpected {sentence} (a bug in RLHF Desk; RLHF_DESK_DEBUG=1 shows where)"
    return sentence


if __name__ == "__main__":
    raise SystemExit(main())
