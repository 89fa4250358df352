"""Checking the fields of one imported row: text, chat messages, and a readable prompt.

Shared by the prompt rows (``formats``) and the preference rows (``preference_formats``).
A field that is wrong raises ``BadRow`` with a reason the user can act on; the caller turns it
into an ``ImportProblem`` at the row's line.
"""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")


class BadRow(Exception):
    """Why a row was skipped; becomes an ImportProblem at the row's line."""


def text_field(row: dict, name: str) -> str:
    """The stripped, non-empty text of ``row[name]``."""
    if name not in row:
        raise BadRow(f"missing '{name}'")
    value = row[name]
    if not isinstance(value, str):
        raise BadRow(f"'{name}' must be text, found {kind_of(value)}")
    if not value.strip():
        raise BadRow(f"'{name}' is empty")
    return value.strip()


def messages_field(value: Any, name: str) -> list[dict]:
    """Check a chat message list and return a clean copy: roles lower-case, text stripped."""
    if not isinstance(value, list):
        raise BadRow(f"'{name}' must be a list of messages, found {kind_of(value)}")
    if not value:
        raise BadRow(f"'{name}' is an empty list")
    clean = []
    for number, message in enumerate(value, start=1):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise BadRow(f"'{name}' message {number} must be an object with text 'role' and "
                         "'content'")
        role = message["role"].strip().lower()
        if role not in ROLES:
            raise BadRow(f"'{name}' message {number} has role '{message['role']}'; expected "
                         "system, user or assistant")
        clean.append({"role": role, "content": message["content"].strip()})
    return clean


def conversation_text(messages: list[dict], name: str) -> str:
    """What the user reads for a chat prompt: the question itself when there is one user turn,
    else the whole exchange as a transcript. ``messages`` ends with a user turn."""
    if not messages[-1]["content"]:
        raise BadRow(f"the last user turn in '{name}' is empty")
    # A system message stays in ``messages`` but not in the text: it is usually boilerplate
    # ("You are a helpful assistant") that would crowd out the question.
    turns = [m for m in messages if m["role"] != "system"]
    if sum(m["role"] == "user" for m in turns) == 1:
        return turns[-1]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)


def kind_of(value: Any) -> str:
    """A JSON value's type in the words a JSON user knows."""
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", int: "a number",
             float: "a number"}
    return names.get(type(value), type(value).__name__)
