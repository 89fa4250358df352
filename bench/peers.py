"""RLHF Desk against its peers, one table (`make bench-peers`; issue #17's targets).

Each peer runs in its own virtual environment (bench/.peer-venvs/, made by `make bench-peers`
from bench/peers/requirements-*.txt), never in the app's .venv, on the same torch,
transformers, peft and accelerate versions as the app. This script (the app's .venv) builds
randomly initialised models and synthetic workspaces in a temporary folder (bench_reward.py's
bags of words: the preferred response holds more words from a hidden "good" list), runs our
side and the peer's back to back, each in a fresh subprocess timed from after its imports, and
prints one row per comparison. Every figure comes from this run.

  reward      whole job (load, tokenise, train, evaluate, save) of our train_reward_model
              against TRL 1.x RewardTrainer (bench/peers/trl_reward.py), both at their own
              defaults but for: gpt2 ~19M params (512 x 6 layers, 8 heads), 600 pairs, 2 epochs,
              batch 16, LoRA r 8, max length 128. Targets: TRL's seconds / ours >= 1.5 (medians
              over seeds), and held-out accuracy (same split: our run's split.json) not lower
              than TRL's by more than 2 standard errors of the per-seed difference.
  ppo         TRL 0.29.1's PPOTrainer (trl.experimental.ppo; bench/peers/trl_ppo.py) against
              our train_ppo, same base, batch 16, mini-batch 4, 4 PPO epochs, 24 new tokens,
              LoRA r 16. Seconds per step = (run of 8 steps - run of 2 steps) / 6, each run a
              fresh subprocess, so loading and warm-up cancel; peak RSS of the 8-step process.
              Targets: TRL's s/step / ours >= 2; our peak RSS / TRL's <= 0.6. Ours at its
              defaults but max_kl 0 (a run never stops early) and samples off; TRL's side, and
              where it must differ (a full value model, as TRL has no LoRA value head): see
              bench/peers/trl_ppo.py.
  dpo         bench_dpo.py's comparison (matched settings, llama 256 x 4, 400 pairs) with TRL 1.x
              DPOTrainer from its venv (bench/peers/trl_dpo.py). Target: TRL's seconds / ours
              >= 1.0 over the whole job (medians over seeds), and held-out accuracy as for the
              reward model; the tokens TRL trained on are checked to be ours.
  generation  paired generation (bench_pairs.py: sampling.generate_pairs against a plain
              batched model.generate with the same settings, on the same loaded model, so in
              the same number format), in this process, interleaved, median of rounds.
              Target: ours / plain >= 1.5 (pairs per second).
  ui          bench/ui_stalls.py: the longest gap of a 10 ms timer on the UI thread while
              generation, reward, PPO and DPO run from their pages (offscreen). Target: under
              100 ms; no peer.

Options: --only reward,ppo,dpo,generation,ui; --seeds N (reward and DPO seeds, default 5);
--quick (tiny sizes, one seed, 1 and 3 PPO steps: a smoke run of under 2 minutes);
--json FILE (also write every figure); --wait-idle SECONDS (before each measurement, wait that
long at most for other processes to leave the CPU, and measure again, twice at most, what they
disturbed). The default run takes about 13 minutes on a quiet 2-core CPU (reward about 6, PPO
about 3, DPO about 3.5, generation under 1, UI about 1); the quick one under 3 minutes.

The CPU time other processes take during each measurement is recorded (/proc/stat less our
own): on a 2-core machine a neighbour using one core slows torch's two threads several-fold
(up to 5x measured here), so the table ends with a warning when that happened, and those
figures should not be trusted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH / "peers"))

import torch  # noqa: E402
from _peer import peak_rss_mb  # noqa: E402  (the peers' measure of memory, for ours too)
from bench_reward import build_model, make_workspace  # noqa: E402  (the same synthetic data)

from desktop_app.core.config import DPOConfig, PPOConfig, RewardConfig  # noqa: E402
from desktop_app.core.data.store import Store  # noqa: E402
from desktop_app.core.runs.record import RunKind, run_dir  # noqa: E402
from desktop_app.core.workspace import Workspace  # noqa: E402
from desktop_app.ml.dpo.train import train_dpo  # noqa: E402
from desktop_app.ml.ppo.train import train_ppo  # noqa: E402
from desktop_app.ml.reward.pairs import Split  # noqa: E402
from desktop_app.ml.reward.train import train_reward_model  # noqa: E402

VENVS = BENCH / ".peer-venvs"
PEER_PYTHON = {"trl": VENVS / "trl/bin/python", "trl029": VENVS / "trl029/bin/python"}
SECTIONS = ("reward", "ppo", "dpo", "generation", "ui")


# ---- sizes ----------------------------------------------------------------------------------

def sizes(quick: bool) -> dict:
    """The issue's settings, or tiny ones for a smoke run."""
    if quick:
        return {"gpt2": (128, 2, 4), "reward_pairs": 96, "reward_epochs": 1.0,
                "ppo_prompts": 32, "ppo_steps": (1, 3), "llama": (64, 2), "dpo_pairs": 96,
                "gen_prompts": 16, "gen_rounds": 1, "gen_tokens": 32}
    return {"gpt2": (512, 6, 8), "reward_pairs": 600, "reward_epochs": 2.0,
            "ppo_prompts": 64, "ppo_steps": (2, 8), "llama": (256, 4), "dpo_pairs": 400,
            "gen_prompts": 64, "gen_rounds": 3, "gen_tokens": 64}


