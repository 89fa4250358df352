"""Import a prompts or preference-pairs file into the store, all or nothing.

Parsing (``formats.parse_file``) reports malformed rows by line and keeps the valid ones;
this module writes the valid ones in one transaction, skipping and counting duplicates.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .formats import ImportProblem, parse_file
from .store import GenerationIn, Store


@dataclass
class ImportReport:
    file: str
    kind: str              # prompts | pairs | empty
    imported: int = 0      # prompts added, or pairs added
    skipped: int = 0       # duplicates already in the workspace (or repeated in the file)
    malformed: int = 0
    problems: list[ImportProblem] = field(default_factory=list)

    def summary(self) -> str:
        what = "pairs" if self.kind == "pairs" else "prompts"
        text = (f"{Path(self.file).name}: imported {self.imported} {what}, skipped "
                f"{self.skipped} duplicates, {self.malformed} malformed")
        return text

    def to_dict(self) -> dict:
        data = asdict(self)
        data["problems"] = [str(p) for p in self.problems]
        return data


def import_file(store: Store, path: str | Path, *, rng: random.Random | None = None) -> ImportReport:
    """Parse ``path`` and add what is valid. Raises ``formats.FormatError`` for unusable files."""
    parsed = parse_file(path)
    source = Path(path).name
    report = ImportReport(file=str(path), kind="pairs" if parsed.pairs else
                          "prompts" if parsed.prompts else "empty",
                          malformed=len(parsed.problems), problems=list(parsed.problems))
    if parsed.prompts:
        added = store.add_prompts([(p.text, p.messages) for p in parsed.prompts], source=source)
        report.imported, report.skipped = added.added, added.duplicates
    if parsed.pairs:
        report.imported, report.skipped = _import_pairs(store, parsed.pairs, source, rng)
    return report


def _import_pairs(store: Store, pairs: list, source: str, rng: random.Random | None) -> tuple[int, int]:
    # Imported pairs are stored as already-judged comparisons: a = chosen, choice 'a'.
    with store.db.atomic():
        store.add_prompts([(p.prompt, p.prompt_messages) for p in pairs], source=source)
        ids = {row["text"]: row["id"] for row in store.db.query("SELECT id, text FROM prompts")}
        new, seen, skipped = [], set(), 0
        for pair in pairs:
            key = (pair.prompt, pair.chosen, pair.rejected)
            prompt_id = ids[pair.prompt]
            if key in seen or store.has_pair(prompt_id, pair.chosen, pair.rejected):
                skipped += 1
                continue
            seen.add(key)
            model = f"imported:{source}"
            new.append((prompt_id, GenerationIn(pair.chosen, model, source="imported"),
                        GenerationIn(pair.rejected, model, source="imported")))
        store.add_pairs(new, rng=rng, choice="a", source="imported")
    return len(new), skipped
