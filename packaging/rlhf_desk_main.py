"""Entry point of the frozen app (packaging/rlhf-desk.spec): the same as ``rlhf-desk``."""

import multiprocessing
import os
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    # A windowed build (Windows, macOS) has no console: print() and logging would fail on None.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    from desktop_app.cli import main

    raise SystemExit(main())
