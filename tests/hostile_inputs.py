"""A corpus of hostile files to import, made on the fly (nothing large is committed).

Each ``Case`` is one file (or a thing that is not a file: a folder, a named pipe, a missing
path, a link loop) and what importing it must do:

- ``refused``: the whole file is refused with one sentence naming it; nothing is stored;
- ``imported`` rows are stored and ``malformed`` rows reported by line, the rest imported;
- ``nothing``: every row is malformed: reported, nothing stored, and a non-zero exit.

tests/test_hostile_inputs.py runs every case through ``rlhf-desk import`` and
tests/gui/test_hostile_imports.py through the Prompts page. To look at the files yourself:

    python tests/hostile_inputs.py /tmp/hostile
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str                 # the file name, extension included
    outcome: str              # refused | imported | nothing
    imported: int = 0         # rows stored (prompts or pairs)
    malformed: int = 0        # rows reported as malformed
    mentions: str = ""        # words the message (or one problem) must contain
    line: int | None = None   # the line a problem must name
    special: str = ""         # fifo | folder | missing | loop: not a regular file


def good(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"prompt": f"Good prompt number {start + i}"}) for i in range(n)]


def pair(i: int) -> dict:
    return {"prompt": f"Pair prompt {i}", "chosen": f"A fine answer {i}",
            "rejected": f"A poor answer {i}"}


def _cases() -> list[tuple[Case, bytes | None]]:
    rng = random.Random(0)
    junk = bytes(rng.randrange(256) for _ in range(4096)) + b"\xff\xfe\x00"
    lines3 = "First prompt\nSecond prompt\nThird prompt\n"
    deep = "[" * 100_000 + "]" * 100_000
    c: list[tuple[Case, bytes | None]] = [
        # -- empty and blank
        (Case("empty.txt", "refused", mentions="empty"), b""),
        (Case("empty.jsonl", "refused", mentions="empty"), b""),
        (Case("empty.csv", "refused", mentions="empty"), b""),
        (Case("empty.json", "refused", mentions="empty"), b""),
        (Case("blank-lines.txt", "refused", mentions="empty"), b"\n  \n\t\n\r\n"),
        # -- binary junk under each extension
        (Case("junk.txt", "refused", mentions="UTF-8"), junk),
        (Case("junk.jsonl", "refused", mentions="UTF-8"), junk),
        (Case("junk.json", "refused", mentions="UTF-8"), junk),
        (Case("junk.csv", "refused", mentions="UTF-8"), junk),
        (Case("junk.parquet", "refused", mentions="Parquet"), junk),
        (Case("nul-bytes.txt", "refused", mentions="NUL", line=2),
         b"a fine prompt\nthen \x00 a NUL\n"),
        # -- encodings and line ends
        (Case("utf8-bom.txt", "imported", imported=3), b"\xef\xbb\xbf" + lines3.encode()),
        (Case("utf16-le-bom.txt", "imported", imported=3),
         b"\xff\xfe" + lines3.encode("utf-16-le")),
        (Case("utf16-be-bom.jsonl", "imported", imported=2),
         b"\xfe\xff" + "\n".join(good(2)).encode("utf-16-be")),
        (Case("utf16-no-bom.txt", "refused", mentions="NUL"), lines3.encode("utf-16-le")),
        (Case("latin1.txt", "refused", mentions="UTF-8", line=2),
         "ok line\ncaf\u00e9 au lait\n".encode("latin-1")),
        (Case("crlf.txt", "imported", imported=3), lines3.replace("\n", "\r\n").encode()),
        (Case("crlf-bom.jsonl", "imported", imported=3),
         b"\xef\xbb\xbf" + "\r\n".join(good(3)).encode() + b"\r\n"),
        (Case("crlf.csv", "imported", imported=2),
         b'prompt\r\n"two\r\nlines"\r\nplain\r\n'),
        (Case("rtl-emoji.txt", "imported", imported=4),
         "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645\n"
         "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd\n"
         "\U0001f469\u200d\U0001f4bb writes code \U0001f680\n"
         "mixed \u202eRTL override\u202c text\n".encode()),
        # -- JSON that Python will not hold (defect: one bad line sank the whole file)
        (Case("lone-surrogate.jsonl", "imported", imported=1000, malformed=1,
              mentions="surrogate", line=501),
         "\n".join(good(500) + ['{"prompt": "bad \\ud800 text"}'] + good(500, 500)).encode()),
        (Case("deep-nesting.jsonl", "imported", imported=2, malformed=1, mentions="nested",
              line=2), "\n".join([good(1)[0], deep, good(1, 1)[0]]).encode()),
        (Case("deep-nesting.json", "refused", mentions="nested"), deep.encode()),
        (Case("huge-number.jsonl", "imported", imported=2, malformed=1, mentions="digits",
              line=2),
         "\n".join([good(1)[0], '{"prompt": ' + "9" * 5000 + "}", good(1, 1)[0]]).encode()),
        (Case("truncated.jsonl", "imported", imported=3, malformed=1, line=4),
         "\n".join(good(3) + ['{"prompt": "cut off in the mid']).encode()),
        (Case("truncated.json", "refused", mentions="not valid JSON"),
         ("[" + ",".join(good(3)))[:-5].encode()),
        (Case("object.json", "refused", mentions="array"), b'{"prompt": "one"}'),
        (Case("numbers.json", "nothing", malformed=3, mentions="object"), b"[1, 2, 3]"),
        # -- wrong types and chat messages
        (Case("wrong-types.jsonl", "nothing", malformed=6, mentions="must be text"),
         "\n".join(json.dumps({"prompt": v}) for v in (5, None, True, {}, 1.5, "")).encode()),
        (Case("chat-missing-role.jsonl", "imported", imported=1, malformed=1, line=1,
              mentions="role"),
         "\n".join([json.dumps({"messages": [{"content": "hi"}]}),
                    json.dumps({"messages": [{"role": "user", "content": "hi"}]})]).encode()),
        (Case("chat-bad-role.jsonl", "nothing", malformed=1, mentions="wizard"),
         json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode()),
        (Case("chat-no-user.jsonl", "nothing", malformed=1, mentions="no user turn"),
         json.dumps({"messages": [{"role": "system", "content": "be nice"}]}).encode()),
        (Case("not-objects.jsonl", "imported", imported=1, malformed=2, mentions="object"),
         "\n".join(["[1, 2]", '"just a string"', good(1)[0]]).encode()),
        (Case("mixed-kinds.jsonl", "imported", imported=2, malformed=1, line=3,
              mentions="one kind"),
         "\n".join(good(2) + [json.dumps(pair(0))]).encode()),
        # -- CSV
        (Case("huge-cell.csv", "imported", imported=2, malformed=1, line=2,
              mentions="characters long"),
         b'prompt\n"' + b"x" * 200_000 + b'"\nvalid row one\nvalid row two\n'),
        (Case("unclosed-quote.csv", "imported", imported=4, malformed=1, line=3,
              mentions="never closed"),
         b'prompt\nfirst\n"second, unclosed\nthird\nfourth\nfifth\n'),
        (Case("text-after-quote.csv", "imported", imported=1, malformed=1, line=2,
              mentions="closing quote"), b'prompt\n"quoted"tail\nfine\n'),
        (Case("very-wide.csv", "imported", imported=3),
         (",".join(f"c{i}" for i in range(5000)) + ",prompt\n"
          + "".join(",".join("" for _ in range(5000)) + f",wide {i}\n" for i in range(3)))
         .encode()),
        (Case("no-prompt-column.csv", "refused", mentions="header"), b"question\nwhat?\n"),
        (Case("semicolons.csv", "refused", mentions="';'"), b"prompt;id\nhello;1\n"),
        (Case("header-only.csv", "refused", mentions="no rows"), b"prompt\n"),
        (Case("chosen-only.csv", "refused", mentions="rejected"), b"prompt,chosen\na,b\n"),
        # -- size
        (Case("long-prompt.txt", "imported", imported=2, malformed=1, line=2,
              mentions="characters long"),
         b"short one\n" + b"y" * 300_000 + b"\nshort two\n"),
        (Case("many-lines.txt", "imported", imported=10_000),
         "".join(f"line number {i}\n" for i in range(10_000)).encode()),
        # -- preference pairs
        (Case("pairs.jsonl", "imported", imported=3),
         "\n".join(json.dumps(pair(i)) for i in range(3)).encode()),
        (Case("pairs-same-text.jsonl", "imported", imported=1, malformed=1, line=2,
              mentions="same text"),
         "\n".join([json.dumps(pair(0)), json.dumps(pair(1) | {"rejected": "A fine answer 1"})])
         .encode()),
        (Case("pairs-broken-hh.jsonl", "nothing", malformed=1, mentions="HH"),
         json.dumps({"chosen": "no transcript", "rejected": "here either"}).encode()),
        (Case("pairs-bad-scores.jsonl", "nothing", malformed=1, mentions="contradicts"),
         json.dumps(pair(0) | {"score_chosen": 1, "score_rejected": 9}).encode()),
        # -- names and things that are not files
        (Case("notes.docx", "refused", mentions="unsupported"), b"whatever"),
        (Case("no-extension", "refused", mentions="unsupported"), b"whatever"),
        (Case("a-folder.txt", "refused", mentions="folder", special="folder"), None),
        (Case("missing.txt", "refused", mentions="not found", special="missing"), None),
        (Case("pipe.txt", "refused", mentions="not a regular file", special="fifo"), None),
        (Case("loop.txt", "refused", mentions="could not be read", special="loop"), None),
    ]
    return c


CASES = [case for case, _ in _cases()]


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write every case into ``folder``; returns each case's path by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case, data in _cases():
        path = folder / case.name
        if case.special == "folder":
            path.mkdir(exist_ok=True)
        elif case.special == "fifo":
            if not path.exists():
                os.mkfifo(path)
        elif case.special == "loop":
            if not path.is_symlink():
                path.symlink_to(path.name)
        elif case.special != "missing":
            path.write_bytes(data)
        paths[case.name] = path
    return paths


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-inputs")
    for path in write_corpus(out).values():
        print(path)
