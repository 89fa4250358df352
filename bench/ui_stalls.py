"""The UI stays responsive while the work runs (run by hand: `python bench/ui_stalls.py`; about
three minutes on a 2-core CPU; `make bench-peers` runs it too).

Each job runs from its real page, offscreen, on the page's worker thread, as a user starts it:
pair generation on the Judge page's queue, reward training on the Reward page, PPO and DPO on
their pages. Meanwhile a 10 ms timer on the UI thread records the gaps between its beats; a gap
is how long the window could not answer. Target: no gap over 100 ms. The first half second of
each page (its first paint) is not counted: that is a page switch, not the job.

The model is bench_reward.py's random small Llama and the data its synthetic judgments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reward import build_model, make_workspace  # noqa: E402

from desktop_app.core.config import (  # noqa: E402
    DPOConfig,
    PPOConfig,
    RewardConfig,
    SamplingConfig,
)
from desktop_app.core.data.store import Store  # noqa: E402

TARGET_MS = 100.0


class Heartbeat:
    """A 10 ms timer on the UI thread; ``gaps`` are the milliseconds between its beats."""

    def __init__(self):
        from PySide6.QtCore import QElapsedTimer, QTimer
        self.gaps: list[float] = []
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._beat)

    def _beat(self) -> None:
        now = self.clock.nsecsElapsed() / 1e6
        self.gaps.append(now - self.last)
        self.last = now

    def run_until(self, app, done, timeout_s: float) -> dict:
        settle = time.monotonic() + 0.5
        while time.monotonic() < settle:
            app.processEvents()
            time.sleep(0.005)
        self.clock.start()
        self.last = 0.0
        self.timer.start()
        start = time.monotonic()
        while not done() and time.monotonic() - start < timeout_s:
            app.processEvents()
            time.sleep(0.001)
        self.timer.stop()
        gaps = sorted(self.gaps) or [0.0]
        return {"beats": len(gaps), "median_ms": gaps[len(gaps) // 2],
                "p99_ms": gaps[int(0.99 * (len(gaps) - 1))], "max_ms": gaps[-1],
                "seconds": time.monotonic() - start, "finished": done()}


def generation(app, ws, model: Path) -> dict:
    from desktop_app.gui.judge.pair_queue import PairQueue
    from desktop_app.ml.models.loader import load_model
    lm = load_model(model)
    with Store(ws.db_path) as store:
        store.add_prompts([f"Tell me about topic {i}." for i in range(400)])
        start = store.pending_count()
        queue = PairQueue(store)
        queue.set_config(SamplingConfig(batch_size=8, max_new_tokens=48))
        beat = Heartbeat()
        queue.set_model(lm)
        queue.set_target(24)
        result = beat.run_until(app, lambda: store.pending_count() - start >= 24, 300)
        queue.shutdown()
    return result


def training_page(app, ws, model: Path, kind: str, reward_run_id: int | None) -> dict:
    from desktop_app.gui.training.dpo_page import DPOPage
    from desktop_app.gui.training.ppo_page import PPOPage
    from desktop_app.gui.training.reward_page import RewardPage
    with Store(ws.db_path) as store:
        if kind == "reward":
            page = RewardPage(ws, store)
            cfg = RewardConfig(epochs=1.0, batch_size=16, max_length=128, log_every=1,
                               eval_every=20)
        elif kind == "ppo":
            page = PPOPage(ws, store)
            cfg = PPOConfig(steps=4, batch_size=16, mini_batch_size=4, max_new_tokens=24,
                            sample_every=1)
        else:
            page = DPOPage(ws, store)
            cfg = DPOConfig(epochs=1.0, batch_size=8, max_length=128, log_every=1)
        page.resize(1280, 800)
        page.show()
        page.set_base_model(str(model))
        page.form.set_value(cfg)
        if kind == "ppo":
            page.refresh()
            page.reward_box.setCurrentIndex(page.reward_box.findData(reward_run_id))
        beat = Heartbeat()
        (page.start_training if kind == "reward" else page.start)()
        result = beat.run_until(app, lambda: not page.run.running, 600)
        page.close()
    return result


def measure(root: Path, pairs: int = 200) -> dict[str, dict]:
    """Max UI gap per job: {"generation": {...}, "reward": ..., "ppo": ..., "dpo": ...}."""
    import peft  # noqa: F401  (the app warms these imports up at start: gui.app.warm_up_imports)
    from transformers import AutoModelForCausalLM  # noqa: F401

    from desktop_app.gui.app import create_app
    from desktop_app.ml.reward.train import train_reward_model
    app = create_app()
    model = build_model(root / "model", 256, 4)
    ws = make_workspace(root / "ws", pairs, seed=0)
    results = {"generation": generation(app, make_workspace(root / "ws-gen", 16), model),
               "reward": training_page(app, ws, model, "reward", None)}
    reward = train_reward_model(ws, RewardConfig(epochs=1.0, batch_size=16, max_length=128),
                                base_model=str(model))
    results["ppo"] = training_page(app, ws, model, "ppo", reward.run_id)
    results["dpo"] = training_page(app, ws, model, "dpo", None)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(Path(tmp))
    print(f"UI heartbeat (10 ms timer) while each job runs from its page; target max gap "
          f"< {TARGET_MS:.0f} ms")
    for job, r in results.items():
        verdict = "met" if r["max_ms"] < TARGET_MS and r["finished"] else "NOT met"
        print(f"  {job:10s} {r['beats']:6d} beats over {r['seconds']:5.1f} s: median "
              f"{r['median_ms']:4.0f} ms, p99 {r['p99_ms']:4.0f} ms, max {r['max_ms']:5.0f} ms "
              f"-> {verdict}{'' if r['finished'] else ' (did not finish)'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
