"""The judgment history: past judgments listed, searched, changed and deleted.

What the Judge page's History tab reads and writes (``gui/judge/history.py``). Its scope is
the Judge page's own queue, the training pairs (judged here or imported); a blind evaluation's
judgments stay with their evaluation, whose result they are.

- ``list_judgments`` / ``count_judgments``: newest first, a page at a time (LIMIT/OFFSET in SQL
  on the ``comparisons_judged`` index), filtered by verdict and source, searched with LIKE over
  the prompt, both responses and the note (every word must occur somewhere).
- ``change_verdict``, ``change_note``, ``delete_judgment``: each one transaction holding the
  change and its row in ``judgment_changes`` (``store.record_judgment_change``), so the old
  verdict and note stay readable (``judgment_changes``).

Training reads the comparisons themselves (``Store.preference_rows``), so it always sees the
latest verdict; a deleted judgment is a pending pair, which no training reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from desktop_app.core.data.store import CHOICES, PairView, Store, StoreError, record_judgment_change

# Filters by verdict: a stored choice, a side as the person saw it, or any winner.
VERDICT_FILTERS = (*CHOICES, "left", "right", "winner")
SOURCES = ("generated", "imported")
PAGE = 200
SNIPPET = 300  # characters of the prompt and note a list row carries


@dataclass(frozen=True)
class HistoryFilter:
    verdict: str | None = None  # None for all, else one of VERDICT_FILTERS
    source: str | None = None   # None for all, else 'generated' (judged here) or 'imported'
    search: str = ""            # words that must each occur in the prompt, a response or the note


@dataclass(frozen=True)
class JudgmentRow:
    """One line of the history: enough to list it, without the long texts."""

    comparison_id: int
    judged_at: str | None
    choice: str
    side: str  # left | right | tie | both_bad | skip: the verdict as the person saw the pair
    prompt: str  # the first SNIPPET characters
    note: str | None  # the first SNIPPET characters
    source: str
    changes: int  # verdict and note changes since it was first judged


@dataclass(frozen=True)
class Judgment:
    """A judgment in full: the pair in its display order, and what happened to it."""

    pair: PairView
    judged_at: str | None
    seconds: float | None
    source: str
    changes: list[dict] = field(default_factory=list)  # judgment_changes rows, newest first

    @property
    def side(self) -> str | None:
        return side_of(self.pair.choice, self.pair.left_is_a)


def side_of(choice: str | None, left_is_a: bool) -> str | None:
    """The stored choice (a/b/…) as the side the person picked (left/right/…)."""
    if choice == "a":
        return "left" if left_is_a else "right"
    if choice == "b":
        return "right" if left_is_a else "left"
    return choice


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(flt: HistoryFilter) -> tuple[str, list, bool]:
    """The WHERE clause of a filter, its parameters, and whether it needs the responses."""
    # ``choice IS NOT NULL`` stays literal: with the index on (eval_run_id, judged_at) SQLite
    # walks the judged rows newest first and stops at LIMIT.
    clauses = ["c.eval_run_id IS NULL", "c.choice IS NOT NULL"]
    params: list = []
    verdict = flt.verdict
    if verdict is not None and verdict not in VERDICT_FILTERS:
        raise StoreError(f"unknown verdict filter {verdict!r}")
    if verdict in CHOICES:
        clauses.append("c.choice = ?")
        params.append(verdict)
    elif verdict == "winner":
        clauses.append("c.choice IN ('a', 'b')")
    elif verdict in ("left", "right"):
        # The left response won when the choice names the generation shown on the left.
        same = "=" if verdict == "left" else "!="
        clauses.append("c.choice IN ('a', 'b') AND "
                       f"(c.choice = 'a') {same} (c.left_generation_id = c.generation_a_id)")
    if flt.source is not None:
        if flt.source not in SOURCES:
            raise StoreError(f"unknown source {flt.source!r}")
        clauses.append("c.source = ?")
        params.append(flt.source)
    words = flt.search.split()
    for word in words:
        pattern = _like(word)
        clauses.append("(p.text LIKE ? ESCAPE '\\' OR ga.text LIKE ? ESCAPE '\\' "
                       "OR gb.text LIKE ? ESCAPE '\\' OR c.note LIKE ? ESCAPE '\\')")
        params += [pattern] * 4
    return " AND ".join(clauses), params, bool(words)


def _from(texts: bool, prompt: bool = True) -> str:
    """The comparisons, with their prompt and (``texts``, for a search) both responses."""
    joins = "FROM comparisons c"
    if prompt or texts:
        joins += " JOIN prompts p ON p.id = c.prompt_id"
    if texts:
        joins += (" JOIN generations ga ON ga.id = c.generation_a_id"
                  " JOIN generations gb ON gb.id = c.generation_b_id")
    return joins


def _select(store: Store, where: str, params: list, texts: bool,
            tail: str = "", tail_params: tuple = ()) -> list[JudgmentRow]:
    rows = store.db.execute(
        "SELECT c.id, c.judged_at, c.choice, c.left_generation_id = c.generation_a_id, "
        f"  c.source, substr(p.text, 1, {SNIPPET}), substr(c.note, 1, {SNIPPET}), "
        "  (SELECT COUNT(*) FROM judgment_changes j "
        "   WHERE j.comparison_id = c.id AND j.kind != 'undo') "
        f"{_from(texts)} WHERE {where} {tail}", [*params, *tail_params]).fetchall()
    return [JudgmentRow(cid, judged_at, choice, side_of(choice, bool(left_is_a)), prompt, note,
                        source, changes)
            for cid, judged_at, choice, left_is_a, source, prompt, note, changes in rows]


def list_judgments(store: Store, flt: HistoryFilter = HistoryFilter(), *, offset: int = 0,
                   limit: int = PAGE) -> list[JudgmentRow]:
    """A page of judgments, newest first (by when they were judged, then by id)."""
    where, params, texts = _where(flt)
    return _select(store, where, params, texts,
                   "ORDER BY c.judged_at DESC, c.id DESC LIMIT ? OFFSET ?",
                   (max(0, int(limit)), max(0, int(offset))))


def judgment_row(store: Store, comparison_id: int) -> JudgmentRow | None:
    """One judgment as a list row (after a change), or None when it is no longer judged."""
    where, params, _ = _where(HistoryFilter())
    rows = _select(store, f"{where} AND c.id = ?", [*params, comparison_id], False)
    return rows[0] if rows else None


def count_judgments(store: Store, flt: HistoryFilter = HistoryFilter()) -> int:
    """How many judgments the filter matches (a search reads every text: ~0.1 s for 20k)."""
    where, params, texts = _where(flt)
    return store.db.execute(f"SELECT COUNT(*) {_from(texts, prompt=False)} WHERE {where}",
                            params).fetchone()[0]


def get_judgment(store: Store, comparison_id: int) -> Judgment | None:
    """A judgment with its pair and its changes; None when the pair no longer exists.
    (``pair.choice`` is None when it was deleted or undone meanwhile.)"""
    pair = store.get_pair(comparison_id)
    if pair is None:
        return None
    row = store.db.execute("SELECT judged_at, seconds, source FROM comparisons WHERE id = ?",
                           [comparison_id]).fetchone()
    return Judgment(pair, row[0], row[1], row[2], judgment_changes(store, comparison_id))


def judgment_changes(store: Store, comparison_id: int | None = None) -> list[dict]:
    """The recorded changes (of one comparison, or all), newest first: id, comparison_id,
    kind (verdict | note | delete | undo), old_choice, new_choice, old_note, new_note,
    changed_at."""
    where, params = ("WHERE comparison_id = ?", [comparison_id]) if comparison_id else ("", [])
    return list(store.db.query(f"SELECT * FROM judgment_changes {where} ORDER BY id DESC",
                               params))


def _unchanged(store: Store, comparison_id: int) -> bool:
    """After a change wrote nothing: False when the judgment is there (it already was as
    asked); StoreError when there is no judgment on the Judge page to change."""
    row = store.db.execute("SELECT choice, eval_run_id FROM comparisons WHERE id = ?",
                           [comparison_id]).fetchone()
    if row is None or row[0] is None or row[1] is not None:
        raise StoreError(f"Comparison {comparison_id} has no judgment to change: it was "
                         "deleted, undone, or belongs to a blind evaluation.")
    return False


# Changes apply to the Judge page's judgments only (see the module's docstring).
_IN_HISTORY = "eval_run_id IS NULL"


def change_verdict(store: Store, comparison_id: int, choice: str) -> bool:
    """Give a judged pair another verdict (a stored choice: a, b, tie, both_bad, skip).

    One transaction: the audit row, then the new verdict. The note, the time it was judged and
    the seconds it took stay. False (nothing written) when the verdict already was this one;
    StoreError when there is no such judgment."""
    if choice not in CHOICES:
        raise StoreError(f"unknown choice {choice!r}; expected one of {', '.join(CHOICES)}")
    with store.db.atomic():
        if not record_judgment_change(store.db.conn, comparison_id, "verdict", choice=choice,
                                      only_if=f"{_IN_HISTORY} AND choice != ?",
                                      only_if_params=[choice]):
            return _unchanged(store, comparison_id)
        store.db.execute("UPDATE comparisons SET choice = ? WHERE id = ?",
                         [choice, comparison_id])
    return True


def change_note(store: Store, comparison_id: int, note: str | None) -> bool:
    """Replace a judgment's note (blank removes it), recorded like a verdict change. False
    when the note already was this one."""
    note = (note or "").strip() or None
    with store.db.atomic():
        if not record_judgment_change(store.db.conn, comparison_id, "note", note=note,
                                      only_if=f"{_IN_HISTORY} AND note IS NOT ?",
                                      only_if_params=[note]):
            return _unchanged(store, comparison_id)
        store.db.execute("UPDATE comparisons SET note = ? WHERE id = ?", [note, comparison_id])
    return True


def delete_judgment(store: Store, comparison_id: int) -> None:
    """Delete a judgment: the pair goes back to the queue, not judged, so no training reads it.

    Why not delete the row: the pair itself (prompt, both responses, which was shown on the
    left) took a model's time to make and is harmless unjudged, since every training path and
    export reads judged pairs only; the person meets it again in the queue and judges it
    afresh. The old verdict and note are kept in ``judgment_changes`` (kind 'delete'), so a
    deletion can be traced and put back. The note goes with the verdict it explained. To keep
    a pair out of training without judging it again, give it the verdict 'skip' instead."""
    with store.db.atomic():
        if not record_judgment_change(store.db.conn, comparison_id, "delete", choice=None,
                                      note=None, only_if=_IN_HISTORY):
            _unchanged(store, comparison_id)
            raise StoreError(f"comparison {comparison_id} has no judgment to delete")
        store.db.execute("UPDATE comparisons SET choice = NULL, note = NULL, seconds = NULL, "
                         "judged_at = NULL WHERE id = ?", [comparison_id])
