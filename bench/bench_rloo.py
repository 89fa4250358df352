"""RLOO against PPO on one task (run by hand: `python bench/bench_rloo.py`; with the defaults
about 5 minutes on a 2-core CPU).

Both trainers run against the same reward model with the same rollouts per step: PPO samples
--batch-size prompts with one response each, RLOO --batch-size / --k prompts with --k responses
each (its --batch-size counts responses). Each run is its own `rlhf-desk train-ppo` or
`rlhf-desk train-rloo --advantage rloo|grpo` child process, and for each it measures:
- peak memory: the child's peak RSS (os.wait4's ru_maxrss; the JSON also has the child's own
  VmHWM as a check) and, when it trained on a GPU, torch.cuda.max_memory_allocated. The marker
  task is built in a child as well: a child's ru_maxrss also counts its parent's peak, so this
  process must stay small;
- time per step: the median over the steps of the stored metrics time/generation_s,
  time/scoring_s and time/optimization_s (their sum, and each part; every figure is a median
  of its own, so the parts need not add up to the total);
- reward-model score gained per minute: (score_last - score_first) / the child's wall time in
  minutes, where score_first and score_last are the run's mean objective/scores (normalised,
  clipped reward-model scores) over its first and last tenth of steps. The wall time includes
  loading the models, which dominates a short run; the JSON also has the gain per minute of
  step time.
Prints one line per run as it ends, then one table (PPO, RLOO rloo, RLOO grpo; means over the
seeds, memory as the median, gain per minute for each seed as well) with RLOO/PPO ratios, and
writes every run's figures as JSON (--out).

The task, by default, is the RLOO learning test's (tests/ml/marker_task.py, preference
"short"), built afresh for each seed: a tiny GPT-2 and a reward model that prefers the shorter
response. Both trainers get the RLOO test's settings (max new tokens, learning rate, LoRA
rank, mini-batch size, KL coefficient, score clip and missing-EOS penalty), except that each
keeps its own number of update epochs over a batch, PPO 4 and RLOO 2, as their defaults do;
--ppo-epochs sets both. --task marker builds the PPO tests' task instead (the response with
"cat" wins): its base is near-uniform and rarely says "cat", so a group method may or may not
find the word within a few dozen steps on a given seed; read the gain per seed, not only the
mean.

    python bench/bench_rloo.py [--seeds 3] [--steps 40] [--batch-size 32] [--k 4]
                               [--task short|marker]
                               [--ppo-epochs N] [--lr X] [--max-new-tokens N]
                               [--mini-batch-size N] [--lora-r N]
                               [--workspace WS --model DIR --reward RUN_ID] [--out FILE.json]

--workspace WS --model DIR --reward RUN_ID run on an existing workspace, base model and
reward-model run instead (no task is built; seed i is then each run's --seed); the trainers'
own defaults are used for the settings not given. It is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 2**20
TIMES = ("time/generation_s", "time/scoring_s", "time/optimization_s")
# (row name, CLI command, options only that method gets)
METHODS = [("PPO", "train-ppo", []),
           ("RLOO rloo", "train-rloo", ["--advantage", "rloo"]),
           ("RLOO grpo", "train-rloo", ["--advantage", "grpo"])]
# The RLOO test's settings (tests/ml/marker_task.py) both trainers share; batch size, k, steps
# and epochs are set here.
SHARED = ("mini_batch_size", "lr", "max_new_tokens", "kl_coef", "lora_r", "lora_alpha",
          "sample_every", "score_clip", "missing_eos_penalty", "max_kl")

# The child: one CLI command, then its own peak RSS (VmHWM, a cross-check of wait4's figure)
# and, when it used the GPU, the GPU's peak allocated memory.
CHILD = """
import json, sys
from desktop_app.cli import main
rc = main(sys.argv[2:])
peak = {}
try:
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()
    peak["hwm"] = int(status[0]) * 1024
except (OSError, IndexError):
    pass
torch = sys.modules.get("torch")
if torch is not None and torch.cuda.is_initialized():
    peak["cuda"] = torch.cuda.max_memory_allocated()
