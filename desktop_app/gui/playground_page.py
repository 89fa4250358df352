"""Playground: type a prompt, see the base model's and a tuned policy's responses side by side as
they are written, with the reward model's score under each.

The work is ``ml.generation.playground.PlaygroundSession.run`` on a Job thread. It loads the models
on the first run and keeps them while the chosen base, policy and reward model stay the same. Each
new piece of text arrives as a ``TextDelta`` event; the panes are redrawn from a ~30 ms timer with
the latest text, never once per token. """

from __future__ import annotations

import random
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.config import SamplingConfig
from desktop_app.core.data.store import Store
from desktop_app.core.runs.record import POLICY_KINDS, Run, RunKind
from desktop_app.core.workspace import Workspace
from desktop_app.gui.jobs import Job
from desktop_app.gui.serve_panel import ServePanel
from desktop_app.gui.widgets.config_form import ConfigForm
from desktop_app.gui.widgets.panes import side_by_side

REDRAW_MS = 30
CURSOR = "▍"
SEED_MAX = 2**31 - 1
HIDDEN_FIELDS = ("batch_size",)  # one prompt at a time here

STYLE = """
#scoreValue { font-size: 17pt; font-weight: bold; color: #374151; }
#scoreValue[tone="up"] { color: #15803d; }
#scoreCaption { color: #6b7280; font-size: 9pt; }
#scoreBox { border-top: 1px solid #e5e7eb; }
#hint, #seedNote, #explain { color: #6b7280; font-size: 9pt; }
#runStatus { color: #374151; }
#runStatus[error="true"] { color: #b00020; }
#promptBox { border: 1px solid #d0d4dc; border-radius: 6px; background: white; padding: 4px; }
QPushButton#runButton:enabled { background: #e8f0fe; border: 1px solid #8ab4f8;
                                border-radius: 4px; font-weight: bold; padding: 6px 18px; }
QPushButton#runButton:hover { background: #d2e3fc; }
"""


def _reward_run_id(policy: Run) -> int | None:
    """The reward-model run a PPO or RLOO run was tuned against (a DPO run has none)."""
    if policy.kind not in (RunKind.PPO, RunKind.RLOO):
        return None
    return policy.parent_run_id or policy.config.get("reward_run_id")


