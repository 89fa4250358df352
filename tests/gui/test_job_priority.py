"""A job's thread runs below the UI thread, so the window stays responsive while training keeps
every core busy (bench/ui_stalls.py measures the gaps)."""

import os
import sys
import threading

import pytest

from desktop_app.gui.jobs import JOB_NICENESS, Job


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sets nice per thread")
def test_a_jobs_thread_runs_a_few_nice_steps_below_the_ui_thread(qtbot):
    ui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def fn(emit, stop):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    job = Job(fn, needs_stack=False)
    with qtbot.waitSignal(job.succeeded, timeout=10000) as result:
        job.start()
    job_thread = result.args[0]
    assert job_thread == min(ui + JOB_NICENESS, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ui  # UI untouched
