"""Prompts: import from files, add, edit, delete, and export the judgments as a data set.
Duplicates and malformed rows are reported."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.data.exports import FORMATS
from desktop_app.core.data.store import Store, StoreError
from desktop_app.core.errors import UserError
from desktop_app.core.wording import count

log = logging.getLogger(__name__)

FILE_FILTER = "Prompts or pairs (*.txt *.jsonl *.json *.csv *.parquet);;All files (*)"
# One save-dialog filter per export format; the filter the user picks decides the format.
EXPORT_FILTERS = {f"{fmt.label} (*{fmt.suffix})": fmt.name for fmt in FORMATS.values()}


class PromptDialog(QDialog):
    def __init__(self, title: str, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(560, 300)
        self.editor = QPlainTextEdit(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Prompt text:"))
        layout.addWidget(self.editor)
        layout.addWidget(buttons)

    def text(self) -> str:
        return self.editor.toPlainText().strip()


class PromptsPage(QWidget):
    prompts_changed = Signal()

    COLUMNS = ("ID", "Prompt", "Source", "Pairs", "Judged", "Held out")

    def __init__(self, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.model = QStandardItemModel(0, len(self.COLUMNS), self)
        self.model.setHorizontalHeaderLabels(self.COLUMNS)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for col in (0, 2, 3, 4, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.doubleClicked.connect(lambda _: self.edit_selected())

        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter prompts…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.summary = QLabel("")

        buttons = QHBoxLayout()
        for text, slot in (("Import file…", self.import_dialog),
                           ("Export judgments…", self.export_dialog), ("Add…", self.add_prompt),
                           ("Edit…", self.edit_selected), ("Delete", self.delete_selected),
                           ("Hold out for evaluation", self.hold_out_selected),
                           ("Release", self.release_selected)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        # Its own row: beside the buttons a narrow window squeezed it to nothing.
        layout.addWidget(self.filter)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary)
        self._stale = False   # judgments changed the counts since the last reload
        self.reload()

    def mark_stale(self) -> None:
        """Pairs were judged elsewhere: the counts are read again when the page is shown."""
        self._stale = True

    def activate(self) -> None:
        """The page is shown."""
        if self._stale:
            self.reload()

    def reload(self) -> None:
        self._stale = False
        rows = self.store.list_prompts()
        self.model.setRowCount(0)
        for row in rows:
            items = []
            held = "held out" if row.get("held_out") else ""
            for value in (row["id"], row["text"], row["source"], row["pairs"], row["judged"],
                          held):
                item = QStandardItem()
                if isinstance(value, int):
                    item.setData(value, Qt.ItemDataRole.DisplayRole)
                else:
                    item.setText(" ".join(str(value).split())[:300])
                    item.setToolTip(str(value)[:2000])
                items.append(item)
            if held:
                items[5].setToolTip("Held out for evaluation: no training pairs are generated "
                                    "for it; the Evaluate page compares policies on it.")
                items[5].setForeground(QBrush(QColor("#7c3aed")))
            self.model.appendRow(items)
        without = sum(1 for r in rows if not r["pairs"] and not r.get("held_out"))
        held_out = sum(1 for r in rows if r.get("held_out"))
        self.summary.setText(f"{count(len(rows), 'prompt')} · {without} without a pair yet · "
                             f"{held_out} held out for evaluation")

    def selected_ids(self) -> list[int]:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return [int(self.proxy.index(r, 0).data()) for r in sorted(rows)]

    # -- actions ---------------------------------------------------------------------------

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import prompts or pairs", "", FILE_FILTER)
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> None:
        from desktop_app.core.data.importing import import_file
        from desktop_app.gui.jobs import friendly_error
        try:
            report = import_file(self.store, path)
        except Exception as exc:  # noqa: BLE001 - a bad file, a disk error or a bug: one message
            if not isinstance(exc, UserError):
                log.error("import of %s failed", path, exc_info=True)
            QMessageBox.warning(self, "Import failed", friendly_error(exc))
            return
        self.reload()
        self.prompts_changed.emit()
        text = report.summary()
        if report.problems:
            shown = "\n".join(str(p) for p in report.problems[:20])
            more = len(report.problems) - 20
            text += f"\n\nMalformed rows (not imported):\n{shown}"
            if more > 0:
                text += f"\n… and {more} more"
            nothing = not (report.imported or report.skipped)
            QMessageBox.warning(self, "Nothing imported" if nothing else "Imported with problems",
                                text)
        else:
            QMessageBox.information(self, f"Imported {Path(path).name}", text)

    def export_dialog(self) -> None:
        if not self.store.preference_rows():
            QMessageBox.information(self, "Nothing to export", "There are no judged pairs yet.")
            return
        path, chosen = QFileDialog.getSaveFileName(self, "Export judgments", "judgments.jsonl",
                                                   ";;".join(EXPORT_FILTERS))
        if path:
            fmt = EXPORT_FILTERS.get(chosen, "csv" if path.lower().endswith(".csv") else "trl")
            self.export_path(path, fmt)

    def export_path(self, path: str, fmt: str) -> None:
        from desktop_app.core.data.exports import export_judgments
        if not Path(path).suffix:
            path += FORMATS[fmt].suffix
        ties = self.store.stats()["by_choice"]["tie"]
        # Asked, not assumed: a tool that does not know the 'tie' column reads a tie as a
        # preference for the first response.
        include_ties = bool(ties) and QMessageBox.question(
            self, "Include ties?",
            f"{ties} pair(s) were judged a tie. Include them, marked in a 'tie' column?\n\n"
            "Tools that do not know that column would read them as preferences.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No) == QMessageBox.StandardButton.Yes
        try:
            result = export_judgments(self.store, path, fmt, include_ties=include_ties)
        except (ValueError, OSError) as exc:
            QMessageBox.warning(self, "Export failed", f"{Path(path).name}: {exc}")
            return
        text = f"Wrote {count(result.pairs, 'pair')} to {path} ({FORMATS[fmt].label})."
        if result.ties:
            text += (f"\n{result.ties} of them {'is a tie' if result.ties == 1 else 'are ties'}.")
        elif ties:
            text += f"\n{count(ties, 'tie')} {'was' if ties == 1 else 'were'} left out."
        if result.unusable:
            text += (f"\n{count(result.unusable, 'pair')} with an empty or repeated response "
                     f"{'was' if result.unusable == 1 else 'were'} left out.")
        QMessageBox.information(self, "Exported judgments", text)

    def add_prompt(self) -> None:
        dialog = PromptDialog("Add prompt", parent=self)
        if dialog.exec() and dialog.text():
            try:
                self.store.add_prompt(dialog.text())
            except StoreError as exc:
                QMessageBox.information(self, "Not added", str(exc))
                return
            self.reload()
            self.prompts_changed.emit()

    def edit_selected(self) -> None:
        ids = self.selected_ids()
        if len(ids) != 1:
            return
        prompt = self.store.get_prompt(ids[0])
        if prompt is None:
            return
        if self.store.prompt_judgment_count(ids) and QMessageBox.question(
                self, "Edit a judged prompt?",
                "This prompt already has judged pairs. Those responses were written for the "
                "old text. Edit anyway?") != QMessageBox.StandardButton.Yes:
            return
        dialog = PromptDialog("Edit prompt", prompt["text"], self)
        if dialog.exec() and dialog.text() and dialog.text() != prompt["text"]:
            try:
                self.store.update_prompt(ids[0], dialog.text())
            except StoreError as exc:
                QMessageBox.warning(self, "Not saved", str(exc))
                return
            self.reload()
            self.prompts_changed.emit()

    def hold_out_selected(self) -> None:
        """Keep the selected prompts for evaluation: no training pairs are made from them."""
        ids = self.selected_ids()
        if not ids:
            return
        judged = self.store.prompt_judgment_count(ids)
        if judged and QMessageBox.question(
                self, "Hold out judged prompts?",
                f"These prompts already have {judged} training judgment(s). A reward model may "
                "have learnt them, so an evaluation on them is not fully held out.\n\n"
                "Hold them out anyway?") != QMessageBox.StandardButton.Yes:
            return
        self.store.set_held_out(ids, True)
        self.reload()
        self.prompts_changed.emit()

    def release_selected(self) -> None:
        """Return the selected held-out prompts to the pool that training pairs come from."""
        ids = self.selected_ids()
        if ids:
            self.store.set_held_out(ids, False)
            self.reload()
            self.prompts_changed.emit()

    def delete_selected(self) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        judged = self.store.prompt_judgment_count(ids)
        message = f"Delete {len(ids)} prompt(s) with their generated pairs?"
        if judged:
            message += f"\n\n{judged} judgment(s) will be deleted with them."
        if QMessageBox.question(self, "Delete prompts", message) != QMessageBox.StandardButton.Yes:
            return
        self.store.delete_prompts(ids)
        self.reload()
        self.prompts_changed.emit()
