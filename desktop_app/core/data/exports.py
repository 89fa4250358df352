"""Writing judged pairs out as the preference data sets other tools read.

Formats (``FORMATS``), every one read back by ``parse_file``:

- ``trl``       TRL's standard form, one JSON object a line: ``prompt``/``chosen``/``rejected``
  strings. When any pair has a chat prompt, every row uses TRL's conversational form instead,
  because a file whose rows change type defeats ``datasets``' schema inference.
- ``trl-chat``  TRL's conversational form always: the prompt as messages ending with the user
  turn, each response as ``[{"role": "assistant", "content": ...}]``.
- ``hh``        Anthropic HH-RLHF: ``chosen``/``rejected`` are whole transcripts,
  ``"\\n\\nHuman: …\\n\\nAssistant: …"``, with no prompt field (HH has no system turn, so
  system messages are left out).
- ``csv``       a header ``prompt,chosen,rejected``; a chat prompt is written as its text.

Ties are left out unless ``include_ties``; then every row has a boolean ``tie`` (for a tie,
``chosen``/``rejected`` are simply the two responses), which tools that do not know the column
would read as a preference, hence off by default.

The file is replaced atomically: rows go to a temporary file in the same folder, which is
fsynced and then renamed over the target, so a crash or a bad pair leaves the old file intact.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from desktop_app.core.atomic_files import atomic_text_file
from desktop_app.core.data.preference_formats import hh_transcript
from desktop_app.core.data.row_fields import ROLES

if TYPE_CHECKING:
    from desktop_app.core.data.store import Store

__all__ = [
    "FORMATS",
    "ExportFormat",
    "ExportResult",
    "JudgedPair",
    "export_judgments",
    "judged_pairs_from_store",
    "write_pairs",
    "write_trl_jsonl",
]


@dataclass
class JudgedPair:
    """``chosen`` was preferred over ``rejected`` (or, with ``tie``, neither was); the
    ``prompt_messages`` are the chat form of the prompt (ending with a user turn), if any."""

    prompt: str
    chosen: str
    rejected: str
    prompt_messages: list[dict] | None = None
    tie: bool = False


@dataclass(frozen=True)
class ExportFormat:
    name: str
    label: str       # what a file dialog shows
    suffix: str      # the file name ending it is usually saved with


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("trl", "TRL preference JSONL", ".jsonl"),
    ExportFormat("trl-chat", "TRL conversational JSONL", ".jsonl"),
    ExportFormat("hh", "Anthropic HH-RLHF JSONL", ".jsonl"),
    ExportFormat("csv", "CSV (prompt, chosen, rejected)", ".csv"),
)}


@dataclass
class ExportResult:
    file: str
    format: str
    pairs: int            # rows written, ties included
    ties: int             # rows written that are ties (0 unless include_ties)
    unusable: int         # pairs left out: an empty response, or chosen == rejected


def write_trl_jsonl(pairs: Iterable[JudgedPair], path: str | Path) -> int:
    """Write ``pairs`` in TRL form to ``path`` and return how many rows were written."""
    return write_pairs(pairs, path, "trl").pairs


def write_pairs(pairs: Iterable[JudgedPair], path: str | Path, format: str = "trl", *,
                include_ties: bool = False) -> ExportResult:
    """Write ``pairs`` to ``path`` in ``format`` (a key of ``FORMATS``).

    A pair with an empty response, or with ``chosen == rejected``, is left out (``unusable``
    counts them): it holds no preference to learn from, and parse_file would refuse it. A pair
    that is not text, has an empty prompt or a chat prompt without a final user turn raises
    ValueError naming the pair (1-based); the target is then left as it was.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of "
                         f"{', '.join(FORMATS)}")
    # Every pair is checked before the first byte is written, and the row form depends on
    # all of them; judged pairs are few enough to hold.
    checked = list(_checked(pairs, include_ties))
    rows = [pair for pair in checked if pair is not None]
    if format == "csv":
        lines = _csv_lines(rows, include_ties)
    elif format == "hh":
        lines = _hh_lines(rows, include_ties)
    else:
        conversational = format == "trl-chat" or any(pair.prompt_messages for pair in rows)
        lines = _trl_lines(rows, include_ties, conversational)
    _write_lines_atomically(Path(path), lines)
    return ExportResult(str(path), format, pairs=len(rows), ties=sum(p.tie for p in rows),
                        unusable=len(checked) - len(rows))


