"""Property: whatever bytes a file holds, importing it either stores its valid rows and reports
the others by line, or refuses the whole file with a FormatError; it never raises anything
else, and a refused file leaves the database exactly as it was."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop_app.core.data.formats import FormatError
from desktop_app.core.data.importing import import_file
from desktop_app.core.data.store import Store

pytestmark = pytest.mark.slow  # hundreds of random files, each imported into a new database

SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".parquet")

# Random bytes rarely look like a CSV or JSON file; building blocks of real files, in random
# order, reach the parsers' corners (quotes, brackets, escapes, BOMs, huge numbers).
PIECES = st.sampled_from([
    b'"', b",", b"\n", b"\r\n", b"\r", b"{", b"}", b"[", b"]", b":", b"\\", b"\\u", b"d800",
    b'"prompt"', b'"chosen"', b'"rejected"', b'"messages"', b'"role"', b'"content"', b'"user"',
    b"prompt", b"chosen,rejected", b"null", b"true", b"1e999", b"9" * 4400, b"\x00",
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3\xa9", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80", b"text ",
    b"\t", b" ",
])
CONTENTS = st.one_of(st.binary(max_size=400),
                     st.lists(PIECES, max_size=60).map(b"".join),
                     st.lists(st.fixed_dictionaries({"prompt": st.text(max_size=30)}), max_size=5)
                     .map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()))


def dump(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return list(conn.iterdump())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CONTENTS, suffix=st.sampled_from(SUFFIXES))
def test_any_bytes_import_cleanly_or_are_refused_whole(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / f"input{suffix}"
        path.write_bytes(data)
        with Store(folder / "rlhf.db") as store:
            store.add_prompts(["already here"])
            before = dump(folder / "rlhf.db")
            try:
                report = import_file(store, path)
            except FormatError as exc:
                assert str(exc).startswith(path.name) and "\n" not in str(exc)
                assert dump(folder / "rlhf.db") == before
                return
            stats = store.stats()
            assert report.malformed == len(report.problems)
            for problem in report.problems:
                assert problem.file == path.name and problem.line >= 1
                str(problem).encode("utf-8")  # printable anywhere
            if report.kind == "pairs":
                assert stats["comparisons"] == report.imported
            else:
                assert stats["prompts"] == 1 + report.imported
            if not report.imported:
                assert dump(folder / "rlhf.db") == before
            check = store.db.execute("PRAGMA integrity_check").fetchone()[0]
            assert check == "ok"
