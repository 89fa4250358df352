"""Prompts: import from files, add, edit, delete. Duplicates and malformed rows are reported."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QFileDialog,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMessageBox,
                               QPlainTextEdit, QPushButton, QTableView, QVBoxLayout, QWidget)

from ..core.store import Store, StoreError

FILE_FILTER = "Prompts or pairs (*.txt *.jsonl *.json *.csv);;All files (*)"


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

    COLUMNS = ("ID", "Prompt", "Source", "Pairs", "Judged")

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
        for col in (0, 2, 3, 4):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.doubleClicked.connect(lambda _: self.edit_selected())

        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter prompts…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.summary = QLabel("")

        buttons = QHBoxLayout()
        for text, slot in (("Import file…", self.import_dialog), ("Add…", self.add_prompt),
                           ("Edit…", self.edit_selected), ("Delete", self.delete_selected)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.filter, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary)
        self.reload()

    def reload(self) -> None:
        rows = self.store.list_prompts()
        self.model.setRowCount(0)
        for row in rows:
            items = []
            for value in (row["id"], row["text"], row["source"], row["pairs"], row["judged"]):
                item = QStandardItem()
                if isinstance(value, int):
                    item.setData(value, Qt.ItemDataRole.DisplayRole)
                else:
                    item.setText(" ".join(str(value).split())[:300])
                    item.setToolTip(str(value)[:2000])
                items.append(item)
            self.model.appendRow(items)
        without = sum(1 for r in rows if not r["pairs"])
        self.summary.setText(f"{len(rows)} prompts · {without} without a pair yet")

    def selected_ids(self) -> list[int]:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return [int(self.proxy.index(r, 0).data()) for r in sorted(rows)]

    # -- actions ---------------------------------------------------------------------------

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import prompts or pairs", "", FILE_FILTER)
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> None:
        from ..core.formats import FormatError
        from ..core.importing import import_file
        try:
            report = import_file(self.store, path)
        except (FormatError, StoreError, OSError) as exc:
            QMessageBox.warning(self, "Import failed", str(exc))
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
            QMessageBox.warning(self, "Imported with problems", text)
        else:
            QMessageBox.information(self, f"Imported {Path(path).name}", text)

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
