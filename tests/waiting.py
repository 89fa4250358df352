"""Waiting in tests for a condition, never for a fixed time.

Qt tests wait with ``qtbot.waitUntil`` / ``qtbot.waitSignal``; this is for what no signal
announces: a file another process writes, a stop flag read on a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def poll_until(condition: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Check ``condition`` every ``interval`` seconds until it holds (True) or ``timeout``
    seconds have passed (False: the caller's next assertion says what was missing)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
