"""The installed Qt binding must not corrupt Python's reference counts.

PySide6 6.12.0 under Python 3.11 drops a reference to None on every call of a void method
(QLabel.setText, QWidget.update, ...); after a few thousand calls Python aborts with
"none_dealloc". The app makes that many calls in minutes, so pyproject.toml excludes that
release and this test catches any other release with the same fault. (From Python 3.12 None
is immortal and the fault is harmless.)
"""

import sys

import pytest
from PySide6 import QtWidgets


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_void_qt_calls_do_not_drain_references_to_none(qapp):
    label = QtWidgets.QLabel()
    label.setText("warm-up")
    before = sys.getrefcount(None)
    for _ in range(500):
        label.setText("x")
        label.update()
    assert sys.getrefcount(None) - before > -100, (
        "this PySide6 release decrefs None on void calls; the app would crash: "
        "install another release (see pyproject.toml)")
