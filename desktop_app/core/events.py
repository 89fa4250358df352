"""Events that long jobs report through, and the token that asks them to stop.

A job takes ``emit(event)`` and a ``StopToken``; it checks the token between steps. The GUI
turns events into Qt signals, the CLI prints them. Jobs never know who is listening.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units finished (total 0 = unknown); ``message``: what is happening."""

    done: int
    total: int
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Log:
    message: str
    level: str = "info"  # info | warning | error


@dataclass(frozen=True)
class Metric:
    step: int
    name: str
    value: float


Event = Progress | Log | Metric
Emit = Callable[[Event], None]


def ignore(event: Event) -> None:
    """An ``emit`` for callers that do not care."""


class Cancelled(Exception):
    """Raised by a job that noticed its stop token; whatever it finished is already saved."""


class StopToken:
    """Cooperative cancellation: the owner calls ``stop()``, the job polls ``requested``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def stop(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def raise_if_requested(self) -> None:
        if self._event.is_set():
            raise Cancelled()
