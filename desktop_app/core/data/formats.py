"""Reading the prompt and preference files a user imports.

One entry point, ``parse_file``. It understands:

- ``.txt``     one prompt per non-empty line;
- ``.jsonl``   one JSON object per line, ``.json`` a JSON array of such objects;
- ``.csv``     a header with a ``prompt`` column, plus ``chosen`` and ``rejected`` for pairs
  (or only ``chosen`` and ``rejected``, holding HH transcripts);
- ``.parquet`` a table with those columns, as data sets are published (needs pyarrow).

A row is a prompt (``prompt`` text, or chat ``messages``) or a preference pair in one of the
forms ``preference_formats`` reads (TRL standard and conversational, UltraFeedback, HH-RLHF).

A file holds one kind of row. A problem that spoils the whole file (missing, not a regular
file, not UTF-8 or UTF-16 text, binary, unknown type, no ``prompt`` column, empty) raises
``FormatError``; a bad row becomes an ``ImportProblem`` naming its line (a Parquet row's 1-based
number), and the good rows around it are still returned, so one typo never costs the user a
thousand-line import. Bad rows include JSON that Python cannot hold (nesting too deep, numbers
of thousands of digits, lone surrogates such as ``"\ud800"``), CSV quotes that never close, and
texts longer than ``max_chars`` (one prompt of 50 MB would otherwise cost gigabytes the moment
it is tokenised). Duplicates are kept: the store skips and counts them, where the user can see
it happen.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop_app.core.data.preference_formats import PairRecord, pair_from_row
from desktop_app.core.data.row_fields import (
    ROLES,
    BadRow,
    conversation_text,
    kind_of,
    messages_field,
    text_field,
)
from desktop_app.core.errors import UserError

__all__ = [
    "DEFAULT_MAX_CHARS",
    "ROLES",
    "FormatError",
    "ImportProblem",
    "PairRecord",
    "ParsedFile",
    "PromptRecord",
    "parse_file",
]


# The longest prompt or response an import takes, in characters (about 25,000 tokens: more
# than most local models' context). ``rlhf-desk import --max-chars`` changes it.
DEFAULT_MAX_CHARS = 100_000
# The largest file read at all: it is read into memory whole.
MAX_FILE_BYTES = 2 * 2**30

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


class FormatError(UserError):
    """The whole file cannot be imported. The message starts with the file's name."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(path).name}: {reason}")


# ---------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------

def parse_file(path: str | Path, *, max_chars: int = DEFAULT_MAX_CHARS) -> ParsedFile:
    """Read ``path`` into prompts or pairs plus the problems found on the way. A prompt or
    response longer than ``max_chars`` characters is reported, not returned."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".parquet" and suffix not in _READERS and not path.is_dir():
        raise FormatError(path, f"unsupported file type '{path.suffix or '(no extension)'}'; "
                                "use .txt, .jsonl, .json, .csv or .parquet")
    data = _read_bytes(path)
    rows = _Rows(path, max_chars)
    if suffix == ".parquet":
        _read_parquet(data, rows)
        return rows.result
    text = _decode(path, data)
    if not text.strip():
        raise FormatError(path, "the file is empty")
    _READERS[suffix](text, rows)
    return rows.result


def _read_bytes(path: Path) -> bytes:
    """The file's bytes. Only a regular file is opened: reading a named pipe or a device
    would wait for ever, or never end."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FormatError(path, f"file not found ({path})") from None
    except OSError as e:
        raise FormatError(path, f"could not be read ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise FormatError(path, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise FormatError(path, "is not a regular file (a pipe, socket or device); save the "
                                "data to a file and import that")
    if info.st_size > MAX_FILE_BYTES:
        raise FormatError(path, f"is {info.st_size / 2**30:.1f} GB; the largest file RLHF Desk "
                                f"imports is {MAX_FILE_BYTES // 2**30} GB, so split it")
    try:
        return path.read_bytes()
    except OSError as e:
        raise FormatError(path, f"could not be read ({e.strerror or e})") from None
    except MemoryError:
        raise FormatError(path, "is too large to read into memory; split it") from None


_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def _decode(path: Path, data: bytes) -> str:
    """The file as text: UTF-8, or UTF-16 when it starts with UTF-16's byte-order mark (as
    Windows tools save "Unicode text"); the mark itself is removed."""
    encoding, body = "utf-8", data
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, body = name, data[len(bom):]
            break
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as e:
        if encoding != "utf-8":
            raise FormatError(path, f"starts like UTF-16 text but is not: bytes from offset "
                                    f"{e.start} cannot be decoded") from None
        line = body.count(b"\n", 0, e.start) + 1
        raise FormatError(path, f"not UTF-8 text: byte 0x{body[e.start]:02x} on line "
                                f"{line} cannot be decoded; save the file as UTF-8") from None
    nul = text.find("\x00")
    if nul >= 0:
        # Text files never hold NUL; binary files and UTF-16 without its mark do.
        line = text.count("\n", 0, nul) + 1
        raise FormatError(path, f"holds a NUL character on line {line}: it looks like a binary "
                                "file (or UTF-16 text without a byte-order mark); save it as "
                                "UTF-8 text")
    return text


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
        except ValueError as e:
            rows.problem(number, _json_problem(e))
            continue
        except RecursionError:
            rows.problem(number, _TOO_DEEP)
            continue
        rows.add(number, value)


