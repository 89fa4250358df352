"""The SQLite store: every read and write of ``rlhf.db`` goes through this class.

One ``Store`` per thread (SQLite connections are not shared across threads); WAL mode lets the
UI thread read and judge while a generation worker writes pairs from its own connection.
Writes are short transactions; ``synchronous=FULL`` makes each commit durable before the call
returns, so a judgment that returned is a judgment kept, even across a power cut.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from desktop_app.core.data.schema import MIGRATIONS, SCHEMA_VERSION
from desktop_app.core.data.sqlite_utils_import import sqlite_utils
from desktop_app.core.errors import UserError, sqlite_message
from desktop_app.core.runs import locks as run_locks
from desktop_app.core.runs.record import Run, RunKind, RunStatus

CHOICES = ("a", "b", "tie", "both_bad", "skip")
INTERRUPTED = "interrupted: its process stopped before the run finished"


class StoreError(UserError):
    """A store operation that cannot be done as asked (the message says why)."""


class DatabaseUnavailable(StoreError):
    """The database file could not be read or written (full disk, read-only, I/O error,
    busy): the message says which and what to do. Nothing committed is lost."""


class RunBusy(StoreError):
    """The run is being run by another live process."""


def _connection_for(path: Path) -> type[sqlite3.Connection]:
    """A connection class whose failures of the file itself (disk full, I/O, read-only,
    locked) raise ``DatabaseUnavailable`` with a sentence naming ``path``, wherever in the
    store or in sqlite-utils they happen. Constraint errors stay sqlite3's own."""

    def translated(call, *args):
        try:
            return call(*args)
        except sqlite3.OperationalError as exc:
            if _is_file_problem(exc):
                raise DatabaseUnavailable(sqlite_message(exc, path)) from exc
            raise

    class Connection(sqlite3.Connection):
        def execute(self, *args):
            return translated(super().execute, *args)

        def executemany(self, *args):
            return translated(super().executemany, *args)

        def executescript(self, *args):
            return translated(super().executescript, *args)

        def commit(self):
            return translated(super().commit)

    return Connection


# SQLITE_BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB: about the file, not
# about the SQL.
_FILE_PROBLEMS = {5, 6, 8, 10, 11, 13, 14, 26}


