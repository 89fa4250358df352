"""Render the README's screenshots from the demo workspace (offscreen): the comparison view,
the reward-model page after a training run, the PPO page after a short PPO run, a blind
evaluation's results and the runs page.

    QT_QPA_PLATFORM=offscreen python docs/make_screenshot.py docs/comparison-view.png [WORKSPACE]

For the reward shot the remaining pairs are judged by a stand-in annotator that prefers the
longer response (a simple, learnable taste), so the charts show a real run on real pairs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _waiter(app):
    import time

    def wait_until(condition, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
    return wait_until


def _judge_by_length(store) -> None:
    """Stand-in annotator: the response with more words wins; equal length is a tie."""
    while (pair := store.next_pending()) is not None:
        left, right = len(pair.left["text"].split()), len(pair.right["text"].split())
        side = "tie" if left == right else "left" if left > right else "right"
        store.judge(pair.comparison_id, pair.choice_for_side(side))


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/comparison-view.png")
    root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp()) / "demo"
    from PySide6.QtCore import QEventLoop, QTimer

    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    from desktop_app.gui.app import create_app
    from desktop_app.gui.main_window import MainWindow
    from desktop_app.ml.models.demo import ensure_demo_workspace

    workspace = Workspace.open(root)
    info = ensure_demo_workspace(workspace)
    app = create_app()
    store = Store(workspace.db_path)
    window = MainWindow(workspace, store)
    window.resize(1360, 820)
    window.show()
    window.models_page.select_path(info.model_path)
    window.models_page.load_path(info.model_path)
    deadline = QTimer()
    deadline.setSingleShot(True)
    loop = QEventLoop()
    deadline.timeout.connect(loop.quit)
    poll = QTimer()
    poll.timeout.connect(lambda: window.judge_page.loop.current is not None and loop.quit())
    poll.start(100)
    deadline.start(300_000)
    loop.exec()
    page = window.judge_page
    if page.loop.current is None:
        print("no pair appeared in time", file=sys.stderr)
        return 1
    for side in ("left", "right", "left"):      # a few judgments so the progress line is real
        page.loop.judge(side)
    app.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out))
    wait_until = _waiter(app)
    page.target_spin.setValue(256)    # generate a pair for every demo prompt
    wait_until(lambda: not store.prompts_without_pairs(1) and not page.queue.busy, 600)
    page.queue.shutdown()
    _judge_by_length(store)
    reward = window.reward_page
    window.show_page("Reward model")
    cfg = reward.form.value()
    cfg.epochs, cfg.lr, cfg.log_every, cfg.eval_every, cfg.val_fraction = 8.0, 1e-3, 1, 10, 0.2
    reward.form.set_value(cfg)
    reward.refresh()
    reward.start_training()
    wait_until(lambda: reward.run.last_result is not None and not reward.run.running, 600)
    app.processEvents()
    window.grab().save(str(out.with_name("reward-training.png")))

    ppo = window.ppo_page
    window.show_page("PPO")
    cfg = ppo.form.value()
    cfg.steps, cfg.batch_size, cfg.mini_batch_size = 30, 16, 4
    ppo.form.set_value(cfg)
    ppo.refresh()
    ppo.start()
    wait_until(lambda: ppo.run.last_result is not None and not ppo.run.running, 900)
    app.processEvents()
    window.grab().save(str(out.with_name("ppo-training.png")))

    # Blind evaluation of the tuned policy against the base on the held-out prompts, judged by
    # the same stand-in annotator; then its results, and the runs page overlaying the runs.
    from desktop_app.core.evaluation.results import record_human_result
    from desktop_app.core.runs.record import RunKind
    evaluate = window.evaluate_page
    window.show_page("Evaluate")
    evaluate.refresh()
    evaluate.start()
    wait_until(lambda: not evaluate.running, 900)
    eval_run = [r for r in store.list_runs() if r.kind == RunKind.EVAL][-1].id
    while (pair := store.next_pending(eval_run_id=eval_run)) is not None:
        left, right = len(pair.left["text"].split()), len(pair.right["text"].split())
        side = "tie" if left == right else "left" if left > right else "right"
        store.judge(pair.comparison_id, pair.choice_for_side(side))
    record_human_result(store, eval_run)
    evaluate.refresh()
    evaluate.select_eval(eval_run)
    evaluate.tabs.setCurrentIndex(2)
    app.processEvents()
    window.grab().save(str(out.with_name("evaluation.png")))

    runs = window.runs_page
    window.show_page("Runs")
    ppo_runs = [r.id for r in store.list_runs() if r.kind == RunKind.PPO]
    runs.select_runs(ppo_runs[-1:])
    wait_until(lambda: False, 1)
    window.grab().save(str(out.with_name("runs.png")))
    window.close()
    store.close()
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
