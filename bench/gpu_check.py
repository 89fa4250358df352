"""Every accelerator path once, with a pass/fail table (run by hand on a GPU machine:
`python bench/gpu_check.py`, or `make gpu-check`; about a minute with the tiny model).

    python bench/gpu_check.py [--device cuda|cpu] [--model DIR] [--json FILE]

The checks, each on its own so that one failure does not stop the others:
  load bf16 / fp16 / 4-bit   load_model at that number format (4-bit: bitsandbytes NF4), the
                             weights' dtype or quantisation checked, one forward pass finite
  generation, gen 4-bit      paired generation (generate_pairs, as the Judge page and
                             `rlhf-desk generate` run it), two finished-or-cut responses a prompt
  reward step, reward 4-bit  train_reward_model for a few steps on a small synthetic workspace
  PPO step, PPO 4-bit        train_ppo for 2 steps on that reward run
  park / unpark              move_weights to main memory and back: device memory must drop by
                             about the weights' size and come back, and the model still work
  memory metrics             available_memory_bytes and the training loop's memory_gib agree
                             with torch / the operating system
  plan train-reward (…)      the planner's estimate against the reward step's measured peak:
                             within ±15% on a GPU; on the CPU the ratio is only reported
  torchrun reward            `torchrun --nproc-per-node N rlhf-desk train-reward` (N = every
                             GPU, NCCL; 2 gloo processes with --device cpu) against the same
                             run in one process: one completed run, accuracy within 0.15,
                             and the speed-up in training pairs per second (skipped with one
                             GPU). With the tiny model, communication may outweigh the gain:
                             pass --model for a figure that means something
Each row: PASS / FAIL / SKIP, seconds, the peak memory of the check (on CUDA
torch.cuda.max_memory_allocated, reset before each check; on the CPU the process's peak RSS,
reset through /proc/self/clear_refs where Linux allows) and the first line of the error.
The model is a small Llama built in-process (desktop_app.ml.models.tiny) unless --model names
a real one. Exit status 0 when nothing FAILed. `--device cpu` runs it here, without a GPU:
fp16 and parking are skipped there (the app never uses fp16 on the CPU, and CPU weights are
already in main memory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

WORDS = ("the cat sat on a mat while rain fell over the quiet town and a dog ran through "
         "the park chasing one red ball").split()
PLAN_TOLERANCE = 0.15  # on a GPU; bench/bench_plan.py uses the same target


class Skip(Exception):
    """The check cannot run on this device; the message says why."""


@dataclass
class Row:
    name: str
    status: str  # PASS | FAIL | SKIP
    seconds: float
    peak_bytes: int | None
    note: str = ""


# ---- peak memory of one check ----------------------------------------------------------------

def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        try:  # "5" resets the process's peak RSS (VmHWM), Linux 4.0+
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak(device: str) -> int | None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil
    return psutil.Process().memory_info().rss


# ---- the shared fixtures: a model folder and a judged workspace ------------------------------

def build_model(folder: Path) -> Path:
    """A randomly initialised Llama (4 layers, hidden 256) with a chat-template tokenizer."""
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    tokenizer = train_tokenizer([" ".join(WORDS)] * 20, vocab_size=600, chat_template=True)
    build_tiny_model("llama", tokenizer, folder, hidden=256, layers=4, heads=4)
    return folder


def build_workspace(root: Path):
    """40 prompts, each with a judged pair whose winner says "banana" (so a reward model has
    something to learn), plus 16 prompts without pairs."""
    from desktop_app.core.data.store import GenerationIn, Store
    from desktop_app.core.workspace import Workspace
    rng = random.Random(0)

    def text(marker: bool) -> str:
        words = rng.choices(WORDS, k=rng.randint(6, 14))
        if marker:
            words.insert(rng.randint(0, len(words)), "banana")
        return " ".join(words)

    ws = Workspace.open(root)
    with Store(ws.db_path) as store:
        ids = store.add_prompts([f"Tell me about the {rng.choice(WORDS)} ({i})"
                                 for i in range(40)]).ids
        pairs = [(pid, GenerationIn(text(True), "m"), GenerationIn(text(False), "m"))
                 for pid in ids]
        for cid in store.add_pairs(pairs, rng=rng):
            store.judge(cid, "a")
        store.add_prompts([f"Say something about the {rng.choice(WORDS)} ({i})"
                           for i in range(16)])
    return ws


# ---- the checks ------------------------------------------------------------------------------

class Checks:
    """The checks in the order they run; ``state`` carries what later checks need (the reward
    runs, the measured peaks)."""

    def __init__(self, device: str, model: Path, workspace):
        self.device = device
        self.model = model
        self.ws = workspace
        self.state: dict = {}

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _forward(self, lm) -> None:
        ids = lm.tokenizer(["the cat sat on the mat"], return_tensors="pt")
        with torch.no_grad():
            logits = lm.model(input_ids=ids["input_ids"].to(lm.device.device),
                              attention_mask=ids["attention_mask"].to(lm.device.device)).logits
        if not torch.isfinite(logits.float()).all():
            raise AssertionError("the forward pass gave non-finite logits")

    def _load(self, dtype: str, quantize: str = "none"):
        from desktop_app.ml.models.loader import load_model
        lm = load_model(self.model, device=self.device, dtype=dtype, quantize=quantize)
        self._forward(lm)
        return lm

    def load_bf16(self) -> str:
        from desktop_app.ml.models.device import pick_device
        try:
            pick_device(self.device, "bfloat16")
        except ValueError as exc:  # e.g. a GPU older than Ampere
            raise Skip(str(exc)) from None
        lm = self._load("bfloat16")
        dtype = next(lm.model.parameters()).dtype
        if dtype != torch.bfloat16:
            raise AssertionError(f"weights are {dtype}, not bfloat16")
        return f"{lm.device.label()}, {n_params(lm.model) / 1e6:.1f} M params"

    def load_fp16(self) -> str:
        if not self.cuda:
            raise Skip("the app never runs fp16 on the CPU (auto picks fp32)")
        lm = self._load("float16")
        dtype = next(lm.model.parameters()).dtype
        if dtype != torch.float16:
            raise AssertionError(f"weights are {dtype}, not float16")
        return lm.device.label()

    def load_4bit(self) -> str:
        from desktop_app.ml.models.quantize import bitsandbytes_available, quantization_of
        if not bitsandbytes_available():
            raise Skip("bitsandbytes is not installed")
        lm = self._load("auto", "4bit")
        kind = quantization_of(lm.model)
        if kind != "4bit":
            raise AssertionError(f"the model reports quantisation {kind!r}, not 4bit")
        return f"{lm.device.label()}, {kind}"

    def _generate(self, quantize: str) -> str:
        from desktop_app.core.config import SamplingConfig
        from desktop_app.ml.generation.sampling import PromptInput, generate_pairs
        lm = self._load("auto", quantize)
        prompts = [PromptInput(i, f"Tell me about the {w}") for i, w in
                   enumerate(["cat", "rain", "park", "dog"])]
        cfg = SamplingConfig(max_new_tokens=24, batch_size=4)
        started = time.perf_counter()
        pairs = [p for batch in generate_pairs(lm, prompts, cfg, seed=0) for p in batch]
        seconds = time.perf_counter() - started
        if len(pairs) != len(prompts):
            raise AssertionError(f"{len(pairs)} pairs for {len(prompts)} prompts")
        tokens = sum(p.a.completion_tokens + p.b.completion_tokens for p in pairs)
        if tokens == 0:
            raise AssertionError("no tokens generated")
        return f"{len(pairs)} pairs, {tokens / seconds:.0f} tokens/s"

    def generation(self) -> str:
        return self._generate("none")

    def generation_4bit(self) -> str:
        return self._generate("4bit")

    def reward_config(self, quantize: str):
        from desktop_app.core.config import RewardConfig
        return RewardConfig(epochs=1.0, batch_size=8, max_length=64, lora_r=8, lora_alpha=16,
                            val_fraction=0.2, eval_every=1000, log_every=1, min_pairs=8,
                            checkpoint_every=1000, device=self.device, quantize=quantize)

    def _reward(self, quantize: str) -> str:
        from desktop_app.ml.reward.train import train_reward_model
        result = train_reward_model(self.ws, self.reward_config(quantize),
                                    base_model=str(self.model))
        if result.status != "completed":
            raise AssertionError(f"run {result.status}: {result.error}")
        self.state[f"reward-{quantize}"] = result.run_id
        self.state[f"reward-peak-{quantize}"] = peak(self.device)
        acc = "n/a" if result.val_accuracy is None else f"{result.val_accuracy:.2f}"
        return (f"run {result.run_id}, {result.step} steps, val accuracy {acc}, "
                f"{result.samples_per_s:.1f} pairs/s")

    def reward_step(self) -> str:
        return self._reward("none")

    def reward_step_4bit(self) -> str:
        return self._reward("4bit")

    def _ppo(self, quantize: str) -> str:
        from desktop_app.core.config import PPOConfig
        from desktop_app.ml.ppo.train import train_ppo
        reward = self.state.get(f"reward-{quantize}")
        if reward is None:
            raise Skip("no reward run (its check failed)")
        cfg = PPOConfig(steps=2, batch_size=4, mini_batch_size=2, ppo_epochs=1,
                        max_new_tokens=16, lora_r=8, lora_alpha=16, checkpoint_every=1000,
                        sample_every=1000, device=self.device, quantize=quantize)
        result = train_ppo(self.ws, cfg, base_model=str(self.model), reward_run_id=reward)
        if result.status != "completed":
            raise AssertionError(f"run {result.status}: {result.error}")
        if result.kl is None or not math.isfinite(result.kl):
            raise AssertionError(f"KL is {result.kl}")
        return (f"run {result.run_id}, score {result.score_first:.2f} -> "
                f"{result.score_last:.2f}, KL {result.kl:.4f}")

    def ppo_step(self) -> str:
        return self._ppo("none")

    def ppo_step_4bit(self) -> str:
        return self._ppo("4bit")

    def park_unpark(self) -> str:
        from desktop_app.ml.models.loader import move_weights
        if not self.cuda:
            raise Skip("on the CPU the weights already live in main memory")
        lm = self._load("auto")
        weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
        loaded = torch.cuda.memory_allocated()
        move_weights(lm, to_cpu=True)
        parked = torch.cuda.memory_allocated()
        if next(lm.model.parameters()).device.type != "cpu":
            raise AssertionError("the weights did not move to the CPU")
        if loaded - parked < 0.9 * weights:
            raise AssertionError(f"device memory dropped by {mib(loaded - parked)}, the "
                                 f"weights are {mib(weights)}")
        move_weights(lm, to_cpu=False)
        back = torch.cuda.memory_allocated()
        if abs(back - loaded) > 0.1 * weights:
            raise AssertionError(f"device memory {mib(back)} after unparking, {mib(loaded)} "
                                 "before parking")
        self._forward(lm)
        return f"{mib(loaded)} -> {mib(parked)} -> {mib(back)} allocated"

    def memory_metrics(self) -> str:
        from desktop_app.ml.models.device import available_memory_bytes
        from desktop_app.ml.training.files import memory_gib
        free = available_memory_bytes(self.device)
        if self.cuda:
            total = torch.cuda.get_device_properties(torch.device(self.device)).total_memory
        else:
            import psutil
            total = psutil.virtual_memory().total
        if free is None or not 0 < free <= total:
            raise AssertionError(f"available_memory_bytes gave {free} of {total}")
        x = torch.ones(64 * 2**20 // 4, device=self.device)  # 64 MiB, so there is a peak
        used = memory_gib(self.device) * 2**30
        if self.cuda:
            expected = torch.cuda.max_memory_allocated(torch.device(self.device))
            if abs(used - expected) > 2**20:
                raise AssertionError(f"memory_gib {mib(used)}, max allocated {mib(expected)}")
        elif used < x.numel() * 4:
            raise AssertionError(f"memory_gib says {mib(used)}, under the 64 MiB just made")
        del x
        return f"{mib(free)} free of {mib(total)}; memory_gib {used / 2**30:.2f}"

    def _plan(self, quantize: str) -> str:
        from desktop_app.core.data.store import Store
        from desktop_app.ml.planning.plan import Job, pair_tokens, plan_job
        measured = self.state.get(f"reward-peak-{quantize}")
        if measured is None:
            raise Skip("no measured peak (the reward check failed)")
        with Store(self.ws.db_path) as store:
            job = Job("train-reward", str(self.model), self.reward_config(quantize),
                      pair_tokens=pair_tokens(store, str(self.model)))
        estimate = plan_job(job).peak_bytes
        ratio = estimate / measured
        note = f"estimate {mib(estimate)}, measured {mib(measured)}, ratio {ratio:.2f}"
        if self.cuda and abs(ratio - 1) > PLAN_TOLERANCE:
            raise AssertionError(f"{note}: outside ±{PLAN_TOLERANCE:.0%}")
        return note if self.cuda else f"{note} (CPU RSS: reported only)"

    def plan_reward(self) -> str:
        return self._plan("none")

    def plan_reward_4bit(self) -> str:
        return self._plan("4bit")

    def torchrun_reward(self) -> str:
        import subprocess
        nproc = torch.cuda.device_count() if self.cuda else 2
        if nproc < 2:
            raise Skip("one GPU: nothing to spread a job over")
        args = ["--workspace", str(self.ws.root), "train-reward", "--model", str(self.model),
                "--epochs", "5", "--batch-size", "16", "--max-length", "64", "--lora-r", "8",
                "--val-fraction", "0.2", "--eval-every", "1000", "--min-pairs", "8",
                "--checkpoint-every", "1000", "--device", "cuda" if self.cuda else "cpu",
                "--json"]
        env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        if not self.cuda:
            env["RLHF_DESK_DIST_BACKEND"] = "gloo"

        def run(prefix: list[str]) -> tuple[dict, float]:
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, *prefix, "-m", "desktop_app.cli", *args],
                                  capture_output=True, text=True, env=env, cwd=ROOT,
                                  stdin=subprocess.DEVNULL, timeout=1800)
            lines = [line for line in proc.stdout.splitlines() if line.strip()]
            if proc.returncode or len(lines) != 1:
                raise AssertionError(f"exit {proc.returncode}, {len(lines)} result lines: "
                                     f"{proc.stderr.strip().splitlines()[-1:]}")
            return json.loads(lines[0]), time.perf_counter() - started

        many, many_s = run(["-m", "torch.distributed.run", "--standalone",
                            "--nproc-per-node", str(nproc)])
        one, one_s = run([])
        if many["status"] != "completed" or one["status"] != "completed":
            raise AssertionError(f"runs {many['status']} / {one['status']}")
        if abs((many["val_accuracy"] or 0) - (one["val_accuracy"] or 0)) > 0.15:
            raise AssertionError(f"accuracy {many['val_accuracy']} under torchrun, "
                                 f"{one['val_accuracy']} in one process")
        speed = many["samples_per_s"] / max(one["samples_per_s"], 1e-9)
        backend = "NCCL" if self.cuda else "gloo"
        return (f"{nproc} processes ({backend}): {many['samples_per_s']:.0f} pairs/s against "
                f"{one['samples_per_s']:.0f} in one, {speed:.2f}x; whole job {many_s:.0f} s "
                f"against {one_s:.0f} s")

    def all(self) -> list[tuple[str, Callable[[], str]]]:
        return [("load bf16", self.load_bf16), ("load fp16", self.load_fp16),
                ("load 4-bit", self.load_4bit), ("generation", self.generation),
                ("generation 4-bit", self.generation_4bit), ("reward step", self.reward_step),
                ("reward step 4-bit", self.reward_step_4bit), ("PPO step", self.ppo_step),
                ("PPO step 4-bit", self.ppo_step_4bit), ("park / unpark", self.park_unpark),
                ("memory metrics", self.memory_metrics),
                ("plan train-reward", self.plan_reward),
                ("plan train-reward 4-bit", self.plan_reward_4bit),
                ("torchrun reward", self.torchrun_reward)]


def run_check(name: str, check: Callable[[], str], device: str) -> Row:
    from desktop_app.ml.models.device import DeviceChoice
    from desktop_app.ml.models.loader import free_memory
    free_memory(DeviceChoice(device, "float32"))  # what earlier checks dropped
    reset_peak(device)
    started = time.perf_counter()
    try:
        note, status = check(), "PASS"
    except Skip as exc:
        note, status = str(exc), "SKIP"
    except Exception as exc:  # noqa: BLE001 - every failure is a row, not the end
        traceback.print_exc(file=sys.stderr)
        lines = str(exc).strip().splitlines()
        note, status = f"{type(exc).__name__}: {lines[0] if lines else ''}", "FAIL"
    seconds = time.perf_counter() - started
    return Row(name, status, seconds, peak(device) if status != "SKIP" else None, note)


# ---- helpers ---------------------------------------------------------------------------------

def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--model", type=Path, help="a model folder (default: a tiny Llama)")
    parser.add_argument("--json", type=Path, dest="json_out", help="also write the table here")
    opts = parser.parse_args()
    if opts.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA device here; use --device cpu to run the checks on the CPU.",
              file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="rlhf-gpu-check-") as tmp:
        model = opts.model or build_model(Path(tmp) / "model")
        checks = Checks(opts.device, model, build_workspace(Path(tmp) / "workspace"))
        rows = []
        for name, check in checks.all():
            rows.append(run_check(name, check, opts.device))
            r = rows[-1]
            print(f"  {r.status:<4} {r.name:<24} {r.seconds:6.1f} s  {r.note}", flush=True)

    where = (f"{torch.cuda.get_device_name()} (peak = max allocated)" if opts.device == "cuda"
             else "CPU (peak = process RSS)")
    print(f"\n{where}; torch {torch.__version__}; model {opts.model or 'tiny Llama'}")
    print(f"{'check':<25}{'result':<7}{'seconds':>8}{'peak MiB':>10}  note")
    for r in rows:
        size = f"{r.peak_bytes / 2**20:.0f}" if r.peak_bytes is not None else "-"
        print(f"{r.name:<25}{r.status:<7}{r.seconds:>8.1f}{size:>10}  {r.note}")
    failed = [r.name for r in rows if r.status == "FAIL"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} passed or skipped"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if opts.json_out:
        opts.json_out.write_text(json.dumps({"device": where, "torch": torch.__version__,
                                             "rows": [asdict(r) for r in rows]}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
