"""Chat with the current policy, kept in the workspace (schema 5: ``conversations`` and
``chat_turns``).

Every user turn also becomes a workspace prompt: the conversation up to it, as chat messages,
with source "chat", so the next round can generate pairs for real usage and PPO/RLOO can train
on it. A rating turn is a judged pair like any other: its prompt is that conversation, its two
responses are generations of the policy that wrote them (model and adapter), the one shown on
the left is generation a (``left_generation_id``), and the chosen one continues the
conversation. A private conversation calls none of this.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from desktop_app.core.data.row_fields import conversation_text
from desktop_app.core.data.store import GenerationIn, Store, now_iso

SOURCE = "chat"
TITLE_CHARS = 60


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    policy_run_id: int | None = None
    comparison_id: int | None = None

    def message(self) -> dict:
        return {"role": self.role, "content": self.content}


def new_conversation(store: Store, first_message: str) -> int:
    title = " ".join(first_message.split())[:TITLE_CHARS] or "New chat"
    now = now_iso()
    with store.db.atomic():
        return store.db.execute(
            "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
            [title, now, now]).lastrowid


def add_turn(store: Store, conversation_id: int, turn: Turn) -> int:
    now = now_iso()
    with store.db.atomic():
        turn_id = store.db.execute(
            "INSERT INTO chat_turns (conversation_id, role, content, policy_run_id, "
            "comparison_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [conversation_id, turn.role, turn.content, turn.policy_run_id, turn.comparison_id,
             now]).lastrowid
        store.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?",
                         [now, conversation_id])
    return turn_id


def conversations(store: Store) -> list[dict]:
    """id, title, updated_at and turns, newest first."""
    return store._rows(
        "SELECT c.id, c.title, c.updated_at, COUNT(t.id) AS turns FROM conversations c "
        "LEFT JOIN chat_turns t ON t.conversation_id = c.id GROUP BY c.id "
        "ORDER BY c.updated_at DESC, c.id DESC")


def turns(store: Store, conversation_id: int) -> list[Turn]:
    return [Turn(r["role"], r["content"], r["policy_run_id"], r["comparison_id"])
            for r in store._rows("SELECT role, content, policy_run_id, comparison_id FROM "
                                 "chat_turns WHERE conversation_id = ? ORDER BY id",
                                 [conversation_id])]


def delete_conversation(store: Store, conversation_id: int) -> None:
    """The conversation and its turns; its prompts and judgments stay (they are data now)."""
    with store.db.atomic():
        store.db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])


def prompt_for(store: Store, messages: list[dict]) -> int:
    """The workspace prompt of a conversation that ends with a user turn (added once)."""
    text = conversation_text(messages, "messages")
    store.add_prompts([(text, messages)], source=SOURCE)
    row = store.db.execute("SELECT id FROM prompts WHERE text = ?", [text]).fetchone()
    return row[0]


class _LeftIsA(random.Random):
    """``add_pairs`` draws the left side with ``random() < 0.5``; the chat already showed
    the pair, with generation a on the left."""

    def random(self) -> float:
        return 0.0


def record_rating(store: Store, prompt_id: int, left: GenerationIn, right: GenerationIn,
                  choice: str) -> int:
    """A rated pair as shown: ``left`` is generation a; ``choice`` is a, b, tie, both_bad or
    skip (a = the left one won). Returns the comparison id."""
    [comparison_id] = store.add_pairs([(prompt_id, left, right)], rng=_LeftIsA(),
                                      choice=choice, source=SOURCE)
    return comparison_id
