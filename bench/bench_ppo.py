"""PPO benchmark (run by hand: `python bench/bench_ppo.py`; a few minutes on a 2-core CPU).

Setup: a randomly initialised small Llama (tiny_models), a workspace with synthetic judgments
(as in bench_reward.py) and a short reward-model run (train_reward_model). Then:

1. Peak memory of PPO steps (the app's job, train_ppo) against LoRA training steps of the same
   model and batch: a plain causal-LM forward + backward + AdamW on as many sequences as one
   PPO micro-batch, of the longest rollout length (longest prompt + max_new_tokens), with the
   same LoRA rank, targets, precision and gradient clipping. Target: PPO at most 1.5x.
   Also against an ESTIMATE (computed, not run) of a four-model setup: the measured PPO peak
   plus the extra full copies of the weights that separate policy, reference, reward and value
   models would hold (reward and value without the LM head).
   Each phase runs in a fresh subprocess. CUDA: torch.cuda.max_memory_allocated, reset when
   the steps start. CPU: peak RSS (Linux VmHWM, reset through /proc/self/clear_refs when the
   steps start; else ru_maxrss, never reset). "Total" = peak during the steps over the memory
   after imports (weights, adapters, optimizer, activations); "steps only" = growth during
   the steps over the memory held when they start.
2. Time per PPO step with its split (generation / scoring / optimisation), read from the run's
   stored metrics (time/generation_s, time/scoring_s, time/optimization_s); first step apart.
3. CUDA only: generation tokens/s against the memory-bandwidth bound batch x bandwidth /
   parameter bytes (each decoding step reads every weight once; KV-cache reads ignored).
   --bandwidth defaults to 3.35e12 B/s (H100 SXM HBM3); pass your device's figure.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from desktop_app.core.config import PPOConfig, RewardConfig  # noqa: E402
from desktop_app.core.store import Store  # noqa: E402
from desktop_app.core.workspace import Workspace  # noqa: E402

MIB = 2**20


# ---- memory probes ------------------------------------------------------------------------

def _cuda(device: str) -> bool:
    return device.startswith("cuda")


def _current(device: str) -> int:
    if _cuda(device):
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()
    import psutil
    return psutil.Process().memory_info().rss


def _reset_peak(device: str) -> str:
    """Reset the peak counter; returns how the peak is read."""
    if _cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return "torch.cuda.max_memory_allocated, reset when the steps start"
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return "peak RSS (VmHWM, reset via /proc/self/clear_refs when the steps start)"
    except OSError:
        return "peak RSS (ru_maxrss, cannot be reset: includes model loading)"


def _peak(device: str) -> int:
    if _cuda(device):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


# ---- the phases (each in its own subprocess) ----------------------------------------------

def ppo_config(args) -> PPOConfig:
    return PPOConfig(steps=args.steps, batch_size=args.batch_size,
                     mini_batch_size=args.mini_batch_size, grad_accum=args.grad_accum,
                     ppo_epochs=args.ppo_epochs, max_new_tokens=args.max_new_tokens,
                     lora_r=args.lora_r, lora_alpha=2 * args.lora_r, sample_every=10**5,
                     checkpoint_every=10**5, max_kl=0.0, device=args.device)


def phase_lora(args, root: Path, device: str, mark0: int, cfg: PPOConfig) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from desktop_app.ml.reward_model import load_tokenizer, lora_targets
    from desktop_app.ml.reward_train import _precision
    from desktop_app.ml.sampling import PromptInput, encode_prompt

    choice, autocast = _precision(cfg)
    folder = root / "model"
    tokenizer = load_tokenizer(folder)
    with Store(Workspace.open(root / "ws").db_path) as store:
        width = max(len(encode_prompt(tokenizer, PromptInput(r["id"], r["text"])))
                    for r in store.list_prompts())
    seq_len, rows = width + cfg.max_new_tokens, cfg.mini_batch_size // cfg.grad_accum
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=choice.torch_dtype,
                                                local_files_only=True)
    size = {"lm_bytes": sum(p.numel() * p.element_size() for p in base.parameters()),
            "body_bytes": sum(p.numel() * p.element_size() for p in base.base_model.parameters()),
            "params": sum(p.numel() for p in base.parameters()),
            "body_params": sum(p.numel() for p in base.base_model.parameters())}
    model = get_peft_model(base, LoraConfig(
        task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
        target_modules=lora_targets(base, cfg.target_modules)))
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    model.to(device).train()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, fused=_cuda(device) or None)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(tokenizer), (rows, seq_len), generator=gen).to(device)
    start = _current(device)
    how = _reset_peak(device)
    for _ in range(cfg.steps):
        with torch.autocast("cuda", dtype=autocast) if autocast else torch.enable_grad():
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = _peak(device)
    return size | {"total": peak - mark0, "steps": peak - start, "how": how, "rows": rows,
                   "seq_len": seq_len}


def phase_ppo(args, root: Path, device: str, mark0: int, cfg: PPOConfig) -> dict:
    from desktop_app.core.events import Log, Progress
    from desktop_app.ml.ppo_train import train_ppo

    seen: dict = {}

    def emit(event) -> None:
        if isinstance(event, Log) and event.message.startswith("PPO run "):  # setup done
            seen["start"] = _current(device)
            seen["how"] = _reset_peak(device)
        elif isinstance(event, Progress) and event.message == "PPO":  # a step done
            seen["peak"] = _peak(device)

    result = train_ppo(Workspace.open(root / "ws"), cfg, base_model=str(root / "model"),
                       reward_run_id=args.reward_run, emit=emit)
    assert result.status == "completed", result.error
    return {"total": seen["peak"] - mark0, "steps": seen["peak"] - seen["start"],
            "how": seen["how"], "run_id": result.run_id}


def run_phase(args) -> int:
    import peft  # noqa: F401  (every import both phases use, before the baseline is taken)
    import transformers  # noqa: F401

    import desktop_app.ml.ppo_train  # noqa: F401
    from desktop_app.ml.reward_train import _precision

    cfg = ppo_config(args)
    device = _precision(cfg)[0].device
    if _cuda(device):
        torch.cuda.init()
    mark0 = _current(device)
    fn = phase_lora if args.phase == "lora" else phase_ppo
    out = fn(args, Path(args.root), device, mark0, cfg) | {"device": device}
    print("RESULT " + json.dumps(out))
    return 0


def spawn(phase: str, root: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--phase", phase,
           "--root", str(root), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"phase {phase} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


# ---- the report ---------------------------------------------------------------------------

def report(args, root: Path, lora: dict, ppo: dict, cfg: PPOConfig) -> None:
    device = ppo["device"]
    print(f"\nPeak memory on {device}, each phase in a fresh subprocess; {ppo['how']}; total = "
          f"over the memory after imports (weights, adapters, optimizer, activations), steps "
          f"only = growth over the memory held when the steps start:")
    print(f"  LoRA step (plain causal LM, {lora['rows']} seq x {lora['seq_len']} tokens, "
          f"AdamW): total {lora['total'] / MIB:8.1f} MiB   steps only "
          f"{lora['steps'] / MIB:8.1f} MiB")
    print(f"  PPO step  (train_ppo, batch {cfg.batch_size}, mini-batch {cfg.mini_batch_size}, "
          f"{cfg.ppo_epochs} epochs):    total {ppo['total'] / MIB:8.1f} MiB   steps only "
          f"{ppo['steps'] / MIB:8.1f} MiB")
    ratio = ppo["total"] / lora["total"]
    print(f"  ratio PPO / LoRA: total {ratio:.2f} (steps only "
          f"{ppo['steps'] / max(lora['steps'], 1):.2f}); target total <= 1.5 -> "
          f"{'met' if ratio <= 1.5 else 'NOT met'}")
    lm, body = lora["lm_bytes"], lora["body_bytes"]
    four = ppo["total"] + lm + 2 * body
    full = four + 12 * (lora["params"] + lora["body_params"])
    print(f"  four separate models, ESTIMATE from parameter bytes ({lora['params'] / 1e6:.1f} M "
          f"params, LM {lm / MIB:.1f} MiB, body {body / MIB:.1f} MiB): measured PPO total + a "
          f"reference LM + reward and value bodies = {four / MIB:.1f} MiB -> PPO uses "
          f"{ppo['total'] / four:.2f}x; with policy and value fully trained (+12 B/param for "
          f"fp32 grads and AdamW moments) {full / MIB:.1f} MiB -> {ppo['total'] / full:.2f}x")

    with Store(Workspace.open(root / "ws").db_path) as store:
        rows = store.metrics(ppo["run_id"])
    steps: dict[int, dict] = {}
    for r in rows:
        steps.setdefault(r["step"], {})[r["name"]] = r["value"]
    parts = ("time/generation_s", "time/scoring_s", "time/optimization_s")
    ordered = [steps[k] for k in sorted(steps)]
    later = ordered[1:] or ordered
    print(f"\nTime per PPO step (run's stored metrics; batch {cfg.batch_size}, max_new_tokens "
          f"{cfg.max_new_tokens}, {cfg.ppo_epochs} PPO epochs):")
    for label, group in (("first step (warm-up)", ordered[:1]),
                         (f"median of steps 2-{len(ordered)}", later)):
        t = {p: statistics.median(s[p] for s in group) for p in parts}
        total = sum(t.values())
        split = "  ".join(f"{p.split('/')[1][:-2]} {t[p]:6.2f} s ({t[p] / total:4.0%})"
                          for p in parts)
        print(f"  {label:22s} {total:6.2f} s = {split}")

    if not _cuda(device):
        print("\nGeneration tokens/s vs memory-bandwidth bound: skipped (no CUDA device).")
        return
    tok_s = statistics.median(s["response/length_mean"] * cfg.batch_size
                              / s["time/generation_s"] for s in later)
    bound = cfg.batch_size * args.bandwidth / lm
    print(f"\nGeneration on {torch.cuda.get_device_name()}: {tok_s:,.0f} tokens/s (batch "
          f"{cfg.batch_size}); bandwidth bound batch x {args.bandwidth:.3g} B/s (from "
          f"--bandwidth) / {lm / MIB:.1f} MiB of weights per decoding step = {bound:,.0f} "
          f"tokens/s -> {tok_s / bound:.1%} of the bound")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=64, help="judged prompts (PPO prompts)")
    parser.add_argument("--steps", type=int, default=3, help="PPO (and LoRA) steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--mini-batch-size", type=int, default=16)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--bandwidth", type=float, default=3.35e12,
                        help="device memory bandwidth in B/s (default: H100 SXM, 3.35e12)")
    parser.add_argument("--phase", choices=("lora", "ppo"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--reward-run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return run_phase(args)

    from bench_reward import build_model, make_workspace  # same synthetic data

    from desktop_app.ml.reward_train import train_reward_model
    cfg = ppo_config(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        build_model(root / "model", args.hidden, args.layers)
        ws = make_workspace(root / "ws", args.pairs)
        reward = train_reward_model(ws, RewardConfig(
            epochs=1.0, lr=1e-3, batch_size=8, max_length=64, lora_r=args.lora_r,
            lora_alpha=2 * args.lora_r, val_fraction=0.2, eval_every=10**5, log_every=10,
            checkpoint_every=10**5, min_pairs=16, device=args.device), base_model=str(root / "model"))
        assert reward.status == "completed", reward.error
        print(f"Setup {time.perf_counter() - start:.0f} s: llama hidden {args.hidden} x "
              f"{args.layers} layers, {args.pairs} judged prompts, reward run {reward.run_id} "
              f"(held-out accuracy {reward.val_accuracy:.2f}); LoRA r {args.lora_r} all-linear "
              f"on policy and value; {args.steps} steps per phase")
        lora = spawn("lora", root, [])
        ppo = spawn("ppo", root, ["--reward-run", str(reward.run_id)])
        report(args, root, lora, ppo, cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
