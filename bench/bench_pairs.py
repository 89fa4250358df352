"""Paired-generation benchmark (run by hand: `make bench` or `python bench/bench_pairs.py`).

1. pairs/s of the app's path (``sampling.generate_pairs``, and the full job that also writes
   every batch to SQLite) against a plain batched ``model.generate`` with the same settings,
   measured in the same run, interleaved, median of several rounds. Target: >= 0.9.
2. Time from a judgment to the next pair on screen with a warm queue (the real JudgePage,
   offscreen). Target: under 50 ms.

Defaults use a randomly initialised small Llama so that responses run to max_new_tokens on
both paths (equal work); pass --model DIR to measure a real checkpoint.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from desktop_app.core.config import SamplingConfig  # noqa: E402
from desktop_app.core.data.store import GenerationIn, Store  # noqa: E402
from desktop_app.ml.generation.pair_job import generate_pending_pairs  # noqa: E402
from desktop_app.ml.generation.sampling import PromptInput, encode_prompt, generate_pairs  # noqa: E402
from desktop_app.ml.models.loader import load_model  # noqa: E402

PROMPTS = [f"Question {i}: how do I {topic}?" for i, topic in enumerate(
    ["boil an egg", "sleep better", "learn to code", "plant a tree", "paint a wall",
     "fix a bike", "make tea", "write a poem"] * 8)]


def build_default_model(folder: Path) -> Path:
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    tokenizer = train_tokenizer(PROMPTS * 4, vocab_size=1024, pad_token=False)
    build_tiny_model("llama", tokenizer, folder, hidden=256, layers=4, heads=4,
                     max_positions=1024)
    return folder


def plain_generate(lm, prompts: list[str], cfg: SamplingConfig, seed: int) -> tuple[int, int]:
    """The baseline: what a script would write with transformers alone."""
    tok, model = lm.tokenizer, lm.model
    pairs = tokens = 0
    for start in range(0, len(prompts), cfg.batch_size):
        chunk = prompts[start:start + cfg.batch_size]
        ids = [encode_prompt(tok, PromptInput(0, p)) for p in chunk for _ in range(2)]
        width = max(map(len, ids))
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=model.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids],
                            device=model.device)
        torch.manual_seed(seed + start)
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=True,
                                 temperature=cfg.temperature, top_p=cfg.top_p, top_k=None,
                                 repetition_penalty=cfg.repetition_penalty,
                                 max_new_tokens=cfg.max_new_tokens, pad_token_id=pad,
                                 eos_token_id=lm.eos_token_ids)
        tok.batch_decode(out[:, width:], skip_special_tokens=True)
        new = out[:, width:]
        tokens += int((new != pad).sum())
        pairs += len(chunk)
    return pairs, tokens


def app_generate(lm, prompts: list[str], cfg: SamplingConfig, seed: int) -> tuple[int, int]:
    inputs = [PromptInput(i, p) for i, p in enumerate(prompts)]
    pairs = tokens = 0
    for batch in generate_pairs(lm, inputs, cfg, seed):
        pairs += len(batch)
        tokens += sum(p.a.completion_tokens + p.b.completion_tokens for p in batch)
    return pairs, tokens


def app_job(lm, prompts: list[str], cfg: SamplingConfig, seed: int) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "rlhf.db") as store:
        store.add_prompts(prompts)
        report = generate_pending_pairs(store, lm, cfg, limit=len(prompts), seed=seed)
        return report.pairs, report.completion_tokens


def bench_throughput(lm, cfg: SamplingConfig, rounds: int) -> None:
    paths = {"plain model.generate": plain_generate, "app generate_pairs": app_generate,
             "app job + SQLite": app_job}
    for fn in paths.values():                       # warm-up (kernels, caches)
        fn(lm, PROMPTS[:cfg.batch_size], cfg, 0)
    rates: dict[str, list[float]] = {name: [] for name in paths}
    tok_rates: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(rounds):
        for name, fn in paths.items():
            start = time.perf_counter()
            pairs, tokens = fn(lm, PROMPTS, cfg, 1000 + r)
            elapsed = time.perf_counter() - start
            rates[name].append(pairs / elapsed)
            tok_rates[name].append(tokens / elapsed)
    base = statistics.median(rates["plain model.generate"])
    print(f"\nPaired generation: {len(PROMPTS)} prompts x 2, batch {cfg.batch_size} prompts, "
          f"max_new_tokens {cfg.max_new_tokens}, {lm.device.label()}, median of {rounds}")
    for name in paths:
        pairs_s, toks_s = statistics.median(rates[name]), statistics.median(tok_rates[name])
        print(f"  {name:22s} {pairs_s:8.2f} pairs/s  {toks_s:9.1f} tokens/s  "
              f"ratio {pairs_s / base:5.2f}")
    ratio = statistics.median(rates["app generate_pairs"]) / base
    print(f"  target: app/plain >= 0.90 -> {'met' if ratio >= 0.9 else 'NOT met'} ({ratio:.2f})")


def bench_next_pair_latency(n: int = 100) -> None:
    from desktop_app.gui.app import create_app
    from desktop_app.gui.judge.page import JudgePage
    app = create_app()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "rlhf.db") as store:
        ids = store.add_prompts([f"Prompt {i} " + "with some words " * 20
                                 for i in range(n + 20)]).ids
        body = "A response paragraph with `code` and *markdown*.\n\n" * 15
        store.add_pairs([(i, GenerationIn(body + "a", "m", completion_tokens=300, finished=True),
                          GenerationIn(body + "b", "m", completion_tokens=300, finished=True))
                         for i in ids])
        page = JudgePage(store)
        page.resize(1280, 800)
        page.show()
        app.processEvents()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            page.loop.judge("left")
            app.processEvents()                      # includes layout and paint
            times.append((time.perf_counter() - start) * 1000)
        page.queue.shutdown()
        page.close()
    times.sort()
    p50, p95 = statistics.median(times), times[int(0.95 * len(times)) - 1]
    print(f"\nJudgment -> next pair shown (warm queue, {n} judgments, commit + fsync + render):")
    print(f"  median {p50:.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms; target < 50 ms -> "
          f"{'met' if p95 < 50 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: a random small Llama)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else build_default_model(Path(tmp) / "model")
        lm = load_model(folder, device=args.device)
        cfg = SamplingConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        bench_throughput(lm, cfg, args.rounds)
    bench_next_pair_latency()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
