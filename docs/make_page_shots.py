"""Render every page of the main window at the smallest supported size (1024×600) and at the
default one (1280×800), offscreen, from a workspace filled like a used one
(``tests/gui/page_data.py``), so clipped text, hidden controls and stray scroll bars can be
seen without a screen:

    QT_QPA_PLATFORM=offscreen python docs/make_page_shots.py [OUT_DIR]

Writes OUT_DIR/PAGE-WIDTHxHEIGHT.png (default docs/screens/), e.g. docs/screens/judge-1024x600.png,
policy-dpo-WIDTHxHEIGHT.png (the Policy page's DPO tab), and runs-generate-1280x800.png: the
Runs page charting a generate run recorded the old way (every batch at step 0), which is drawn
against time.
``tests/gui/test_page_sizes.py`` checks the same pages at the same sizes for what can be
checked without looking.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_SCALE_FACTOR", "1")

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(1024, 600), (1280, 800)]
PAGES = ["Judge", "Prompts", "Models", "Reward model", "Policy", "Evaluate", "Playground",
         "Runs"]


def slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def settle(app, seconds: float = 0.3) -> None:
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def fill_ppo_page(window, store) -> None:
    """The PPO page as after a run: the charts of the stored run and a page of samples."""
    from types import SimpleNamespace

    from desktop_app.core.runs.record import RunKind, RunStatus
    page = window.ppo_page
    run = [r for r in store.list_runs()
           if r.kind == RunKind.PPO and r.status == RunStatus.COMPLETED][0]
    for point in store.metrics(run.id):
        page.charts.add_point(point["name"], point["step"], point["value"])
    page.charts.redraw_all()
    rows = [{"prompt": f"Tell me about the river number {i}.",
             "response": "The river runs past the quiet stone and the green light. " * (1 + i % 3),
             "score": 0.1 * i - 0.4, "kl": 0.02 * i} for i in range(8)]
    page._add_samples(SimpleNamespace(step=30, rows=rows))
    page.run.progress.setRange(0, 30)
    page.run.progress.setValue(30)
    page.run.progress.setFormat("step %v / %m")
    page.run.say(f"Run #{run.id} finished in 0:45: score -0.112 → +0.604, "
                 "KL 2.713. Policy saved to runs/0003-ppo/policy")


def fill_dpo_page(window) -> None:
    """The DPO tab as after a run: curves shaped like a real run's (loss from log 2 down,
    accuracy and margin up, chosen reward up and rejected down)."""
    import math

    page = window.dpo_page
    for step in range(1, 41):
        t = step / 40
        wobble = 0.03 * math.sin(step * 1.7)
        for prefix, lag in (("train", 0.0), ("eval", 0.05)):
            if prefix == "eval" and step % 10:
                continue
            page.charts.add_point(f"{prefix}/loss", step, 0.69 * math.exp(-2 * t) + 0.1 + lag)
            page.charts.add_point(f"{prefix}/rewards/accuracies", step,
                                  min(1.0, 0.5 + 0.45 * t + wobble - lag))
            page.charts.add_point(f"{prefix}/rewards/margins", step, 2.2 * t + wobble - lag)
        page.charts.add_point("train/rewards/chosen", step, 0.8 * t + wobble)
        page.charts.add_point("train/rewards/rejected", step, -1.4 * t - wobble)
        page.charts.add_point("train/logps/chosen", step, -42 + 8 * t + wobble)
        page.charts.add_point("train/logps/rejected", step, -45 - 14 * t - wobble)
        page.charts.add_point("train/lr", step, 5e-5 * (0.5 + 0.5 * math.cos(math.pi * t)))
    page.charts.redraw_all()
    page.run.progress.setRange(0, 40)
    page.run.progress.setValue(40)
    page.run.progress.setFormat("step %v / %m")
    page.run.say("Run #9 finished in 1:12: implicit reward: validation accuracy 92% on 24 "
                 "pairs (95% CI 74%–98%), margin +2.114. Policy saved to runs/0009-dpo/policy")


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screens"
    sys.path.insert(0, str(ROOT / "tests"))
    from gui.page_data import populate

    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    from desktop_app.gui.app import create_app
    from desktop_app.gui.main_window import MainWindow

    root = Path(tempfile.mkdtemp()) / "shots"
    workspace = Workspace.open(root)
    store = Store(workspace.db_path)
    runs = populate(store, workspace)
    app = create_app()
    window = MainWindow(workspace, store)
    window.show()
    settle(app)
    fill_ppo_page(window, store)
    fill_dpo_page(window)
    window.runs_page.select_runs([runs["ppo"], runs["failed"]])   # an overlay of two runs
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for width, height in SIZES:
        window.resize(width, height)
        for name in PAGES:
            window.show_page(name)
            settle(app, 1.0)   # the chart boards redraw one chart per tick
            target = out / f"{slug(name)}-{width}x{height}.png"
            image = window.grab().toImage()
            image.save(str(target), "PNG", 0)   # 0: the smallest file
            written.append(target)
            if window.width() != width or window.height() != height:
                print(f"{target.name}: the window is {window.width()}×{window.height()}, "
                      f"not {width}×{height}", file=sys.stderr)
        window.show_page("Policy")
        window.policy_page.show_method("DPO")
        settle(app, 1.0)
        target = out / f"policy-dpo-{width}x{height}.png"
        window.grab().toImage().save(str(target), "PNG", 0)
        written.append(target)
        window.policy_page.show_method("PPO")
    window.show_page("Runs")
    window.runs_page.select_runs([runs["gen_old"]])
    settle(app, 1.0)
    target = out / f"runs-generate-{width}x{height}.png"
    window.grab().toImage().save(str(target), "PNG", 0)
    written.append(target)
    window.close()
    store.close()
    for target in written:
        print(f"{target}  {target.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
