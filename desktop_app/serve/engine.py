"""One model serving requests: one generation at a time on the engine's own thread.

The model is the playground's (``ml/generation/playground.Playground``): the base, with a
trained policy attached when one is served. Requests wait in a queue (``MAX_WAITING``) and the
HTTP side awaits them without blocking its event loop; each streams its text through
``on_text`` as it is generated and can be stopped (a client that went away).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from desktop_app.core.config import SamplingConfig
from desktop_app.core.errors import UserError
from desktop_app.core.events import StopToken
from desktop_app.ml.generation.sampling import PromptInput

MAX_WAITING = 256


class EngineBusy(UserError):
    """Too many requests are waiting already."""


class PromptTooLong(UserError):
    """The prompt and the tokens asked for do not fit in the model's positions."""


@dataclass
class Request:
    """One response to generate. ``prompt``: a conversation (chat) or a plain text (a
    completion, continued as it is). ``done(result)`` gets the ``Completion`` or the exception,
    on the engine's thread."""

    prompt: PromptInput | str
    sampling: SamplingConfig
    seed: int
    on_text: Callable[[str], None]
    done: Callable[[Any], None]
    stop: StopToken = field(default_factory=StopToken)


class Engine:
    def __init__(self, playground, model_id: str, policy: bool):
        self.playground, self.model_id = playground, model_id
        self.side = "policy" if policy else "base"
        self.served = 0       # responses completed
        self._queue: queue.Queue[Request | None] = queue.Queue(MAX_WAITING)
        self._thread = threading.Thread(target=self._work, name="serve-engine", daemon=True)
        self._thread.start()

    @classmethod
    def load(cls, base_model: str, *, policy_adapter: str | None = None,
             model_id: str | None = None, device: str = "auto", dtype: str = "auto",
             quantize: str = "none") -> Engine:
        from pathlib import Path

        from desktop_app.ml.generation.playground import Playground
        playground = Playground.load(base_model, device=device, dtype=dtype, quantize=quantize)
        if policy_adapter:
            playground.add_policy(policy_adapter)
        return cls(playground, model_id or Path(base_model).name, policy=bool(policy_adapter))

    @property
    def tokenizer(self):
        return self.playground.tokenizer

    def check_length(self, prompt: PromptInput | str, sampling: SamplingConfig) -> None:
        """Raise ``PromptTooLong`` for a prompt that does not fit with ``max_new_tokens`` (the
        playground would keep its end; a client should be told). Thread-safe: the tokenizer
        only reads."""
        from desktop_app.ml.generation.playground import PlaygroundError
        from desktop_app.ml.generation.sampling import render_prompt
        try:
            budget = self.playground.prompt_budget(sampling)
        except PlaygroundError as exc:
            raise PromptTooLong(str(exc)) from None
        text, templated = ((prompt, False) if isinstance(prompt, str)
                           else render_prompt(self.tokenizer, prompt))
        n = len(self.tokenizer(text, add_special_tokens=not templated)["input_ids"])
        if budget is not None and n > budget:
            raise PromptTooLong(f"The prompt is {n} tokens; with max_tokens = "
                                f"{sampling.max_new_tokens} this model takes at most {budget}.")

    def submit(self, request: Request) -> None:
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise EngineBusy(f"{MAX_WAITING} requests are waiting already; try again "
                             "shortly.") from None

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Finish the response being generated, drop the waiting ones, free the model."""
        while True:
            try:
                dropped = self._queue.get_nowait()
            except queue.Empty:
                break
            if dropped is not None:
                dropped.done(EngineBusy("The server is shutting down."))
        self._queue.put(None)
        self._thread.join(timeout=60)
        self.playground.close()

    def _work(self) -> None:
        while (request := self._queue.get()) is not None:
            if request.stop.requested:  # its client left while it waited
                request.done(EngineBusy("The request was cancelled."))
                continue
            try:
                if isinstance(request.prompt, str):
                    result = self.playground.stream_raw(
                        request.prompt, self.side, request.sampling, request.seed,
                        request.on_text, request.stop)
                else:
                    result = self.playground.stream(
                        request.prompt, self.side, request.sampling, request.seed,
                        request.on_text, request.stop)
            except Exception as exc:  # noqa: BLE001 - the request's caller reports it
                request.done(exc)
            else:
                self.served += 1
                request.done(result)
