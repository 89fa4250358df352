"""Metrics of one or more runs as a CSV file.

The file is in long ("tidy") form, one row per stored point, with the header

    run_id,step,name,value

rows ordered by run (in the order asked), then metric name, then step. Long form keeps runs
with different metrics and different step counts in one rectangular table without empty
cells, and every tool reads it: ``pandas.read_csv(path).pivot_table(index="step",
columns=["run_id", "name"], values="value")`` gives the wide view. Values are written with
Python's shortest round-trip repr, so reading the file back gives the stored floats exactly;
a missing value (NULL) is an empty cell.

The file is replaced atomically (a temporary file in the same folder, fsynced, then renamed
over the target), so a failure leaves any earlier file as it was.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator

from desktop_app.core.atomic_files import atomic_text_file
from desktop_app.core.data.store import Store, StoreError

__all__ = ["COLUMNS", "metric_rows", "write_metrics_csv"]

COLUMNS = ("run_id", "step", "name", "value")


def metric_rows(store: Store,
                run_ids: Iterable[int]) -> Iterator[tuple[int, int, str, float | None]]:
    """(run_id, step, name, value) for every stored point of the runs, in file order."""
    ids = list(dict.fromkeys(int(r) for r in run_ids))
    if not ids:
        raise StoreError("no run to export")
    missing = [r for r in ids if store.get_run(r) is None]
    if missing:
        raise StoreError(f"there is no run {', '.join(map(str, missing))}")
    for run_id in ids:
        for point in store.metrics(run_id):
            yield run_id, point["step"], point["name"], point["value"]


def write_metrics_csv(store: Store, run_ids: Iterable[int], path: str | os.PathLike) -> int:
    """Write the metrics of ``run_ids`` to ``path`` (see the module docstring for the format)
    and return how many points were written. Raises StoreError for an unknown run (the file
    is then left as it was) and OSError when the folder cannot be written."""
    rows = list(metric_rows(store, run_ids))
    with atomic_text_file(path, newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for run_id, step, name, value in rows:
            writer.writerow((run_id, step, name, "" if value is None else repr(float(value))))
    return len(rows)
