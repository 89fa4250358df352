"""``--collect``: each chat request's conversation becomes a workspace prompt (source "serve"),
so real usage feeds the next round's pairs and PPO/RLOO's prompts. Off unless asked for."""

from __future__ import annotations

import threading
from pathlib import Path

from desktop_app.core.data.formats import DEFAULT_MAX_CHARS
from desktop_app.core.data.row_fields import conversation_text
from desktop_app.core.data.store import Store
from desktop_app.serve.api import Collect

SOURCE = "serve"


def collector(db_path: str | Path) -> Collect:
    """``collect(messages)`` for the API: the conversation up to its last user turn, stored as
    a chat prompt (a repeated one is not stored twice). Called off the event loop."""
    lock = threading.Lock()

    def collect(messages: list[dict]) -> None:
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        if last_user < 0 or not messages[last_user]["content"].strip():
            return
        kept = messages[:last_user + 1]
        text = conversation_text(kept, "messages")
        if len(text) > DEFAULT_MAX_CHARS or any(len(m["content"]) > DEFAULT_MAX_CHARS
                                                for m in kept):
            return  # longer than `import` takes: not a prompt to judge pairs for
        with lock, Store(db_path) as store:
            store.add_prompts([(text, kept)], source=SOURCE)
    return collect
