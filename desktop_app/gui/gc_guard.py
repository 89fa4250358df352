"""Python's cyclic garbage collector, run on the UI thread only.

CPython collects cycles in whichever thread happens to allocate when a generation's threshold
is crossed. When that is a worker thread (generation, training, a plan) and the garbage holds
Qt objects, their C++ destructors run off the UI thread, and PySide can deadlock: the worker's
``~QObject`` waits for the GIL that the UI thread holds, while the UI thread, destroying
another object, waits for the Qt lock the worker holds. The test suite hung that way once
(2026-12-02: a playground job's thread collecting a closed window's widgets).

So the app switches automatic collection off and the UI thread collects on a timer instead,
as often as the thresholds would have (the pattern of PyQt applications' "GarbageCollector").
Reference counting, which frees almost everything, is untouched.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500


class MainThreadCollector(QObject):
    def __init__(self, parent: QObject):
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(INTERVAL_MS)

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds, as CPython would."""
        count = gc.get_count()
        if count[0] <= self.threshold[0]:
            return
        generation = 2 if count[2] > self.threshold[2] else 1 if count[1] > self.threshold[1] \
            else 0
        gc.collect(generation)


_collector: MainThreadCollector | None = None


def collect_on_ui_thread(app: QObject) -> None:
    """Once per process: automatic collection off, the UI thread's timer on."""
    global _collector
    if _collector is None:
        _collector = MainThreadCollector(app)