open(sys.argv[1], "w").write(json.dumps(peak))
sys.exit(rc)
"""
# The marker task is built in a child too: wait4's ru_maxrss of a child counts the parent's
# own peak RSS (exec records the memory the child shared with it), so a parent that had built
# the task with torch (~500 MiB) would hide every trainer's smaller peak behind its own.
BUILD = """
import json, sys
from pathlib import Path
sys.path[:0] = json.loads(sys.argv[3])
from marker_task import PPO, RLOO, build_task
task = build_task(Path(sys.argv[1]), int(sys.argv[2]), prefer=sys.argv[4])
print(json.dumps({"ws": str(task["ws"].root), "base": str(task["base"]),
                  "reward": task["reward"].run_id, "accuracy": task["reward"].val_accuracy,
                  "PPO": PPO, "RLOO": RLOO}))
"""
# A gain below this (in normalised reward-model scores, std 1) is noise: no ratio is taken.
MIN_GAIN = 0.01


def flags(settings: dict) -> list[str]:
    return [item for name, value in settings.items()
            for item in ("--" + name.replace("_", "-"), str(value))]


def run_cli(args: list[str], log: Path) -> tuple[dict, float, int, dict]:
    """Run `rlhf-desk ARGS --json` as a child process (as bench/real_model.py does); return its
    JSON result, the wall time, the child's peak RSS in bytes (os.wait4's ru_maxrss, KiB on
    Linux) and what the child reported (its VmHWM; its peak CUDA memory when it used the GPU).
    A failed run that still printed its result (the KL limit, say) is returned, its status
    says so; anything else ends the benchmark with the log's tail."""
    out_path, peak_path = log.with_suffix(".out"), log.with_suffix(".peak.json")
    started = time.perf_counter()
    with open(out_path, "w") as out, open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(peak_path), *args, "--json"],
                                cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    lines = out_path.read_text().strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    if result is None or (proc.returncode and "status" not in result):
        tail = (log.read_text()[-3000:] + "\n".join(lines)[-1000:]).strip()
        raise SystemExit(f"rlhf-desk {' '.join(args)} exited {proc.returncode}:\n{tail}")
    peak = json.loads(peak_path.read_text()) if peak_path.exists() else {}
    return result, seconds, usage.ru_maxrss * 1024, peak


def step_times(ws: Path, run_id: int) -> list[dict[str, float]]:
    """Each step's generation, scoring and optimisation seconds, from the stored metrics."""
    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    with Store(Workspace.open(ws).db_path) as store:
        points = store.metrics(run_id)
    steps: dict[int, dict[str, float]] = {}
    for point in points:
        if point["name"] in TIMES:
            steps.setdefault(point["step"], {})[point["name"]] = point["value"]
    return [steps[s] for s in sorted(steps) if len(steps[s]) == len(TIMES)]


def measure(name: str, command: str, options: list[str], ws: Path, seed: int,
            log: Path) -> dict:
    result, seconds, rss, peak = run_cli(["--workspace", str(ws), command, *options,
                                          "--seed", str(seed)], log)
    steps = step_times(ws, result["run_id"])
    step_s = sum(sum(s.values()) for s in steps)
    first, last = result.get("score_first"), result.get("score_last")
    gain = last - first if first is not None and last is not None else None
    return {"method": name, "seed": seed, "run_id": result["run_id"],
            "status": result["status"], "steps_done": result.get("step"),
            "wall_s": seconds, "rss": rss, "rss_hwm": peak.get("hwm"), "cuda": peak.get("cuda"),
            "steps": steps, "step_s": step_s,
            "score_first": first, "score_last": last, "kl": result.get("kl"), "gain": gain,
            # Per minute of the whole process, loading included, and of the steps alone.
            "gain_per_min": gain / (seconds / 60) if gain is not None else None,
            "gain_per_step_min": gain / (step_s / 60) if gain is not None and step_s else None}


