"""The Runs page's actions on the selected runs: export their charts (PNG) or metrics (CSV),
and delete them with their metrics and folders after saying exactly what goes.

The work itself is core's (``core.run_export``, ``core.run_files``); this module asks, reports
and turns failures into messages. ``RunsPage`` mixes ``RunActions`` in and provides ``store``,
``workspace``, ``runs``, ``board``, ``_charted``, ``status_line``, ``selected_run_ids()`` and
``refresh()``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..core.run_export import write_metrics_csv
from ..core.run_files import (
    RunDeletion,
    delete_run,
    describe_deletion,
    folder_size,
    human_size,
)
from ..core.store import StoreError
from ..core.wording import count
from .runs_table import KIND_LABELS


class RunActions:
    # -- export ----------------------------------------------------------------------------

    def export_png(self, path: str | None = None) -> Path | None:
        """Save the charts as shown to a PNG file."""
        if self.board is None:
            QMessageBox.information(self, "Nothing to export",
                                    "Select a run and tick at least one metric to chart first.")
            return None
        if path is None:
            name = "runs-" + "-".join(str(r) for r in self._charted) + ".png"
            path, _ = QFileDialog.getSaveFileName(self, "Export charts",
                                                  str(Path.home() / name), "PNG image (*.png)")
            if not path:
                return None
        target = Path(path)
        if target.suffix.lower() != ".png":
            target = target.with_name(target.name + ".png")
        self.board.redraw_all()
        image = self.board.grab()
        if image.isNull() or not image.save(str(target), "PNG"):
            QMessageBox.warning(self, "Export failed",
                                f"Could not write {target}: check that the folder exists and "
                                "that you may write to it.")
            return None
        self.status_line.setText(f"Saved the charts to {target}")
        return target

    def export_csv(self, path: str | None = None) -> Path | None:
        """Write the selected runs' metrics to a CSV file (core.run_export)."""
        ids = self.selected_run_ids()
        if not ids:
            QMessageBox.information(self, "Nothing to export", "Select one or more runs first.")
            return None
        if path is None:
            name = "runs-" + "-".join(str(r) for r in ids) + "-metrics.csv"
            path, _ = QFileDialog.getSaveFileName(self, "Export metrics",
                                                  str(Path.home() / name), "CSV file (*.csv)")
            if not path:
                return None
        target = Path(path)
        try:
            count = write_metrics_csv(self.store, ids, target)
        except (StoreError, OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            QMessageBox.warning(self, "Export failed", f"Could not write {target}: {reason}")
            return None
        runs = ", ".join(f"#{r}" for r in ids)
        self.status_line.setText(f"Wrote {count:,} metric points of run{'s' * (len(ids) > 1)} "
                                 f"{runs} to {target}")
        return target

    # -- delete ----------------------------------------------------------------------------

    def delete_selected(self) -> list[RunDeletion]:
        ids = self.selected_run_ids()
        if not ids:
            QMessageBox.information(self, "Nothing to delete", "Select one or more runs first.")
            return []
        running = [i for i in ids if self.runs.get(i, {}).get("status") == "running"]
        if running:
            QMessageBox.information(
                self, "Run still running",
                f"Run{'s' * (len(running) > 1)} {', '.join(f'#{r}' for r in running)} "
                f"{'are' if len(running) > 1 else 'is'} still running. Cancel it on its page "
                "(or let it finish) before deleting it.")
            return []
        try:
            plans = [describe_deletion(self.store, self.workspace.runs_dir, i) for i in ids]
        except (StoreError, sqlite3.Error) as exc:
            QMessageBox.warning(self, "Cannot delete", str(exc))
            self.refresh()
            return []
        if QMessageBox.question(
                self, "Delete run" + ("s" if len(ids) > 1 else ""), self.deletion_text(plans),
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return []
        done, problems = [], []
        for plan in plans:
            try:
                result = delete_run(self.store, self.workspace.runs_dir, plan.run_id)
            except (StoreError, sqlite3.Error) as exc:
                problems.append(f"Run #{plan.run_id} was not deleted: {exc}")
                continue
            done.append(result)
            problems += [f"Could not remove {path}: {why}" for path, why in result.failed]
        self.refresh()
        if done:
            self.status_line.setText(
                f"Deleted run{'s' * (len(done) > 1)} {', '.join(f'#{d.run_id}' for d in done)}.")
        if problems:
            QMessageBox.warning(self, "Not everything was deleted",
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
            lines.append(f"Run #{plan.run_id} ({KIND_LABELS.get(plan.kind, plan.kind)}, "
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
