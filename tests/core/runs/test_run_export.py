"""Metrics of runs as CSV (long form: run_id, step, name, value), written atomically."""

import csv
import math

import pytest

from desktop_app.core.data.store import Store, StoreError
from desktop_app.core.runs.export import COLUMNS, write_metrics_csv


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "rlhf.db") as s:
        yield s


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_long_form_rows_in_run_then_name_then_step_order(store, tmp_path):
    a = store.create_run("reward", {})
    b = store.create_run("ppo", {}, parent_run_id=a)
    store.add_metrics(a, [(2, "train/loss", 0.5), (1, "train/loss", 0.7),
                          (1, "eval/accuracy", 1 / 3)])
    store.add_metrics(b, [(1, "objective/kl", 1e-12), (1, "objective/scores", -2.5)])
    target = tmp_path / "out.csv"
    assert write_metrics_csv(store, [b, a, b], target) == 5   # a repeated id counts once
    rows = _read(target)
    assert tuple(rows[0]) == COLUMNS
    assert rows[1:] == [[str(b), "1", "objective/kl", "1e-12"],
                        [str(b), "1", "objective/scores", "-2.5"],
                        [str(a), "1", "eval/accuracy", repr(1 / 3)],
                        [str(a), "1", "train/loss", "0.7"],
                        [str(a), "2", "train/loss", "0.5"]]
    assert float(rows[3][3]) == 1 / 3   # the stored float, exactly


def test_missing_values_and_nan(store, tmp_path):
    run = store.create_run("ppo", {})
    store.add_metrics(run, [(1, "objective/kl", float("nan"))])
    store.db.execute("INSERT INTO metrics (run_id, step, name, value, time) "
                     "VALUES (?, 2, 'objective/kl', NULL, 0)", [run])
    store.db.conn.commit()
    target = tmp_path / "m.csv"
    write_metrics_csv(store, [run], target)
    rows = _read(target)[1:]
    assert rows[1] == [str(run), "2", "objective/kl", ""]
    assert rows[0][3] == "" or math.isnan(float(rows[0][3]))   # SQLite stores NaN as NULL


def test_run_without_metrics_gives_the_header_only(store, tmp_path):
    run = store.create_run("generate", {})
    target = tmp_path / "m.csv"
    assert write_metrics_csv(store, [run], target) == 0
    assert _read(target) == [list(COLUMNS)]


def test_unknown_run_leaves_the_old_file_and_no_temporary(store, tmp_path):
    run = store.create_run("reward", {})
    target = tmp_path / "m.csv"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(StoreError, match="no run 42"):
        write_metrics_csv(store, [run, 42], target)
    with pytest.raises(StoreError, match="no run"):
        write_metrics_csv(store, [], target)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_missing_folder_is_named(store, tmp_path):
    run = store.create_run("reward", {})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        write_metrics_csv(store, [run], tmp_path / "nowhere" / "m.csv")


def test_replaces_an_existing_file(store, tmp_path):
    run = store.create_run("reward", {})
    store.add_metrics(run, [(1, "train/loss", 0.25)])
    target = tmp_path / "m.csv"
    target.write_text("old\n", encoding="utf-8")
    write_metrics_csv(store, [run], target)
    assert _read(target)[1] == [str(run), "1", "train/loss", "0.25"]
