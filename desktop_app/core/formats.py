"""Reading the prompt and preference files a user imports.

One entry point, ``parse_file``. It understands:

- ``.txt``     one prompt per non-empty line;
- ``.jsonl``   one JSON object per line, ``.json`` a JSON array of such objects;
- ``.csv``     a header with a ``prompt`` column, plus ``chosen`` and ``rejected`` for pairs
  (or only ``chosen`` and ``rejected``, holding HH transcripts);
- ``.parquet`` a table with those columns, as data sets are published (needs pyarrow).

A row is a prompt (``prompt`` text, or chat ``messages``) or a preference pair in one of the
forms ``preference_formats`` reads (TRL standard and conversational, UltraFeedback, HH-RLHF).

A file holds one kind of row. A problem that spoils the whole file (missing, not UTF-8,
unknown type, no ``prompt`` column, empty) raises ``FormatError``; a bad row becomes an
``ImportProblem`` naming its line (a Parquet row's 1-based number), and the good rows around it
are still returned, so one typo never costs the user a thousand-line import. Duplicates are
kept: the store skips and counts them, where the user can see it happen.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .preference_formats import PairRecord, pair_from_row
from .row_fields import (
    ROLES,
    BadRow,
    conversation_text,
    kind_of,
    messages_field,
    text_field,
)

__all__ = [
    "ROLES",
    "FormatError",
    "ImportProblem",
    "PairRecord",
    "ParsedFile",
    "PromptRecord",
    "parse_file",
]


# ---------------------------------------------------------------------------------------
# What parsing returns
# ---------------------------------------------------------------------------------------

@dataclass
class PromptRecord:
    """A prompt. ``messages`` is its chat form, ending with the last user turn, when the file
    gave one; ``line`` is where the row starts in the file (1-based)."""

    text: str
    messages: list[dict] | None
    line: int


@dataclass
class ImportProblem:
    """A row that was skipped. ``file`` is the file's name as the user sees it."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.reason}"


@dataclass
class ParsedFile:
    path: str
    prompts: list[PromptRecord] = field(default_factory=list)
    pairs: list[PairRecord] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)


