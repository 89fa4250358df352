"""A full disk, a failing disk, a read-only or busy database: one sentence that names the file
and says what happened, never "not a usable database" for a database that is fine, and the
data intact once the problem is gone."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from desktop_app.cli import main
from desktop_app.core import errors
from desktop_app.core.atomic_files import atomic_text_file
from desktop_app.core.data import store as store_module
from desktop_app.core.data.store import DatabaseUnavailable, Store


def sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code
    return exc


def failing_connect(message: str, code: int):
    real = sqlite3.connect

    def connect(*args, **kwargs):
        connection = real(*args, **kwargs)
        connection.close()
        raise sqlite_error(message, code)
    return connect


@pytest.mark.parametrize("command", [["stats"], ["runs"], ["export", "OUT"],
                                     ["import", "IN"]])
def test_an_io_error_on_a_full_disk_says_the_disk_is_full(command, workspace, tmp_path,
                                                          monkeypatch, capsys):
    """What SQLite says when it cannot write its WAL index on a full disk: 'disk I/O error'."""
    with Store(workspace.db_path) as store:
        store.add_prompts(["kept"])
    (tmp_path / "IN").write_text("x\n", encoding="utf-8")
    argv = [str(tmp_path / a) if a in ("OUT", "IN") else a for a in command]
    monkeypatch.setattr(store_module.sqlite3, "connect", failing_connect("disk I/O error", 10))
    monkeypatch.setattr(errors, "free_bytes", lambda path: 4096)
    assert main(["--workspace", str(workspace.root), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"rlhf-desk: error: The disk holding {workspace.db_path} is full (4.0 KB "
                   "left). Free some space and try again; what was already saved is intact.")
    assert "not a usable" not in err
    monkeypatch.undo()
    with Store(workspace.db_path) as store:  # space freed: everything is there
        assert [p["text"] for p in store.list_prompts()] == ["kept"]


def test_an_io_error_with_room_on_the_disk_is_not_called_corruption(workspace, monkeypatch):
    monkeypatch.setattr(store_module.sqlite3, "connect", failing_connect("disk I/O error", 10))
    with pytest.raises(DatabaseUnavailable, match="input/output error") as info:
        Store(workspace.db_path)
    assert "not a usable" not in str(info.value) and str(workspace.db_path) in str(info.value)


def test_a_database_that_fills_up_mid_write_keeps_what_was_committed(store):
    store.add_prompts(["first"])
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DatabaseUnavailable, match="could not write to"):
        store.add_prompts([f"{i} " + "x" * 5000 for i in range(50)])
    assert [p["text"] for p in store.list_prompts()] == ["first"]


def test_a_damaged_file_is_called_damaged(workspace):
    workspace.db_path.write_bytes(b"this is not an sqlite file at all" * 100)
    with pytest.raises(DatabaseUnavailable, match="damaged or is not an SQLite database"):
        Store(workspace.db_path)


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "is full"), (errno.EISDIR, "is a folder, not a file"),
    (errno.EACCES, "permission denied"), (errno.EROFS, "read-only disk"),
])
def test_os_errors_become_sentences_that_name_the_file(code, words, tmp_path):
    text = errors.explain(OSError(code, "raw strerror", str(tmp_path / "f.jsonl")))
    assert words in text and str(tmp_path / "f.jsonl") in text
    assert "Errno" not in text and "raw strerror" not in text


def test_a_full_disk_during_an_export_names_the_export_not_a_temporary_file(tmp_path,
                                                                            monkeypatch):
    target = tmp_path / "pairs.jsonl"

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        with atomic_text_file(target) as out:
            monkeypatch.setattr(out, "flush", full)
            out.write("row\n")
    assert info.value.filename == str(target)
    assert errors.explain(info.value).startswith(f"The disk holding {target} is full")
    assert list(tmp_path.iterdir()) == []


def test_export_onto_a_folder_says_so(store, workspace, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["--workspace", str(workspace.root), "export", str(folder)]) == 1
    assert capsys.readouterr().err.strip() == f"rlhf-desk: error: {folder} is a folder, not a file."