def build_gpt2(folder: Path, hidden: int, layers: int, heads: int) -> Path:
    """bench_reward.build_model's tokenizer, on a gpt2-style model (the issue's reference)."""
    if not (folder / "config.json").exists():
        build_model(folder, hidden, layers, arch="gpt2", heads=heads)
    return folder


# ---- subprocesses -----------------------------------------------------------------------------

def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat, Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return math.nan
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def own_cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))


OTHER_LOAD: list[float] = []  # cores other processes kept busy, one entry per measurement
WAIT_IDLE = [0.0]  # --wait-idle: seconds to wait, before each measurement, for a quiet machine


def wait_for_idle() -> None:
    """Before a measurement: wait (up to --wait-idle seconds) until other processes use less
    than a quarter of a core over a 2-second look."""
    deadline, said = time.perf_counter() + WAIT_IDLE[0], False
    while time.perf_counter() < deadline:
        busy, own = busy_cpu_s(), own_cpu_s()
        time.sleep(2)
        if busy_cpu_s() - busy - (own_cpu_s() - own) < 0.5:
            return
        if not said:
            print("  (waiting for other processes to leave the CPU)", flush=True)
            said = True


def watched(fn):
    """fn(), and how many cores other processes kept busy meanwhile (on a 2-core machine a
    busy neighbour slows torch's threads far more than its share, so the figure is kept)."""
    wait_for_idle()
    start, busy, own = time.perf_counter(), busy_cpu_s(), own_cpu_s()
    result = fn()
    others = (busy_cpu_s() - busy - (own_cpu_s() - own)) / (time.perf_counter() - start)
    return result, max(0.0, others)


def run_result(cmd: list[str], what: str) -> dict:
    """Run one measurement in a fresh process; its last 'RESULT {json}' line is the answer.
    With --wait-idle, a measurement that other processes disturbed is run again (twice at
    most)."""
    env = os.environ | {"TRL_EXPERIMENTAL_SILENCE": "1"}
    for attempt in range(3 if WAIT_IDLE[0] else 1):
        proc, others = watched(lambda: subprocess.run(cmd, capture_output=True, text=True,
                                                      check=False, env=env))
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not lines:
            tail = (proc.stdout + proc.stderr)[-4000:]
            raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{tail}")
        if others <= 0.25:
            break
        print(f"  (other processes kept {others:.1f} cores busy during {what}"
              + (", measuring again)" if WAIT_IDLE[0] and attempt < 2 else ")"), flush=True)
    OTHER_LOAD.append(others)
    return json.loads(lines[-1][len("RESULT "):]) | {"other_load_cores": others}


