"""DPO benchmark (run by hand: `python bench/bench_dpo.py`; needs `pip install -e .[bench]`).

Our DPO trainer (``ml.dpo.train.train_dpo``) against TRL's DPOTrainer on the same model, data,
split, batch size, max length, LoRA settings, learning rate and schedule, beta and sigmoid loss,
in the same run and precision. Per seed it reports the held-out implicit-reward accuracy of each
(ours: ``val_accuracy``; TRL's: ``eval_rewards/accuracies``, both on the validation pairs of
our run's split.json, evaluated once, at the end) and the wall seconds of each whole job: model
loading, tokenising, training, the final evaluation and saving the adapter. Targets: at least as
accurate (the mean per-seed difference not below zero by more than two standard errors: each
side's LoRA initialisation and batch order move held-out accuracy by a pair or two, so only the
mean over seeds says anything) and at least as fast (TRL's total wall seconds / ours >= 1).

TRL runs with its defaults except where they would make the two jobs differ: our precision
(fp32 on the CPU, not TRL's bf16 autocast), no gradient checkpointing, dropout off (ours turns
the base's dropout off, and LoRA dropout is 0 here). ``precompute_ref_log_probs`` stays at
TRL's default (False: a reference forward pass every step), whereas ours computes each pair's
reference log-probabilities once and keeps them: that difference is part of what is measured.
After each TRL job the bench checks that TRL tokenised every pair exactly as ours does (same
prompt tokens, same response tokens, end-of-turn included), so both sum log-probabilities over
the same tokens.

The data are bench_reward.py's: bags of words, the preferred one holding more words from a
hidden "good" list (ties removed, 10% of labels flipped), with a randomly initialised small
Llama and its chat template.

Options: --seeds N (data and training seeds 0..N-1, default 10), --pairs (default 400),
--hidden / --layers (model size), --epochs, --lr, --beta, --batch-size, --skip-trl (ours only),
--out FILE (also write the figures as JSON). A quick check: --seeds 2 --pairs 96.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench_reward import build_model, make_workspace  # noqa: E402  (the same synthetic data)

from desktop_app.core.config import DPOConfig  # noqa: E402
from desktop_app.core.data.store import Store  # noqa: E402
from desktop_app.core.runs.record import RunKind, run_dir  # noqa: E402
from desktop_app.core.workspace import Workspace  # noqa: E402
from desktop_app.ml.dpo.data import PreferenceEncoder  # noqa: E402
from desktop_app.ml.dpo.train import train_dpo  # noqa: E402
from desktop_app.ml.reward.model import lora_targets  # noqa: E402
from desktop_app.ml.reward.pairs import Split, preference_examples  # noqa: E402
from desktop_app.ml.training.optim import resolve_precision  # noqa: E402


def trl_importable() -> bool:
    """Import TRL and datasets now, outside any timed job (the first import takes seconds)."""
    try:
        import datasets
        import trl  # noqa: F401
    except ImportError as exc:
        print(f"  TRL not installed ({exc}); `pip install -e .[bench]`")
        return False
    datasets.disable_progress_bars()
    return True


def ours(ws: Workspace, model: Path, cfg: DPOConfig) -> dict:
    start = time.perf_counter()
    result = train_dpo(ws, cfg, base_model=str(model))
    wall = time.perf_counter() - start
    assert result.status == "completed", result.error
    return {"val_accuracy": result.val_accuracy, "val_margin": result.val_margin,
            "pairs_per_s": result.samples_per_s, "wall_s": wall, "run_id": result.run_id}


def trl_dpo(ws: Workspace, model_dir: Path, cfg: DPOConfig, run_id: int, out: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import DPOConfig as TrlDPOConfig
    from trl import DPOTrainer

    split = Split.load(run_dir(ws.runs_dir, run_id, RunKind.DPO) / "split.json")
    start = time.perf_counter()
    with Store(ws.db_path) as store:
        rows = {r["comparison_id"]: r for r in store.preference_rows()}

    def dataset(ids):  # TRL's conversational preference format, same chat template as ours
        return Dataset.from_list([{
            "prompt": (rows[i]["prompt_messages"]
                       or [{"role": "user", "content": rows[i]["prompt"]}]),
            "chosen": [{"role": "assistant", "content": rows[i]["chosen"]}],
            "rejected": [{"role": "assistant", "content": rows[i]["rejected"]}]} for i in ids])

    train, val = dataset(split.train_ids), dataset(split.val_ids)
    # Our base weights' dtype (fp32 on the CPU, bf16 or fp16 on CUDA) and our autocast.
    choice, autocast_dtype = resolve_precision(cfg)
    cuda = choice.device.startswith("cuda")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=choice.torch_dtype,
                                                 local_files_only=True)
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                             lora_dropout=cfg.lora_dropout,
                             target_modules=lora_targets(model, cfg.target_modules))
    args = TrlDPOConfig(
        output_dir=str(out), per_device_train_batch_size=cfg.batch_size,
        # One evaluation batch: TRL's eval_rewards/accuracies is a mean of per-batch means, which
        # is the share of pairs ranked right (ours) only when every batch is the same size.
        per_device_eval_batch_size=max(1, len(val)), gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs, learning_rate=cfg.lr, lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a value below 1 is a ratio
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_length, beta=cfg.beta, loss_type=["sigmoid"],
        logging_steps=cfg.log_every, save_strategy="no",
        eval_strategy="no", report_to=[], use_cpu=not cuda,
        bf16=autocast_dtype == torch.bfloat16, fp16=autocast_dtype == torch.float16,
        # transformers 5's name; TRL's own default (gradient_checkpointing=True) then yields.
        activation_checkpointing=cfg.gradient_checkpointing, seed=cfg.seed,
        disable_dropout=True, dataloader_pin_memory=False, disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                         processing_class=tokenizer, peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)  # it prints every log line: the table is the output
    train_start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - train_start
    metrics = trainer.evaluate()
    trainer.save_model(str(out / "policy"))  # ours saves its adapter and tokenizer too
    wall = time.perf_counter() - start
    same, total = same_tokens(trainer, split, ws, tokenizer, cfg.max_length)
    return {"val_accuracy": metrics["eval_rewards/accuracies"],
            "val_margin": metrics.get("eval_rewards/margins"),
            "pairs_per_s": len(train) * cfg.epochs / train_s,
            "wall_s": wall, "same_tokens": same, "pairs_checked": total}


def same_tokens(trainer, split: Split, ws: Workspace, tokenizer, max_length: int) -> tuple:
    """On how many pairs TRL's prompt and response tokens are exactly ours (train and eval),
    out of how many: a mismatch would mean the two sum log-probabilities over different text."""
    with Store(ws.db_path) as store:
        examples = {e.comparison_id: e for e in
                    preference_examples(store.preference_rows(), "equal")}
    encoder = PreferenceEncoder(tokenizer, max_length)
    same = total = 0
    for ids, data in ((split.train_ids, trainer.train_dataset),
                      (split.val_ids, trainer.eval_dataset)):
        if len(data) != len(ids):  # TRL dropped pairs (a prompt longer than max_length)
            total += len(ids)
            continue
        for cid, row in zip(ids, data):
            e = encoder.encode(examples[cid])
            prompt = row["prompt_ids"]
            same += (prompt + row["chosen_ids"] == e.chosen and len(prompt) == e.chosen_start
                     and prompt + row["rejected_ids"] == e.rejected
                     and len(prompt) == e.rejected_start)
            total += 1
    return same, total


def summarise(results: dict[str, list[dict]]) -> dict:
    """Means, the per-seed accuracy difference with its standard error, and the speed ratio."""
    a, b = results["ours"], results["trl"]
    summary = {"ours_mean_accuracy": statistics.mean(r["val_accuracy"] for r in a),
               "ours_wall_s": sum(r["wall_s"] for r in a),
               "ours_pairs_per_s": statistics.mean(r["pairs_per_s"] for r in a)}
    if not b:
        return summary
    # TRL's accuracy is a float32 mean: a difference within 1e-6 is the same count of pairs.
    diffs = [x["val_accuracy"] - y["val_accuracy"] for x, y in zip(a, b)]
    diffs = [d if abs(d) > 1e-6 else 0.0 for d in diffs]
    mean = statistics.mean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    trl_wall = sum(r["wall_s"] for r in b)
    return summary | {
        "trl_mean_accuracy": statistics.mean(r["val_accuracy"] for r in b),
        "trl_wall_s": trl_wall, "trl_pairs_per_s": statistics.mean(r["pairs_per_s"] for r in b),
        "accuracy_diff": mean, "accuracy_diff_se": se,
        "ours_ahead": sum(d > 0 for d in diffs), "trl_ahead": sum(d < 0 for d in diffs),
        "accurate_enough": mean >= 0 or (se == se and mean >= -2 * se),
        "speed_ratio": trl_wall / summary["ours_wall_s"],
        "same_tokens": sum(r["same_tokens"] for r in b),
        "pairs_checked": sum(r["pairs_checked"] for r in b)}


def row(seed: int, a: dict, b: dict | None) -> str:
    if b is None:
        return f"  {seed:>4}  {a['val_accuracy']:8.3f}  {'-':>8}  {'-':>7}  {a['wall_s']:7.1f}"
    return (f"  {seed:>4}  {a['val_accuracy']:8.3f}  {b['val_accuracy']:8.3f}  "
            f"{a['val_accuracy'] - b['val_accuracy']:+7.3f}  {a['wall_s']:7.1f}  "
            f"{b['wall_s']:7.1f}  {b['wall_s'] / a['wall_s']:8.2f}")


def print_summary(s: dict, seeds: int) -> None:
    line = f"  {'mean':>4}  {s['ours_mean_accuracy']:8.3f}"
    if "trl_mean_accuracy" not in s:
        print(line + f"  ours {s['ours_wall_s']:.1f} s in all, training "
              f"{s['ours_pairs_per_s']:.1f} pairs/s")
        return
    print(line + f"  {s['trl_mean_accuracy']:8.3f}  {s['accuracy_diff']:+7.3f}  "
          f"{s['ours_wall_s']:7.1f}  {s['trl_wall_s']:7.1f}  {s['speed_ratio']:8.2f}")
    print(f"  accuracy, ours - TRL: {s['accuracy_diff']:+.3f} ± {s['accuracy_diff_se']:.3f} "
          f"(standard error over seeds; ours ahead on {s['ours_ahead']}, TRL on "
          f"{s['trl_ahead']} of {seeds}) -> target not below 0 by more than 2 SE "
          f"{'met' if s['accurate_enough'] else 'NOT met'}"
          + ("" if seeds > 2 else " (too few seeds to tell: use --seeds 10)"))
    print(f"  speed, whole job: TRL {s['trl_wall_s']:.1f} s / ours {s['ours_wall_s']:.1f} s = "
          f"{s['speed_ratio']:.2f} -> target >= 1 {'met' if s['speed_ratio'] >= 1 else 'NOT met'}"
          f" (training loop alone: ours {s['ours_pairs_per_s']:.1f} pairs/s, TRL "
          f"{s['trl_pairs_per_s']:.1f})")
    print(f"  tokens: TRL's prompt and response tokens equal ours on {s['same_tokens']} of "
          f"{s['pairs_checked']} pairs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=8)
    # Ten seeds, as for the reward model: fewer cannot tell a one-pair difference in held-out
    # accuracy from initialisation and batch-order noise.
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    torch.manual_seed(0)
    # Evaluation once, at the end, and no checkpoints: TRL's job does neither mid-run.
    cfg = DPOConfig(epochs=args.epochs, lr=args.lr, beta=args.beta, loss="sigmoid",
                    batch_size=args.batch_size, max_length=128, lora_r=16, lora_alpha=32,
                    lora_dropout=0.0, warmup_ratio=0.1, scheduler="cosine", val_fraction=0.2,
                    eval_every=100000, log_every=10, checkpoint_every=100000, min_pairs=16)
    with_trl = not args.skip_trl and trl_importable()
    results: dict[str, list[dict]] = {"ours": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_model(root / "model", args.hidden, args.layers)
        print(f"DPO: {args.pairs} pairs (80/20 split by prompt), llama hidden {args.hidden} x "
              f"{args.layers} layers, batch {cfg.batch_size}, max_length {cfg.max_length}, LoRA "
              f"r {cfg.lora_r}, {cfg.epochs} epochs, lr {cfg.lr}, beta {cfg.beta}, "
              f"{resolve_precision(cfg)[0].label()}; {args.seeds} data seeds, both trainers on "
              "the same data and split")
        print(f"  {'seed':>4}  {'ours acc':>8}  {'TRL acc':>8}  {'diff':>7}  {'ours s':>7}  "
              f"{'TRL s':>7}  {'TRL/ours':>8}", flush=True)
        for seed in range(args.seeds):
            ws = make_workspace(root / f"ws{seed}", args.pairs, seed=seed)
            cfg.seed = seed
            a = ours(ws, model, cfg)
            results["ours"].append(a)
            b = trl_dpo(ws, model, cfg, a["run_id"], root / f"trl{seed}") if with_trl else None
            if b is not None:
                results["trl"].append(b)
            print(row(seed, a, b), flush=True)
        summary = summarise(results)
        print_summary(summary, args.seeds)
    if args.out:
        args.out.write_text(json.dumps({"config": vars(args) | {"out": str(args.out)},
                                        "dpo_config": cfg.to_dict(), "per_seed": results,
                                        "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
