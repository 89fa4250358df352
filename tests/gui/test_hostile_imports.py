"""The hostile corpus (tests/hostile_inputs.py) through the Prompts page: each file shows exactly
one message, never a traceback, stores nothing when nothing in it was valid, and leaves the
page working."""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hostile_inputs import CASES, write_corpus  # noqa: E402

from .conftest import flush_events  # noqa: E402

pytestmark = [pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the corpus has a named pipe"),
              pytest.mark.slow]  # 50-odd files through the real window


def dump(db_path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return list(conn.iterdump())


def test_every_hostile_file_gives_one_message_and_leaves_the_app_usable(
        qtbot, window, store, workspace, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox
    shown: list[tuple[str, str, str]] = []
    for kind in ("information", "warning", "critical"):
        monkeypatch.setattr(QMessageBox, kind,
                            lambda *a, kind=kind, **k: shown.append((kind, a[1], a[2])))
    hooked = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: hooked.append(exc))
    paths = write_corpus(tmp_path / "hostile")
    page = window.prompts_page

    for case in CASES:
        before = dump(workspace.db_path)
        shown.clear()
        page.import_path(str(paths[case.name]))
        flush_events()  # let anything queued run, so a stray error would show here

        assert len(shown) == 1, (case.name, shown)
        kind, title, text = shown[0]
        assert "Traceback" not in text and not hooked, (case.name, text)
        if case.outcome == "imported":
            # One workspace for every case: rows an earlier case stored count as duplicates.
            counts = re.search(r"imported (\d+) \w+(?: \(\d+ ties?\))?, skipped (\d+) "
                               r"duplicates?, (\d+) malformed", text)
            assert counts, (case.name, text)
            added, duplicates, malformed = map(int, counts.groups())
            assert (added + duplicates, malformed) == (case.imported, case.malformed), text
            if case.malformed:
                assert kind == "warning" and title == "Imported with problems"
        else:
            assert kind == "warning", (case.name, title, text)
            assert title == ("Import failed" if case.outcome == "refused" else "Nothing imported")
            assert case.name in text and case.mentions in text, (case.name, text)
            assert dump(workspace.db_path) == before, case.name
        # Still usable: the table shows what the database holds.
        assert page.model.rowCount() == len(store.list_prompts()), case.name

    # And the page still takes a plain, valid import afterwards.
    ok = tmp_path / "after.txt"
    ok.write_text("One more prompt after all that\n", encoding="utf-8")
    shown.clear()
    page.import_path(str(ok))
    assert shown[0][0] == "information" and "imported 1 prompt," in shown[0][2]
