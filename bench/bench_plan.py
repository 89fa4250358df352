"""How close is the memory planner? (run by hand: `python bench/bench_plan.py`, or `make
bench-plan`; about 25 minutes on a 2-core CPU with the defaults, a few on a GPU.)

For three model sizes (random Llama-style models with realistic vocabularies, built here), with
and without a 4-bit base, each job (generate, train-reward, train-ppo, evaluate --auto) runs
in a fresh process with the options it would get from a person, and its peak memory is compared
with `rlhf-desk plan` for the same command and options:
- on a GPU, the device's peak allocated memory (torch.cuda.max_memory_allocated); target ±15%;
- on the CPU, the process's peak RSS, the median of --runs runs (3 by default) since the
  allocator makes it vary; target ±35%.
Prints one table (estimate, measured, ratio, within target) and writes it as JSON (--out).

--model DIR (repeatable) measures a real model folder instead of (or, with --sizes, as well as)
the built ones, e.g. SmolLM2-135M-Instruct imported by `rlhf-desk import-model`; --jobs picks
the jobs (default all four).
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

# (name, hidden, layers, vocab): about 7 M, 42 M and 135 M parameters.
SIZES = [("S", 256, 4, 8192), ("M", 512, 8, 16384), ("L", 768, 12, 32000)]
WORDS = ("the cat sat on a mat while rain fell over the quiet town and a dog ran "
         "through the park chasing one red ball").split()

# The child: run one CLI command, then report this process's own peak memory. VmHWM, not
# getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent at fork, so a child
# whose own peak is below this process's (which built models) would report the parent's.
CHILD = """
import json, re, resource, sys
import torch
from desktop_app.cli import main
rc = main(sys.argv[2:])
status = open("/proc/self/status").read()
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", status)
rss = int(hwm.group(1)) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
peak = {"rc": rc, "rss": rss * 1024}
if torch.cuda.is_available():
    peak["cuda"] = torch.cuda.max_memory_allocated()
