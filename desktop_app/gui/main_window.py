"""The main window: a sidebar of pages (Judge, Prompts, Models, Reward model) and a status bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
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

from .. import __version__
from ..core.store import Store
from ..core.workspace import Workspace
from .evaluate_page import EvaluatePage
from .judge_page import JudgePage
from .models_page import ModelsPage
from .playground_page import PlaygroundPage
from .ppo_page import PPOPage
from .prompts_page import PromptsPage
from .reward_page import RewardPage
from .runs_page import RunsPage


class MainWindow(QMainWindow):
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
        self.ppo_page = PPOPage(workspace, store)
        self.evaluate_page = EvaluatePage(workspace, store)
        self.playground_page = PlaygroundPage(workspace, store)
        self.runs_page = RunsPage(workspace, store)
        self.pages = QStackedWidget()
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(150)
        for name, page in (("Judge", self.judge_page), ("Prompts", self.prompts_page),
                           ("Models", self.models_page), ("Reward model", self.reward_page),
                           ("PPO", self.ppo_page), ("Evaluate", self.evaluate_page),
                           ("Playground", self.playground_page), ("Runs", self.runs_page)):
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

        self.models_page.model_loaded.connect(self._on_model_loaded)
        self.models_page.load_started.connect(
            lambda name: self.model_status.setText(f"Loading {name}…"))
        self.models_page.load_failed.connect(
            lambda _: self.model_status.setText("No model loaded (see the Models page)"))
        self.prompts_page.prompts_changed.connect(self._on_prompts_changed)
        self.judge_page.judged.connect(self._mark_prompts_stale)
        for page in (self.reward_page, self.ppo_page, self.evaluate_page):
            page.training_started.connect(self._on_training_started)
            page.training_finished.connect(self._on_training_finished)
        self.ppo_page.policy_ready.connect(self._load_policy)
        self.evaluate_page.next_round_requested.connect(self._load_policy)
        self.evaluate_page.prompts_changed.connect(self.prompts_page.reload)
        self._paused_for_training = False
        self._training = 0  # training jobs running (reward, PPO, evaluation)
        self._prompts_stale = False
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
        if page is self.prompts_page and self._prompts_stale:
            self.prompts_page.reload()
            self._prompts_stale = False
        if page is self.judge_page:
            self.judge_page.refresh()
            self.judge_page.view.setFocus()
        if page in (self.reward_page, self.ppo_page, self.runs_page):
            page.refresh()

    def _on_model_loaded(self, lm) -> None:
        policy = " + tuned policy" + (" (pairs: tuned vs. base)" if lm.versus_base else "")
        self.model_status.setText(f"{lm.info.name}" + (policy if lm.adapter else "")
                                  + f" · {lm.device.label()}")
        self.judge_page.set_model(lm)
        if not lm.adapter:
            self.reward_page.set_base_model(lm.path)
            self.ppo_page.set_base_model(lm.path)
            self.evaluate_page.set_base_model(lm.path)
            self.playground_page.set_base_model(lm.path)
        self.show_page("Judge")

    def _on_prompts_changed(self) -> None:
        self.judge_page.prompts_changed()

    def _load_policy(self, base: str, adapter: str) -> None:
        """The next round: pairs are generated by the tuned policy (recorded per generation),
        both responses from it or one from it and one from the base, as the person picks."""
        versus_base = self._ask_pair_mode()
        if versus_base is None:
            return
        self.show_page("Models")
        self.models_page.select_path(base)
        self.models_page.load_path(base, adapter=adapter, versus_base=versus_base)

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
        # Sampling and training would fight over the same cores (or GPU memory): generation
        # waits while a training run is going, and picks up again after it. On a GPU the
        # generation model's weights wait in main memory, and the models the playground and the
        # reward inspector keep as caches (loaded again when next used) are freed, so training
        # has the GPU's memory.
        if not self._training:
            self._paused_for_training = not self.judge_page.queue.paused
        self._training += 1
        self.judge_page.set_generation_paused(True)
        self.judge_page.queue.park()
        self.playground_page.free_gpu_memory()
        self.reward_page.free_gpu_memory()

    def _on_training_finished(self) -> None:
        self._training = max(0, self._training - 1)
        if self._training:
            return  # another training job still runs
        resume, self._paused_for_training = self._paused_for_training, False

        def after_unpark() -> None:
            if resume and not self._training:
                self.judge_page.set_generation_paused(False)
        self.judge_page.queue.unpark(after_unpark)

    def _mark_prompts_stale(self) -> None:
        self._prompts_stale = True

    def closeEvent(self, event: QCloseEvent) -> None:
        # The current batch finishes (its pairs are kept); judgments are already committed.
        self.statusBar().showMessage("Finishing the current batch before closing…")
        self.reward_page.shutdown()
        self.ppo_page.shutdown()
        self.evaluate_page.shutdown()
        self.playground_page.shutdown()
        self.judge_page.queue.shutdown()
        self.judge_page.order_box.shutdown()
        # Loading and scanning hold no data: they are asked to stop and left behind (a first
        # import or a large checkpoint being read cannot stop at once); gui.app ends the
        # process without waiting for them.
        for job in (self.models_page.load_job, self.models_page.scan_job):
            if job is not None and job.running:
                job.cancel()
        super().closeEvent(event)