def _is_file_problem(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _FILE_PROBLEMS


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


_KEEP = object()


def record_judgment_change(conn: sqlite3.Connection, comparison_id: int, kind: str, *,
                           choice: Any = _KEEP, note: Any = _KEEP, only_if: str = "",
                           only_if_params: Iterable[Any] = ()) -> bool:
    """The audit row of a change to a stored judgment (table ``judgment_changes``), written
    inside the caller's transaction just before the change itself. The old verdict and note are
    read from the row by the same statement, which also takes the write lock, so nothing can
    change the row in between. ``choice`` and ``note`` are the new values (each kept unless
    given); ``only_if`` is a further SQL condition on the comparison. False (nothing written)
    when the comparison does not exist, is not judged or fails ``only_if``."""
    new_values = [value for value in (choice, note) if value is not _KEEP]
    condition = f"AND ({only_if})" if only_if else ""
    cursor = conn.execute(
        "INSERT INTO judgment_changes (comparison_id, kind, old_choice, new_choice, old_note, "
        "new_note, changed_at) SELECT id, ?, choice, "
        f"{'choice' if choice is _KEEP else '?'}, note, {'note' if note is _KEEP else '?'}, ? "
        f"FROM comparisons WHERE id = ? AND choice IS NOT NULL {condition}",
        [kind, *new_values, now_iso(), comparison_id, *only_if_params])
    return cursor.rowcount > 0


# A comparison with its prompt (p) and its two responses (ga, gb): the rows most reads need.
_PAIR_JOIN = ("FROM comparisons c JOIN prompts p ON p.id = c.prompt_id "
              "JOIN generations ga ON ga.id = c.generation_a_id "
              "JOIN generations gb ON gb.id = c.generation_b_id")


def _messages(stored: str | None) -> list | None:
    """A prompt's chat messages as stored (JSON text, or NULL for a plain prompt)."""
    return json.loads(stored) if stored else None


@dataclass(frozen=True)
class GenerationIn:
    """One response to be stored (either sampled here or imported from a file)."""

    text: str
    model: str
    source: str = "generated"
    adapter: str | None = None
    sampling: dict | None = None
    seed: int | None = None
    batch_row: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finished: bool | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class PairView:
    """A comparison as the annotator sees it: left and right, already in display order."""

    comparison_id: int
    prompt_id: int
    prompt: str
    messages: list | None
    left: dict
    right: dict
    left_is_a: bool
    choice: str | None
    note: str | None
    flag: str | None

    def choice_for_side(self, side: str) -> str:
        """Map what the annotator pressed (left/right/tie/…) to the stored a/b choice."""
        if side == "left":
            return "a" if self.left_is_a else "b"
        if side == "right":
            return "b" if self.left_is_a else "a"
        if side in CHOICES:
            return side
        raise StoreError(f"unknown choice {side!r}")


@dataclass(frozen=True)
class AddedPrompts:
    added: int
    duplicates: int
    ids: list[int]


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            conn = sqlite3.connect(str(self.path), timeout=30,
                                   factory=_connection_for(self.path))
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(sqlite_message(exc, self.path)) from None
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self._run_locks: dict[int, int] = {}  # run id -> fd holding its lock (run_locks)
        try:
            self._configure()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise DatabaseUnavailable(sqlite_message(exc, self.path)) from None
        except StoreError:
            conn.close()
            raise

    # -- setup -----------------------------------------------------------------------------

    def _configure(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=30000")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer RLHF Desk (schema {version}, this version "
                f"knows up to {SCHEMA_VERSION}); upgrade the app to open it")
        conn = self.db.conn
        for number in range(version + 1, SCHEMA_VERSION + 1):
            # executescript commits any open transaction first, so the BEGIN/COMMIT pair makes
            # each migration all-or-nothing, version bump included.
            try:
                conn.executescript(
                    f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        for run_id in list(self._run_locks):
            self._release_run_lock(run_id)
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        return list(self.db.query(sql, list(params)))

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    # -- prompts ---------------------------------------------------------------------------

    def add_prompts(self, prompts: Iterable[str | tuple[str, list | None]],
                    source: str = "manual") -> AddedPrompts:
        """Add prompts in one transaction; texts already present (or repeated) are counted."""
        added, duplicates, ids = 0, 0, []
        created = now_iso()
        with self.db.atomic():
            for item in prompts:
                text, messages = (item, None) if isinstance(item, str) else item
                text = text.strip()
                if not text:
                    raise StoreError("a prompt cannot be empty")
                try:
                    cursor = self.db.execute(
                        "INSERT OR IGNORE INTO prompts (text, messages, source, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        [text, json.dumps(messages) if messages else None, source, created])
                except UnicodeEncodeError:  # a lone surrogate: not text SQLite can hold
                    raise StoreError("a prompt holds an invalid character (a lone UTF-16 "
                                     "surrogate) and cannot be stored") from None
                if cursor.rowcount:
                    added += 1
                    ids.append(cursor.lastrowid)
                else:
                    duplicates += 1
        return AddedPrompts(added, duplicates, ids)

    def add_prompt(self, text: str, source: str = "manual") -> int:
        result = self.add_prompts([text], source)
        if not result.added:
            raise StoreError("that prompt is already in the workspace")
        return result.ids[0]

    def update_prompt(self, prompt_id: int, text: str) -> None:
        text = text.strip()
        if not text:
            raise StoreError("a prompt cannot be empty")
        try:
            with self.db.atomic():
                cursor = self.db.execute(
                    "UPDATE prompts SET text = ?, messages = NULL WHERE id = ?", [text, prompt_id])
        except sqlite3.IntegrityError:
            raise StoreError("another prompt already has that text") from None
        if not cursor.rowcount:
            raise StoreError(f"prompt {prompt_id} does not exist")

    def delete_prompts(self, prompt_ids: Iterable[int]) -> int:
        """Delete prompts with their generations and comparisons (the caller confirms first)."""
        ids = list(prompt_ids)
        with self.db.atomic():
            for pid in ids:
                self.db.execute("DELETE FROM comparisons WHERE prompt_id = ?", [pid])
                self.db.execute("DELETE FROM generations WHERE prompt_id = ?", [pid])
                self.db.execute("DELETE FROM prompts WHERE id = ?", [pid])
        return len(ids)

    def get_prompt(self, prompt_id: int) -> dict | None:
        return self._one("SELECT * FROM prompts WHERE id = ?", [prompt_id])

    def list_prompts(self) -> list[dict]:
        """Every prompt with how many pairs it has and how many of them are judged (blind
        evaluation pairs not counted), and whether it is held out for evaluation."""
        return self._rows(
            "SELECT p.id, p.text, p.source, p.created_at, p.held_out, "
            "  COUNT(c.id) AS pairs, COUNT(c.choice) AS judged "
            "FROM prompts p LEFT JOIN comparisons c "
            "  ON c.prompt_id = p.id AND c.eval_run_id IS NULL "
            "GROUP BY p.id ORDER BY p.id")

    def prompt_judgment_count(self, prompt_ids: Iterable[int]) -> int:
        ids = list(prompt_ids)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        return self.db.execute(
            f"SELECT COUNT(*) FROM comparisons WHERE choice IS NOT NULL AND prompt_id IN ({marks})",
            ids).fetchone()[0]

    def prompts_without_pairs(self, limit: int, exclude: Iterable[int] = (), *,
                              model: str | None = None, adapter: str | None = None,
                              unclaimed: bool = False, claimant: int | None = None) -> list[dict]:
        """The oldest prompts with no comparison yet: the next ones to generate for.

        With ``model``, "yet" means from that model and adapter: a tuned policy (the next
        round) generates pairs for prompts that only the base model has answered so far.
        Held-out prompts never get training pairs, and evaluation pairs do not count.
        ``unclaimed`` (with ``model``) leaves out prompts another running generator has
        claimed for the same model and adapter (``claim_prompts``), except ``claimant``'s."""
        if limit < 1:
            return []  # SQLite reads LIMIT -1 as "no limit"
        excluded = list(exclude)
        not_in = f"AND p.id NOT IN ({','.join('?' * len(excluded))})" if excluded else ""
        if model is None:
            exists = ("SELECT 1 FROM comparisons c WHERE c.prompt_id = p.id "
                      "AND c.eval_run_id IS NULL")
            params = []
        else:
            exists = ("SELECT 1 FROM comparisons c JOIN generations g ON g.id = c.generation_a_id "
                      "WHERE c.prompt_id = p.id AND c.eval_run_id IS NULL "
                      "AND g.model = ? AND g.adapter IS ?")
            params = [model, adapter]
        claimed = ""
        if unclaimed and model is not None:
            claimed = ("AND NOT EXISTS (SELECT 1 FROM prompt_claims pc JOIN runs r "
                       "ON r.id = pc.run_id WHERE pc.prompt_id = p.id AND pc.model = ? "
                       "AND pc.adapter = ? AND r.status = 'running' AND pc.run_id IS NOT ?) ")
            params += [model, adapter or "", claimant]
        rows = self._rows(
            f"SELECT p.id, p.text, p.messages FROM prompts p WHERE p.held_out = 0 "
            f"AND NOT EXISTS ({exists}) {claimed}"
            f"{not_in} ORDER BY p.id LIMIT ?", [*params, *excluded, limit])
        for row in rows:
            row["messages"] = _messages(row["messages"])
        return rows

    def claim_prompts(self, limit: int, *, model: str, adapter: str | None,
                      run_id: int | None) -> list[dict]:
        """Up to ``limit`` prompts without a pair from ``model`` + ``adapter`` that no other
        running generator has claimed, claimed for generate run ``run_id`` in one write
        transaction: two generators never get the same prompt. Claims lapse when their run
        stops running (finished, or its process died); ``run_id`` None claims nothing."""
        self.mark_interrupted_runs()  # the claims of a generator that died lapse now
        with self._write_transaction():
            rows = self.prompts_without_pairs(limit, model=model, adapter=adapter,
                                              unclaimed=True, claimant=run_id)
            if run_id is not None and rows:
                self.db.conn.executemany(
                    "INSERT OR REPLACE INTO prompt_claims (prompt_id, model, adapter, run_id, "
                    "claimed_at) VALUES (?, ?, ?, ?, ?)",
                    [(r["id"], model, adapter or "", run_id, now_iso()) for r in rows])
        return rows

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """A transaction that takes the write lock at once (BEGIN IMMEDIATE), so what it reads
        cannot change before it writes: the read-then-claim of ``claim_prompts``."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- pairs and judgments -------------------------------------------------------------

    def _insert_generation(self, prompt_id: int, gen: GenerationIn, created: str) -> int:
        cursor = self.db.execute(
            "INSERT INTO generations (prompt_id, text, model, adapter, source, sampling, seed, "
            "batch_row, prompt_tokens, completion_tokens, finished, run_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [prompt_id, gen.text, gen.model, gen.adapter, gen.source,
             json.dumps(gen.sampling) if gen.sampling is not None else None, gen.seed,
             gen.batch_row, gen.prompt_tokens, gen.completion_tokens,
             None if gen.finished is None else int(gen.finished), gen.run_id, created])
        return cursor.lastrowid

    def add_pairs(self, pairs: Iterable[tuple[int, GenerationIn, GenerationIn]], *,
                  rng: random.Random | None = None, flags: Iterable[str | None] | None = None,
                  choice: str | None = None, source: str = "generated",
                  eval_run_id: int | None = None) -> list[int]:
        """Store pairs (prompt id, response a, response b) in one transaction.

        Which response is shown on the left is drawn here, per pair, and stored, so position
        bias cannot leak into the data. Pairs of a blind evaluation (``eval_run_id``) are kept
        out of the training data. Returns the new comparison ids.
        """
        rng = rng or random.Random()
        pairs = list(pairs)
        flag_list = list(flags) if flags is not None else [None] * len(pairs)
        if choice is not None and choice not in CHOICES:
            raise StoreError(f"unknown choice {choice!r}")
        created = now_iso()
        ids = []
        with self.db.atomic():
            for (prompt_id, gen_a, gen_b), flag in zip(pairs, flag_list, strict=True):
                a_id = self._insert_generation(prompt_id, gen_a, created)
                b_id = self._insert_generation(prompt_id, gen_b, created)
                left = a_id if rng.random() < 0.5 else b_id
                cursor = self.db.execute(
                    "INSERT INTO comparisons (prompt_id, generation_a_id, generation_b_id, "
                    "left_generation_id, choice, flag, source, created_at, judged_at, "
                    "eval_run_id, training) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [prompt_id, a_id, b_id, left, choice, flag, source, created,
                     created if choice else None, eval_run_id, int(eval_run_id is None)])
                ids.append(cursor.lastrowid)
        return ids

    def get_pair(self, comparison_id: int) -> PairView | None:
        row = self._one(
            "SELECT c.*, p.text AS prompt_text, p.messages AS prompt_messages "
            "FROM comparisons c JOIN prompts p ON p.id = c.prompt_id WHERE c.id = ?",
            [comparison_id])
        if row is None:
            return None
        gens = {g["id"]: g for g in self._rows(
            "SELECT * FROM generations WHERE id IN (?, ?)",
            [row["generation_a_id"], row["generation_b_id"]])}
        left_is_a = row["left_generation_id"] == row["generation_a_id"]
        a, b = gens[row["generation_a_id"]], gens[row["generation_b_id"]]
        return PairView(
            comparison_id=row["id"], prompt_id=row["prompt_id"], prompt=row["prompt_text"],
            messages=_messages(row["prompt_messages"]),
            left=a if left_is_a else b, right=b if left_is_a else a, left_is_a=left_is_a,
            choice=row["choice"], note=row["note"], flag=row["flag"])

    def next_pending(self, exclude: Iterable[int] = (), *, order: str = "oldest",
                     eval_run_id: int | None = None) -> PairView | None:
        """The next pair nobody has judged yet (optionally skipping some ids).

        ``order`` is "oldest" (first generated, first judged) or "uncertain" (smallest reward
        margin first; pairs not scored yet come after the scored ones, oldest first). With
        ``eval_run_id`` the pair comes from that blind evaluation, else from the training queue.
        """
        if order not in ("oldest", "uncertain"):
            raise StoreError(f"unknown order {order!r}")
        excluded = list(exclude)
        not_in = f"AND id NOT IN ({','.join('?' * len(excluded))})" if excluded else ""
        by = "margin IS NULL, margin, id" if order == "uncertain" else "id"
        row = self._one(
            f"SELECT id FROM comparisons WHERE choice IS NULL AND eval_run_id IS ? {not_in} "
            f"ORDER BY {by} LIMIT 1", [eval_run_id, *excluded])
        return self.get_pair(row["id"]) if row else None

    def pending_count(self, eval_run_id: int | None = None) -> int:
        return self.db.execute("SELECT COUNT(*) FROM comparisons WHERE choice IS NULL "
                               "AND eval_run_id IS ?", [eval_run_id]).fetchone()[0]

    def pending_pairs(self) -> list[dict]:
        """Every pending training pair as comparison_id, prompt_id, prompt, prompt_messages,
        text_a, text_b: what a reward model scores to rank the queue by uncertainty."""
        rows = self._rows(
            "SELECT c.id AS comparison_id, c.prompt_id, p.text AS prompt, "
            "  p.messages AS prompt_messages, ga.text AS text_a, gb.text AS text_b "
            f"{_PAIR_JOIN} "
            "WHERE c.choice IS NULL AND c.eval_run_id IS NULL ORDER BY c.id")
        for row in rows:
            row["prompt_messages"] = _messages(row["prompt_messages"])
        return rows

    def set_margins(self, margins: Iterable[tuple[int, float]]) -> None:
        """Store |r_a - r_b| per comparison (from the current reward model)."""
        with self.db.atomic():
            self.db.conn.executemany("UPDATE comparisons SET margin = ? WHERE id = ?",
                                     [(float(m), cid) for cid, m in margins])

    def judge(self, comparison_id: int, choice: str, *, note: str | None = None,
              seconds: float | None = None) -> None:
        """Record a judgment; committed (and synced) when this returns."""
        if choice not in CHOICES:
            raise StoreError(f"unknown choice {choice!r}; expected one of {', '.join(CHOICES)}")
        with self.db.atomic():
            cursor = self.db.execute(
                "UPDATE comparisons SET choice = ?, note = ?, seconds = ?, judged_at = ? "
                "WHERE id = ? AND choice IS NULL",
                [choice, note or None, seconds, now_iso(), comparison_id])
        if not cursor.rowcount:
            raise StoreError(f"comparison {comparison_id} does not exist or is already judged")

    def unjudge(self, comparison_id: int) -> PairView:
        """Undo a judgment: the pair becomes pending again and is returned for display.
        The undone verdict is kept in ``judgment_changes`` (kind 'undo'), like every change."""
        with self.db.atomic():
            record_judgment_change(self.db.conn, comparison_id, "undo", choice=None)
            cursor = self.db.execute(
                "UPDATE comparisons SET choice = NULL, seconds = NULL, judged_at = NULL "
                "WHERE id = ? AND choice IS NOT NULL", [comparison_id])
        if not cursor.rowcount:
            raise StoreError(f"comparison {comparison_id} has no judgment to undo")
        return self.get_pair(comparison_id)

    def preference_rows(self) -> list[dict]:
        """Judgments a reward model can learn from: a winner (a/b) or a tie, oldest first.

        Each row: comparison_id, prompt_id, prompt, prompt_messages (list or None), chosen,
        rejected, tie (for a tie, chosen/rejected are simply a/b)."""
        rows = self._rows(
            "SELECT c.id AS comparison_id, c.prompt_id, p.text AS prompt, "
            "  p.messages AS prompt_messages, c.choice = 'tie' AS tie, "
            "  CASE c.choice WHEN 'b' THEN gb.text ELSE ga.text END AS chosen, "
            "  CASE c.choice WHEN 'b' THEN ga.text ELSE gb.text END AS rejected "
            f"{_PAIR_JOIN} "
            "WHERE c.choice IN ('a', 'b', 'tie') AND c.training = 1 ORDER BY c.id")
        for row in rows:
            row["prompt_messages"] = _messages(row["prompt_messages"])
            row["tie"] = bool(row["tie"])
        return rows

    def training_adapters(self) -> set[str]:
        """The adapters (tuned policies) that generated judged training pairs."""
        return {r["adapter"] for r in self._rows(
            "SELECT DISTINCT g.adapter FROM comparisons c "
            "JOIN generations g ON g.id IN (c.generation_a_id, c.generation_b_id) "
            "WHERE c.choice IN ('a', 'b', 'tie') AND c.training = 1 AND g.adapter IS NOT NULL")}

    def has_pair(self, prompt_id: int, text_a: str, text_b: str) -> bool:
        """Whether this prompt already has a comparison between exactly these two texts."""
        return self.db.execute(
            "SELECT 1 FROM comparisons c JOIN generations ga ON ga.id = c.generation_a_id "
            "JOIN generations gb ON gb.id = c.generation_b_id WHERE c.prompt_id = ? AND "
            "((ga.text = ? AND gb.text = ?) OR (ga.text = ? AND gb.text = ?)) LIMIT 1",
            [prompt_id, text_a, text_b, text_b, text_a]).fetchone() is not None

    # -- held-out prompts and blind evaluation ---------------------------------------------

    def set_held_out(self, prompt_ids: Iterable[int], held_out: bool = True) -> int:
        """Mark prompts as held out for evaluation (never trained on), or release them."""
        ids = list(prompt_ids)
        with self.db.atomic():
            self.db.conn.executemany("UPDATE prompts SET held_out = ? WHERE id = ?",
                                     [(int(held_out), pid) for pid in ids])
        return len(ids)

    def held_out_prompts(self) -> list[dict]:
        """Held-out prompts as id, text, messages (list or None), oldest first."""
        rows = self._rows("SELECT id, text, messages FROM prompts WHERE held_out = 1 ORDER BY id")
        for row in rows:
            row["messages"] = _messages(row["messages"])
        return rows

    def trained_prompt_ids(self) -> set[int]:
        """Prompts that have training judgments: a reward model may have learnt them."""
        return {r["prompt_id"] for r in self._rows(
            "SELECT DISTINCT prompt_id FROM comparisons "
            "WHERE choice IS NOT NULL AND training = 1")}

    def eval_tally(self, eval_run_id: int) -> dict[str, int]:
        """How the judged pairs of a blind evaluation came out, from policy A's side:
        a (A won), b (B won), tie, both_bad, skip, and pending."""
        tally = {c: 0 for c in CHOICES} | {"pending": 0}
        for row in self._rows("SELECT choice, COUNT(*) AS n FROM comparisons "
                              "WHERE eval_run_id = ? GROUP BY choice", [eval_run_id]):
            tally[row["choice"] or "pending"] = row["n"]
        return tally

    def add_eval_to_training(self, eval_run_id: int) -> int:
        """Let the judged pairs of a blind evaluation train reward models from now on.

        Their prompts stop being held out: a prompt that was trained on cannot measure a
        policy fairly any more. Returns how many judgments were added."""
        with self.db.atomic():
            cursor = self.db.execute(
                "UPDATE comparisons SET training = 1 WHERE eval_run_id = ? AND training = 0 "
                "AND choice IN ('a', 'b', 'tie')", [eval_run_id])
            self.db.execute(
                "UPDATE prompts SET held_out = 0 WHERE id IN (SELECT prompt_id FROM comparisons "
                "WHERE eval_run_id = ? AND training = 1)", [eval_run_id])
        return cursor.rowcount

    def set_run_status(self, run_id: int, status: RunStatus) -> None:
        """A status between running and finished, e.g. ``JUDGING`` for a blind evaluation whose
        pairs are generated and wait for the person."""
        status = RunStatus(status)
        with self.db.atomic():
            self.db.execute("UPDATE runs SET status = ? WHERE id = ?", [status, run_id])
        if status != RunStatus.RUNNING:
            self._release_run_lock(run_id)

    # -- statistics ------------------------------------------------------------------------

    def stats(self) -> dict:
        count = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        by_choice = {c: 0 for c in CHOICES}
        for row in self._rows("SELECT choice, COUNT(*) AS n FROM comparisons "
                              "WHERE choice IS NOT NULL AND eval_run_id IS NULL "
                              "GROUP BY choice"):
            by_choice[row["choice"]] = row["n"]
        sides = self._one(
            "SELECT SUM(CASE WHEN (choice = 'a') = (left_generation_id = generation_a_id) "
            "  THEN 1 ELSE 0 END) AS left, "
            "SUM(CASE WHEN (choice = 'a') != (left_generation_id = generation_a_id) "
            "  THEN 1 ELSE 0 END) AS right "
            "FROM comparisons WHERE choice IN ('a', 'b') AND source IN ('generated', 'eval')")
        runs: dict[str, dict[str, int]] = {}
        for row in self._rows("SELECT kind, status, COUNT(*) AS n FROM runs GROUP BY kind, status"):
            runs.setdefault(row["kind"], {})[row["status"]] = row["n"]
        return {
            "prompts": count("SELECT COUNT(*) FROM prompts"),
            "prompts_without_pairs": count(
                "SELECT COUNT(*) FROM prompts p WHERE p.held_out = 0 AND NOT EXISTS "
                "(SELECT 1 FROM comparisons c WHERE c.prompt_id = p.id "
                "AND c.eval_run_id IS NULL)"),
            "held_out_prompts": count("SELECT COUNT(*) FROM prompts WHERE held_out = 1"),
            "generations": count("SELECT COUNT(*) FROM generations"),
            "comparisons": count("SELECT COUNT(*) FROM comparisons WHERE eval_run_id IS NULL"),
            "pending": count("SELECT COUNT(*) FROM comparisons WHERE choice IS NULL "
                             "AND eval_run_id IS NULL"),
            "eval_judged": count("SELECT COUNT(*) FROM comparisons WHERE choice IS NOT NULL "
                                 "AND eval_run_id IS NOT NULL"),
            "training_judgments": count("SELECT COUNT(*) FROM comparisons "
                                        "WHERE choice IN ('a', 'b', 'tie') AND training = 1"),
            "judged": sum(by_choice.values()),
            "by_choice": by_choice,
            "left_wins": sides["left"] or 0,
            "right_wins": sides["right"] or 0,
            "runs": runs,
        }

    # -- runs and metrics ------------------------------------------------------------------

    def create_run(self, kind: RunKind, config: dict, parent_run_id: int | None = None) -> int:
        try:
            stored = json.dumps(config, allow_nan=False)
        except ValueError:  # configs are validated before this; NaN must never get stored
            raise StoreError(f"the configuration of the new {kind} run holds a number that is "
                             "not finite (NaN or infinity)") from None
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO runs (kind, config, status, parent_run_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [RunKind(kind), stored, RunStatus.RUNNING, parent_run_id, now_iso()])
            # Locked before the row is committed: no other process can see this run
            # 'running' without its lock held, and take it for one whose process died.
            self._hold_run_lock(cursor.lastrowid)
        return cursor.lastrowid

    def add_finished_run(self, kind: RunKind, config: dict, *, parent_run_id: int | None,
                         created_at: str, finished_at: str | None,
                         artifact_of: Callable[[int], str],
                         metrics: Iterable[tuple[int, str, float | None, float]]) -> int:
        """A run that ran elsewhere (an exported job), recorded completed with its metrics
        (step, name, value, time) in one transaction. ``artifact_of(run_id)`` names its
        artifact, whose folder depends on the id."""
        stored = json.dumps(config, allow_nan=False)
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO runs (kind, config, status, parent_run_id, created_at, "
                "finished_at) VALUES (?, ?, ?, ?, ?, ?)",
                [RunKind(kind), stored, RunStatus.COMPLETED, parent_run_id, created_at,
                 finished_at])
            run_id = cursor.lastrowid
            self.db.execute("UPDATE runs SET artifact = ? WHERE id = ?",
                            [artifact_of(run_id), run_id])
            self.db.conn.executemany(
                "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, step, name, value, time) for step, name, value, time in metrics])
        return run_id

    def forget_run(self, run_id: int) -> None:
        """Remove a run's row and metrics only (an import that could not put its files in
        place); ``delete_run`` is the one that also deals with files and data."""
        with self.db.atomic():
            self.db.execute("DELETE FROM runs WHERE id = ?", [run_id])

    def _hold_run_lock(self, run_id: int) -> bool:
        """This process runs ``run_id`` until it finishes it or closes the store. False when
        another live process holds the run."""
        if run_id in self._run_locks:
            return True
        path = run_locks.lock_path(self.path, run_id)
        fd = run_locks.acquire(path)
        if fd is not None:
            self._run_locks[run_id] = fd
            return True
        # Could not lock: either another process holds it, or locks cannot be made here
        # (then, as before locks existed, nothing is refused).
        return not run_locks.is_held(path)

    def _release_run_lock(self, run_id: int) -> None:
        fd = self._run_locks.pop(run_id, None)
        if fd is not None:
            run_locks.release(fd, run_locks.lock_path(self.path, run_id))

    def finish_run(self, run_id: int, status: RunStatus, *, error: str | None = None,
                   artifact: str | None = None) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE runs SET status = ?, error = ?, artifact = COALESCE(?, artifact), "
                "finished_at = ? WHERE id = ?",
                [RunStatus(status), error, artifact, now_iso(), run_id])
            self.db.execute("DELETE FROM prompt_claims WHERE run_id = ?", [run_id])
        self._release_run_lock(run_id)

    def reopen_run(self, run_id: int) -> None:
        """A resumed run is running again; metrics past its checkpoint are dropped by the caller.
        Raises ``RunBusy`` when another live process is still running it: two processes
        writing one run's metrics and checkpoints would corrupt both."""
        self.check_not_busy(run_id)
        if not self._hold_run_lock(run_id):
            self.check_not_busy(run_id)
        with self.db.atomic():
            self.db.execute("UPDATE runs SET status = 'running', error = NULL, finished_at = NULL "
                            "WHERE id = ?", [run_id])

    def check_not_busy(self, run_id: int) -> None:
        """Raise ``RunBusy`` when a process other than this store's holds ``run_id``."""
        if run_id in self._run_locks:
            return
        pid = run_locks.holder(run_locks.lock_path(self.path, run_id))
        if pid is not None:
            who = f"process {pid}" if pid else "another process"
            raise RunBusy(f"Run {run_id} is still running in {who}. Wait for it to finish, or "
                          "cancel it there, before resuming or deleting it.")

    def set_run_artifact(self, run_id: int, artifact: str) -> None:
        with self.db.atomic():
            self.db.execute("UPDATE runs SET artifact = ? WHERE id = ?", [artifact, run_id])

    def delete_metrics_after(self, run_id: int, step: int) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", [run_id, step])

    def final_metrics(self, run_id: int) -> dict[str, float]:
        """The last value of every metric of a run."""
        rows = self._rows(
            "SELECT m.name, m.value FROM metrics m JOIN (SELECT name, MAX(step) AS step "
            "FROM metrics WHERE run_id = ? GROUP BY name) last "
            "ON last.name = m.name AND last.step = m.step WHERE m.run_id = ?", [run_id, run_id])
        return {r["name"]: r["value"] for r in rows}

    def mark_interrupted_runs(self) -> int:
        """Runs marked 'running' whose process died (kill -9, power loss, a full disk) become
        'interrupted' (resumable where they kept a checkpoint). A run whose lock a live process
        holds (a second window, a command-line run) is left alone. Every read of runs calls
        this, so no reader ever sees a dead run as running."""
        running = [r["id"] for r in self._rows("SELECT id FROM runs WHERE status = 'running'")]
        dead = self._dead(running)
        self._mark_interrupted(dead)
        return len(dead)

    def _dead(self, run_ids: Iterable[int]) -> list[int]:
        """Of these 'running' runs, those no live process holds."""
        return [rid for rid in run_ids if rid not in self._run_locks
                and not run_locks.is_held(run_locks.lock_path(self.path, rid))]

    def _mark_interrupted(self, run_ids: list[int]) -> None:
        if run_ids:
            with self.db.atomic():
                self.db.conn.executemany(
                    "UPDATE runs SET status = 'interrupted', error = ?, finished_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    [(INTERRUPTED, now_iso(), rid) for rid in run_ids])

    def _settle(self, rows: list[dict]) -> list[dict]:
        """Rows of runs as they really are: 'running' only while their process lives. Reading
        must work on a full or read-only disk too, so a status that cannot be written back is
        corrected in the rows returned."""
        dead = set(self._dead(r["id"] for r in rows if r["status"] == RunStatus.RUNNING))
        if not dead:
            return rows
        try:
            self._mark_interrupted(sorted(dead))
        except StoreError:
            pass
        for row in rows:
            if row["id"] in dead:
                row.update(status=RunStatus.INTERRUPTED, error=INTERRUPTED)
        return rows

    def get_run(self, run_id: int) -> Run | None:
        row = self._one("SELECT * FROM runs WHERE id = ?", [run_id])
        return Run.from_row(self._settle([row])[0], self.path.parent) if row else None

    def list_runs(self) -> list[Run]:
        rows = self._settle(self._rows("SELECT * FROM runs ORDER BY id"))
        return [Run.from_row(row, self.path.parent) for row in rows]

    def run_has_pairs(self, run_id: int) -> bool:
        """Whether any response was stored for run ``run_id`` (a generate run's output)."""
        return self.db.execute("SELECT 1 FROM generations WHERE run_id = ? LIMIT 1",
                               [run_id]).fetchone() is not None

    def delete_run(self, run_id: int, *, dry_run: bool = False) -> dict:
        """Delete a run from the database in one transaction; its folder is the caller's
        (``core.runs.files.delete_run``). Goes with it: its metrics, the pairs of a blind
        evaluation (``comparisons.eval_run_id``) and its responses no other pair uses. Runs
        started from it (``parent_run_id``) stay and lose the link. A running run is refused.
        ``dry_run`` counts without deleting.

        Returns run, metrics, comparisons, generations (counts) and children (run ids)."""
        run = self.get_run(run_id)
        if run is None:
            raise StoreError(f"there is no run {run_id}")
        if run.status == RunStatus.RUNNING:
            self.check_not_busy(run_id)
            raise StoreError(f"run {run_id} is still running: cancel it (or let it finish) "
                             "before deleting it")
        def count(sql: str) -> int:
            return self.db.execute(sql, [run_id]).fetchone()[0]

        # Responses of this run that no pair outside this run's own evaluation pairs uses.
        orphan = ("SELECT g.id FROM generations g WHERE g.run_id = ? AND NOT EXISTS ("
                  "SELECT 1 FROM comparisons c WHERE (c.generation_a_id = g.id "
                  "OR c.generation_b_id = g.id) AND (c.eval_run_id IS NULL OR c.eval_run_id != ?))")
        orphan_params = [run_id, run_id]
        children = [r["id"] for r in self._rows(
            "SELECT id FROM runs WHERE id != ? AND parent_run_id = ? ORDER BY id",
            [run_id, run_id])]
        summary = {
            "run": run_id,
            "metrics": count("SELECT COUNT(*) FROM metrics WHERE run_id = ?"),
            "comparisons": count("SELECT COUNT(*) FROM comparisons WHERE eval_run_id = ?"),
            "generations": self.db.execute(f"SELECT COUNT(*) FROM ({orphan})",
                                           orphan_params).fetchone()[0],
            "children": children,
        }
        if dry_run:
            return summary
        with self.db.atomic():
            # Checked again under the write lock: a resumed run may have started meanwhile.
            if not self.db.execute("UPDATE runs SET status = status WHERE id = ? AND "
                                   "status != 'running'", [run_id]).rowcount:
                raise StoreError(f"run {run_id} is running or gone; nothing was deleted")
            self.db.execute("DELETE FROM comparisons WHERE eval_run_id = ?", [run_id])
            self.db.execute(f"DELETE FROM generations WHERE id IN ({orphan})", orphan_params)
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", [run_id])
            self.db.execute("DELETE FROM runs WHERE id = ?", [run_id])
        return summary

    def metrics_since(self, run_id: int, after: int = 0) -> tuple[list[dict], int]:
        """Metric points of a run written after the marker ``after`` (0: all of them), in
        the order they were written, and the marker to pass next time: how a chart of a
        running run follows it without reading its whole history every second. Each point
        has its ``time`` (seconds since the epoch, when it was written) besides its step."""
        rows = self._rows("SELECT rowid, step, name, value, time FROM metrics WHERE run_id = ? "
                          "AND rowid > ? ORDER BY rowid", [run_id, after])
        return rows, (rows[-1]["rowid"] if rows else after)

    def finished_runs(self, kind: RunKind | tuple[RunKind, ...]) -> list[Run]:
        """Completed runs of ``kind`` (or of any of several kinds, e.g. ``POLICY_KINDS``) that
        recorded their artifact (a reward model, a policy), oldest first: the runs to offer
        where a later step builds on one. Whether the artifact is still on disk is checked
        when one is used (``Run.require_artifact``)."""
        kinds = kind if isinstance(kind, tuple) else (kind,)
        return [r for r in self.list_runs()
                if r.kind in kinds and r.status == RunStatus.COMPLETED and r.artifact]

    def add_metrics(self, run_id: int, points: Iterable[tuple[int, str, float]]) -> None:
        stamp = time.time()
        with self.db.atomic():
            self.db.conn.executemany(
                "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, step, name, float(value), stamp) for step, name, value in points])

    def replace_metrics(self, run_id: int, step: int, values: dict[str, float]) -> None:
        """Set metrics that are recomputed rather than logged (an evaluation's result as the
        judgments come in): earlier values under these names are replaced."""
        with self.db.atomic():
            for name in values:
                self.db.execute("DELETE FROM metrics WHERE run_id = ? AND name = ?",
                                [run_id, name])
            self.db.conn.executemany(
                "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run_id, step, name, float(value), time.time())
                 for name, value in values.items()])

    def judgments_until(self, timestamp: str) -> int:
        """Training judgments (winner or tie) made at or before ``timestamp``."""
        return self.db.execute(
            "SELECT COUNT(*) FROM comparisons WHERE choice IN ('a', 'b', 'tie') AND training = 1 "
            "AND judged_at <= ?", [timestamp]).fetchone()[0]

    def metrics(self, run_id: int, name: str | None = None) -> list[dict]:
        if name is None:
            return self._rows("SELECT step, name, value FROM metrics WHERE run_id = ? "
                              "ORDER BY name, step", [run_id])
        return self._rows("SELECT step, name, value FROM metrics WHERE run_id = ? AND name = ? "
                          "ORDER BY step", [run_id, name])
