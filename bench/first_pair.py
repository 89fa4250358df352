"""How soon the first pair shows, and whether a steady judge waits, with a real model.

    python bench/first_pair.py --model DIR [--judge-seconds 5] [--judgments 12]

1. Loads the model (CPU unless --device says otherwise) and opens the main window offscreen
   on a fresh workspace with the demo prompts.
2. Hands the model to the window and times the first pair on the Judge page (cold: the
   first generation call included).
3. Judges at a steady pace (--judge-seconds per pair) and adds up the time the judge had no
   pair to look at.
4. The target: the first pair shows within the time generating it took (the run's
   generate/seconds_per_pair for that one-prompt batch) plus one second. For scale, one more
   pair is timed on its own, warm.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--judge-seconds", type=float, default=5.0)
    parser.add_argument("--judgments", type=int, default=12)
    args = parser.parse_args()

    from PySide6.QtCore import QCoreApplication

    from desktop_app.core.data.store import Store
    from desktop_app.core.resources import resource_path
    from desktop_app.core.workspace import Workspace
    from desktop_app.gui.app import create_app
    from desktop_app.gui.main_window import MainWindow
    from desktop_app.ml.generation.pair_job import generate_pending_pairs
    from desktop_app.ml.models.loader import load_model

    prompts = [line.strip() for line in resource_path("demo_prompts.txt").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    lm = load_model(args.model, device=args.device)
    print(f"model: {lm.info.name} on {lm.device.label()}")

    def wait_for(condition, timeout: float) -> float:
        start = time.perf_counter()
        while not condition():
            QCoreApplication.processEvents()
            time.sleep(0.005)
            if time.perf_counter() - start > timeout:
                raise SystemExit("timed out")
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="rlhf-desk-first-pair-") as tmp:
        workspace = Workspace.open(Path(tmp) / "ws")
        store = Store(workspace.db_path)
        store.add_prompts(prompts)
        create_app()
        window = MainWindow(workspace, store)
        window.show()
        judge = window.judge_page

        # 2. The first pair, cold.
        started = time.perf_counter()
        window._on_model_loaded(lm)
        first = wait_for(lambda: judge.loop.current is not None, 1800)
        cfg = judge.queue.cfg
        print(f"settings: max_new_tokens {cfg.max_new_tokens}, temperature {cfg.temperature}, "
              f"top_p {cfg.top_p}, batch size up to {cfg.batch_size}")
        run_id = store.list_runs()[0]["id"]
        generating = store.metrics(run_id, "generate/seconds_per_pair")[0]["value"]
        print(f"first pair shown after {first:.1f} s, of which generating it took "
              f"{generating:.1f} s: {first - generating:.2f} s more than the pair itself "
              f"(target: at most 1 s more: {'met' if first <= generating + 1 else 'missed'})")

        # 3. A steady judge.
        waited = 0.0
        for _ in range(args.judgments):
            time.sleep(args.judge_seconds)  # looking at the pair (generation goes on)
            QCoreApplication.processEvents()
            judge.loop.judge("left")
            waited += wait_for(lambda: judge.loop.current is not None, 1800)
        total = time.perf_counter() - started
        pace = judge.queue.pace
        print(f"{args.judgments} judgments at {args.judge_seconds:.0f} s each: the judge waited "
              f"{waited:.1f} s in all; model {pace.seconds_per_pair:.1f} s per pair, keeping "
              f"{judge.queue.ready_target} ready ({total:.0f} s in all)")
        judge.queue.shutdown()
        window.close()
        store.close()

        # 4. One pair alone, warm: the baseline.
        base_ws = Workspace.open(Path(tmp) / "baseline")
        with Store(base_ws.db_path) as base:
            base.add_prompts(prompts[:3])
            generate_pending_pairs(base, lm, cfg.__class__(**{**cfg.to_dict(), "batch_size": 1}),
                                   limit=1, seed=1)  # warm-up
            t = time.perf_counter()
            generate_pending_pairs(base, lm, cfg.__class__(**{**cfg.to_dict(), "batch_size": 1}),
                                   limit=1, seed=2)
            one = time.perf_counter() - t
        print(f"another pair alone (warm, another prompt): {one:.1f} s; the first pair took "
              f"{first / one:.2f}x that (lengths vary by prompt)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
