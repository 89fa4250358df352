"""The side-by-side comparison: prompt on top, two responses, judgment buttons with their keys.

This widget only displays and reports: ``chosen(side)`` with side in left/right/tie/both_bad/
skip, ``undo_requested``, ``note_requested``. ``JudgePage`` decides what those mean.
With ``blind=True`` (blind evaluation) nothing about where a response came from is shown:
the footers give only its length and whether it ended, never its source, model or adapter.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStyle,
    QStyleOptionButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

# (side, button text, shortcut keys). Left/right arrows mirror 1/2 for one-handed use.
ACTIONS = [
    ("left", "◀  Left is better", ("1", "Left")),
    ("tie", "Tie", ("T",)),
    ("both_bad", "Both bad", ("B",)),
    ("skip", "Skip", ("S",)),
    ("right", "Right is better  ▶", ("2", "Right")),
]


def _key_hint(keys: tuple[str, ...]) -> str:
    names = {"Left": "←", "Right": "→"}
    return " / ".join(names.get(k, k) for k in keys)


class KeyButton(QPushButton):
    """A button that names its keyboard keys: "Tie   [T]" on one line where there is room,
    "Tie" over "[T]" where there is not, so a narrow window never cuts the text off.

    Its size hint is the one-line width, its minimum the two-line one (both as tall as two
    lines, so switching never moves the row); the text follows the width it is given, or, in
    a row of them (``row``), the row goes to two lines together when any of it must."""

    def __init__(self, text: str, keys: str, parent: QWidget | None = None):
        super().__init__(f"{text}   [{keys}]", parent)
        self.row: list[KeyButton] = [self]
        self.wide_text = f"{text}   [{keys}]"
        self.narrow_text = f"{text}\n[{keys}]"
        self.setToolTip(f"{text.strip(' ◀▶')}: press {keys}")
        # Across, Preferred (a push button's default is Minimum): a layout may shrink it to
        # the two-line width. Down, Minimum: the row is as tall as its tallest button's two
        # lines, and every button of it that tall.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

    def _hint_for(self, text: str) -> QSize:
        # What QPushButton.sizeHint computes, for a text that need not be the one shown.
        option = QStyleOptionButton()
        self.initStyleOption(option)
        option.text = text
        size = self.fontMetrics().size(Qt.TextFlag.TextShowMnemonic, text)
        option.rect.setSize(size)
        return self.style().sizeFromContents(QStyle.ContentsType.CT_PushButton, option, size,
                                             self)

    def sizeHint(self) -> QSize:
        wide, narrow = self._hint_for(self.wide_text), self._hint_for(self.narrow_text)
        return QSize(wide.width(), max(wide.height(), narrow.height()))

    def minimumSizeHint(self) -> QSize:
        narrow = self._hint_for(self.narrow_text)
        return QSize(narrow.width(), max(narrow.height(), self.sizeHint().height()))

    def fits_on_one_line(self) -> bool:
        return self.width() >= self._hint_for(self.wide_text).width()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        one_line = all(button.fits_on_one_line() for button in self.row)
        for button in self.row:
            text = button.wide_text if one_line else button.narrow_text
            if text != button.text():
                button.setText(text)


def prompt_over_responses(prompt: QWidget, left: QWidget, right: QWidget,
                          response_share: int) -> QSplitter:
    """The prompt above the two responses side by side, in splitters no pane collapses in;
    the responses get ``response_share`` times the prompt's height."""
    responses = QSplitter(Qt.Orientation.Horizontal)
    responses.addWidget(left)
    responses.addWidget(right)
    responses.setChildrenCollapsible(False)
    vertical = QSplitter(Qt.Orientation.Vertical)
    vertical.addWidget(prompt)
    vertical.addWidget(responses)
    vertical.setStretchFactor(0, 1)
    vertical.setStretchFactor(1, response_share)
    vertical.setChildrenCollapsible(False)
    return vertical


