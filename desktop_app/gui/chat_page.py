"""The Chat page: talk with the current policy (PPO, RLOO, DPO or the base), and now and then
rate two answers.

A conversation goes through the model's chat template, streams as it is written and can be
stopped. It is kept in the workspace (``core/data/chat.py``), and every user turn becomes a
workspace prompt (source "chat") for the next round. At the chosen rate (never, one turn in
N, every turn) a turn shows two answers side by side. The person picks one with the Judge
page's keys (1 left, 2 right, T tie, B both bad, S skip), which stores a judged pair, and the
chosen answer (the left one unless the right won) continues the conversation. *Private* keeps
a conversation out of the workspace altogether: nothing is stored and nothing is rated.
"""

from __future__ import annotations

import html
import random
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.config import SamplingConfig
from desktop_app.core.data import chat
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.events import Progress
from desktop_app.core.runs.record import POLICY_KINDS, Run
from desktop_app.core.workspace import Workspace
from desktop_app.gui.jobs import Job
from desktop_app.gui.widgets.config_form import ConfigForm
from desktop_app.gui.widgets.panes import side_by_side

NEVER, SOMETIMES, ALWAYS = "Never", "One turn in N", "Every turn"
RATING_KEYS = {"1": "left", "2": "right", "T": "tie", "B": "both_bad", "S": "skip"}
SHOWN_FIELDS = ("temperature", "top_p", "max_new_tokens")
REDRAW_MS = 40


