"""Import a prompts or preference-pairs file into the store, all or nothing.

Parsing (``formats.parse_file``) reports malformed rows by line and keeps the valid ones;
this module writes the valid ones in one transaction, skipping and counting duplicates. If
anything fails part-way (a full disk, a bug), the transaction rolls back and the workspace is
exactly as it was: a file is never half-imported.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from itertools import groupby
from pathlib import Path

from desktop_app.core.data.formats import DEFAULT_MAX_CHARS, ImportProblem, PairRecord, parse_file
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.wording import count


@dataclass
class ImportReport:
    file: str
    kind: str              # prompts | pairs | empty
    imported: int = 0      # prompts added, or pairs added
    skipped: int = 0       # duplicates already in the workspace (or repeated in the file)
    malformed: int = 0
    problems: list[ImportProblem] = field(default_factory=list)
    ties: int = 0          # of the pairs added, how many are ties (a file's ``tie`` column)

    def summary(self) -> str:
        what = "pair" if self.kind == "pairs" else "prompt"
        ties = f" ({count(self.ties, 'tie')})" if self.ties else ""
        return (f"{Path(self.file).name}: imported {count(self.imported, what)}{ties}, skipped "
                f"{count(self.skipped, 'duplicate')}, {self.malformed} malformed")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["problems"] = [str(p) for p in self.problems]
        if self.kind != "pairs":
            del data["ties"]  # only pairs can be ties
        return data


def import_file(store: Store, path: str | Path, *, rng: random.Random | None = None,
                max_chars: int = DEFAULT_MAX_CHARS) -> ImportReport:
    """Parse ``path`` and add what is valid. Raises ``formats.FormatError`` for unusable files.
    Prompts and responses over ``max_chars`` characters are reported as malformed."""
    parsed = parse_file(path, max_chars=max_chars)
    # A file name that is not valid UTF-8 (possible on Linux) is kept readable, not refused.
    source = Path(path).name.encode("utf-8", "backslashreplace").decode("utf-8")
    report = ImportReport(file=str(path), kind="pairs" if parsed.pairs else
                          "prompts" if parsed.prompts else "empty",
                          malformed=len(parsed.problems), problems=list(parsed.problems))
    # One transaction for the whole file; the store's own transactions nest inside it.
    with store.db.atomic():
        if parsed.prompts:
            added = store.add_prompts([(p.text, p.messages) for p in parsed.prompts],
                                      source=source)
            report.imported, report.skipped = added.added, added.duplicates
        if parsed.pairs:
            report.imported, report.skipped, report.ties = _import_pairs(
                store, parsed.pairs, source, rng)
    return report


def _import_pairs(store: Store, pairs: list[PairRecord], source: str,
                  rng: random.Random | None) -> tuple[int, int, int]:
    """Add pairs as judged comparisons: a = chosen with choice 'a', or a tie. Returns
    (added, skipped as duplicates, ties among the added)."""
    store.add_prompts([(p.prompt, p.prompt_messages) for p in pairs], source=source)
    ids = {row["text"]: row["id"] for row in store.db.query("SELECT id, text FROM prompts")}
    model = f"imported:{source}"
    new, seen, skipped = [], set(), 0
    for pair in pairs:
        key = (pair.prompt, pair.chosen, pair.rejected)
        prompt_id = ids[pair.prompt]
        if key in seen or store.has_pair(prompt_id, pair.chosen, pair.rejected):
            skipped += 1
            continue
        seen.add(key)
        new.append(("tie" if pair.tie else "a",
                    (prompt_id, GenerationIn(pair.chosen, model, source="imported"),
                     GenerationIn(pair.rejected, model, source="imported"))))
    # add_pairs takes one choice per call; runs of equal choices keep the file's order, which
    # an export (oldest comparison first) then reproduces.
    for choice, run in groupby(new, key=lambda item: item[0]):
        store.add_pairs([triple for _, triple in run], rng=rng, choice=choice, source="imported")
    return len(new), skipped, sum(choice == "tie" for choice, _ in new)