def ours(kind: str, job: dict, folder: Path) -> dict:
    path = write_job(folder / f"ours-{kind}.json", job)
    return run_result([sys.executable, __file__, "--worker", kind, str(path)], f"ours ({kind})")


def peer(venv: str, script: str, job: dict, folder: Path) -> dict:
    python = PEER_PYTHON[venv]
    if not python.exists():
        raise SystemExit(f"{python} is missing: `make bench-peers` creates the peer venvs")
    path = write_job(folder / f"{script}.json", job)
    return run_result([str(python), str(BENCH / "peers" / f"{script}.py"), str(path)], script)


def write_job(path: Path, job: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def worker(kind: str, job_path: str) -> int:
    """Our side of one measurement, in this fresh process: the clock starts after the imports,
    as the peer scripts' does after theirs (torch, transformers, peft, trl). Our modules import
    transformers and peft lazily; the app imports them at start (gui.app.warm_up_imports), and
    so does this, through the same ml.models.stack. Peak RSS is the process's."""
    from desktop_app.ml.models import stack
    stack.import_stack()
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    ws = Workspace.open(Path(job["workspace"]))
    start = time.perf_counter()
    if kind == "reward":
        r = train_reward_model(ws, RewardConfig.from_dict(job["cfg"]), base_model=job["model"])
    elif kind == "dpo":
        r = train_dpo(ws, DPOConfig.from_dict(job["cfg"]), base_model=job["model"])
    else:
        r = train_ppo(ws, PPOConfig.from_dict(job["cfg"]), base_model=job["model"],
                      reward_run_id=job["reward_run"])
    wall = time.perf_counter() - start
    assert r.status == "completed", r.error
    out = {"wall_s": wall, "run_s": wall, "run_id": r.run_id, "steps": r.step,
           "peak_rss_mb": peak_rss_mb()}
    if kind != "ppo":
        out |= {"val_accuracy": r.val_accuracy, "pairs_per_s": r.samples_per_s}
    print("RESULT " + json.dumps(out), flush=True)
    return 0


# ---- data for the peers (TRL's formats) ------------------------------------------------------

def write_pairs(ws: Workspace, run_id: int, kind: RunKind, folder: Path) -> dict[str, str]:
    """Our run's train and validation pairs as TRL's conversational preference jsonl."""
    split = Split.load(run_dir(ws.runs_dir, run_id, kind) / "split.json")
    with Store(ws.db_path) as store:
        rows = {r["comparison_id"]: r for r in store.preference_rows()}
    paths = {}
    for part, ids in (("train", split.train_ids), ("val", split.val_ids)):
        paths[part] = str(folder / f"{part}.jsonl")
        with open(paths[part], "w", encoding="utf-8") as f:
            for i in ids:
                r = rows[i]
                f.write(json.dumps({
                    "prompt": r["prompt_messages"] or [{"role": "user", "content": r["prompt"]}],
                    "chosen": [{"role": "assistant", "content": r["chosen"]}],
                    "rejected": [{"role": "assistant", "content": r["rejected"]}]}) + "\n")
    return paths


def use_cpu() -> bool:
    return not torch.cuda.is_available()


def mean_se(values: list[float]) -> tuple[float, float]:
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else math.nan
    return statistics.mean(values), se


def accuracy_row(name: str, a: list[float], b: list[float], peer_name: str) -> dict:
    # TRL's accuracies are float32 means: a difference within 1e-6 is the same count of pairs.
    diff, se = mean_se([x - y if abs(x - y) > 1e-6 else 0.0 for x, y in zip(a, b)])
    ok = diff >= 0 or (se == se and diff >= -2 * se)
    note = f"{diff:+.3f} ± {se:.3f}" if se == se else f"{diff:+.3f} (1 seed)"
    return {"name": name, "ours": statistics.mean(a), "peer": statistics.mean(b),
            "peer_name": peer_name, "ratio": note, "target": "diff >= -2 SE", "met": ok}


# ---- the comparisons --------------------------------------------------------------------------

def bench_reward(args, s: dict, root: Path, log) -> tuple[list[dict], dict]:
    model = build_gpt2(root / "gpt2", *s["gpt2"])
    runs = []
    for seed in range(args.seeds):
        ws = make_workspace(root / f"reward-ws{seed}", s["reward_pairs"], seed=seed)
        cfg = RewardConfig(epochs=s["reward_epochs"], batch_size=16, lora_r=8, max_length=128,
                           seed=seed)
        a = ours("reward", {"workspace": str(ws.root), "model": str(model),
                            "cfg": cfg.to_dict()}, root / f"reward{seed}")
        data = write_pairs(ws, a["run_id"], RunKind.REWARD, root / f"reward{seed}")
        b = peer("trl", "trl_reward", data | {
            "model": str(model), "out": str(root / f"reward{seed}/trl"), "batch_size": 16,
            "epochs": s["reward_epochs"], "lora_r": 8, "max_length": 128, "seed": seed,
            "use_cpu": use_cpu()}, root / f"reward{seed}")
        log(f"reward seed {seed}: ours {a['wall_s']:.1f} s acc {a['val_accuracy']:.3f} | "
            f"TRL {b['wall_s']:.1f} s acc {b['val_accuracy']:.3f}")
        runs.append({"seed": seed, "ours": a, "trl": b})
    t_ours, t_trl = (statistics.median(r[side]["wall_s"] for r in runs) for side in ("ours", "trl"))
    rows = [{"name": "Reward model, whole job (s, median)", "ours": t_ours, "peer": t_trl,
             "peer_name": "TRL 1.16 RewardTrainer", "ratio": t_trl / t_ours,
             "target": "TRL/ours >= 1.5", "met": t_trl / t_ours >= 1.5},
            accuracy_row("Reward model, held-out accuracy",
                         [r["ours"]["val_accuracy"] for r in runs],
                         [r["trl"]["val_accuracy"] for r in runs], "TRL 1.16 RewardTrainer")]
    return rows, {"runs": runs, "trl_settings": {k: runs[0]["trl"][k] for k in (
        "bf16", "gradient_checkpointing", "learning_rate", "lora_alpha", "lora_targets")}}


def trl_reward_model(base: Path, adapter: str, out: Path) -> Path:
    """Our reward run's model as TRL takes one: LoRA merged into the sequence classifier."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging
    logging.set_verbosity_error()  # "score.weight MISSING": the adapter brings it
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    PeftModel.from_pretrained(model, adapter).merge_and_unload().save_pretrained(out)
    return out


def bench_ppo(args, s: dict, root: Path, log) -> tuple[list[dict], dict]:
    model = build_gpt2(root / "gpt2", *s["gpt2"])
    ws = make_workspace(root / "ppo-ws", s["ppo_prompts"], seed=0)
    reward = train_reward_model(ws, RewardConfig(epochs=1.0, batch_size=16, lora_r=16,
                                                 max_length=128), base_model=str(model))
    assert reward.status == "completed", reward.error
    trl_reward = trl_reward_model(model, reward.artifact, root / "ppo-trl-reward")
    prompts = root / "ppo-prompts.jsonl"
    with Store(ws.db_path) as store, open(prompts, "w", encoding="utf-8") as f:
        for p in store.list_prompts():
            f.write(json.dumps({"messages": [{"role": "user", "content": p["text"]}]}) + "\n")
    runs: dict[str, dict[int, dict]] = {"ours": {}, "trl": {}}
    for steps in s["ppo_steps"]:
        cfg = PPOConfig(steps=steps, batch_size=16, mini_batch_size=4, ppo_epochs=4,
                        max_new_tokens=24, lora_r=16, sample_every=10**5, max_kl=0.0)
        runs["ours"][steps] = ours("ppo", {"workspace": str(ws.root), "model": str(model),
                                           "cfg": cfg.to_dict(), "reward_run": reward.run_id},
                                   root / f"ppo{steps}")
        runs["trl"][steps] = peer("trl029", "trl_ppo", {
            "model": str(model), "reward_model": str(trl_reward), "prompts": str(prompts),
            "out": str(root / f"ppo{steps}/trl"), "steps": steps, "batch_size": 16,
            "mini_batch_size": 4, "ppo_epochs": 4, "response_length": 24, "lora_r": 16,
            "seed": 0, "use_cpu": use_cpu()}, root / f"ppo{steps}")
        log(f"ppo {steps} steps: ours {runs['ours'][steps]['run_s']:.1f} s "
            f"{runs['ours'][steps]['peak_rss_mb']:.0f} MiB | TRL "
            f"{runs['trl'][steps]['run_s']:.1f} s {runs['trl'][steps]['peak_rss_mb']:.0f} MiB")
    short, long = s["ppo_steps"]

    def per_step(side: str) -> float:
        return (runs[side][long]["run_s"] - runs[side][short]["run_s"]) / (long - short)

    a, b = per_step("ours"), per_step("trl")
    m_a, m_b = runs["ours"][long]["peak_rss_mb"], runs["trl"][long]["peak_rss_mb"]
    name = "TRL 0.29.1 PPOTrainer"
    rows = [{"name": "PPO, seconds per step", "ours": a, "peer": b, "peer_name": name,
             "ratio": b / a, "target": "TRL/ours >= 2", "met": b / a >= 2},
            {"name": f"PPO, peak RSS (MiB, {long} steps)", "ours": m_a, "peer": m_b,
             "peer_name": name, "ratio": m_a / m_b, "target": "ours/TRL <= 0.6",
             "met": m_a / m_b <= 0.6}]
    trl = runs["trl"][long]
    return rows, {"runs": {side: {str(k): v for k, v in r.items()} for side, r in runs.items()},
                  "reward_val_accuracy": reward.val_accuracy,
                  "trl_settings": {k: trl[k] for k in (
                      "bf16", "gradient_checkpointing", "learning_rate", "lora_alpha",
                      "lora_targets", "value_trainable_params")}}


def same_tokens(ws: Workspace, run_id: int, model: Path, max_length: int, tokens: Path) -> tuple:
    """On how many pairs TRL's prompt and response tokens are exactly ours, out of how many."""
    from desktop_app.ml.dpo.data import PreferenceEncoder
    from desktop_app.ml.reward.model import load_tokenizer
    from desktop_app.ml.reward.pairs import preference_examples
    split = Split.load(run_dir(ws.runs_dir, run_id, RunKind.DPO) / "split.json")
    with Store(ws.db_path) as store:
        examples = {e.comparison_id: e for e in
                    preference_examples(store.preference_rows(), "equal")}
    encoder = PreferenceEncoder(load_tokenizer(model), max_length)
    rows = [json.loads(line) for line in tokens.read_text(encoding="utf-8").splitlines()]
    ids = split.train_ids + split.val_ids
    if len(rows) != len(ids):  # TRL dropped pairs
        return 0, len(ids)
    same = 0
    for cid, row in zip(ids, rows):
        e, p = encoder.encode(examples[cid]), row["prompt"]
        same += (p + row["chosen"] == e.chosen and len(p) == e.chosen_start
                 and p + row["rejected"] == e.rejected and len(p) == e.rejected_start)
    return same, len(ids)


def bench_dpo(args, s: dict, root: Path, log) -> tuple[list[dict], dict]:
    from bench_reward import build_model
    from transformers import AutoModelForCausalLM

    from desktop_app.ml.reward.model import lora_targets
    from desktop_app.ml.training.optim import resolve_precision
    model = build_model(root / "llama", *s["llama"])
    runs, checked = [], [0, 0]
    for seed in range(args.seeds):
        # bench_dpo.py's configuration: evaluation once, at the end, and no checkpoints.
        cfg = DPOConfig(epochs=2.0, lr=1e-3, beta=0.1, loss="sigmoid", batch_size=8,
                        max_length=128, lora_r=16, lora_alpha=32, lora_dropout=0.0,
                        warmup_ratio=0.1, scheduler="cosine", val_fraction=0.2,
                        eval_every=100000, log_every=10, checkpoint_every=100000, min_pairs=16,
                        seed=seed)
        choice, autocast = resolve_precision(cfg)
        targets = lora_targets(AutoModelForCausalLM.from_pretrained(model), cfg.target_modules)
        ws = make_workspace(root / f"dpo-ws{seed}", s["dpo_pairs"], seed=seed)
        folder = root / f"dpo{seed}"
        a = ours("dpo", {"workspace": str(ws.root), "model": str(model), "cfg": cfg.to_dict()},
                 folder)
        data = write_pairs(ws, a["run_id"], RunKind.DPO, folder)
        b = peer("trl", "trl_dpo", data | {
            "model": str(model), "out": str(folder / "trl"), "cfg": cfg.to_dict(),
            "dtype": str(choice.torch_dtype).removeprefix("torch."),
            "autocast": str(autocast).removeprefix("torch.") if autocast else None,
            "lora_targets": targets, "use_cpu": use_cpu()}, folder)
        same, total = same_tokens(ws, a["run_id"], model, cfg.max_length,
                                  folder / "trl/tokens.jsonl")
        checked[0] += same
        checked[1] += total
        log(f"dpo seed {seed}: ours {a['wall_s']:.1f} s acc {a['val_accuracy']:.3f} | TRL "
            f"{b['wall_s']:.1f} s acc {b['val_accuracy']:.3f} | same tokens {same}/{total}")
        runs.append({"seed": seed, "ours": a, "trl": b})
    t_ours, t_trl = (statistics.median(r[side]["wall_s"] for r in runs) for side in ("ours", "trl"))
    name = "TRL 1.16 DPOTrainer"
    rows = [{"name": "DPO, whole job (s, median)", "ours": t_ours, "peer": t_trl, "peer_name": name,
             "ratio": t_trl / t_ours, "target": "TRL/ours >= 1.0", "met": t_trl >= t_ours},
            accuracy_row("DPO, held-out accuracy", [r["ours"]["val_accuracy"] for r in runs],
                         [r["trl"]["val_accuracy"] for r in runs], name)]
    return rows, {"runs": runs, "same_tokens": checked[0], "pairs_checked": checked[1],
                  "precision": choice.label()}


def bench_generation(args, s: dict, root: Path, log) -> tuple[list[dict], dict]:
    from bench_pairs import PROMPTS, app_generate, build_default_model, plain_generate

    from desktop_app.core.config import SamplingConfig
    from desktop_app.ml.models.loader import load_model
    lm = load_model(build_default_model(root / "gen-model"), device="auto")
    cfg = SamplingConfig(batch_size=8, max_new_tokens=s["gen_tokens"])
    prompts = PROMPTS[:s["gen_prompts"]]
    paths = {"ours": app_generate, "plain": plain_generate}
    for fn in paths.values():  # warm-up (kernels, caches)
        fn(lm, prompts[:cfg.batch_size], cfg, 0)
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(s["gen_rounds"]):
        for name, fn in paths.items():
            start = time.perf_counter()
            (pairs, _), others = watched(lambda: fn(lm, prompts, cfg, 1000 + r))  # noqa: B023
            OTHER_LOAD.append(others)
            rates[name].append(pairs / (time.perf_counter() - start))
    a, b = statistics.median(rates["ours"]), statistics.median(rates["plain"])
    log(f"generation: ours {a:.2f} pairs/s | plain model.generate {b:.2f} pairs/s")
    return [{"name": "Paired generation (pairs/s)", "ours": a, "peer": b,
             "peer_name": "plain model.generate", "ratio": a / b, "target": "ours/plain >= 1.5",
             "met": a / b >= 1.5}], {"rates": rates, "device": lm.device.label(),
                                      "prompts": len(prompts), "batch_size": cfg.batch_size,
                                      "max_new_tokens": cfg.max_new_tokens}


def bench_ui(args, s: dict, root: Path, log) -> tuple[list[dict], dict]:
    """bench/ui_stalls.py in a fresh process: the longest gap of a 10 ms UI timer while each
    job runs from its page (no peer: the target is absolute)."""
    out = root / "ui.json"
    wait_for_idle()
    (_, others) = watched(lambda: subprocess.run(
        [sys.executable, str(BENCH / "ui_stalls.py"), "--json", str(out)], check=True,
        env=os.environ | {"QT_QPA_PLATFORM": "offscreen"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL))
    OTHER_LOAD.append(others)
    results = json.loads(out.read_text(encoding="utf-8"))
    rows = []
    for job, r in results.items():
        log(f"ui during {job}: longest gap {r['max_ms']:.0f} ms over {r['seconds']:.1f} s")
        rows.append({"name": f"UI longest stall during {job} (ms)", "ours": r["max_ms"],
                     "peer": 100.0, "peer_name": "target, no peer", "ratio": "-",
                     "target": "< 100 ms", "met": r["max_ms"] < 100 and bool(r["finished"])})
    return rows, results


# ---- the table ------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    def num(x) -> str:
        return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"

    head = ("comparison", "ours", "peer", "ratio", "target", "result", "peer is")
    body = [(r["name"], num(r["ours"]), num(r["peer"]),
             r["ratio"] if isinstance(r["ratio"], str) else f"{r['ratio']:.2f}x",
             r["target"], "met" if r["met"] else "NOT met", r["peer_name"]) for r in rows]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    line = "  ".join("{:<%d}" % w if i in (0, 4, 5, 6) else "{:>%d}" % w
                     for i, w in enumerate(widths))
    return "\n".join([line.format(*head), "  ".join("-" * w for w in widths),
                      *(line.format(*row) for row in body)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--seeds", type=int, default=None,
                        help="reward and DPO seeds (default 5; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="before each measurement, wait up to this long for other "
                             "processes to leave the CPU (default 0: measure at once)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(SECTIONS)}")
    args.seeds = args.seeds or (1 if args.quick else 5)
    WAIT_IDLE[0] = args.wait_idle
    s = sizes(args.quick)
    began = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - began:6.0f} s] {text}", flush=True)

    benches = {"reward": bench_reward, "ppo": bench_ppo, "dpo": bench_dpo,
               "generation": bench_generation, "ui": bench_ui}
    rows, details = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for name in SECTIONS:
            if name in only:
                start = time.perf_counter()
                section_rows, details[name] = benches[name](args, s, Path(tmp), log)
                details[name]["section_s"] = time.perf_counter() - start
                rows += section_rows
    device = "cuda" if torch.cuda.is_available() else f"cpu, {os.cpu_count()} cores"
    print(f"\nRLHF Desk against its peers ({'quick sizes' if args.quick else 'issue #17 sizes'},"
          f" {args.seeds} seed(s), {device}, {time.perf_counter() - began:.0f} s in all; "
          "ratio > 1 means ours is faster / more, see target):")
    print(table(rows))
    busiest = max(OTHER_LOAD, default=0.0)
    if busiest > 0.25:
        print(f"WARNING: other processes kept up to {busiest:.1f} of {os.cpu_count()} cores busy "
              "during the measurements; torch's threads slow down far more than that share, so "
              "these timings are unreliable: rerun on an idle machine.")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "sizes": s, "rows": rows, "details": details,
                                         "other_load_cores": OTHER_LOAD},
                                        indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