class ChatPage(QWidget):
    models_needed = Signal()  # a turn starts: the Playground lets go of its copy of the model

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace, self.store = workspace, store
        self.base_model: str | None = workspace.load_settings().get("last_model")
        self.device = "auto"  # tests pin "cpu"
        self.session = None   # ml.generation.playground.PlaygroundSession, on the first turn
        self.job: Job | None = None
        self.conversation_id: int | None = None
        self.turns: list[chat.Turn] = []   # the conversation on screen (private ones too)
        self.user_turns = 0
        self.streaming = ["", ""]          # the replies being written
        self.pending = None                # a rated turn waiting for the person's choice
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self._show)

        # -- left: who to talk to, how, and the conversations --------------------------------
        self.policy_box = QComboBox()
        self.policy_box.currentIndexChanged.connect(lambda _: self._update_labels())
        self.base_label = QLabel()
        self.base_label.setWordWrap(True)
        self.form = ConfigForm(SamplingConfig(max_new_tokens=256))
        for f in ("top_k", "repetition_penalty", "batch_size"):
            self.form.layout().setRowVisible(self.form.findChild(QWidget, f"field_{f}"), False)
        self.rate_box = QComboBox()
        self.rate_box.addItems([NEVER, SOMETIMES, ALWAYS])
        self.rate_box.setCurrentText(SOMETIMES)
        self.rate_every = QSpinBox()
        self.rate_every.setRange(2, 100)
        self.rate_every.setValue(5)
        self.rate_every.setPrefix("N = ")
        self.rate_box.currentTextChanged.connect(
            lambda text: self.rate_every.setEnabled(text == SOMETIMES))
        self.private_box = QCheckBox("Private: store nothing")
        self.private_box.setToolTip("This conversation is kept on screen only: no prompts, no "
                                    "judgments, nothing in the workspace, and no ratings.")
        # A conversation is private from its start or not at all: switching starts a new one.
        self.private_box.toggled.connect(lambda _: self.new_chat())
        self.conversation_list = QListWidget()
        self.conversation_list.itemActivated.connect(self._open_item)
        self.conversation_list.itemClicked.connect(self._open_item)
        self.new_button = QPushButton("New chat")
        self.new_button.clicked.connect(self.new_chat)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the conversation (its prompts and judgments "
                                      "stay in the workspace).")
        self.delete_button.clicked.connect(self.delete_chat)

        rating = QGroupBox("Ask me to rate two answers")
        rv = QHBoxLayout(rating)
        rv.addWidget(self.rate_box, 1)
        rv.addWidget(self.rate_every)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(QLabel("<b>Talk to</b>"))
        lv.addWidget(self.policy_box)
        lv.addWidget(self.base_label)
        lv.addWidget(self.form)
        lv.addWidget(rating)
        lv.addWidget(self.private_box)
        lv.addWidget(QLabel("<b>Conversations</b>"))
        lv.addWidget(self.conversation_list, 1)
        row = QHBoxLayout()
        row.addWidget(self.new_button, 1)
        row.addWidget(self.delete_button)
        lv.addLayout(row)
        left.setMinimumWidth(280)
        left.setMaximumWidth(360)

        # -- right: the conversation, the two answers to rate, the input ----------------------
        self.transcript = QTextBrowser()
        self.transcript.setObjectName("chatTranscript")
        self.candidates = [QTextBrowser(), QTextBrowser()]
        self.rate_buttons: dict[str, QPushButton] = {}
        self.rating_panel = QWidget()
        pv = QVBoxLayout(self.rating_panel)
        pv.setContentsMargins(0, 0, 0, 0)
        pv.addWidget(QLabel("<b>Which answer is better?</b> The one you pick continues the "
                            "conversation."))
        panes = QSplitter(Qt.Orientation.Horizontal)
        for title, pane in zip(("1 · Left", "2 · Right"), self.candidates):
            box = QWidget()
            bv = QVBoxLayout(box)
            bv.setContentsMargins(0, 0, 0, 0)
            bv.addWidget(QLabel(f"<b>{title}</b>"))
            bv.addWidget(pane, 1)
            panes.addWidget(box)
        pv.addWidget(panes, 1)
        buttons = QHBoxLayout()
        for key, (side, text) in zip(RATING_KEYS, (
                ("left", "Left is better"), ("right", "Right is better"), ("tie", "Tie"),
                ("both_bad", "Both bad"), ("skip", "Skip"))):
            button = QPushButton(f"{text}  [{key}]")
            button.clicked.connect(lambda _=False, s=side: self.rate(s))
            self.rate_buttons[side] = button
            buttons.addWidget(button)
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda s=side: self.rate(s))
        pv.addLayout(buttons)
        self.rating_panel.hide()

        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Write a message…  (Ctrl+Enter sends)")
        self.input.setMaximumHeight(90)
        self.send_button = QPushButton("Send  [Ctrl+Enter]")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        for key in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.send)
        self.status = QLabel("Choose who to talk to, then write a message.")
        self.status.setWordWrap(True)
        actions = QHBoxLayout()
        actions.addWidget(self.status, 1)
        actions.addWidget(self.stop_button)
        actions.addWidget(self.send_button)

        right = QWidget()
        rv2 = QVBoxLayout(right)
        rv2.setContentsMargins(0, 0, 0, 0)
        rv2.addWidget(self.transcript, 2)
        rv2.addWidget(self.rating_panel, 2)
        rv2.addWidget(self.input)
        rv2.addLayout(actions)
        side_by_side(self, left, right)
        self.refresh()
        self._show()

    # -- choices -----------------------------------------------------------------------------

    def set_base_model(self, path: str | None) -> None:
        self.base_model = path
        self._update_labels()

    def activate(self) -> None:
        if not self.running:
            self.refresh()

    def refresh(self) -> None:
        chosen = self.policy_box.currentData()
        self.policy_box.blockSignals(True)
        self.policy_box.clear()
        for run in reversed(self.store.finished_runs(POLICY_KINDS)):
            self.policy_box.addItem(run.policy_label, run.id)
        self.policy_box.addItem("The base model", None)
        if chosen is not None and self.policy_box.findData(chosen) >= 0:
            self.policy_box.setCurrentIndex(self.policy_box.findData(chosen))
        self.policy_box.blockSignals(False)
        self.conversation_list.clear()
        for row in chat.conversations(self.store):
            item = QListWidgetItem(row["title"])
            item.setData(Qt.ItemDataRole.UserRole, row["id"])
            item.setToolTip(f"{row['turns']} turns · {row['updated_at'][:16].replace('T', ' ')}")
            self.conversation_list.addItem(item)
        self._update_labels()

    def _policy_run(self) -> Run | None:
        run_id = self.policy_box.currentData()
        return self.store.get_run(run_id) if run_id is not None else None

    def _model(self) -> tuple[str | None, str | None, int | None]:
        """(base folder, policy adapter, policy run id) of the current choice."""
        run = self._policy_run()
        if run is not None:
            adapter = run.usable_artifact()
            return run.config.get("base_model"), str(adapter) if adapter else None, run.id
        return self.base_model, None, None

    def _update_labels(self) -> None:
        base, _, _ = self._model()
        self.base_label.setText(f"<b>Base model:</b> {html.escape(Path(base).name)}" if base
                                else "<b>Base model:</b> none — load one on the Models page.")
        self._update_buttons()

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def _update_buttons(self) -> None:
        idle = not self.running and self.pending is None
        self.send_button.setEnabled(idle)
        self.stop_button.setEnabled(self.running)
        for widget in (self.policy_box, self.new_button, self.delete_button,
                       self.conversation_list, self.private_box):
            widget.setEnabled(idle)
        self.delete_button.setEnabled(idle and self.conversation_id is not None)
        for button in self.rate_buttons.values():
            button.setEnabled(self.pending is not None)

    # -- conversations -------------------------------------------------------------------------

    def new_chat(self) -> None:
        if self.running or self.pending is not None:
            return
        dropped = self.conversation_id is None and bool(self.turns)
        self.conversation_id, self.turns, self.user_turns = None, [], 0
        self.conversation_list.clearSelection()
        self._show()
        private = self.private_box.isChecked()
        self.status.setText(
            ("The private conversation is gone, as promised. " if dropped else "")
            + ("A new private conversation: nothing of it is stored." if private
               else "A new conversation."))
        self._update_buttons()

    def _open_item(self, item: QListWidgetItem) -> None:
        if self.running or self.pending is not None:
            return
        self.private_box.setChecked(False)
        self.conversation_id = item.data(Qt.ItemDataRole.UserRole)
        self.turns = chat.turns(self.store, self.conversation_id)
        self.user_turns = sum(t.role == "user" for t in self.turns)
        self._show()
        self._update_buttons()

    def delete_chat(self) -> None:
        if self.conversation_id is None or self.running:
            return
        chat.delete_conversation(self.store, self.conversation_id)
        self.new_chat()
        self.refresh()

    # -- a turn --------------------------------------------------------------------------------

    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.running or self.pending is not None:
            return
        base, adapter, run_id = self._model()
        if not base:
            self.status.setText("Load a model on the Models page first, or choose a policy.")
            return
        if self._policy_run() is not None and adapter is None:
            self.status.setText("That policy's files are no longer on disk; choose another.")
            return
        private = self.private_box.isChecked()
        self.turns.append(chat.Turn("user", text))
        self.user_turns += 1
        messages = [t.message() for t in self.turns]
        prompt_id = None
        if not private:
            if self.conversation_id is None:
                self.conversation_id = chat.new_conversation(self.store, text)
            chat.add_turn(self.store, self.conversation_id, self.turns[-1])
            prompt_id = chat.prompt_for(self.store, messages)
        rated = not private and self._rate_this_turn()
        seed = random.randrange(2**31 - 1)
        seeds = [seed, (seed + 1) % (2**31 - 1)] if rated else [seed]
        self.input.clear()
        self.streaming = ["", ""]
        self.rating_panel.setVisible(rated)
        sampling = self.form.value()
        self.models_needed.emit()
        from desktop_app.ml.generation.chat import chat_turn
        if self.session is None:
            from desktop_app.ml.generation.playground import PlaygroundSession
            self.session = PlaygroundSession(device=self.device)
        session = self.session

        def work(emit, stop):
            return chat_turn(session, base, adapter, messages, sampling, seeds, emit, stop)

        self.job = Job(work, self, name="chat")
        self.job.event.connect(self._on_event)
        self.job.succeeded.connect(lambda replies: self._on_replies(
            replies, run_id, base, adapter, prompt_id, sampling, rated))
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._update_buttons)
        self.job.start()
        self.status.setText("Loading the model…")
        self._show()
        self._update_buttons()

    def _rate_this_turn(self) -> bool:
        mode = self.rate_box.currentText()
        return mode == ALWAYS or (mode == SOMETIMES and
                                  self.user_turns % self.rate_every.value() == 0)

    def stop(self) -> None:
        if self.running:
            self.job.cancel()

    def _on_event(self, event) -> None:
        from desktop_app.ml.generation.chat import ReplyDelta
        if isinstance(event, ReplyDelta):
            self.streaming[event.candidate] += event.delta
            if not self._redraw.isActive():
                self._redraw.start()
        elif isinstance(event, Progress):
            self.status.setText(event.message)

    def _on_failed(self, message: str) -> None:
        self.rating_panel.hide()
        self.status.setText(f"<span style='color:#b00020'>{html.escape(message)}</span>")
        self.streaming = ["", ""]
        self._show()

    def _on_replies(self, replies, run_id, base, adapter, prompt_id, sampling, rated) -> None:
        self.streaming = ["", ""]
        if rated and len(replies) == 2 and not any(r.stopped for r in replies):
            gens = [GenerationIn(r.text, base, adapter=adapter, sampling=sampling.to_dict(),
                                 seed=r.seed, prompt_tokens=r.prompt_tokens,
                                 completion_tokens=r.completion_tokens, finished=r.finished)
                    for r in replies]
            self.pending = (prompt_id, gens, run_id)
            for pane, reply in zip(self.candidates, replies):
                pane.setPlainText(reply.text)
            self.status.setText("Pick the better answer: 1 left, 2 right, T tie, B both bad, "
                                "S skip.")
            self.setFocus()
        else:
            self.rating_panel.hide()  # a stop cuts a rating short: the first answer goes on
            self._add_reply(replies[0].text if replies else "", run_id, None)
            self.status.setText("Stopped." if replies and replies[0].stopped else "")
        self._show()
        self._update_buttons()

    def rate(self, side: str) -> None:
        """The person's choice for the pair on screen (1/2/T/B/S)."""
        if self.pending is None:
            return
        prompt_id, (left, right), run_id = self.pending
        choice = {"left": "a", "right": "b"}.get(side, side)
        comparison_id = chat.record_rating(self.store, prompt_id, left, right, choice)
        self.pending = None
        self.rating_panel.hide()
        self._add_reply((right if choice == "b" else left).text, run_id, comparison_id)
        self.status.setText("Thanks: the judgment is stored with your other pairs.")
        self._show()
        self._update_buttons()

    def _add_reply(self, text: str, run_id: int | None, comparison_id: int | None) -> None:
        turn = chat.Turn("assistant", text, run_id, comparison_id)
        self.turns.append(turn)
        if self.conversation_id is not None and not self.private_box.isChecked():
            chat.add_turn(self.store, self.conversation_id, turn)
            self.refresh_list_keep_selection()

    def refresh_list_keep_selection(self) -> None:
        current = self.conversation_id
        self.refresh()
        for i in range(self.conversation_list.count()):
            if self.conversation_list.item(i).data(Qt.ItemDataRole.UserRole) == current:
                self.conversation_list.setCurrentRow(i)

    # -- showing -------------------------------------------------------------------------------

    def _show(self) -> None:
        blocks = [_bubble(t.role, t.content) for t in self.turns]
        if self.running and not self.rating_panel.isVisible():
            blocks.append(_bubble("assistant", self.streaming[0] + "▍"))
        if self.rating_panel.isVisible() and self.pending is None:
            for pane, text in zip(self.candidates, self.streaming):
                pane.setPlainText(text)
        if not blocks:
            blocks = ["<p style='color:#6b7280'>Say something to start.</p>"]
        self.transcript.setHtml("".join(blocks))
        self._scroll_to_end()
        # Once more after the layout settles: showing the two answers shrinks the transcript.
        QTimer.singleShot(0, self.transcript, self._scroll_to_end)  # dropped if it is gone

    def _scroll_to_end(self) -> None:
        bar = self.transcript.verticalScrollBar()
        bar.setValue(bar.maximum())

    def shutdown(self) -> None:
        if self.running:
            self.job.cancel()
            self.job.wait(60000)
        if self.session is not None:
            self.session.close()
            self.session = None

    def release_models(self) -> None:
        """Training starts, or the Playground needs the model: the chat's copy goes between
        turns (the next turn loads it again)."""
        if self.session is not None and not self.running:
            self.session.close()
            self.session = None

    free_gpu_memory = release_models


def _bubble(role: str, text: str) -> str:
    who, colour = {"user": ("You", "#1d4ed8"), "assistant": ("Model", "#047857"),
                   "system": ("System", "#6b7280")}[role]
    body = html.escape(text).replace("\n", "<br>")
    return (f"<p style='margin:6px 0 2px 0'><b style='color:{colour}'>{who}</b></p>"
            f"<p style='margin:0 0 8px 0'>{body}</p>")
