"""PPO benchmark (run by hand: `python bench/bench_ppo.py`; about a minute on a 2-core CPU).

Setup: a random small Llama (tiny_models), synthetic judgments (as in bench_reward.py), a short
reward-model run. Each measurement then runs in a fresh subprocess, so none contaminates another.
1. Peak memory of PPO steps (train_ppo) against LoRA steps of the same model and batch: plain
   causal-LM forward + backward + AdamW on one PPO micro-batch of sequences of the longest
   rollout length, same LoRA rank, targets, precision, clipping. Target: PPO at most 1.5x. And
   against an ESTIMATE (from parameter bytes, not run) for four separate models: the PPO peak
   plus the reference LM and reward and value bodies as extra copies. CUDA: max_memory_allocated.
   CPU: peak RSS (VmHWM reset via /proc/self/clear_refs, else ru_maxrss), glibc's mmap threshold
   fixed at 128 KiB so that freed tensors leave the RSS. "Total" = peak during the steps over the
   memory after imports; "steps only" = over the memory held when the steps start.
2. Time per PPO step and its split, from the stored metrics (time/generation_s, time/scoring_s,
   time/optimization_s) of a separate run without the malloc setting (it slows the CPU down).
3. CUDA only: generation tokens/s against the bandwidth bound batch x bandwidth / parameter
   bytes (a decoding step reads every weight once; KV cache ignored); --bandwidth defaults to
   an H100 SXM's 3.35e12 B/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench_reward import build_model, make_workspace  # noqa: E402  (the same synthetic data)
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from desktop_app.core.config import PPOConfig, RewardConfig  # noqa: E402
from desktop_app.core.data.store import Store  # noqa: E402
from desktop_app.core.events import Log, Progress  # noqa: E402
from desktop_app.core.workspace import Workspace  # noqa: E402
from desktop_app.ml.generation.sampling import PromptInput, encode_prompt  # noqa: E402
from desktop_app.ml.ppo.train import train_ppo  # noqa: E402
from desktop_app.ml.reward.model import load_tokenizer, lora_targets  # noqa: E402
from desktop_app.ml.reward.train import train_reward_model  # noqa: E402
from desktop_app.ml.training.optim import resolve_precision  # noqa: E402

MIB = 2**20
TIMES = ("time/generation_s", "time/scoring_s", "time/optimization_s")


class Probe:
    """Memory now and its peak since ``reset``: CUDA allocator counters, else the process RSS."""

    def __init__(self, device: str):
        self.device, self.cuda = device, device.startswith("cuda")
        self.mark0 = self.now()  # after all imports (done at the top), before any model

    def now(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        import psutil
        return psutil.Process().memory_info().rss

    def reset(self) -> str:
        """Resets the peak; returns how it is read."""
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return "torch.cuda.max_memory_allocated, reset when the steps start"
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current RSS
            return "peak RSS (VmHWM reset via /proc/self/clear_refs when the steps start)"
        except OSError:
            return "peak RSS (ru_maxrss: cannot be reset here, so model loading is included)"

    def peak(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        status = Path("/proc/self/status")
        hwm = re.search(r"VmHWM:\s+(\d+) kB", status.read_text()) if status.exists() else None
        return 1024 * int(hwm.group(1) if hwm else
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def ppo_config(args) -> PPOConfig:
    return PPOConfig(steps=args.steps, batch_size=args.batch_size,
                     mini_batch_size=args.mini_batch_size, grad_accum=args.grad_accum,
                     ppo_epochs=args.ppo_epochs, max_new_tokens=args.max_new_tokens,
                     lora_r=args.lora_r, lora_alpha=2 * args.lora_r, sample_every=10**5,
                     checkpoint_every=10**5, max_kl=0.0, device=args.device)


# ---- the phases, each in its own subprocess ---------------------------------------------------

def phase_lora(args, cfg: PPOConfig, probe: Probe, autocast) -> dict:
    root = Path(args.root)
    tokenizer = load_tokenizer(root / "model")
    with Store(Workspace.open(root / "ws").db_path) as store:
        width = max(len(encode_prompt(tokenizer, PromptInput(r["id"], r["text"])))
                    for r in store.list_prompts())
    seq_len, rows = width + cfg.max_new_tokens, cfg.mini_batch_size // cfg.grad_accum
    base = AutoModelForCausalLM.from_pretrained(root / "model", local_files_only=True,
                                                dtype=autocast or torch.float32)
    size = {f"{name}_{unit}": sum(p.numel() * (p.element_size() if unit == "bytes" else 1)
                                  for p in module.parameters())
            for name, module in (("lm", base), ("body", base.base_model))
            for unit in ("bytes", "params")}
    model = get_peft_model(base, LoraConfig(
        task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
        target_modules=lora_targets(base, cfg.target_modules)))
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # trainable weights in fp32, as PPO keeps them
        p.data = p.data.float()
    model.to(probe.device).train()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, fused=probe.cuda or None)
    ids = torch.randint(0, len(tokenizer), (rows, seq_len),
                        generator=torch.Generator().manual_seed(0)).to(probe.device)
    start, how = probe.now(), probe.reset()
    for _ in range(cfg.steps):
        with torch.autocast("cuda", dtype=autocast) if autocast else torch.enable_grad():
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = probe.peak()
    return size | {"total": peak - probe.mark0, "steps": peak - start, "how": how,
                   "rows": rows, "seq_len": seq_len}


def phase_ppo(args, cfg: PPOConfig, probe: Probe, autocast) -> dict:
    seen: dict = {}

    def emit(event) -> None:
        if isinstance(event, Log) and event.message.startswith("PPO run "):  # setup done
            seen["start"], seen["how"] = probe.now(), probe.reset()
        elif isinstance(event, Progress) and event.message == "PPO":  # a step done
            seen["peak"] = probe.peak()

    root = Path(args.root)
    result = train_ppo(Workspace.open(root / "ws"), cfg, base_model=str(root / "model"),
                       reward_run_id=args.reward_run, emit=emit)
    assert result.status == "completed", result.error
    return {"total": seen["peak"] - probe.mark0, "steps": seen["peak"] - seen["start"],
            "how": seen["how"], "run_id": result.run_id}


def run_phase(args) -> int:
    cfg = ppo_config(args)
    choice, autocast = resolve_precision(cfg)
    if choice.device.startswith("cuda"):
        torch.cuda.init()
    probe = Probe(choice.device)
    out = (phase_lora if args.phase == "lora" else phase_ppo)(args, cfg, probe, autocast)
    print("RESULT " + json.dumps(out | {"device": choice.device}))
    return 0


def spawn(phase: str, root: Path, *extra: str, malloc: bool = True) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--phase", phase,
           "--root", str(root), *extra]
    env = os.environ | ({"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
                        if malloc else {})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


# ---- the report -----------------------------------------------------------------------------

def report(args, cfg: PPOConfig, root: Path, lora: dict, ppo: dict, timed: dict) -> None:
    print(f"\nPeak memory on {ppo['device']}, each phase in a fresh subprocess; {ppo['how']}; "
          "total = over the memory after imports, steps only = over the memory when the steps "
          "start:")
    names = (f"LoRA step (plain causal LM, {lora['rows']} seq x {lora['seq_len']} tokens)",
             (f"PPO step (train_ppo, batch {cfg.batch_size}, mini-batch {cfg.mini_batch_size}, "
              f"{cfg.ppo_epochs} epochs)"))
    for name, r in zip(names, (lora, ppo)):
        print(f"  {name:58s} total {r['total'] / MIB:7.1f} MiB, steps only "
              f"{r['steps'] / MIB:7.1f} MiB")
    ratio = ppo["total"] / lora["total"]
    print(f"  ratio PPO / LoRA: total {ratio:.2f} (steps only {ppo['steps'] / lora['steps']:.2f})"
          f"; target total <= 1.5 -> {'met' if ratio <= 1.5 else 'NOT met'}")
    lm, body = lora["lm_bytes"], lora["body_bytes"]
    four = ppo["total"] + lm + 2 * body
    full = four + 12 * (lora["lm_params"] + lora["body_params"])
    print(f"  four separate models, ESTIMATE ({lora['lm_params'] / 1e6:.1f} M params; LM "
          f"{lm / MIB:.1f} MiB, body {body / MIB:.1f} MiB): PPO total + a reference LM + reward "
          f"and value bodies = {four / MIB:.1f} MiB -> PPO {ppo['total'] / four:.2f}x of it;\n"
          f"    with policy and value fully trained (+12 B/param: fp32 grads, AdamW moments) "
          f"{full / MIB:.1f} MiB -> PPO {ppo['total'] / full:.2f}x of it")

    steps: dict[int, dict] = {}
    with Store(Workspace.open(root / "ws").db_path) as store:
        for r in store.metrics(timed["run_id"]):
            steps.setdefault(r["step"], {})[r["name"]] = r["value"]
    ordered = [steps[k] for k in sorted(steps)]
    later = ordered[1:] or ordered
    print(f"\nTime per PPO step (stored metrics of another run; batch {cfg.batch_size}, "
          f"max_new_tokens {cfg.max_new_tokens}, {cfg.ppo_epochs} PPO epochs):")
    for label, group in (("first step (warm-up)", ordered[:1]),
                         (f"median of steps 2-{len(ordered)}", later)):
        t = {p: statistics.median(s[p] for s in group) for p in TIMES}
        total = sum(t.values())
        print(f"  {label:22s} {total:6.2f} s = " + "  ".join(
            f"{p[5:-2]} {t[p]:6.2f} s ({t[p] / total:4.0%})" for p in TIMES))

    if not ppo["device"].startswith("cuda"):
        print("\nGeneration tokens/s vs the memory-bandwidth bound: skipped (no CUDA device).")
        return
    tok_s = statistics.median(s["response/length_mean"] * cfg.batch_size
                              / s["time/generation_s"] for s in later)
    bound = cfg.batch_size * args.bandwidth / lm
    print(f"\nGeneration on {torch.cuda.get_device_name()}: {tok_s:,.0f} tokens/s (batch "
          f"{cfg.batch_size}); bound = batch x {args.bandwidth:.3g} B/s (--bandwidth) / "
          f"{lm / MIB:.1f} MiB of weights per decoding step = {bound:,.0f} tokens/s -> "
          f"{tok_s / bound:.1%} of the bound")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default, text in (
            ("hidden", 256, "model width"), ("layers", 4, "transformer blocks"),
            ("pairs", 64, "judged prompts (also PPO's prompts)"),
            ("steps", 5, "PPO steps, and LoRA steps"), ("batch-size", 16, "PPO batch"),
            ("mini-batch-size", 16, "PPO mini-batch"), ("grad-accum", 1, "PPO micro-batches"),
            ("ppo-epochs", 4, "PPO epochs"), ("max-new-tokens", 64, "rollout length"),
            ("lora-r", 16, "LoRA rank (alpha = 2 r)")):
        parser.add_argument(f"--{name}", type=int, default=default, help=text)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--bandwidth", type=float, default=3.35e12,
                        help="device memory bandwidth in B/s (default: H100 SXM, 3.35e12)")
    parser.add_argument("--phase", choices=("lora", "ppo"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--reward-run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return run_phase(args)

    cfg = ppo_config(args)
    with tempfile.TemporaryDirectory() as tmp:
        root, start = Path(tmp), time.perf_counter()
        build_model(root / "model", args.hidden, args.layers)
        reward = train_reward_model(make_workspace(root / "ws", args.pairs), RewardConfig(
            epochs=1.0, lr=1e-3, batch_size=8, max_length=64, lora_r=args.lora_r,
            lora_alpha=2 * args.lora_r, val_fraction=0.2, eval_every=10**5, log_every=10,
            checkpoint_every=10**5, min_pairs=16, device=args.device),
            base_model=str(root / "model"))
        assert reward.status == "completed", reward.error
        print(f"Setup {time.perf_counter() - start:.0f} s: llama hidden {args.hidden} x "
              f"{args.layers} layers, {args.pairs} judged prompts, reward run (held-out "
              f"accuracy {reward.val_accuracy:.2f}); LoRA r {args.lora_r} on all linear layers; "
              f"{args.steps} steps per phase")
        lora = spawn("lora", root)
        ppo = spawn("ppo", root, "--reward-run", str(reward.run_id))
        timed = spawn("ppo", root, "--reward-run", str(reward.run_id), malloc=False)
        report(args, cfg, root, lora, ppo, timed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
