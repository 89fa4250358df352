"""The main window: a sidebar of pages (Judge, Prompts, Models, Reward model, Policy, ...) and a
status bar.

The window builds the pages and wires them together; it never reads a page's state or calls
into its parts. Pages say what happened through their signals; the window answers through its
own (``model_loaded``, ``base_model_changed``, ``training_began``, ``training_ended``,
``policy_requested``, ``closing``), connected here to the pages' slots. A page whose content
goes stale while hidden has ``activate()``, called when it is shown (``ShownPage``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QWidget,
)

from desktop_app import __version__
from desktop_app.core.data.store import Store
from desktop_app.core.workspace import Workspace
from desktop_app.gui.chat_page import ChatPage
from desktop_app.gui.evaluate.page import EvaluatePage
from desktop_app.gui.judge.page import JudgePage
from desktop_app.gui.models_page import ModelsPage
from desktop_app.gui.playground_page import PlaygroundPage
from desktop_app.gui.prompts_page import PromptsPage
from desktop_app.gui.runs.page import RunsPage
from desktop_app.gui.training.policy_page import PolicyPage
from desktop_app.gui.training.reward_page import RewardPage


@runtime_checkable
class ShownPage(Protocol):
    def activate(self) -> None:
        """The page was shown, or shown again: bring what it shows up to date."""


class MainWindow(QMainWindow):
    model_loaded = Signal(object)          # ml.models.loader.LoadedModel: pairs are made with it
    base_model_changed = Signal(str)       # a base model (no tuned policy) was loaded: its folder
    training_began = Signal()              # a training or evaluation job started (each one)
    training_ended = Signal()              # the last training or evaluation job ended
    policy_requested = Signal(str, str, bool)   # base folder, policy adapter, versus base
    closing = Signal()                     # the window closes: pages stop their jobs

    def __init__(self, workspace: Workspace, store: Store):
        super().__init__()
        self.workspace = workspace
        self.store = store
        self.setWindowTitle(f"RLHF Desk — {workspace.root.name}")
        self.resize(1280, 800)

        self.judge_page = JudgePage(store)
        self.prompts_page = PromptsPage(store)
        self.models_page = ModelsPage(workspace)
        self.reward_page = RewardPage(workspace, store)
        self.policy_page = PolicyPage(workspace, store)
        self.ppo_page = self.policy_page.ppo
        self.rloo_page, self.dpo_page = self.policy_page.rloo, self.policy_page.dpo
        self.evaluate_page = EvaluatePage(workspace, store)
        self.chat_page = ChatPage(workspace, store)
        self.playground_page = PlaygroundPage(workspace, store)
        self.runs_page = RunsPage(workspace, store)
        self.pages = QStackedWidget()
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(150)
        for name, page in (("Judge", self.judge_page), ("Prompts", self.prompts_page),
                           ("Models", self.models_page), ("Reward model", self.reward_page),
                           ("Policy", self.policy_page), ("Evaluate", self.evaluate_page),
                           ("Chat", self.chat_page), ("Playground", self.playground_page),
                           ("Runs", self.runs_page)):
            self.sidebar.addItem(name)
            self.pages.addWidget(page)
        self.sidebar.currentRowChanged.connect(self._show_page)
        self.sidebar.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)

        self.model_status = QLabel("No model loaded")
        self.statusBar().addWidget(QLabel(f"Workspace: {workspace.root}"), 1)
        self.statusBar().addPermanentWidget(self.model_status)
        self.statusBar().addPermanentWidget(QLabel(f"v{__version__}"))

        # What the pages say.
        self.models_page.model_loaded.connect(self._on_model_loaded)
        self.models_page.load_started.connect(
            lambda name: self.model_status.setText(f"Loading {name}…"))
        self.models_page.load_failed.connect(
            lambda _: self.model_status.setText("No model loaded (see the Models page)"))
        self.prompts_page.prompts_changed.connect(self.judge_page.prompts_changed)
        self.judge_page.judged.connect(self.prompts_page.mark_stale)
        for page in (self.reward_page, self.policy_page, self.evaluate_page):
            page.training_started.connect(self._on_training_started)
            page.training_finished.connect(self._on_training_finished)
        self.policy_page.policy_ready.connect(self._load_policy)
        self.evaluate_page.next_round_requested.connect(self._load_policy)
        self.evaluate_page.prompts_changed.connect(self.prompts_page.reload)
        # What the window tells them.
        self.model_loaded.connect(self.judge_page.set_model)
        for page in (self.reward_page, self.policy_page, self.evaluate_page,
                     self.playground_page, self.chat_page):
            self.base_model_changed.connect(page.set_base_model)
        # Room for training: generation waits (its weights in main memory on a GPU), and the
        # models the playground and the reward inspector keep as caches are freed.
        self.training_began.connect(self.judge_page.pause_for_training)
        self.training_began.connect(self.playground_page.free_gpu_memory)
        self.training_began.connect(self.chat_page.free_gpu_memory)
        # Chat and the Playground each keep the model between turns; one copy at a time.
        self.chat_page.models_needed.connect(self.playground_page.release_models)
        self.playground_page.models_needed.connect(self.chat_page.release_models)
        self.training_began.connect(self.reward_page.free_gpu_memory)
        self.training_ended.connect(self.judge_page.resume_after_training)
        self.policy_requested.connect(self.models_page.load_policy)
        for page in (self.reward_page, self.policy_page, self.evaluate_page,
                     self.playground_page, self.chat_page, self.judge_page, self.models_page):
            self.closing.connect(page.shutdown)
        self._training = 0  # training jobs running (reward, PPO, evaluation)
        self.sidebar.setCurrentRow(0)

    def show_page(self, name: str) -> None:
        names = [self.sidebar.item(i).text() for i in range(self.sidebar.count())]
        if self.sidebar.currentRow() == names.index(name):
            self._show_page(names.index(name))  # already there: still refresh and focus it
        else:
            self.sidebar.setCurrentRow(names.index(name))

    def _show_page(self, row: int) -> None:
        self.pages.setCurrentIndex(row)
        page = self.pages.currentWidget()
        if isinstance(page, ShownPage):
            page.activate()

    def _on_model_loaded(self, lm) -> None:
        policy = " + tuned policy" + (" (pairs: tuned vs. base)" if lm.versus_base else "")
        self.model_status.setText(f"{lm.info.name}" + (policy if lm.adapter else "")
                                  + f" · {lm.label}")
        self.model_loaded.emit(lm)
        if not lm.adapter:
            self.base_model_changed.emit(lm.path)
        self.show_page("Judge")

    def _load_policy(self, base: str, adapter: str) -> None:
        """The next round: pairs are generated by the tuned policy (recorded per generation),
        both responses from it or one from it and one from the base, as the person picks."""
        versus_base = self._ask_pair_mode()
        if versus_base is None:
            return
        self.show_page("Models")
        self.policy_requested.emit(base, adapter, versus_base)

    def _ask_pair_mode(self) -> bool | None:
        box = QMessageBox(QMessageBox.Icon.Question, "Next round",
                          "How should the next round's pairs be made?", parent=self)
        box.setInformativeText(
            "Both from the tuned policy: your judgments refine what it does now.\n"
            "Tuned against base: each pair shows one response from each, so every judgment "
            "also says whether tuning helped.")
        tuned = box.addButton("Both from the tuned policy", QMessageBox.ButtonRole.AcceptRole)
        versus = box.addButton("Tuned against base", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(tuned)
        box.exec()
        clicked = box.clickedButton()
        return {tuned: False, versus: True}.get(clicked) if clicked in (tuned, versus) else None

    def _on_training_started(self) -> None:
        # Sampling and training would fight over the same cores (or GPU memory): the pages
        # make room for each job that starts, and take it back after the last one.
        self._training += 1
        self.training_began.emit()

    def _on_training_finished(self) -> None:
        self._training = max(0, self._training - 1)
        if not self._training:
            self.training_ended.emit()  # no other training job still runs

    def closeEvent(self, event: QCloseEvent) -> None:
        # The current batch finishes (its pairs are kept); judgments are already committed.
        # Loading and scanning are left behind; gui.app ends the process without waiting.
        self.statusBar().showMessage("Finishing the current batch before closing…")
        self.closing.emit()
        super().closeEvent(event)