class TextPane(QFrame):
    """A titled, scrollable text box that renders markdown (or shows plain text)."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("pane")
        self.title = QLabel(title)
        self.title.setObjectName("paneTitle")
        self.footer = QLabel("")
        self.footer.setObjectName("paneFooter")
        self.footer.setWordWrap(True)   # a long footer wraps rather than widen the window
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setOpenLinks(False)
        # Mouse-only interaction keeps the arrow keys free for judging.
        self.browser.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.browser.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addWidget(self.browser, 1)
        layout.addWidget(self.footer)
        self._text = ""
        self._markdown = True

    def set_text(self, text: str, markdown: bool | None = None) -> None:
        self._text = text
        if markdown is not None:
            self._markdown = markdown
        if not text.strip():
            self.browser.setHtml("<p style='color:#888'><i>(empty response)</i></p>")
        elif self._markdown:
            self.browser.setMarkdown(text)
        else:
            self.browser.setPlainText(text)
        self.browser.verticalScrollBar().setValue(0)

    @property
    def source_text(self) -> str:
        """The text as given (before markdown rendering)."""
        return self._text


class CompareView(QWidget):
    chosen = Signal(str)
    undo_requested = Signal()
    note_requested = Signal()

    def __init__(self, parent: QWidget | None = None, *, blind: bool = False):
        super().__init__(parent)
        self.blind = blind
        self.prompt = TextPane("Prompt")
        self.left = TextPane("Left")
        self.right = TextPane("Right")
        self.banner = QLabel("")
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        self.empty = QLabel("")
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)

        self.panes = prompt_over_responses(self.prompt, self.left, self.right, 4)

        self.buttons: dict[str, QPushButton] = {}
        self.buttons_row: list[KeyButton] = []
        button_row = QHBoxLayout()
        for side, text, keys in ACTIONS:
            button = KeyButton(text, _key_hint(keys))
            button.setObjectName(f"judge_{side}")
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setMinimumHeight(38)
            button.clicked.connect(lambda _=False, s=side: self.chosen.emit(s))
            self.buttons[side] = button
            button.row = self.buttons_row
            self.buttons_row.append(button)
            button_row.addWidget(button, 2 if side in ("left", "right") else 1)
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                shortcut.activated.connect(lambda s=side: self._shortcut(s))

        self.undo_button = QPushButton("Undo   [Ctrl+Z]")
        self.undo_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.undo_button.setEnabled(False)   # the host enables it once there is something
        self.undo_button.clicked.connect(self.undo_requested)
        self.note_button = QPushButton("Note…   [N]")
        self.note_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.note_button.clicked.connect(self.note_requested)
        self.note_label = QLabel("")
        self.note_label.setObjectName("noteLabel")
        self.markdown_box = QCheckBox("Render markdown")
        self.markdown_box.setChecked(True)
        self.markdown_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.markdown_box.toggled.connect(self._rerender)
        for key, signal in (("Ctrl+Z", self.undo_requested), ("N", self.note_requested)):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(signal)
        tools = QHBoxLayout()
        tools.addWidget(self.undo_button)
        tools.addWidget(self.note_button)
        tools.addWidget(self.note_label, 1)
        tools.addWidget(self.markdown_box)

        self.status = QLabel("")
        self.status.setObjectName("statusLine")
        self.status.setWordWrap(True)   # a narrow window wraps it instead of growing

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.panes, 1)
        layout.addWidget(self.empty, 1)
        layout.addLayout(button_row)
        layout.addLayout(tools)
        layout.addWidget(self.status)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.show_empty("No pairs yet.")

    # -- display -------------------------------------------------------------------------

    def show_pair(self, prompt: str, left: dict, right: dict, *, banner: str = "",
                  note: str | None = None) -> None:
        markdown = self.markdown_box.isChecked()
        self.prompt.set_text(prompt, markdown)
        for pane, gen in ((self.left, left), (self.right, right)):
            pane.set_text(gen["text"], markdown)
            pane.footer.setText(_footer(gen, blind=self.blind))
        self.banner.setText(banner)
        self.banner.setVisible(bool(banner))
        self.set_note(note)
        self.empty.hide()
        self.panes.show()
        self._set_judging_enabled(True)

    def show_empty(self, message: str) -> None:
        self.empty.setText(message)
        self.panes.hide()
        self.banner.hide()
        self.empty.show()
        self.set_note(None)
        self._set_judging_enabled(False)

    def set_note(self, note: str | None) -> None:
        self.note_label.setText(f"Note: {note}" if note else "")

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    @property
    def showing_pair(self) -> bool:
        return not self.panes.isHidden()

    def _set_judging_enabled(self, enabled: bool) -> None:
        for button in self.buttons.values():
            button.setEnabled(enabled)
        self.note_button.setEnabled(enabled)

    def _shortcut(self, side: str) -> None:
        if self.showing_pair:
            self.chosen.emit(side)

    def _rerender(self, markdown: bool) -> None:
        for pane in (self.prompt, self.left, self.right):
            pane.set_text(pane.source_text, markdown)


def _footer(gen: dict, blind: bool = False) -> str:
    tokens = gen.get("completion_tokens")
    if tokens is None:
        return "imported" if gen.get("source") == "imported" and not blind else ""
    if gen.get("finished") or gen.get("finished") is None:
        return f"{tokens} tokens · ended normally" if gen.get("finished") else f"{tokens} tokens"
    # Said plainly: a cut-off answer is judged on what it would have said.
    return (f"{tokens} tokens · <b style='color:#b25c00'>✂ cut off at the length limit</b> "
            "(raise “Max new tokens” for longer answers)")
