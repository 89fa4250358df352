"""Writing judged pairs out as a preference dataset that TRL (and ``parse_file``) read.

Each line is ``{"prompt": ..., "chosen": ..., "rejected": ...}``. Plain pairs use TRL's
standard form (three strings). When any pair has a chat prompt, every row uses TRL's
conversational form (a message list for the prompt, one assistant turn for each response),
because a file whose rows change type defeats ``datasets``' schema inference.

The file is replaced atomically: rows go to a temporary file in the same folder, which is
fsynced and then renamed over the target, so a crash or a bad pair leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .formats import ROLES

__all__ = ["JudgedPair", "write_trl_jsonl"]


@dataclass
class JudgedPair:
    """``chosen`` was preferred over ``rejected``; ``prompt_messages`` is the chat form of the
    prompt (ending with a user turn) when there is one."""

    prompt: str
    chosen: str
    rejected: str
    prompt_messages: list[dict] | None = None


def write_trl_jsonl(pairs: Iterable[JudgedPair], path: str | Path) -> int:
    """Write ``pairs`` to ``path`` and return how many rows were written.

    A pair with an empty response, or with ``chosen == rejected``, is left out (the count
    says so): it holds no preference to learn from, and parse_file would refuse it. A pair
    that is not text, has an empty prompt or a chat prompt without a final user turn raises
    ValueError naming the pair (1-based); the target is then left as it was.
    """
    pairs = list(pairs)  # the row form depends on every pair; judged pairs are few
    conversational = any(pair.prompt_messages for pair in pairs)
    rows = (_row(number, pair, conversational) for number, pair in enumerate(pairs, start=1))
    lines = (json.dumps(row, ensure_ascii=False) for row in rows if row is not None)
    return _write_lines_atomically(Path(path), lines)


def _row(number: int, pair: JudgedPair, conversational: bool) -> dict | None:
    # Text is stripped, as parse_file strips it, so that a written file reads back the same.
    prompt = _text(number, "prompt", pair.prompt)
    chosen = _text(number, "chosen", pair.chosen)
    rejected = _text(number, "rejected", pair.rejected)
    if not prompt:
        raise ValueError(f"pair {number}: the prompt is empty")
    if not chosen or not rejected or chosen == rejected:
        return None
    if not conversational:
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    messages = pair.prompt_messages or [{"role": "user", "content": prompt}]
    return {"prompt": _clean_messages(number, messages),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def _text(number: int, name: str, text: object) -> str:
    if not isinstance(text, str):
        raise ValueError(f"pair {number}: '{name}' must be text, got {type(text).__name__}")
    return text.strip()


def _clean_messages(number: int, messages: list[dict]) -> list[dict]:
    """Keep only role and content, and insist on what makes a prompt: a final user turn.
    The prompt text parse_file reads back is derived from these messages."""
    clean = []
    for message in messages:
        if not (isinstance(message, dict) and message.get("role") in ROLES
                and isinstance(message.get("content"), str)):
            raise ValueError(f"pair {number}: each prompt message needs a role (system, user "
                             f"or assistant) and text content, got {message!r}")
        clean.append({"role": message["role"], "content": message["content"].strip()})
    if not clean or clean[-1]["role"] != "user" or not clean[-1]["content"]:
        raise ValueError(f"pair {number}: 'prompt_messages' must end with a non-empty user turn")
    return clean


def _write_lines_atomically(path: Path, lines: Iterator[str]) -> int:
    # The temporary file sits next to the target: os.replace is only atomic on one filesystem.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for line in lines:
                out.write(line + "\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private (0600); an export should be as readable as any
        # file the user saves, or as the file it replaces.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)
    return count


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable. POSIX only: Windows cannot open a folder to fsync."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