open(sys.argv[1], "w").write(json.dumps(peak))
"""


def build_model(folder: Path, hidden: int, layers: int, vocab: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from desktop_app.ml.models.tiny import train_tokenizer
    tokenizer = train_tokenizer([" ".join(WORDS)] * 20, vocab_size=600, chat_template=True)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=int(hidden * 8 / 3) // 64 * 64,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64,
                         num_key_value_heads=max(1, hidden // 192),
                         max_position_embeddings=2048, vocab_size=vocab,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_workspace(root: Path) -> Path:
    """48 judged pairs with long responses (every pair reaches the 256-token limit), and 400
    prompts without pairs for generate and PPO."""
    from desktop_app.core.data.store import GenerationIn, Store
    from desktop_app.core.workspace import Workspace
    rng = random.Random(0)
    ws = Workspace.open(root)
    text = lambda n: " ".join(rng.choices(WORDS, k=n))  # noqa: E731
    with Store(ws.db_path) as store:
        ids = store.add_prompts([f"Tell me about {text(6)} ({i})" for i in range(48)]).ids
        store.add_pairs([(pid, GenerationIn(text(200), "m"), GenerationIn(text(200), "m"))
                         for pid in ids], rng=rng, choice="a")
        store.add_prompts([f"Write about {text(8)} ({i})" for i in range(400)])
    (root / "eval-prompts.txt").write_text(
        "\n".join(f"Say something about {text(5)} ({i})" for i in range(8)) + "\n")
    return root


def run_child(argv: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        report = f.name
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, report, *argv], cwd=ROOT,
                          capture_output=True, text=True)
    data = json.loads(Path(report).read_text()) if Path(report).stat().st_size else {}
    os.unlink(report)
    if proc.returncode or data.get("rc"):
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return data | {"seconds": time.perf_counter() - started, "stdout": proc.stdout}


def plan(ws: Path, command: str, options: list[str]) -> dict:
    from desktop_app.cli import build_parser
    from desktop_app.plan_command import plan_from_args
    args = build_parser().parse_args(["--workspace", str(ws), "plan", command, *options])
    return plan_from_args(args).to_dict()


def jobs(model: Path, ws: Path, quantize: str, reward: int | None, ppo: int | None):
    common = ["--model", str(model), "--quantize", quantize]
    yield "train-reward", common + ["--batch-size", "8", "--max-length", "256", "--epochs",
                                    "0.5", "--eval-every", "1000", "--checkpoint-every",
                                    "1000", "--min-pairs", "16"]
    if reward is not None:
        yield "train-ppo", common + ["--reward", str(reward), "--steps", "2", "--batch-size",
                                     "8", "--mini-batch-size", "4", "--ppo-epochs", "1",
                                     "--max-new-tokens", "32", "--checkpoint-every", "1000"]
    yield "generate", common + ["--pairs", "8", "--batch-size", "8", "--max-new-tokens", "64",
                                "--seed", "0"]
    if ppo is not None:
        yield "evaluate", common + ["--a", str(ppo), "--auto", "--max-prompts", "8",
                                    "--batch-size", "8", "--max-new-tokens", "32",
                                    "--prompts", str(ws / "eval-prompts.txt")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per job (median)")
    parser.add_argument("--sizes", default=None,
                        help="which of S, M, L (default all three, none with --model)")
    parser.add_argument("--model", action="append", type=Path, default=[],
                        help="a real model folder to measure (repeatable)")
    parser.add_argument("--jobs", default="train-reward,train-ppo,generate,evaluate",
                        help="which jobs (PPO needs train-reward, evaluate needs train-ppo)")
    parser.add_argument("--quantize", default="none,4bit")
    parser.add_argument("--out", default="bench/plan_results.json")
    opts = parser.parse_args()
    import torch
    gpu = torch.cuda.is_available()
    target = 0.15 if gpu else 0.35
    rows = []
    sizes = (opts.sizes if opts.sizes is not None else "" if opts.model else "S,M,L").split(",")
    wanted = set(opts.jobs.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        models = [(name, lambda n=name, h=hidden, n_layers=layers, v=vocab:
                   build_model(Path(tmp) / f"model-{n}", h, n_layers, v))
                  for name, hidden, layers, vocab in SIZES if name in sizes]
        models += [(folder.name, lambda f=folder: f.resolve()) for folder in opts.model]
        for name, get_model in models:
            model = get_model()
            for quantize in opts.quantize.split(","):
                ws = make_workspace(Path(tmp) / f"ws-{name}-{quantize}")
                # PPO needs the reward run and evaluation the PPO run: the list grows.
                reward = ppo = None
                done: set[str] = set()
                while True:
                    todo = [(c, o) for c, o in jobs(model, ws, quantize, reward, ppo)
                            if c not in done]
                    if not todo:
                        break
                    command, options = todo[0]
                    if command not in wanted:
                        done.add(command)
                        if command == "train-reward":  # PPO needs a reward run: a quick one
                            result = json.loads(run_child(
                                ["--workspace", str(ws), command, *options, "--json"]
                            )["stdout"].strip().splitlines()[-1])
                            reward = result["run_id"]
                        continue
                    estimate = plan(ws, command, options)
                    peaks = []
                    for _ in range(opts.runs):
                        data = run_child(["--workspace", str(ws), command, *options, "--json"])
                        peaks.append(data["cuda"] if gpu else data["rss"])
                        result = json.loads(data["stdout"].strip().splitlines()[-1])
                    if command == "train-reward":
                        reward = result["run_id"]
                    if command == "train-ppo":
                        ppo = result["run_id"]
                    done.add(command)
                    measured = statistics.median(peaks)
                    ratio = estimate["peak_bytes"] / measured
                    row = {"model": name, "quantize": quantize,
                           "command": command, "estimate": estimate["peak_bytes"],
                           "measured": measured, "runs": peaks, "ratio": ratio,
                           "within": abs(ratio - 1) <= target,
                           "breakdown": estimate["breakdown"]}
                    rows.append(row)
                    print(f"{name} {quantize:<5} {command:<13} estimate "
                          f"{estimate['peak_bytes'] / 2**20:8.0f} MiB  measured "
                          f"{measured / 2**20:8.0f} MiB  ratio {ratio:5.2f}  "
                          f"{'ok' if row['within'] else 'OFF'}", flush=True)
    Path(opts.out).write_text(json.dumps(rows, indent=1))
    print(f"\n{'GPU peak allocated' if gpu else 'CPU peak RSS, median of ' + str(opts.runs)};"
          f" target ±{target:.0%}")
    width = max([5] + [len(r["model"]) + 1 for r in rows])
    print(f"{'model':<{width}}{'quant':<7}{'job':<14}{'estimate MiB':>13}{'measured MiB':>13}"
          f"{'ratio':>7}  within")
    for r in rows:
        print(f"{r['model']:<{width}}{r['quantize']:<7}{r['command']:<14}"
              f"{r['estimate'] / 2**20:>13.0f}"
              f"{r['measured'] / 2**20:>13.0f}{r['ratio']:>7.2f}  {'yes' if r['within'] else 'NO'}")
    inside = sum(r["within"] for r in rows)
    print(f"{inside} of {len(rows)} within ±{target:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
