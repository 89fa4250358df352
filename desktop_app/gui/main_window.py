"""The main window: a sidebar of pages (Judge, Prompts, Models, Reward model) and a status bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QMainWindow, QStackedWidget, QWidget

from .. import __version__
from ..core.store import Store
from ..core.workspace import Workspace
from .judge_page import JudgePage
from .models_page import ModelsPage
from .prompts_page import PromptsPage
from .reward_page import RewardPage


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
        self.pages = QStackedWidget()
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(150)
        for name, page in (("Judge", self.judge_page), ("Prompts", self.prompts_page),
                           ("Models", self.models_page), ("Reward model", self.reward_page)):
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
        self.prompts_page.prompts_changed.connect(self._on_prompts_changed)
        self.judge_page.judged.connect(self._mark_prompts_stale)
        self.reward_page.training_started.connect(self._on_training_started)
        self.reward_page.training_finished.connect(self._on_training_finished)
        self._paused_for_training = False
        self._prompts_stale = False
        self.sidebar.setCurrentRow(0)

    def show_page(self, name: str) -> None:
        names = [self.sidebar.item(i).text() for i in range(self.sidebar.count())]
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
        if page is self.reward_page:
            self.reward_page.refresh()

    def _on_model_loaded(self, lm) -> None:
        self.model_status.setText(f"{lm.info.name} · {lm.device.label()}")
        self.judge_page.set_model(lm)
        self.reward_page.set_base_model(lm.path)
        self.show_page("Judge")

    def _on_prompts_changed(self) -> None:
        self.judge_page.prompts_changed()

    def _on_training_started(self) -> None:
        # Sampling and training would fight over the same cores (or GPU memory): generation
        # waits while a training run is going, and picks up again after it.
        self._paused_for_training = not self.judge_page.queue.paused
        self.judge_page.set_generation_paused(True)

    def _on_training_finished(self) -> None:
        if self._paused_for_training:
            self.judge_page.set_generation_paused(False)
        self._paused_for_training = False

    def _mark_prompts_stale(self) -> None:
        self._prompts_stale = True

    def closeEvent(self, event: QCloseEvent) -> None:
        # The current batch finishes (its pairs are kept); judgments are already committed.
        self.statusBar().showMessage("Finishing the current batch before closing…")
        self.reward_page.shutdown()
        self.judge_page.queue.shutdown()
        for job in (self.models_page.load_job, self.models_page.scan_job):
            if job is not None and job.running:
                job.cancel()
                job.wait(60000)
        super().closeEvent(event)
