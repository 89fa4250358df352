"""Which pending pair to judge next: the oldest, or the one the reward model is least sure of.

"Least certain first" scores every pending pair with the newest completed reward model (in the
background) and stores |r_a - r_b|; the judge page then asks the store for the smallest margin
first. Pairs generated after the ranking have no margin yet and come after the ranked ones
until "Re-rank" scores them too.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop_app.core.data.store import Store
from desktop_app.core.events import Progress
from desktop_app.core.runs.record import Run, RunKind
from desktop_app.gui.jobs import Job

OLDEST, UNCERTAIN = "oldest", "uncertain"


class _StatusLabel(QLabel):
    """A wrapped status line that takes no room while it has nothing to say."""

    def __init__(self) -> None:
        super().__init__("")
        self.setWordWrap(True)
        self.setObjectName("genStatus")
        self.hide()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setVisible(bool(text))


class JudgeOrder(QGroupBox):
    order_changed = Signal(str)

    def __init__(self, store: Store, parent: QWidget | None = None):
        super().__init__("Judge next", parent)
        self.store = store
        self.order = OLDEST
        self.job: Job | None = None
        self.combo = QComboBox()
        self.combo.addItem("Oldest pair first", OLDEST)
        self.combo.addItem("Least certain first", UNCERTAIN)
        self.combo.setToolTip("Least certain first: pairs the reward model scores alike come "
                              "first, where your judgment teaches it the most.")
        self.combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.combo.currentIndexChanged.connect(self._on_choice)
        self.rank_button = QPushButton("Re-rank pending pairs")
        self.rank_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.rank_button.clicked.connect(self._rank_or_cancel)
        self.rank_button.hide()
        self.status = _StatusLabel()
        layout = QVBoxLayout(self)
        layout.addWidget(self.combo)
        layout.addWidget(self.rank_button)
        layout.addWidget(self.status)

    def reward_run(self) -> Run | None:
        runs = self.store.finished_runs(RunKind.REWARD)
        return runs[-1] if runs else None

    def _on_choice(self) -> None:
        order = self.combo.currentData()
        if order == UNCERTAIN and self.reward_run() is None:
            self.status.setText("Train a reward model first: least-certain-first needs one.")
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(0)
            self.combo.blockSignals(False)
            return
        self.order = order
        self.rank_button.setVisible(order == UNCERTAIN)
        self.status.setText("")
        self.order_changed.emit(order)
        if order == UNCERTAIN:
            self.rank()

    def _rank_or_cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()  # margins stored so far are kept; the rest rank after them
        else:
            self.rank()

    def rank(self) -> None:
        """Score the pending pairs with the newest reward model, in the background."""
        from desktop_app.ml.reward.uncertainty import score_pending_pairs
        run = self.reward_run()
        if run is None or (self.job is not None and self.job.running):
            return
        db_path, run_id = self.store.path, run.id

        def work(emit, stop):
            with Store(db_path) as store:  # this thread's own connection
                return score_pending_pairs(store, run_id, emit=emit, stop=stop)

        self.job = Job(work, self, name="rank-pairs")
        self.job.event.connect(self._on_event)
        self.job.succeeded.connect(
            lambda n: self._done(f"Ranked {n} pending pairs by reward run {run_id}."))
        self.job.failed.connect(lambda message: self._done(f"Ranking failed: {message}"))
        self.job.cancelled.connect(lambda: self._done("Ranking cancelled."))
        self.rank_button.setText("Cancel ranking")
        self.rank_button.show()
        self.status.setText(f"Ranking with reward run {run_id}…")
        self.job.start()

    def _on_event(self, event) -> None:
        if isinstance(event, Progress) and event.total:
            self.status.setText(f"{event.message} ({event.done}/{event.total})")

    def _done(self, text: str) -> None:
        self.rank_button.setText("Re-rank pending pairs")
        self.status.setText(text)
        self.order_changed.emit(self.order)  # the next pair may differ now

    def shutdown(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.job.wait(30000)
