"""The annotation loop: show the next pending pair, record the judgment, move on.

Each judgment is committed to SQLite (``Store.judge`` returns only after the commit) before
the next pair is shown. Undo walks back this session's judgments one at a time.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.config import SamplingConfig
from desktop_app.core.data.store import PairView, Store
from desktop_app.gui.judge.compare_view import CompareView
from desktop_app.gui.judge.history import JudgeTabs
from desktop_app.gui.judge.loop import JudgingLoop
from desktop_app.gui.judge.order import JudgeOrder
from desktop_app.gui.judge.pair_queue import PairQueue
from desktop_app.gui.widgets.config_form import ConfigForm


class JudgePage(QWidget):
    judged = Signal()   # after every stored or undone judgment (the Prompts page's counts go stale)

    def __init__(self, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.queue = PairQueue(store, self)
        self._suggested = SamplingConfig()  # the sampling settings the last model suggested
        self.session_judged = 0
        self._training = False               # a training or evaluation job runs
        self._resume_after_training = False  # generation was on when it started

        self.view = CompareView()
        self.loop = JudgingLoop(store, self.view, self._next_pair, self._empty_message, self)
        self.loop.judged.connect(self._on_judged)
        self.loop.undone.connect(self._on_undone)
        self.loop.changed.connect(self._after_judgment)
        self.loop.nothing_to_undo.connect(self._nothing_to_undo)
        self.loop.lost.connect(self.refresh)

        self.order_box = JudgeOrder(store, self)
        self.order_box.order_changed.connect(self._on_order_changed)
        side = QWidget()
        side.setFixedWidth(280)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self._build_side_panel(), 1)
        side_layout.addWidget(self.order_box)
        judging = QWidget()
        layout = QHBoxLayout(judging)
        layout.addWidget(self.view, 1)
        layout.addWidget(side)
        self.tabs = JudgeTabs(self, judging)  # judging | history of judgments (H, Esc back)
        self.tabs.judging_shown.connect(self.activate)
        self.tabs.judgment_changed.connect(self._on_history_change)

        self.queue.status_changed.connect(self.gen_status.setText)
        self.queue.progress.connect(self._on_progress)
        self.queue.pairs_added.connect(self._on_pairs_added)
        self.queue.failed.connect(self._on_generation_failed)
        self.refresh()

    def _build_side_panel(self) -> QWidget:
        panel = QGroupBox("Generation")
        panel.setFixedWidth(280)
        self.model_label = QLabel("No model loaded")
        self.model_label.setWordWrap(True)
        self.model_label.setObjectName("modelLabel")
        self.form = ConfigForm(self.queue.cfg)
        self.form.changed.connect(lambda: self.queue.set_config(self.form.value()))
        self.target_spin = QSpinBox()
        self.target_spin.setRange(1, 256)
        self.target_spin.setValue(self.queue.target)
        self.target_spin.setToolTip("The fewest generated pairs to keep waiting ahead of you. "
                                    "More are kept when the model is slower than your "
                                    "judging, so you never wait.")
        self.target_spin.valueChanged.connect(self.queue.set_target)
        self.pause_button = QPushButton("Pause generation")
        self.pause_button.setCheckable(True)
        self.pause_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.pause_button.toggled.connect(self._on_pause)
        self.gen_progress = QProgressBar()
        self.gen_progress.setTextVisible(True)
        self.gen_progress.setRange(0, 1)
        self.gen_progress.setValue(0)
        self.gen_progress.setFormat("idle")
        self.gen_status = QLabel(self.queue.last_status)
        self.gen_status.setWordWrap(True)
        self.gen_status.setObjectName("genStatus")

        v = QVBoxLayout(panel)
        v.addWidget(self.model_label)
        v.addWidget(self.form)
        row = QHBoxLayout()
        row.addWidget(QLabel("Keep at least"))
        row.addWidget(self.target_spin)
        row.addWidget(QLabel("pairs ready"))
        v.addLayout(row)
        v.addWidget(self.pause_button)
        v.addWidget(self.gen_progress)
        v.addWidget(self.gen_status)
        v.addStretch(1)
        return panel

    # -- model -----------------------------------------------------------------------------

    def set_model(self, lm) -> None:
        tuned = f"<br>tuned: {Path(lm.adapter).parent.name}" if lm.adapter else ""
        self.model_label.setText(f"<b>{lm.info.name}</b>{tuned}<br>{lm.label} · "
                                 f"{lm.info.n_params / 1e6:,.1f} M parameters")
        if lm.path != getattr(self.queue.wanted_model, "path", None):
            self._use_model_sampling(lm)
        self.queue.set_model(lm)
        self.refresh()

    def _use_model_sampling(self, lm) -> None:
        """A new model: its own sampling values and a response length that fits it."""
        from desktop_app.ml.generation.sampling_defaults import context_length, sampling_for_model

        suggested, from_model = sampling_for_model(lm.path, lm.info.has_chat_template,
                                                   context_length(lm.model), SamplingConfig())
        # A setting the person changed stays as they set it; the rest follow the model.
        current, previous = self.form.value(), self._suggested
        cfg = dataclasses.replace(suggested, **{
            f.name: getattr(current, f.name) for f in dataclasses.fields(current)
            if getattr(current, f.name) != getattr(previous, f.name)})
        self._suggested = suggested
        self.form.set_value(cfg)
        self.queue.set_config(cfg)
        source = (f"{', '.join(from_model)} from the model's generation_config.json; "
                  if from_model else "")
        self.form.setToolTip(f"Set for {lm.info.name}: {source}longest response "
                             f"{cfg.max_new_tokens} tokens.")

    # -- the loop --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Show the next pending pair if nothing is on screen; update the progress line."""
        if self.loop.current is None:
            self.loop.show_next()
        self._update_status()

    def _on_order_changed(self, order: str) -> None:
        """A new order (or a fresh ranking): a pair not yet judged goes back to the queue."""
        if self.loop.current is not None and self.loop.current.choice is None:
            self.loop.current = None
        self.refresh()

    def _next_pair(self) -> PairView | None:
        return self.store.next_pending(order=self.order_box.order)

    def _empty_message(self) -> str:
        if self.queue.lm is None:
            return ("No pairs are waiting.\n\nLoad a model on the Models page and "
                    "pairs will be generated here.")
        if self.queue.busy:
            return "Generating the next pairs…"
        lm = self.queue.lm
        if not self.store.prompts_without_pairs(1, model=lm.path, adapter=lm.adapter):
            return ("Every prompt has a judged pair from this model.\n\nAdd or import prompts "
                    "on the Prompts page, or tune a policy with PPO for the next round.")
        return "Waiting for pairs…"

    def prompts_changed(self) -> None:
        """Prompts were added, edited or deleted: drop a pair that no longer exists, top up."""
        loop = self.loop
        if loop.current is not None and self.store.get_pair(loop.current.comparison_id) is None:
            loop.current = None
        loop.undo_stack = [i for i in loop.undo_stack if self.store.get_pair(i) is not None]
        self.refresh()
        self.queue.top_up()

    def _on_history_change(self, comparison_id: int) -> None:
        """A judgment was changed or deleted in the history: undo here leaves it alone."""
        self.loop.forget(comparison_id)
        self.refresh()  # a deleted judgment's pair is pending again: shown if nothing is
        self.judged.emit()

    def _on_judged(self, pair: PairView) -> None:
        self.session_judged += 1
        # The person's pace decides how many pairs are kept ready (core.pair_pacing).
        self.queue.judged_after(time.monotonic() - self.loop.shown_at)

    def _on_undone(self, pair: PairView) -> None:
        self.session_judged -= 1

    def _after_judgment(self) -> None:
        self._update_status()
        self.judged.emit()
        self.queue.top_up()

    def _nothing_to_undo(self) -> None:
        self.gen_status.setText("Nothing to undo in this session.")

    # -- status ----------------------------------------------------------------------------

    def _update_status(self) -> None:
        self.view.undo_button.setEnabled(bool(self.loop.undo_stack))  # nothing to undo: off
        stats = self.store.stats()
        decided = stats["left_wins"] + stats["right_wins"] + stats["by_choice"]["tie"]

        def share(n: int) -> str:
            return f"{100 * n / decided:.0f}%" if decided else "–"

        self.view.set_status(
            f"This session: {self.session_judged} judged   ·   Total: {stats['judged']} judged   ·"
            f"   Queue: {stats['pending']} ready   ·   Left {share(stats['left_wins'])}"
            f"   Right {share(stats['right_wins'])}   Tie {share(stats['by_choice']['tie'])}")

    def _on_progress(self, done: int, total: int) -> None:
        if total:
            self.gen_progress.setRange(0, total)
            self.gen_progress.setValue(done)
            self.gen_progress.setFormat("%v / %m pairs")
        else:
            self.gen_progress.setRange(0, 1)
            self.gen_progress.setValue(0)
            self.gen_progress.setFormat("idle")

    def _on_pairs_added(self, count: int) -> None:
        self.refresh()

    def set_generation_paused(self, paused: bool) -> None:
        """Pause or resume generation as if the user pressed the button."""
        if self.pause_button.isChecked() != paused:
            self.pause_button.setChecked(paused)

    # -- what the main window tells the page -------------------------------------------------

    def activate(self) -> None:
        """The page is shown (or shown again): the next pair, and the keys to judge it."""
        self.refresh()
        self.view.setFocus()

    def pause_for_training(self) -> None:
        """A training or evaluation job starts (each one): sampling and training would fight
        over the same cores or GPU memory, so generation waits, and a model on a GPU moves its
        weights to main memory (``PairQueue.park``)."""
        if not self._training:
            self._resume_after_training = not self.queue.paused
        self._training = True
        self.set_generation_paused(True)
        self.queue.park()

    def resume_after_training(self) -> None:
        """The last training or evaluation job ended: the weights come back, then generation
        picks up again if it was on when training started."""
        self._training = False
        resume, self._resume_after_training = self._resume_after_training, False

        def after_unpark() -> None:
            if resume and not self._training:
                self.set_generation_paused(False)
        self.queue.unpark(after_unpark)

    def shutdown(self) -> None:
        """At application exit: the current batch finishes (its pairs are kept) and ranking
        stops; judgments are already committed."""
        self.queue.shutdown()
        self.order_box.shutdown()

    def _on_generation_failed(self, message: str) -> None:
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(True)
        self.pause_button.setText("Resume generation")
        self.pause_button.blockSignals(False)
        if self.loop.current is None:
            self.view.show_empty(f"Generation stopped:\n{message}")

    def _on_pause(self, paused: bool) -> None:
        self.pause_button.setText("Resume generation" if paused else "Pause generation")
        self.queue.set_paused(paused)
        if self.loop.current is None:
            self.view.show_empty(self._empty_message())