class ResponsePane(QFrame):
    """A titled response box that fills in live, with the reward model's score below it."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("pane")
        self.title = QLabel(title)
        self.title.setObjectName("paneTitle")
        self.meta = QLabel("")
        self.meta.setObjectName("paneFooter")
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        self.footer = QLabel("")
        self.footer.setObjectName("paneFooter")
        self.score = QLabel("–")
        self.score.setObjectName("scoreValue")
        self.caption = QLabel("")
        self.caption.setObjectName("scoreCaption")
        self.caption.setWordWrap(True)

        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.meta)
        score_box = QFrame()
        score_box.setObjectName("scoreBox")
        sv = QHBoxLayout(score_box)
        sv.setContentsMargins(0, 6, 0, 0)
        sv.addWidget(self.score)
        sv.addWidget(self.caption, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        layout.addLayout(head)
        layout.addWidget(self.browser, 1)
        layout.addWidget(self.footer)
        layout.addWidget(score_box)
        self.text = ""
        self.markdown = True
        self.clear("")

    def clear(self, placeholder: str) -> None:
        self.text = ""
        self.browser.setHtml(f"<p style='color:#9ca3af'><i>{placeholder}</i></p>"
                             if placeholder else "")
        self.footer.setText("")
        self.set_score("", "", None)

    def show_text(self, text: str, streaming: bool = False) -> None:
        self.text = text
        bar = self.browser.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 4
        shown = text + (CURSOR if streaming else "")
        if not text.strip() and not streaming:
            self.browser.setHtml("<p style='color:#9ca3af'><i>(empty response)</i></p>")
        elif self.markdown:
            self.browser.setMarkdown(shown)
        else:
            self.browser.setPlainText(shown)
        if following:
            bar.setValue(bar.maximum())

    def set_score(self, value: str, caption: str, tone: str | None) -> None:
        self.score.setText(value)
        self.score.setProperty("tone", tone or "")
        self.score.style().unpolish(self.score)
        self.score.style().polish(self.score)
        self.caption.setText(caption)


class PlaygroundPage(QWidget):
    models_needed = Signal()  # a run starts: other pages' cached models can go

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.base_model: str | None = workspace.load_settings().get("last_model")
        self.device = "auto"  # tests pin "cpu"
        self.session = None  # ml.generation.playground.PlaygroundSession, made on the first run
        self.job: Job | None = None
        self.last_result = None
        self._pending: dict[str, str] = {}
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self._flush)
        self.setStyleSheet(STYLE)

        # -- left: what to compare, and how to sample ---------------------------------------
        self.policy_box = QComboBox()
        self.policy_box.currentIndexChanged.connect(self._on_policy_changed)
        self.reward_box = QComboBox()
        self.reward_box.currentIndexChanged.connect(lambda _: self._update_labels())
        self.base_label = QLabel()
        self.base_label.setWordWrap(True)
        self.form = ConfigForm(SamplingConfig())
        for name in HIDDEN_FIELDS:
            self.form.layout().setRowVisible(self.form.findChild(QWidget, f"field_{name}"), False)
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, SEED_MAX)
        self.seed_box.setValue(random.randrange(SEED_MAX))
        self.seed_box.setToolTip("The random seed both responses are sampled with.")
        self.new_seed_box = QCheckBox("New seed every run")
        self.new_seed_box.setChecked(True)
        self.new_seed_box.setToolTip("Off: every run reuses the seed above, so a change of "
                                     "settings can be compared on the same dice.")
        self.form.layout().addRow("Seed", self.seed_box)  # lines up with the settings above
        seed_note = QLabel("Both sides are sampled with the same seed, so their differences come "
                           "from the tuning, not from the dice.")
        seed_note.setObjectName("seedNote")
        seed_note.setWordWrap(True)
        settings = QGroupBox("Sampling")
        sv = QVBoxLayout(settings)
        sv.addWidget(self.form)
        sv.addWidget(self.new_seed_box)
        sv.addWidget(seed_note)
        sv.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(settings)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(QLabel("<b>Tuned policy</b>"))
        lv.addWidget(self.policy_box)
        lv.addWidget(QLabel("<b>Reward model</b>"))
        lv.addWidget(self.reward_box)
        lv.addWidget(self.base_label)
        lv.addWidget(scroll, 1)
        self.serve = ServePanel(workspace, self._serve_choice)
        lv.addWidget(self.serve)
        left.setMinimumWidth(300)
        left.setMaximumWidth(380)

        # -- right: prompt, run, the two responses ------------------------------------------
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setObjectName("promptBox")
        self.prompt_edit.setPlaceholderText("Type a prompt…")
        self.prompt_edit.setMaximumHeight(110)
        self.run_button = QPushButton("Run   [Ctrl+Enter]")
        self.run_button.setObjectName("runButton")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.markdown_box = QCheckBox("Render markdown")
        self.markdown_box.setChecked(True)
        self.markdown_box.toggled.connect(self._set_markdown)
        self.status = QLabel("Type a prompt and press Run: the base model and the tuned policy "
                             "answer side by side.")
        self.status.setObjectName("runStatus")
        self.status.setWordWrap(True)
        for key in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.run)
        actions = QHBoxLayout()
        actions.addWidget(self.status, 1)
        actions.addWidget(self.markdown_box)
        actions.addWidget(self.stop_button)
        actions.addWidget(self.run_button)

        self.panes = {"base": ResponsePane("Base model"), "policy": ResponsePane("Tuned policy")}
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.panes["base"])
        split.addWidget(self.panes["policy"])
        split.setChildrenCollapsible(False)
        self.explain = QLabel("")
        self.explain.setObjectName("explain")
        self.explain.setWordWrap(True)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(QLabel("<b>Prompt</b>"))
        rv.addWidget(self.prompt_edit)
        rv.addLayout(actions)
        rv.addWidget(split, 1)
        rv.addWidget(self.explain)

        side_by_side(self, left, right)
        self.refresh()
        self._clear_panes()

    # -- choices -----------------------------------------------------------------------------

    def set_base_model(self, path: str | None) -> None:
        """The model loaded on the Models page: the base when no tuned policy is chosen."""
        self.base_model = path
        self._update_labels()

    def refresh(self) -> None:
        """Refill the policy and reward-model lists from the store (completed runs only)."""
        policy, reward = self.policy_box.currentData(), self.reward_box.currentData()
        for box in (self.policy_box, self.reward_box):
            box.blockSignals(True)
            box.clear()
        for run in reversed(self.store.finished_runs(POLICY_KINDS)):
            self.policy_box.addItem(run.policy_label, run.id)
        for run in reversed(self.store.finished_runs(RunKind.REWARD)):
            acc = self.store.final_metrics(run.id).get("eval/accuracy")
            self.reward_box.addItem(f"Reward run {run.id}"
                                    + (f" · val acc {acc:.2f}" if acc is not None else ""), run.id)
        self.policy_box.addItem("None — base model only", None)
        self.reward_box.addItem("None — don't score", None)
        for box, value in ((self.policy_box, policy), (self.reward_box, reward)):
            if value is not None and box.findData(value) >= 0:
                box.setCurrentIndex(box.findData(value))
            box.blockSignals(False)
        if self.policy_box.currentData() != policy:  # first fill, or the run went away
            self._on_policy_changed()
        self._update_labels()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self.running:
            self.refresh()

    def _policy_run(self) -> Run | None:
        run_id = self.policy_box.currentData()
        return self.store.get_run(run_id) if run_id is not None else None

    def _reward_run(self) -> Run | None:
        run_id = self.reward_box.currentData()
        return self.store.get_run(run_id) if run_id is not None else None

    def _on_policy_changed(self, *_args) -> None:
        # The reward model a policy was tuned against is the natural judge of it.
        run = self._policy_run()
        parent = _reward_run_id(run) if run else None
        if parent is not None and self.reward_box.findData(parent) >= 0:
            self.reward_box.setCurrentIndex(self.reward_box.findData(parent))
        elif run is None and self.reward_box.currentData() is None and self.reward_box.count() > 1:
            self.reward_box.setCurrentIndex(0)
        self._update_labels()

    def _base_for_run(self) -> tuple[str | None, str]:
        """The base model folder and where it comes from. A policy adapter only fits the base
        it was trained on, so a chosen PPO run decides."""
        run = self._policy_run()
        if run and run.config.get("base_model"):
            return run.config["base_model"], run.label
        if self.base_model:
            return self.base_model, "the Models page"
        reward = self._reward_run()
        if reward and reward.config.get("base_model"):
            return reward.config["base_model"], f"reward run {reward.id}"
        return None, ""

    def _serve_choice(self) -> tuple[str, str | None, str] | str:
        """What "Serve to other apps" serves: the chosen policy on its base, or the base; or
        why there is nothing to serve."""
        base, _ = self._base_for_run()
        if not base:
            return "Load a model on the Models page first."
        run = self._policy_run()
        if run is None:
            return base, None, Path(base).name
        adapter = run.usable_artifact()
        if adapter is None:
            return f"The policy of {run.label} is no longer on disk."
        return base, str(adapter), f"{Path(base).name}-{run.kind}-{run.id}"

    def _update_labels(self) -> None:
        base, source = self._base_for_run()
        self.base_label.setText(
            f"<b>Base model:</b> {Path(base).name} <span style='color:#6b7280'>(from "
            f"{source})</span>" if base else
            "<b>Base model:</b> none — load one on the Models page.")
        run = self._policy_run()
        self.panes["policy"].title.setText(f"Tuned policy ({run.label})" if run
                                           else "Tuned policy (none chosen)")
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.running
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for box in (self.policy_box, self.reward_box):
            box.setEnabled(not running)

    # -- running -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def run(self) -> None:
        from desktop_app.ml.generation.playground import (
            PlaygroundRequest,
            PlaygroundSession,
        )
        from desktop_app.ml.generation.sampling import PromptInput

        if self.running:
            return
        prompt = self.prompt_edit.toPlainText().strip()
        if not prompt:
            self._set_status("Type a prompt first.", error=True)
            self.prompt_edit.setFocus()
            return
        base, _ = self._base_for_run()
        if not base:
            self._error("No base model: load one on the Models page, or choose a tuned policy.")
            return
        policy, reward = self._policy_run(), self._reward_run()
        if self.new_seed_box.isChecked():
            self.seed_box.setValue(random.randrange(SEED_MAX))
        seed = self.seed_box.value()
        try:
            sampling = self.form.value()
            sampling.validate()
        except ValueError as exc:
            self._error(f"Check the sampling settings: {exc}")
            return
        request = PlaygroundRequest(
            prompt=PromptInput(0, prompt), base_model=base, sampling=sampling, seed=seed,
            policy_adapter=policy.artifact if policy else None,
            reward_adapter=reward.artifact if reward else None,
            reward_base_model=reward.config.get("base_model") if reward else None)
        self.models_needed.emit()  # the Chat page lets go of its copy of the model
        # The base as the Models page loads it: quantised when chosen there.
        quantize = self.workspace.load_settings().get("quantize", "none")
        if self.session is None or (self.session.device, self.session.quantize) != (
                self.device, quantize):
            if self.session is not None:
                self.session.close()
            self.session = PlaygroundSession(device=self.device, quantize=quantize)
        session = self.session

        def work(emit, stop):
            return session.run(request, emit=emit, stop=stop)

        self.last_result = None
        self._pending.clear()
        self._clear_panes(waiting=True, with_policy=policy is not None)
        for side in ("base", "policy") if policy else ("base",):
            self.panes[side].meta.setText(f"seed {seed}")
            if reward:
                self.panes[side].set_score("", "The reward model scores both responses when "
                                               "they are complete.", None)
        self.job = Job(work, self, name="playground")
        self.job.event.connect(self._on_event)
        self.job.succeeded.connect(self._on_result)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.finished.connect(self._update_buttons)
        self._set_status("Starting…")
        self.job.start()
        self._update_buttons()

    def stop(self) -> None:
        if self.running:
            self.job.cancel()
            self._set_status("Stopping…")

    def _on_event(self, event) -> None:
        from desktop_app.core.events import Progress
        from desktop_app.ml.generation.playground import TextDelta

        if isinstance(event, TextDelta):
            self._pending[event.side] = event.text
            if not self._redraw.isActive():
                self._redraw.start()
        elif isinstance(event, Progress):
            self._set_status(event.message)

    def _flush(self) -> None:
        for side, text in self._pending.items():
            self.panes[side].show_text(text, streaming=True)
        self._pending.clear()

    def _on_result(self, result) -> None:
        self._redraw.stop()
        self._pending.clear()
        self.last_result = result
        for side, completion in result.responses.items():
            pane = self.panes[side]
            pane.show_text(completion.text)
            ending = ("stopped" if completion.stopped else "ended normally" if completion.finished
                      else "cut off at the token limit")
            pane.footer.setText(f"{completion.completion_tokens} tokens · {ending} · "
                                f"{completion.tokens_per_s:.0f} tokens/s")
        self._show_scores(result)
        responses = result.responses.values()
        if result.stopped:
            self._set_status("Stopped. Responses are shown as far as they got; they are not "
                             "scored.")
        else:
            seconds = max((c.seconds for c in responses), default=0.0)
            self._set_status(f"Done · seed {result.seed} · {result.device}"
                             + (f" · {seconds:.1f} s" if seconds else ""))

    def _show_scores(self, result) -> None:
        scores = result.scores
        reward = self._reward_run()
        if not scores:
            for side in result.responses:
                self.panes[side].set_score(
                    "–", "not scored" if result.stopped else "no reward model chosen", None)
            self.explain.setText("")
            return
        best = max(scores, key=lambda s: scores[s].value) if len(scores) > 1 else None
        normalised = all(s.normalised is not None for s in scores.values())
        # Differences too small to show are no difference.
        differ = best is not None and round(scores["base"].value, 2) != \
            round(scores["policy"].value, 2)
        for side, score in scores.items():
            tone = "up" if differ and side == best else None
            caption = "reward (normalised)" if normalised else "reward (raw)"
            if best == side and tone:
                caption += " · higher"
            self.panes[side].set_score(f"{score.value:+.2f}", caption, tone)
            self.panes[side].score.setToolTip(f"raw reward-model output {score.raw:+.4f}")
        name = f"reward run {reward.id}" if reward else "the reward model"
        if normalised:
            text = (f"Scores from {name}, normalised with the responses it was trained on: "
                    "0 = an average judged response, +1 = one standard deviation better.")
        else:
            text = (f"Raw scores from {name} (it saved no statistics to normalise with): only "
                    "the difference between the two sides means something.")
        if "policy" in scores:
            # From the numbers as shown, so the sentence agrees with the panes.
            diff = round(round(scores["policy"].value, 2) - round(scores["base"].value, 2), 2)
            text += (f"  Tuned policy − base: {diff:+.2f}." if diff else
                     "  Both sides score the same.")
        self.explain.setText(text)

    def _on_failed(self, message: str) -> None:
        self._finish_streaming()
        self._error(message)

    def _on_cancelled(self) -> None:
        self._finish_streaming()
        self._set_status("Stopped before the responses began.")

    def _finish_streaming(self) -> None:
        self._redraw.stop()
        self._flush()
        for pane in self.panes.values():
            if pane.text:
                pane.show_text(pane.text)
            else:
                pane.clear("")

    def _error(self, message: str) -> None:
        self._set_status(message, error=True)
        QMessageBox.warning(self, "Playground", message)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setProperty("error", "true" if error else "false")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)

    def _clear_panes(self, waiting: bool = False, with_policy: bool | None = None) -> None:
        if with_policy is None:
            with_policy = self.policy_box.currentData() is not None
        self.panes["base"].clear("Waiting for the model…" if waiting else
                                 "The base model's response appears here.")
        self.panes["policy"].clear(
            ("Waiting for the model…" if waiting else "The tuned policy's response appears here.")
            if with_policy else "Choose a tuned policy (a completed PPO run) to compare.")
        for pane in self.panes.values():
            pane.meta.setText("")
        self.explain.setText("")

    def _set_markdown(self, on: bool) -> None:
        for pane in self.panes.values():
            pane.markdown = on
            if pane.text:
                pane.show_text(pane.text, streaming=self.running)

    # -- lifetime ----------------------------------------------------------------------------

    def free_gpu_memory(self) -> None:
        """A training job is starting: free the models held on a GPU between runs (they are a
        cache, loaded again by the next run). A run in progress keeps them."""
        if self.session is None or self.running or not self.session.on_accelerator():
            return
        self.session.close()
        self.session = None
        self._set_status("Models freed for training; the next run loads them again.")

    def release_models(self) -> None:
        """The Chat page needs the model: free this page's copy between runs (one copy of a
        large model at a time; the next run here loads it again)."""
        if self.session is not None and not self.running:
            self.session.close()
            self.session = None

    def shutdown(self) -> None:
        """Stop a run (within a token) and serving, and free the models' memory."""
        self.serve.shutdown()
        if self.running:
            self.job.cancel()
            self.job.wait(60000)
        if self.session is not None:
            self.session.close()
            self.session = None
