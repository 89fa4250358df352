"""The Runs page's actions on the selected runs: export their charts (PNG) or metrics (CSV),
and delete them with their metrics and folders after saying exactly what goes.

The work itself is core's (``core.runs.export``, ``core.runs.files``); this module asks, reports
and turns failures into messages. ``RunActions`` is an object the page holds
(``page.actions``), made with the page (the parent of its dialogs), the store and the runs
folder; each action is told which runs it acts on. It reports through ``said`` (a line for the
status line) and ``runs_changed`` (runs were deleted, or could not be read: read them again).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from desktop_app.core.data.store import Store, StoreError
from desktop_app.core.runs.export import write_metrics_csv
from desktop_app.core.runs.files import (
    RunDeletion,
    delete_run,
    describe_deletion,
    folder_size,
    human_size,
)
from desktop_app.core.runs.record import Run, RunStatus
from desktop_app.core.wording import count
from desktop_app.gui.runs.table import KIND_LABELS
from desktop_app.gui.widgets.charts import ChartBoard


class RunActions(QObject):
    said = Signal(str)       # what was done, for the page's status line
    runs_changed = Signal()  # runs were deleted (or found changed): the page reads them again

    def __init__(self, page: QWidget, store: Store, runs_dir: Path):
        super().__init__(page)
        self.page = page
        self.store = store
        self.runs_dir = Path(runs_dir)

    # -- export ----------------------------------------------------------------------------

    def export_png(self, board: ChartBoard | None, run_ids: list[int],
                   path: str | None = None) -> Path | None:
        """Save ``board`` (the charts of ``run_ids``, as shown) to a PNG file."""
        if board is None:
            QMessageBox.information(self.page, "Nothing to export",
                                    "Select a run and tick at least one metric to chart first.")
            return None
        target = self._target(path, "Export charts", run_ids, ".png", "PNG image (*.png)")
        if target is None:
            return None
        if target.suffix.lower() != ".png":
            target = target.with_name(target.name + ".png")
        board.redraw_all()
        image = board.grab()
        if image.isNull() or not image.save(str(target), "PNG"):
            QMessageBox.warning(self.page, "Export failed",
                                f"Could not write {target}: check that the folder exists and "
                                "that you may write to it.")
            return None
        self.said.emit(f"Saved the charts to {target}")
        return target

    def _target(self, path: str | None, title: str, run_ids: list[int], ending: str,
                file_filter: str) -> Path | None:
        """``path``, or the file the person picks (None: they cancelled)."""
        if path is None:
            name = "runs-" + "-".join(str(r) for r in run_ids) + ending
            path, _ = QFileDialog.getSaveFileName(self.page, title, str(Path.home() / name),
                                                  file_filter)
        return Path(path) if path else None

    def export_csv(self, run_ids: list[int], path: str | None = None) -> Path | None:
        """Write the metrics of ``run_ids`` to a CSV file (core.runs.export)."""
        ids = list(run_ids)
        if not ids:
            QMessageBox.information(self.page, "Nothing to export",
                                    "Select one or more runs first.")
            return None
        target = self._target(path, "Export metrics", ids, "-metrics.csv", "CSV file (*.csv)")
        if target is None:
            return None
        try:
            count = write_metrics_csv(self.store, ids, target)
        except (StoreError, OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            QMessageBox.warning(self.page, "Export failed", f"Could not write {target}: {reason}")
            return None
        runs = ", ".join(f"#{r}" for r in ids)
        self.said.emit(f"Wrote {count:,} metric points of run{'s' * (len(ids) > 1)} "
                                 f"{runs} to {target}")
        return target

    # -- delete ----------------------------------------------------------------------------

    def delete(self, run_ids: list[int], runs: dict[int, Run]) -> list[RunDeletion]:
        """Delete ``run_ids`` after asking, unless one is running (``runs``: as last read)."""
        ids = list(run_ids)
        if not ids:
            QMessageBox.information(self.page, "Nothing to delete",
                                    "Select one or more runs first.")
            return []
        running = [i for i in ids if i in runs and runs[i].status == RunStatus.RUNNING]
        if running:
            QMessageBox.information(
                self.page, "Run still running",
                f"Run{'s' * (len(running) > 1)} {', '.join(f'#{r}' for r in running)} "
                f"{'are' if len(running) > 1 else 'is'} still running. Cancel it on its page "
                "(or let it finish) before deleting it.")
            return []
        try:
            plans = [describe_deletion(self.store, self.runs_dir, i) for i in ids]
        except (StoreError, sqlite3.Error) as exc:
            QMessageBox.warning(self.page, "Cannot delete", str(exc))
            self.runs_changed.emit()
            return []
        if QMessageBox.question(
                self.page, "Delete run" + ("s" if len(ids) > 1 else ""), self.deletion_text(plans),
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return []
        done, problems = [], []
        for plan in plans:
            try:
                result = delete_run(self.store, self.runs_dir, plan.run_id)
            except (StoreError, sqlite3.Error) as exc:
                problems.append(f"Run #{plan.run_id} was not deleted: {exc}")
                continue
            done.append(result)
            problems += [f"Could not remove {path}: {why}" for path, why in result.failed]
        self.runs_changed.emit()
        if done:
            self.said.emit(
                f"Deleted run{'s' * (len(done) > 1)} {', '.join(f'#{d.run_id}' for d in done)}.")
        if problems:
            QMessageBox.warning(self.page, "Not everything was deleted",
                                "\n".join(problems) + "\n\nThe runs are gone from the workspace; "
                                "folders listed here can be removed by hand.")
        return done

    def deletion_text(self, plans: list[RunDeletion]) -> str:
        """What the confirmation says: runs, metric points, folders (with sizes), evaluation
        pairs, and which runs lose their link."""
        lines = []
        deleted = {p.run_id for p in plans}
        for plan in plans:
            what = [count(plan.metrics, "metric point")]
            if plan.comparisons:
                what.append(count(plan.comparisons, "evaluation pair") + " and "
                            + ("its judgment" if plan.comparisons == 1 else "their judgments"))
            if plan.generations:
                what.append(count(plan.generations, "generated response"))
            lines.append(f"Run #{plan.run_id} ({KIND_LABELS[plan.kind]}, "
                         f"{plan.status}): " + ", ".join(what))
            for folder in plan.folders:
                lines.append(f"    folder {folder} ({human_size(folder_size(folder))})")
            for path in plan.kept:
                lines.append(f"    kept (outside the workspace's runs folder): {path}")
        children = sorted({c for p in plans for c in p.children} - deleted)
        text = "This deletes:\n\n" + "\n".join(lines)
        if children:
            text += ("\n\nRun" + ("s " if len(children) > 1 else " ")
                     + ", ".join(f"#{c}" for c in children)
                     + (" were" if len(children) > 1 else " was")
                     + " made from it: they are kept but lose their link to it.")
        return text + "\n\nThis cannot be undone."
