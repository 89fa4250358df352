"""A chat turn with the current policy: the conversation so far through the model's chat
template (``sampling.render_prompt``), the reply streamed as it is generated, and, for a turn
the person is asked to rate, two replies with different seeds (generated one after the other,
each streamed to its own side).

The models are the playground's (``PlaygroundSession``): the base loaded once, the chosen
policy attached to it as an adapter."""

from __future__ import annotations

from dataclasses import dataclass

from desktop_app.core.config import SamplingConfig
from desktop_app.core.events import Emit, Progress, StopToken
from desktop_app.ml.generation.playground import Completion, PlaygroundSession
from desktop_app.ml.generation.sampling import PromptInput, plain_transcript


@dataclass(frozen=True)
class ReplyDelta:
    """New text of reply ``candidate`` (0, or 1 for the second of a rated pair)."""

    candidate: int
    delta: str


def chat_turn(session: PlaygroundSession, base_model: str, policy_adapter: str | None,
              messages: list[dict], sampling: SamplingConfig, seeds: list[int], emit: Emit,
              stop: StopToken) -> list[Completion]:
    """One reply per seed to ``messages`` (which end with the user's turn). A stop ends the
    reply being written and skips the rest."""
    pg, side = session.model_for(base_model, policy_adapter, emit, stop)
    prompt = PromptInput(0, plain_transcript(messages), messages)
    replies = []
    for k, seed in enumerate(seeds):
        emit(Progress(0, 0, "Writing…" if len(seeds) == 1 else f"Writing answer {k + 1} of "
                                                               f"{len(seeds)}…"))
        replies.append(pg.stream(prompt, side, sampling, seed,
                                 on_text=lambda delta, k=k: emit(ReplyDelta(k, delta)),
                                 stop=stop))
        if stop.requested:
            break
    return replies
