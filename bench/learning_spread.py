"""How much the learning tests' outcomes vary from seed to seed: where their thresholds come from.

The learning tests (tests/ml/reward/test_reward_train.py, tests/ml/ppo/test_ppo_train.py,
tests/ml/dpo/test_dpo_train.py, tests/ml/rloo/test_rloo_train.py) each run one seed. A
threshold that holds for that seed can still be luck; one far below what every seed reaches
tests nothing. This runs the same tasks over many seeds and prints each outcome's mean,
standard deviation and minimum, so a threshold can sit clearly below the worst seed and clearly
above "did not learn". Rerun it after `make lock` and update the figures in the tests' comments.

    .venv/bin/python bench/learning_spread.py reward --seeds 20     # ~2 min on 2 cores
    .venv/bin/python bench/learning_spread.py ppo --seeds 20        # ~10 min on 2 cores
    .venv/bin/python bench/learning_spread.py dpo --seeds 20        # ~8 min on 2 cores
    .venv/bin/python bench/learning_spread.py rloo --seeds 20       # ~12 min on 2 cores
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "ml"),
               str(ROOT / "tests" / "ml" / "reward"), str(ROOT / "tests" / "ml" / "ppo")]

import torch  # noqa: E402

torch.set_num_threads(2)  # as the tests do


def summary(name: str, values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{name:<28} mean {statistics.mean(values):7.3f}  sd {sd:6.3f}  "
            f"min {min(values):7.3f}  max {max(values):7.3f}  (n={len(values)})")


def record(rows: dict[str, list[float]], seed: int, values: dict[str, float],
           started: float) -> None:
    """Adds one seed's outcomes to ``rows`` and prints them on one line."""
    for key, value in values.items():
        rows.setdefault(key, []).append(value)
    print(f"seed {seed:2d} " + "  ".join(f"{k} {v:.3f}" for k, v in values.items())
          + f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def print_summaries(rows: dict[str, list[float]]) -> None:
    print()
    for key, values in rows.items():
        print(summary(key, values))


def reward_spread(seeds: int) -> None:
    """test_reward_train's task: the response with "banana" wins; held-out accuracy and loss,
    against the untrained model's loss log(2)."""
    from test_reward_train import FAST, make_workspace

    from desktop_app.core.config import RewardConfig
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    from desktop_app.ml.reward.train import train_reward_model

    corpus = ["The cat sat on the mat and looked at the rain.",
              "A dog ran in the park, chasing a red ball.", "Hello there, how are you today?",
              "Paris is the capital of France.", "Water boils at one hundred degrees.",
              "Please write a short poem about the sea.",
              "Two plus two is four, and three plus three is six."] * 3
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = {
            "gpt2": ("gpt2", train_tokenizer(corpus, vocab_size=320)),
            "llama": ("llama", train_tokenizer(corpus, vocab_size=320, chat_template=True,
                                               pad_token=False)),
            "gpt2_nopad": ("gpt2", train_tokenizer(corpus, vocab_size=320, pad_token=False)),
        }
        for name, (arch, tokenizer) in models.items():
            build_tiny_model(arch, tokenizer, root / name, hidden=32, heads=2)
        for seed in range(seeds):
            for name in models:
                ws = make_workspace(root / f"ws-{name}-{seed}", seed=seed, ties=6, other=4)
                result = train_reward_model(ws, RewardConfig(**FAST, seed=seed),
                                            base_model=str(root / name))
                row = results.setdefault(name, {"val_accuracy": [], "val_loss": []})
                row["val_accuracy"].append(result.val_accuracy)
                row["val_loss"].append(result.val_loss)
                print(f"seed {seed:2d} {name:<10} accuracy {result.val_accuracy:.3f} "
                      f"loss {result.val_loss:.3f}", flush=True)
    print(f"\nuntrained: accuracy 0.5 by chance, loss log 2 = {math.log(2):.3f}")
    for name, row in results.items():
        for metric, values in row.items():
            print(summary(f"{name} {metric}", values))


def ppo_spread(seeds: int) -> None:
    """test_ppo_train's task: PPO should make the policy say "cat" more often; the tuned policy
    against the base on the same prompts and sampling seed."""
    from marker_task import build_task, compare_with_base, run_ppo

    from desktop_app.core.events import Metric

    rows: dict[str, list[float]] = {}
    for seed in range(seeds):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            task = build_task(Path(tmp), seed)
            events: list = []
            result = run_ppo(task, emit=events.append)
            kl = [e.value for e in events if isinstance(e, Metric) and e.name == "objective/kl"]
            numbers = compare_with_base(task, result.artifact)
        values = {
            "reward val_accuracy": task["reward"].val_accuracy,
            "score gain (tuned - base)": numbers["tuned_score"] - numbers["base_score"],
            "marker rate gain": numbers["tuned_rate"] - numbers["base_rate"],
            "base marker rate": numbers["base_rate"],
            "max KL": max(kl),
        }
        record(rows, seed, values, started)
    print_summaries(rows)


def dpo_spread(seeds: int) -> None:
    """test_dpo_train's task: DPO on the judged pairs should make the policy say "cat" more
    often; held-out implicit-reward accuracy and margin, and the rate against the base."""
    from marker_task import build_task, marker_rates, run_dpo

    rows: dict[str, list[float]] = {}
    for seed in range(seeds):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            task = build_task(Path(tmp), seed, reward=False)
            result = run_dpo(task)
            rates = marker_rates(task, result.artifact)
        values = {"val accuracy": result.val_accuracy, "val margin": result.val_margin,
                  "marker rate gain": rates["tuned_rate"] - rates["base_rate"],
                  "base marker rate": rates["base_rate"]}
        record(rows, seed, values, started)
    print_summaries(rows)


def rloo_spread(seeds: int) -> None:
    """test_rloo_train's task ("short": the shorter response wins): RLOO and GRPO should raise
    the reward model's score on held-out prompts above the base's, shorten the responses, and
    keep KL finite."""
    from marker_task import build_task, compare_with_base, run_rloo

    from desktop_app.core.events import Metric

    rows: dict[str, list[float]] = {}
    for seed in range(seeds):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            task = build_task(Path(tmp), seed, prefer="short")
            values = {"reward val_accuracy": task["reward"].val_accuracy}
            for advantage in ("rloo", "grpo"):
                events: list = []
                result = run_rloo(task, emit=events.append, advantage=advantage)
                kl = [e.value for e in events
                      if isinstance(e, Metric) and e.name == "objective/kl"]
                numbers = compare_with_base(task, result.artifact)
                values |= {
                    f"{advantage} score gain": numbers["tuned_score"] - numbers["base_score"],
                    f"{advantage} length ratio": numbers["tuned_length"]
                    / max(numbers["base_length"], 1e-9),
                    f"{advantage} max KL": max(kl)}
        record(rows, seed, values, started)
    print_summaries(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["reward", "ppo", "dpo", "rloo"])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    {"reward": reward_spread, "ppo": ppo_spread, "dpo": dpo_spread,
     "rloo": rloo_spread}[args.task](args.seeds)


if __name__ == "__main__":
    main()
