"""The sums a trainer logs every few steps, as averages: ``LogWindow``.

Shared by the methods that train over epochs of judged pairs (reward model, DPO). ``stats`` is
the method's own dataclass of sums that add up across batches (``+`` and ``astuple``); the
window also sums the learning rate, the gradient norm and the seconds. Saved in checkpoints, so
a resume logs exactly what an uninterrupted run would have.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from typing import Any


@dataclass
class LogWindow:
    stats: Any                 # the method's sums (an instance of its stats dataclass)
    steps: int = 0
    lr: float = 0.0
    grad_norm: float = 0.0
    grad_steps: int = 0
    seconds: float = 0.0       # not saved: wall time does not resume

    @classmethod
    def empty(cls, stats_type: type) -> LogWindow:
        return cls(stats_type())

    def add(self, stats: Any, lr: float, grad_norm: float, seconds: float) -> None:
        self.steps += 1
        self.stats = self.stats + stats
        self.lr += lr
        if math.isfinite(grad_norm):  # an fp16 overflow step (skipped by the scaler)
            self.grad_norm += grad_norm
            self.grad_steps += 1
        self.seconds += seconds

    def state(self) -> dict:
        return {"steps": self.steps, "stats": list(astuple(self.stats)), "lr": self.lr,
                "grad_norm": self.grad_norm, "grad_steps": self.grad_steps}

    @classmethod
    def from_state(cls, w: dict, stats_type: type) -> LogWindow:
        return cls(stats_type(*w["stats"]), w["steps"], w["lr"], w["grad_norm"], w["grad_steps"])
