"""The first thing a GUI start does, before Qt is imported (so this module imports no Qt)."""

from __future__ import annotations

import os
import signal


def exit_on_ctrl_c() -> None:
    """Until the window is up, Ctrl+C ends the process at once. Nothing has started yet that
    needs finishing: no run exists before the window shows, and every write to the store is a
    committed transaction (one cut short is rolled back by SQLite). The default, a
    KeyboardInterrupt, would surface from the middle of importing Qt as an ImportError or a
    fatal error, or wait for the window to finish building (seconds on a busy machine).
    ``gui.app`` hands Ctrl+C to the window once it exists."""
    def leave(*_) -> None:
        os.write(2, b"rlhf-desk: interrupted\n")
        os._exit(130)

    signal.signal(signal.SIGINT, leave)
