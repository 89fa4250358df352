"""The Playground page's "Serve to other apps" box: start and stop ``rlhf-desk serve``'s
endpoint (``desktop_app/serve``) on the page's current choice (the base model, or a tuned
policy on it), and show its address and how many requests it has answered.

The server loads its own copy of the model on a job thread and runs uvicorn on a thread of its
own, so the page can keep generating meanwhile; stopping it (or closing the app) frees it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.gui.jobs import Job

# (base model folder, policy adapter folder or None, the model's name for clients), or why
# there is nothing to serve
Choice = Callable[[], "tuple[str, str | None, str] | str"]


class ServePanel(QGroupBox):
    def __init__(self, workspace, choice: Choice, parent: QWidget | None = None):
        super().__init__("Serve to other apps", parent)
        self.workspace, self._choice = workspace, choice
        self.server = None   # desktop_app.serve.server.Server while serving
        self.job: Job | None = None
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setValue(8000)
        self.port.setSpecialValueText("any free")
        self.port.setToolTip("The port on this machine (127.0.0.1) that chat apps connect to.")
        self.collect = QCheckBox("Keep incoming prompts")
        self.collect.setToolTip("Store each conversation sent to the server as a workspace "
                                "prompt (source 'serve'), so real usage feeds the next round.")
        self.button = QPushButton("Start serving")
        self.button.setToolTip("An OpenAI-compatible endpoint (/v1/chat/completions) for the "
                               "policy chosen above. It loads its own copy of the model.")
        self.button.clicked.connect(self.toggle)
        self.status = QLabel("Not serving.")
        self.status.setObjectName("serveStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(QLabel("Port"))
        row.addWidget(self.port)
        row.addWidget(self.button, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.collect)
        layout.addWidget(self.status)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._show_serving)

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def toggle(self) -> None:
        if self.busy:
            return
        if self.server is None:
            self.start()
        else:
            self.stop()

    def start(self) -> None:
        choice = self._choice()
        if isinstance(choice, str):
            self.status.setText(choice)
            return
        base, adapter, model_id = choice
        port, db = self.port.value(), self.workspace.db_path
        collect = self.collect.isChecked()

        def work(emit, stop):
            from desktop_app.serve.collect import collector
            from desktop_app.serve.engine import Engine
            from desktop_app.serve.server import Server
            engine = Engine.load(base, policy_adapter=adapter, model_id=model_id)
            try:
                server = Server(engine, port=port,
                                collect=collector(db) if collect else None)
                server.start()
            except BaseException:
                engine.close()
                raise
            return server

        self.status.setText(f"Loading {model_id}…")
        self._run(work, self._started)

    def stop(self) -> None:
        server, self.server = self.server, None
        self._tick.stop()
        self.status.setText("Stopping…")
        self._run(lambda emit, stop: (server.stop(), server.requests)[1], self._stopped)

    def shutdown(self) -> None:
        """At application exit: stop serving (on this thread)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _run(self, work, on_done) -> None:
        self.button.setEnabled(False)
        self.job = Job(work, self, name="serve", needs_stack=True)
        self.job.succeeded.connect(on_done)
        self.job.failed.connect(lambda message: self.status.setText(
            f"<span style='color:#b00020'>{message}</span>"))
        self.job.finished.connect(self._update)
        self.job.start()

    def _started(self, server) -> None:
        self.server = server
        self._show_serving()
        self._tick.start()

    def _stopped(self, requests: int) -> None:
        self.status.setText(f"Stopped after {requests} request{'s' * (requests != 1)}.")

    def _show_serving(self) -> None:
        if self.server is not None:
            n = self.server.requests
            self.status.setText(f"Serving <b>{self.server.engine.model_id}</b> at "
                                f"<b>{self.server.url}</b> · {n} request{'s' * (n != 1)}")

    def _update(self) -> None:
        self.button.setEnabled(True)
        self.button.setText("Stop serving" if self.server is not None else "Start serving")
        self.port.setEnabled(self.server is None)
        self.collect.setEnabled(self.server is None)