class FormatError(Exception):
    """The whole file cannot be imported. The message starts with the file's name."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(path).name}: {reason}")


# ---------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------

def parse_file(path: str | Path) -> ParsedFile:
    """Read ``path`` into prompts or pairs plus the problems found on the way."""
    path = Path(path)
    data = _read_bytes(path)
    suffix = path.suffix.lower()
    if suffix != ".parquet" and suffix not in _READERS:
        raise FormatError(path, f"unsupported file type '{path.suffix or '(no extension)'}'; "
                                "use .txt, .jsonl, .json, .csv or .parquet")
    rows = _Rows(path)
    if suffix == ".parquet":
        _read_parquet(data, rows)
        return rows.result
    text = _decode(path, data)
    if not text.strip():
        raise FormatError(path, "the file is empty")
    _READERS[suffix](text, rows)
    return rows.result


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise FormatError(path, "is a folder, not a file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FormatError(path, f"file not found ({path})") from None
    except OSError as e:
        raise FormatError(path, f"could not be read ({e.strerror or e})") from None


def _decode(path: Path, data: bytes) -> str:
    """The file as text: UTF-8, with the byte-order mark some editors add removed."""
    bom = b"\xef\xbb\xbf"
    body = data.removeprefix(bom)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body.count(b"\n", 0, e.start) + 1
        hint = " (it looks like UTF-16)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise FormatError(path, f"not UTF-8 text{hint}: byte 0x{body[e.start]:02x} on line "
                                f"{line} cannot be decoded; save the file as UTF-8") from None


# ---------------------------------------------------------------------------------------
# One reader per file type. Each walks its text and hands rows, with their line, to _Rows.
# ---------------------------------------------------------------------------------------

def _read_txt(text: str, rows: _Rows) -> None:
    # Backslash sequences stay literal: a prompt about "\n" in C must survive the import.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            rows.add(number, {"prompt": line}, kind="prompts")


def _read_jsonl(text: str, rows: _Rows) -> None:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            rows.problem(number, f"not valid JSON ({e.msg} at column {e.colno})")
            continue
        rows.add(number, value)


def _read_json(text: str, rows: _Rows) -> None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        # Many ".json" files are really JSON Lines; those get the line-by-line treatment,
        # where one bad line does not sink the rest.
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            _read_jsonl(text, rows)
            return
        raise FormatError(rows.path, f"not valid JSON: {e.msg} at line {e.lineno}, "
                                     f"column {e.colno}") from None
    if not isinstance(value, list):
        raise FormatError(rows.path, f"expected a JSON array of objects, found {kind_of(value)}")
    if not value:
        raise FormatError(rows.path, "the JSON array is empty")
    for number, item in _array_items_with_lines(text):
        rows.add(number, item)


def _array_items_with_lines(text: str) -> Iterator[tuple[int, Any]]:
    """The items of a JSON array that is already known to be valid, each with the line it
    starts on, so a problem in item 40 points at the line the user can find."""
    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")
    pos = space.match(text, 0).end() + 1  # just past "["
    line, counted_to = 1, 0
    while True:
        pos = space.match(text, pos).end()
        if text[pos] == "]":
            return
        value, end = decoder.raw_decode(text, pos)
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        yield line, value
        pos = space.match(text, end).end()
        if text[pos] == ",":
            pos += 1


def _read_csv(text: str, rows: _Rows) -> None:
    reader = csv.reader(io.StringIO(text, newline=""))
    columns: dict[str, int] | None = None
    width, kind = 0, "prompts"
    end_of_previous = 0
    try:
        for cells in reader:
            # A quoted cell may span lines; the row is reported where it starts.
            start, end_of_previous = end_of_previous + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if columns is None:
                columns, kind = _csv_header(cells, start, rows.path)
                width = len(cells)
                continue
            # Empty trailing cells are harmless (spreadsheets add them); text beyond the
            # header usually means an unquoted comma split a cell.
            if any(cell.strip() for cell in cells[width:]):
                rows.problem(start, f"the row has {len(cells)} cells but the header has "
                                    f"{width} (does a cell with a comma lack quotes?)")
                continue
            # Only cells the row has become fields, so a short row reads as "missing".
            row = {name: cells[i].replace("\r\n", "\n") for name, i in columns.items()
                   if i < len(cells)}
            rows.add(start, row, kind=kind)
    except csv.Error as e:
        rows.problem(reader.line_num, f"CSV error ({e}); the rest of the file was not read")
    if columns is None:
        raise FormatError(rows.path, "the file is empty")
    if not rows.result.prompts and not rows.result.pairs and not rows.result.problems:
        raise FormatError(rows.path, "has a header but no rows")


# Columns a pairs CSV may have besides the responses (see preference_formats).
_CSV_PAIR_COLUMNS = ("prompt", "chosen", "rejected", "score_chosen", "score_rejected", "tie")


def _csv_header(cells: list[str], line: int, path: str) -> tuple[dict[str, int], str]:
    """Map the columns this module reads to their positions, and say which kind of file."""
    names = [cell.strip().lower() for cell in cells]
    for name in _CSV_PAIR_COLUMNS:
        if names.count(name) > 1:
            raise FormatError(path, f"the header has more than one '{name}' column")
    has_chosen, has_rejected = "chosen" in names, "rejected" in names
    if has_chosen != has_rejected:
        present, absent = ("chosen", "rejected") if has_chosen else ("rejected", "chosen")
        raise FormatError(path, f"the header has a '{present}' column but no '{absent}' "
                                "column; a pairs file needs both")
    # Without a prompt column, the responses must be HH transcripts that hold the prompt.
    if "prompt" not in names and not has_chosen:
        found = ", ".join(repr(cell) for cell in cells)
        hint = (" (is it separated by ';' or tabs instead of commas?)"
                if len(cells) == 1 and re.search(r"[;\t]", cells[0]) else "")
        raise FormatError(path, f"the first row (line {line}) must be a header with a 'prompt' "
                                "column (or 'chosen' and 'rejected' columns holding HH "
                                f"transcripts); found {found}{hint}")
    wanted = _CSV_PAIR_COLUMNS if has_chosen else ("prompt",)
    columns = {name: names.index(name) for name in wanted if name in names}
    return columns, "pairs" if has_chosen else "prompts"


def _read_parquet(data: bytes, rows: _Rows) -> None:
    """Rows of a Parquet table, numbered from 1. Read in batches: published preference sets
    run to hundreds of thousands of rows, and their Python form is several times larger."""
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise FormatError(rows.path, "reading Parquet needs pyarrow: pip install pyarrow") from None
    if not data:
        raise FormatError(rows.path, "the file is empty")
    number = 0
    try:
        table = pq.ParquetFile(io.BytesIO(data))
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                rows.add(number, row)
    except (pyarrow.ArrowException, OSError, ValueError) as e:
        where = f" at row {number + 1}" if number else ""
        raise FormatError(rows.path, f"not a readable Parquet file{where} ({e})") from None
    if number == 0:
        raise FormatError(rows.path, "the table has no rows")


_READERS: dict[str, Callable[[str, _Rows], None]] = {
    ".txt": _read_txt, ".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
}


# ---------------------------------------------------------------------------------------
# Turning a row into a record, and holding the file to one kind of row
# ---------------------------------------------------------------------------------------

class _Rows:
    """Collects records and problems. The first valid row fixes the file's kind, because a
    file of prompts with a stray pair in it (or the reverse) is almost always a mistake."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.name = path.name
        self.result = ParsedFile(path=str(path), prompts=[], pairs=[], problems=[])
        self.kind: str | None = None
        self.kind_line = 0

    def problem(self, line: int, reason: str) -> None:
        self.result.problems.append(ImportProblem(self.name, line, reason))

    def add(self, line: int, row: Any, kind: str | None = None) -> None:
        """Add one row; ``kind`` is given when the file type already decided it (CSV, txt)."""
        if not isinstance(row, dict):
            self.problem(line, f"expected a JSON object, found {kind_of(row)}")
            return
        kind = kind or _row_kind(row)
        if kind is None:
            found = ", ".join(repr(key) for key in row) or "no fields"
            self.problem(line, "needs a 'prompt' or 'messages' field, or 'prompt', 'chosen' "
                               f"and 'rejected' for a preference pair (found {found})")
            return
        if self.kind is not None and kind != self.kind:
            self.problem(line, f"this row holds {_KIND_NAMES[kind]} but the file holds "
                               f"{_KIND_NAMES[self.kind]} (from line {self.kind_line}); "
                               "one file must hold one kind")
            return
        try:
            record = pair_from_row(row, line) if kind == "pairs" else _prompt(row, line)
        except BadRow as e:
            self.problem(line, str(e))
            return
        if self.kind is None:
            self.kind, self.kind_line = kind, line
        if isinstance(record, PairRecord):
            self.result.pairs.append(record)
        else:
            self.result.prompts.append(record)


_KIND_NAMES = {"prompts": "a prompt", "pairs": "a preference pair"}


def _row_kind(row: dict) -> str | None:
    if "chosen" in row or "rejected" in row:
        return "pairs"
    if "prompt" in row or "messages" in row:
        return "prompts"
    return None


def _prompt(row: dict, line: int) -> PromptRecord:
    if "prompt" in row and "messages" in row:
        raise BadRow("has both 'prompt' and 'messages'; keep one")
    if "messages" in row or isinstance(row.get("prompt"), list):
        # Chat data may carry the assistant's answer too: the prompt is everything up to
        # and including the last user turn, which is what a model would be asked.
        name = "messages" if "messages" in row else "prompt"
        messages = messages_field(row[name], name)
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        if last_user < 0:
            raise BadRow(f"'{name}' has no user turn")
        messages = messages[:last_user + 1]
        return PromptRecord(conversation_text(messages, name), messages, line)
    return PromptRecord(text_field(row, "prompt"), None, line)
