"""Cyclic garbage is collected on the UI thread only (gui/gc_guard.py): a worker thread that
collected Qt objects could deadlock PySide."""

import gc

from desktop_app.gui import gc_guard
from desktop_app.gui.app import create_app


def test_the_app_collects_on_its_ui_thread_only(qtbot):
    create_app()
    assert not gc.isenabled()
    collector = gc_guard._collector
    assert collector is not None and collector.timer.isActive()

    class Cycle:
        pass

    for _ in range(collector.threshold[0] + 10):   # cyclic garbage past generation 0's threshold
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
    before = gc.get_count()[0]
    assert before > collector.threshold[0]
    collector.check()
    assert gc.get_count()[0] < before