def build_task(root: Path, seed: int, prefer: str) -> dict:
    """The marker task with preference ``prefer`` for ``seed`` under ``root``, built in a child
    process (see BUILD): the workspace, base model and reward run, and the task's PPO and RLOO
    settings."""
    tests = [str(ROOT / "tests"), str(ROOT / "tests" / "ml")]
    proc = subprocess.run([sys.executable, "-c", BUILD, str(root), str(seed), json.dumps(tests),
                           prefer],
                          cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode:
        raise SystemExit(f"building the marker task (seed {seed}) failed:\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def method_options(opts, marker: dict | None) -> dict[str, list[str]]:
    """Each method's options: the same rollouts per step and shared settings for all three;
    each keeps its own update epochs unless --ppo-epochs says otherwise."""
    shared = {name: marker["RLOO"][name] for name in SHARED} if marker else {}
    for name in ("lr", "max_new_tokens", "lora_r", "mini_batch_size"):
        if getattr(opts, name) is not None:
            shared[name] = getattr(opts, name)
    if "mini_batch_size" in shared:  # a tiny --batch-size must still hold one mini-batch
        shared["mini_batch_size"] = min(shared["mini_batch_size"], opts.batch_size)
    # No checkpoints within the runs: saving one would count as step time for one method only
    # when their step counts differ from its interval.
    common = flags(shared) + ["--steps", str(opts.steps), "--batch-size", str(opts.batch_size),
                              "--checkpoint-every", "100000"]
    epochs = {"train-ppo": marker["PPO"]["ppo_epochs"] if marker else None,
              "train-rloo": marker["RLOO"]["ppo_epochs"] if marker else None}
    out = {}
    for name, command, own in METHODS:
        n = opts.ppo_epochs or epochs[command]
        out[name] = (common + own + (["--k", str(opts.k)] if command == "train-rloo" else [])
                     + (["--ppo-epochs", str(n)] if n else []))
    return out


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def describe(row: dict) -> str:
    med = median(sum(s.values()) for s in row["steps"])
    return (f"seed {row['seed']} {row['method']:<10} {row['status']:<9} "
            f"wall {row['wall_s']:6.1f} s  RSS {row['rss'] / MIB:6.0f} MiB  "
            f"step {fmt(med, '.2f')} s  score {fmt(row['score_first'], '+.3f')} -> "
            f"{fmt(row['score_last'], '+.3f')}  gain/min {fmt(row['gain_per_min'], '+.3f')}")


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per method: peaks (median over seeds), step times (medians over every step of every
    seed) and the gain per minute (mean over seeds, and each seed's)."""
    out = {}
    for name, _, _ in METHODS:
        runs = [r for r in rows if r["method"] == name]
        steps = [s for r in runs for s in r["steps"]]
        out[name] = {
            "rss": median(r["rss"] for r in runs),
            "rss_hwm": median(r["rss_hwm"] for r in runs),
            "cuda": median(r["cuda"] for r in runs),
            "step_s": median(sum(s.values()) for s in steps),
            **{t: median(s[t] for s in steps) for t in TIMES},
            "wall_s": mean(r["wall_s"] for r in runs),
            "gain": mean(r["gain"] for r in runs),
            "gain_per_min": mean(r["gain_per_min"] for r in runs),
            "gain_per_min_seeds": [r["gain_per_min"] for r in runs],
            "not_completed": sum(r["status"] != "completed" for r in runs)}
    return out


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def gain_ratio(s: dict, ppo: dict) -> str:
    # A ratio to (or of) a gain near zero is noise: the per-seed figures say more.
    if any(x["gain"] is None or abs(x["gain"]) < MIN_GAIN for x in (s, ppo)):
        return "n/a"
    return ratio(s["gain_per_min"], ppo["gain_per_min"])


def print_table(summary: dict[str, dict], gpu: bool) -> None:
    print(f"\n{'method':<11}{'RSS MiB':>9}" + (f"{'GPU MiB':>9}" if gpu else "")
          + f"{'step s':>8}{'gen':>7}{'score':>7}{'opt':>7}{'wall s':>8}{'gain':>8}"
          + f"{'gain/min':>10}  per seed")
    for name, s in summary.items():
        seeds = " ".join(fmt(v, "+.2f") for v in s["gain_per_min_seeds"])
        note = f"  ({s['not_completed']} not completed)" if s["not_completed"] else ""
        print(f"{name:<11}{s['rss'] / MIB:>9.0f}"
              + (f"{fmt(s['cuda'] and s['cuda'] / MIB, '.0f'):>9}" if gpu else "")
              + f"{fmt(s['step_s'], '.2f'):>8}"
              + "".join(f"{fmt(s[t], '.2f'):>7}" for t in TIMES)
              + f"{s['wall_s']:>8.1f}{fmt(s['gain'], '+.3f'):>8}"
              + f"{fmt(s['gain_per_min'], '+.3f'):>10}  {seeds}{note}")
    ppo = summary["PPO"]
    for name in [n for n, _, _ in METHODS[1:]]:
        s = summary[name]
        print(f"{name + '/PPO':<14} RSS {ratio(s['rss'], ppo['rss'])}"
              + (f"  GPU {ratio(s['cuda'], ppo['cuda'])}" if gpu else "")
              + f"  step {ratio(s['step_s'], ppo['step_s'])}"
              + f"  gain/min {gain_ratio(s, ppo)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32,
                        help="rollouts (responses) per step, for both trainers")
    parser.add_argument("--k", type=int, default=4, help="RLOO's responses per prompt")
    parser.add_argument("--ppo-epochs", type=int, default=None,
                        help="update epochs for both (default: PPO 4, RLOO 2 on the marker "
                             "task; each trainer's default otherwise)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--mini-batch-size", type=int, default=None)
    parser.add_argument("--lora-r", type=int, default=None)
    parser.add_argument("--task", choices=["short", "marker"], default="short",
                        help="the marker task's preference (tests/ml/marker_task.py)")
    parser.add_argument("--workspace", type=Path, help="an existing workspace (with --model, "
                                                       "--reward) instead of the marker task")
    parser.add_argument("--model", type=Path, help="its base model folder")
    parser.add_argument("--reward", type=int, metavar="RUN_ID", help="its reward-model run")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    opts = parser.parse_args()
    existing = (opts.workspace, opts.model, opts.reward)
    if any(v is not None for v in existing) and not all(v is not None for v in existing):
        parser.error("--workspace, --model and --reward go together")
    if opts.batch_size % opts.k:
        parser.error(f"--batch-size {opts.batch_size} is not a multiple of --k {opts.k}")
    marker = opts.workspace is None
    options = None if marker else method_options(opts, None)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(opts.seeds):
            if marker:
                started = time.perf_counter()
                task = build_task(Path(tmp) / f"seed-{seed}", seed, opts.task)
                ws, base, reward = Path(task["ws"]), Path(task["base"]), task["reward"]
                options = options or method_options(opts, task)
                print(f"seed {seed}: task built in {time.perf_counter() - started:.0f} s "
                      f"(reward accuracy {task['accuracy']:.3f})", flush=True)
            else:
                ws, base, reward = opts.workspace.resolve(), opts.model.resolve(), opts.reward
            for name, command, _ in METHODS:
                args = ["--model", str(base), "--reward", str(reward), *options[name]]
                log = Path(tmp) / f"{command}-{name.split()[-1]}-{seed}.log"
                rows.append(measure(name, command, args, ws, seed, log))
                print(describe(rows[-1]), flush=True)

    summary = summarise(rows)
    gpu = any(r["cuda"] is not None for r in rows)
    print_table(summary, gpu)
    print("step s and its split: medians over all steps; gain: score_last - score_first; "
          "gain/min: per minute of the run's wall time, mean over seeds; no gain/min ratio "
          f"when either mean gain is below {MIN_GAIN}")
    if opts.out:
        opts.out.write_text(json.dumps({"options": {k: str(v) if isinstance(v, Path) else v
                                                    for k, v in vars(opts).items()},
                                        "method_options": options, "summary": summary,
                                        "runs": rows}, indent=1))
        print(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