_TOO_DEEP = "JSON nested too deeply to read (thousands of brackets)"


def _json_problem(e: ValueError) -> str:
    """What is wrong with one line (or file) of JSON that Python would not load."""
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg} at column {e.colno})"
    if "digits" in str(e):  # int(): "Exceeds the limit (4300 digits) for integer string ..."
        return "holds a number with thousands of digits, which cannot be read"
    return f"not valid JSON ({e})"


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
    except ValueError as e:
        raise FormatError(rows.path, _json_problem(e)) from None
    except RecursionError:
        raise FormatError(rows.path, _TOO_DEEP) from None
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
    """Rows of a CSV file, each reported at the line it starts on (a quoted cell may span
    lines). A row the csv module cannot read (a quote that never closes, text after a closing
    quote) is reported, and reading starts again on the line after the one that row began on:
    an unclosed quote would otherwise swallow the rest of the file into one cell."""
    lines = io.StringIO(text, newline="").readlines()
    columns: dict[str, int] | None = None
    width, kind = 0, "prompts"
    old_limit = csv.field_size_limit()
    # Cells of any size are read, so that an over-long one is reported with its line (by the
    # length check) instead of ending the import at csv's 131,072 characters.
    csv.field_size_limit(max(old_limit, MAX_FILE_BYTES))
    base = 0  # lines before the ones the current reader reads
    try:
        while base < len(lines):
            reader = csv.reader((lines[i] for i in range(base, len(lines))), strict=True)
            end_of_previous = base
            try:
                for cells in reader:
                    start, end_of_previous = end_of_previous + 1, base + reader.line_num
                    if not any(cell.strip() for cell in cells):
                        continue
                    if columns is None:
                        columns, kind = _csv_header(cells, start, rows.path)
                        width = len(cells)
                        continue
                    # Empty trailing cells are harmless (spreadsheets add them); text beyond
                    # the header usually means an unquoted comma split a cell.
                    if any(cell.strip() for cell in cells[width:]):
                        rows.problem(start, f"the row has {len(cells)} cells but the header "
                                            f"has {width} (does a cell with a comma lack "
                                            "quotes?)")
                        continue
                    # Only cells the row has become fields, so a short row reads as "missing".
                    row = {name: cells[i].replace("\r\n", "\n") for name, i in columns.items()
                           if i < len(cells)}
                    rows.add(start, row, kind=kind)
                break
            except csv.Error as e:
                start = end_of_previous + 1
                if columns is None:
                    raise FormatError(rows.path, f"the header (line {start}) is not valid CSV: "
                                                 f"{_csv_problem(e)}") from None
                rows.problem(start, _csv_problem(e))
                base = start  # 0-based index of the line after the row's first line
    finally:
        csv.field_size_limit(old_limit)
    if columns is None:
        raise FormatError(rows.path, "the file is empty")
    if not rows.result.prompts and not rows.result.pairs and not rows.result.problems:
        raise FormatError(rows.path, "has a header but no rows")


def _csv_problem(e: csv.Error) -> str:
    text = str(e)
    if "unexpected end of data" in text:
        return ("a quote opened on this line is never closed (it would run to the end of the "
                "file); the lines after it were read as rows of their own")
    if "expected after" in text:
        return ("text follows the closing quote of a cell; put the whole cell in quotes and "
                'double each quote inside it ("")')
    return f"not valid CSV ({text})"


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

    def __init__(self, path: Path, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.path = str(path)
        self.name = path.name
        self.max_chars = max_chars
        self.result = ParsedFile(path=str(path), prompts=[], pairs=[], problems=[])
        self.kind: str | None = None
        self.kind_line = 0

    def problem(self, line: int, reason: str) -> None:
        self.result.problems.append(ImportProblem(self.name, line, _printable(reason)))

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
            _check_texts(record, self.max_chars)
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


def _check_texts(record: PromptRecord | PairRecord, max_chars: int) -> None:
    """Every text of a record can be stored (UTF-8 has no lone surrogates, which JSON's
    "\\ud800" escapes can make) and is at most ``max_chars`` long."""
    if isinstance(record, PairRecord):
        texts = [("prompt", record.prompt), ("chosen", record.chosen),
                 ("rejected", record.rejected)]
        messages = record.prompt_messages
    else:
        texts, messages = [("prompt", record.text)], record.messages
    texts += [(f"{m['role']} message", m["content"]) for m in messages or ()]
    for name, text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRow(f"'{name}' holds an invalid character (a lone UTF-16 surrogate such "
                         "as \\ud800), which cannot be stored as text") from None
        if len(text) > max_chars:
            raise BadRow(f"'{name}' is {len(text):,} characters long, over the limit of "
                         f"{max_chars:,} (rlhf-desk import --max-chars raises it)")


def _printable(reason: str, limit: int = 300) -> str:
    """A problem's text as it can be printed anywhere: bounded, one line, no surrogates
    (reasons quote the file's own words, such as an unknown role)."""
    text = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    text = " ".join(text.split("\n"))
    return text if len(text) <= limit else text[:limit - 1] + "…"


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
