"""Policy: the page where a policy is tuned, one tab per method (PPO, RLOO, DPO), each with its
own generated settings form, charts and run controller. The tab bar says when to pick which.

The page forwards what its methods say (``training_started``, ``training_finished``,
``policy_ready``) and what the window tells them (the base model, activation, shutdown), so the
window wires one page whatever the number of methods.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.data.store import Store
from desktop_app.core.workspace import Workspace
from desktop_app.gui.training.dpo_page import DPOPage
from desktop_app.gui.training.ppo_page import PPOPage
from desktop_app.gui.training.rloo_page import RLOOPage

# When to pick each method: shown beside the tabs for the method on show.
WHEN = {
    "PPO": "PPO tunes the policy against a reward model you trained, sampling new responses as "
           "it learns: the classic loop, and the most memory (policy, value and reward "
           "adapters on one base).",
    "RLOO": "RLOO samples k responses per prompt and scores each against the others of its "
            "prompt: PPO without the value model, so less memory and fewer settings; it "
            "needs rewards that differ between the k responses.",
    "DPO": "DPO learns straight from your judgments: no reward model and no sampling, so it is "
           "faster and steadier on one GPU. It only sees the responses you judged.",
}


class PolicyPage(QWidget):
    training_started = Signal()
    training_finished = Signal()
    policy_ready = Signal(str, str)   # base model folder, policy adapter folder

    def __init__(self, workspace: Workspace, store: Store, parent: QWidget | None = None):
        super().__init__(parent)
        self.ppo = PPOPage(workspace, store)
        self.rloo = RLOOPage(workspace, store)
        self.dpo = DPOPage(workspace, store)
        self.methods = {"PPO": self.ppo, "RLOO": self.rloo, "DPO": self.dpo}
        # A tab bar with the method's "when to pick it" beside it, over the method pages.
        self.tabs = QTabBar()
        self.tabs.setDrawBase(False)
        self.stack = QStackedWidget()
        for name, page in self.methods.items():
            self.tabs.addTab(name)
            self.stack.addWidget(page)
            page.training_started.connect(self.training_started)
            page.training_finished.connect(self.training_finished)
            page.policy_ready.connect(self.policy_ready)
        self.when = QLabel()
        self.when.setWordWrap(True)
        self.when.setObjectName("hint")
        self.when.setStyleSheet("color: #4b5563;")
        self.tabs.currentChanged.connect(self._on_tab)
        top = QHBoxLayout()
        top.setContentsMargins(8, 6, 8, 2)
        top.addWidget(self.tabs)
        top.addSpacing(12)
        top.addWidget(self.when, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addWidget(self.stack, 1)
        self._on_tab(0)

    def show_method(self, name: str) -> None:
        self.tabs.setCurrentIndex(list(self.methods).index(name))

    def _on_tab(self, index: int) -> None:
        name = self.tabs.tabText(index)
        self.when.setText(WHEN.get(name, ""))
        self.stack.setCurrentIndex(index)
        if self.isVisible():
            self.stack.currentWidget().activate()

    def activate(self) -> None:
        self.stack.currentWidget().activate()

    def set_base_model(self, path: str | None) -> None:
        for page in self.methods.values():
            page.set_base_model(path)

    def shutdown(self) -> None:
        for page in self.methods.values():
            page.shutdown()
