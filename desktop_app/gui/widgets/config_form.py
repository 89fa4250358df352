"""A settings form generated from a config dataclass: one row per field, help as tooltip.

Adding an option to a config in ``core/config.py`` adds it here with no GUI code. Decimal
fields show their value without trailing zeros (2 epochs, not 2.00). ``FormScroll`` is the
scrolling box a long form sits in: never narrower than the form and its scroll bar.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QWidget,
)

from desktop_app.core.config import form_fields


def _label(f) -> str:
    return f.metadata.get("label") or f.name.replace("_", " ").capitalize()


class DecimalSpinBox(QDoubleSpinBox):
    """A QDoubleSpinBox that writes its value without trailing zeros: 2, 0.0002, 0.95 (it keeps
    its decimals for typing and stepping)."""

    def textFromValue(self, value: float) -> str:
        text = super().textFromValue(value)
        point = self.locale().decimalPoint()
        if point in text:
            text = text.rstrip("0").rstrip(point)
        return text


class FormScroll(QScrollArea):
    """A form that scrolls up and down, never sideways: at least as wide as the form plus the
    vertical scroll bar, so no field (or spin-box arrow) ever sits under that bar."""

    def __init__(self, form: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWidget(form)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def _width_for(self, form_width: int) -> int:
        return form_width + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:
        return QSize(self._width_for(self.widget().minimumSizeHint().width()),
                     super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        return QSize(self._width_for(self.widget().sizeHint().width()),
                     super().sizeHint().height())


class ConfigForm(QWidget):
    changed = Signal()

    def __init__(self, config: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self._type = type(config)
        self._editors: dict[str, QWidget] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for f in form_fields(config):
            editor = self._editor_for(f, getattr(config, f.name))
            editor.setToolTip(f.metadata.get("help", ""))
            editor.setObjectName(f"field_{f.name}")
            self._editors[f.name] = editor
            layout.addRow(_label(f), editor)

    def _editor_for(self, f, value: Any) -> QWidget:
        meta = f.metadata
        if meta.get("choices"):
            box = QComboBox()
            box.addItems([str(c) for c in meta["choices"]])
            box.setCurrentText(str(value))
            box.currentTextChanged.connect(self.changed)
            return box
        if isinstance(value, str):
            line = QLineEdit(value)
            line.editingFinished.connect(self.changed)
            return line
        if isinstance(value, bool):
            check = QCheckBox()
            check.setChecked(value)
            check.toggled.connect(self.changed)
            return check
        if isinstance(value, int):
            spin = QSpinBox()
            spin.setRange(int(meta.get("min") or 0), int(meta.get("max") or 10**9))
            spin.setSingleStep(int(meta.get("step") or 1))
            spin.setValue(value)
            spin.valueChanged.connect(self.changed)
            return spin
        spin = DecimalSpinBox()
        step = float(meta.get("step") or 0.01)
        # Enough decimals to show one step (a learning rate of 2e-4 needs six).
        spin.setDecimals(min(8, max(2, 1 - math.floor(math.log10(step)))))
        spin.setRange(float(meta.get("min") or 0.0), float(meta.get("max") or 1e9))
        spin.setSingleStep(float(meta.get("step") or 0.1))
        spin.setValue(float(value))
        spin.valueChanged.connect(self.changed)
        return spin

    def value(self) -> Any:
        values = {}
        for name, editor in self._editors.items():
            if isinstance(editor, QComboBox):
                values[name] = editor.currentText()
            elif isinstance(editor, QLineEdit):
                values[name] = editor.text().strip()
            elif isinstance(editor, QCheckBox):
                values[name] = editor.isChecked()
            else:
                values[name] = editor.value()
        return self._type(**values)

    def set_value(self, config: Any) -> None:
        for f in form_fields(config):
            editor, value = self._editors[f.name], getattr(config, f.name)
            editor.blockSignals(True)
            if isinstance(editor, QComboBox):
                editor.setCurrentText(str(value))
            elif isinstance(editor, QLineEdit):
                editor.setText(str(value))
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            else:
                editor.setValue(value)
            editor.blockSignals(False)
        self.changed.emit()
