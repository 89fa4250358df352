"""Render the comparison view on the demo workspace to a PNG (offscreen), for the README.

    QT_QPA_PLATFORM=offscreen python docs/make_screenshot.py docs/comparison-view.png [WORKSPACE]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/comparison-view.png")
    root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp()) / "demo"
    from PySide6.QtCore import QEventLoop, QTimer

    from desktop_app.core.store import Store
    from desktop_app.core.workspace import Workspace
    from desktop_app.gui.app import create_app
    from desktop_app.gui.main_window import MainWindow
    from desktop_app.ml.demo import ensure_demo_workspace

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
    poll.timeout.connect(lambda: window.judge_page.current is not None and loop.quit())
    poll.start(100)
    deadline.start(300_000)
    loop.exec()
    page = window.judge_page
    if page.current is None:
        print("no pair appeared in time", file=sys.stderr)
        return 1
    for side in ("left", "right", "left"):      # a few judgments so the progress line is real
        page.judge(side)
    app.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out))
    for name in ("Prompts", "Models"):
        window.show_page(name)
        app.processEvents()
        window.grab().save(str(out.with_name(f"{out.stem}-{name.lower()}.png")))
    page.queue.shutdown()
    window.close()
    store.close()
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