def judged_pairs_from_store(store: Store) -> list[JudgedPair]:
    """The store's training judgments: winners, and ties (which ``write_pairs`` drops unless
    asked). ``preference_rows`` leaves out both-bad, skipped and pending pairs."""
    return [JudgedPair(r["prompt"], r["chosen"], r["rejected"], r["prompt_messages"], r["tie"])
            for r in store.preference_rows()]


def export_judgments(store: Store, path: str | Path, format: str = "trl", *,
                     include_ties: bool = False) -> ExportResult:
    """What the CLI's ``export`` and the Prompts page's *Export judgments…* both do."""
    return write_pairs(judged_pairs_from_store(store), path, format, include_ties=include_ties)


# ---------------------------------------------------------------------------------------
# Checking pairs, then one writer per format
# ---------------------------------------------------------------------------------------

def _checked(pairs: Iterable[JudgedPair], include_ties: bool) -> Iterator[JudgedPair | None]:
    """Each pair checked and stripped (as parse_file strips, so a written file reads back the
    same); None for a pair without a preference. Ties are dropped here unless wanted."""
    for number, pair in enumerate(pairs, start=1):
        if pair.tie and not include_ties:
            continue
        prompt = _text(number, "prompt", pair.prompt)
        chosen = _text(number, "chosen", pair.chosen)
        rejected = _text(number, "rejected", pair.rejected)
        if not prompt:
            raise ValueError(f"pair {number}: the prompt is empty")
        messages = _clean_messages(number, pair.prompt_messages) if pair.prompt_messages else None
        if not chosen or not rejected or chosen == rejected:
            yield None
            continue
        yield JudgedPair(prompt, chosen, rejected, messages, bool(pair.tie))


def _with_tie(row: dict, pair: JudgedPair, include_ties: bool) -> dict:
    return {**row, "tie": pair.tie} if include_ties else row


def _json_lines(rows: Iterable[dict]) -> Iterator[str]:
    # Non-ASCII text is written as itself: the file stays readable in any editor.
    return (json.dumps(row, ensure_ascii=False) for row in rows)


def _trl_lines(pairs: list[JudgedPair], include_ties: bool, conversational: bool) -> Iterator[str]:
    for pair in pairs:
        if conversational:
            row = {"prompt": pair.prompt_messages or [{"role": "user", "content": pair.prompt}],
                   "chosen": [{"role": "assistant", "content": pair.chosen}],
                   "rejected": [{"role": "assistant", "content": pair.rejected}]}
        else:
            row = {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
        yield from _json_lines([_with_tie(row, pair, include_ties)])


def _hh_lines(pairs: list[JudgedPair], include_ties: bool) -> Iterator[str]:
    for pair in pairs:
        row = {"chosen": hh_transcript(pair.prompt, pair.prompt_messages, pair.chosen),
               "rejected": hh_transcript(pair.prompt, pair.prompt_messages, pair.rejected)}
        yield from _json_lines([_with_tie(row, pair, include_ties)])


def _csv_lines(pairs: list[JudgedPair], include_ties: bool) -> Iterator[str]:
    if not pairs:
        return  # an empty file, as for the JSONL formats, rather than a lone header
    header = ["prompt", "chosen", "rejected"] + (["tie"] if include_ties else [])
    yield _csv_line(header)
    for pair in pairs:
        cells = [pair.prompt, pair.chosen, pair.rejected]
        yield _csv_line(cells + (["true" if pair.tie else "false"] if include_ties else []))


def _csv_line(cells: list[str]) -> str:
    """One CSV record; cells with commas, quotes or line breaks are quoted (a quoted cell may
    span lines, which every CSV reader, parse_file's included, understands)."""
    buffer = io.StringIO()
    # The csv module quotes a cell holding a character of the line terminator, so the
    # terminator must contain both \r and \n; it is cut off again, as the caller ends lines.
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue().removesuffix("\r\n")


def _text(number: int, name: str, text: object) -> str:
    if not isinstance(text, str):
        # ValueError like every other bad pair, so a caller has one exception to catch.
        raise ValueError(  # noqa: TRY004
            f"pair {number}: '{name}' must be text, got {type(text).__name__}")
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
    count = 0
    with atomic_text_file(path) as out:
        for line in lines:
            out.write(line + "\n")
            count += 1
    return count
