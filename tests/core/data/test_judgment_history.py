"""The judgment history in the store: listing, filtering, searching and paging past judgments,
changing and deleting them with an audit row each, the migration that adds the audit table,
and what training reads afterwards."""

import random
import sqlite3

import pytest

from desktop_app.core.data import judgment_history as jh
from desktop_app.core.data import schema
from desktop_app.core.data.exports import judged_pairs_from_store
from desktop_app.core.data.judgment_history import HistoryFilter
from desktop_app.core.data.store import GenerationIn, Store, StoreError


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "rlhf.db") as s:
        yield s


def gen(text):
    return GenerationIn(text=text, model="/models/m")


def add_pair(store, prompt, a="response a", b="response b", *, choice=None, note=None,
             left_is_a=True, source="generated"):
    """One comparison, judged with ``choice`` unless None; the left side is fixed."""
    pid = store.add_prompt(prompt)
    rng = random.Random(_seed_for(left_is_a))
    [cid] = store.add_pairs([(pid, gen(a), gen(b))], rng=rng, source=source)
    assert store.get_pair(cid).left_is_a is left_is_a
    if choice is not None:
        store.judge(cid, choice, note=note)
    return cid


def _seed_for(left_is_a: bool) -> int:
    """A seed whose first draw puts response a on the left (or not): add_pairs draws
    ``random() < 0.5`` for a-on-the-left."""
    return next(s for s in range(100) if (random.Random(s).random() < 0.5) == left_is_a)


def ids(rows):
    return [r.comparison_id for r in rows]


def test_newest_first_in_pages(store):
    cids = [add_pair(store, f"prompt {i}", choice="a") for i in range(7)]
    pending = add_pair(store, "not judged yet")
    rows = jh.list_judgments(store)
    assert ids(rows) == cids[::-1] and pending not in ids(rows)
    assert jh.count_judgments(store) == 7
    pages = [jh.list_judgments(store, offset=o, limit=3) for o in (0, 3, 6, 9)]
    assert [ids(p) for p in pages] == [cids[6:3:-1], cids[3:0:-1], cids[:1], []]
    row = rows[0]
    assert (row.choice, row.side, row.prompt, row.note, row.source, row.changes) == (
        "a", "left", "prompt 6", None, "generated", 0)
    assert row.judged_at


def test_list_rows_carry_snippets_not_whole_texts(store):
    cid = add_pair(store, "p" * 5000, choice="tie", note="n" * 5000)
    [row] = jh.list_judgments(store)
    assert row.comparison_id == cid
    assert len(row.prompt) == len(row.note) == jh.SNIPPET


def test_filter_by_verdict_side_and_source(store):
    left_a = add_pair(store, "1", choice="a", left_is_a=True)     # left won
    right_a = add_pair(store, "2", choice="a", left_is_a=False)   # right won
    left_b = add_pair(store, "3", choice="b", left_is_a=False)    # left won
    tie = add_pair(store, "4", choice="tie")
    bad = add_pair(store, "5", choice="both_bad")
    skip = add_pair(store, "6", choice="skip")
    [imported] = store.add_pairs([(store.add_prompt("7"), gen("x"), gen("y"))], choice="a",
                                 source="imported")

    def listed(**kw):
        flt = HistoryFilter(**kw)
        found = set(ids(jh.list_judgments(store, flt)))
        assert jh.count_judgments(store, flt) == len(found)
        return found

    assert listed(verdict="left") == {left_a, left_b} | (
        {imported} if store.get_pair(imported).left_is_a else set())
    assert listed(verdict="right") == {right_a} | (
        set() if store.get_pair(imported).left_is_a else {imported})
    assert listed(verdict="a") == {left_a, right_a, imported}
    assert listed(verdict="b") == {left_b}
    assert listed(verdict="winner") == {left_a, right_a, left_b, imported}
    assert listed(verdict="tie") == {tie}
    assert listed(verdict="both_bad") == {bad}
    assert listed(verdict="skip") == {skip}
    assert listed(source="imported") == {imported}
    assert listed(source="generated", verdict="a") == {left_a, right_a}
    assert {r.side for r in jh.list_judgments(store)} == {
        "left", "right", "tie", "both_bad", "skip"}
    with pytest.raises(StoreError, match="unknown verdict"):
        jh.list_judgments(store, HistoryFilter(verdict="maybe"))
    with pytest.raises(StoreError, match="unknown source"):
        jh.count_judgments(store, HistoryFilter(source="eval"))


def test_search_prompt_responses_and_note_every_word(store):
    cat = add_pair(store, "Tell me about cats", "They purr.", "They sleep.", choice="a")
    dog = add_pair(store, "Tell me about dogs", "They bark.", "They FETCH.", choice="b",
                   note="both fine, left more vivid")
    add_pair(store, "pending cats", choice=None)

    def found(text, **kw):
        return set(ids(jh.list_judgments(store, HistoryFilter(search=text, **kw))))

    assert found("cats") == {cat}
    assert found("fetch") == {dog}          # a response, any case
    assert found("VIVID") == {dog}          # the note
    assert found("tell about") == {cat, dog}  # every word, anywhere
    assert found("tell purr") == {cat}
    assert found("purr bark") == set()
    assert found("   ") == {cat, dog}
    assert found("cats", verdict="b") == set()
    assert jh.count_judgments(store, HistoryFilter(search="they")) == 2


def test_search_is_literal_text_not_a_pattern(store):
    percent = add_pair(store, "a 100% true story", choice="a")
    number = add_pair(store, "a 1000 word story", choice="a")
    underscore = add_pair(store, "snake_case names", choice="a")
    other = add_pair(store, "snakeXcase names", choice="a")
    backslash = add_pair(store, r"a path C:\temp", choice="a")

    def found(text):
        return set(ids(jh.list_judgments(store, HistoryFilter(search=text))))

    assert found("100%") == {percent}
    assert number in found("100") and percent in found("100")
    assert found("snake_case") == {underscore}
    assert other in found("snake")
    assert found("C:\\temp") == {backslash}
    assert found("%") == {percent} and found("_") == {underscore}


def test_change_verdict_is_recorded_and_keeps_the_rest(store):
    cid = add_pair(store, "p", choice="a", note="left is clearer")
    before = store.db["comparisons"].get(cid)
    assert jh.change_verdict(store, cid, "tie") is True
    after = store.db["comparisons"].get(cid)
    assert after["choice"] == "tie"
    assert (after["note"], after["judged_at"], after["seconds"]) == (
        before["note"], before["judged_at"], before["seconds"])
    [change] = jh.judgment_changes(store, cid)
    assert (change["kind"], change["old_choice"], change["new_choice"], change["old_note"],
            change["new_note"]) == ("verdict", "a", "tie", "left is clearer", "left is clearer")
    assert change["changed_at"]
    # The same verdict again changes and records nothing.
    assert jh.change_verdict(store, cid, "tie") is False
    assert len(jh.judgment_changes(store, cid)) == 1
    jh.change_verdict(store, cid, "b")
    assert [c["new_choice"] for c in jh.judgment_changes(store, cid)] == ["b", "tie"]
    [row] = jh.list_judgments(store)
    assert (row.choice, row.changes) == ("b", 2)
    detail = jh.get_judgment(store, cid)
    assert detail.side == "right" and len(detail.changes) == 2 and detail.source == "generated"
    assert jh.judgment_row(store, cid) == row
    assert jh.get_judgment(store, 9999) is None
    jh.delete_judgment(store, cid)
    assert jh.judgment_row(store, cid) is None
    assert jh.get_judgment(store, cid).pair.choice is None


def test_change_note_is_recorded(store):
    cid = add_pair(store, "p", choice="b")
    assert jh.change_note(store, cid, "  the right one cites a source  ") is True
    assert store.db["comparisons"].get(cid)["note"] == "the right one cites a source"
    assert jh.change_note(store, cid, "the right one cites a source") is False
    assert jh.change_note(store, cid, "   ") is True
    assert store.db["comparisons"].get(cid)["note"] is None
    kinds = [(c["kind"], c["old_note"], c["new_note"], c["old_choice"], c["new_choice"])
             for c in jh.judgment_changes(store, cid)]
    assert kinds == [("note", "the right one cites a source", None, "b", "b"),
                     ("note", None, "the right one cites a source", "b", "b")]
    assert store.db["comparisons"].get(cid)["choice"] == "b"


def test_delete_returns_the_pair_to_the_queue_and_keeps_the_old_verdict(store):
    cid = add_pair(store, "p", choice="a", note="why")
    other = add_pair(store, "q", choice="b")
    jh.delete_judgment(store, cid)
    row = store.db["comparisons"].get(cid)
    assert (row["choice"], row["note"], row["judged_at"], row["seconds"]) == (None,) * 4
    assert store.get_pair(cid) is not None  # the pair and its responses are kept
    assert ids(jh.list_judgments(store)) == [other]
    assert store.next_pending().comparison_id == cid
    assert store.stats()["pending"] == 1 and store.stats()["judged"] == 1
    [change] = jh.judgment_changes(store, cid)
    assert (change["kind"], change["old_choice"], change["new_choice"], change["old_note"],
            change["new_note"]) == ("delete", "a", None, "why", None)
    # The pair can be judged again; the history shows it (once) with its past.
    store.judge(cid, "b")
    assert ids(jh.list_judgments(store))[0] == cid
    assert jh.list_judgments(store)[0].changes == 1


def test_nothing_to_change_is_refused_and_writes_nothing(store):
    pending = add_pair(store, "pending")
    [eval_pair] = store.add_pairs([(store.add_prompt("e"), gen("x"), gen("y"))],
                                  eval_run_id=store.create_run("eval", {}), source="eval")
    store.judge(eval_pair, "a")
    for cid in (pending, eval_pair, 9999):
        with pytest.raises(StoreError, match="no judgment"):
            jh.change_verdict(store, cid, "b")
        with pytest.raises(StoreError, match="no judgment"):
            jh.change_note(store, cid, "x")
        with pytest.raises(StoreError, match="no judgment"):
            jh.delete_judgment(store, cid)
    with pytest.raises(StoreError, match="unknown choice"):
        jh.change_verdict(store, eval_pair, "left")
    assert jh.judgment_changes(store) == []
    assert store.db["comparisons"].get(eval_pair)["choice"] == "a"
    assert eval_pair not in ids(jh.list_judgments(store))  # blind judgments stay out


def test_a_change_that_fails_leaves_no_audit_row(store):
    """The update and its audit row are one transaction: if the update fails, neither stays."""
    cid = add_pair(store, "p", choice="a")
    store.db.execute("CREATE TRIGGER refuse BEFORE UPDATE OF choice ON comparisons "
                     "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        jh.change_verdict(store, cid, "b")
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        jh.delete_judgment(store, cid)
    assert not store.db.conn.in_transaction
    assert jh.judgment_changes(store) == []
    assert store.db["comparisons"].get(cid)["choice"] == "a"


def test_undo_is_recorded_too(store):
    cid = add_pair(store, "p", choice="skip", note="later")
    store.unjudge(cid)
    [change] = jh.judgment_changes(store, cid)
    assert (change["kind"], change["old_choice"], change["new_choice"], change["new_note"]) == (
        "undo", "skip", None, "later")
    store.judge(cid, "a")
    assert jh.list_judgments(store)[0].changes == 0  # undo is part of judging, not an edit


def test_deleting_the_prompt_deletes_the_history_of_its_pairs(store):
    cid = add_pair(store, "p", choice="a")
    jh.change_verdict(store, cid, "b")
    store.delete_prompts([store.get_pair(cid).prompt_id])
    assert jh.judgment_changes(store) == []


def test_training_sees_the_latest_verdict(store):
    from desktop_app.ml.reward.pairs import preference_examples

    cid = add_pair(store, "p", "alpha", "beta", choice="a")
    gone = add_pair(store, "q", "gamma", "delta", choice="b")
    kept = add_pair(store, "r", "epsilon", "zeta", choice="tie")

    def training():
        rows = {r["comparison_id"]: (r["chosen"], r["rejected"], r["tie"])
                for r in store.preference_rows()}
        examples = {e.comparison_id: (e.chosen, e.rejected, e.tie)
                    for e in preference_examples(store.preference_rows(), "equal")}
        assert examples == rows
        exported = {(p.prompt, p.chosen, p.rejected, p.tie) for p in judged_pairs_from_store(store)}
        assert exported == {(store.get_pair(c).prompt, *v) for c, v in rows.items()}
        return rows

    assert training()[cid] == ("alpha", "beta", False)
    jh.change_verdict(store, cid, "b")
    assert training()[cid] == ("beta", "alpha", False)   # flipped
    jh.change_verdict(store, cid, "skip")
    assert cid not in training()                        # a skip teaches nothing
    jh.change_verdict(store, kept, "a")
    assert training()[kept] == ("epsilon", "zeta", False)
    jh.delete_judgment(store, gone)
    assert set(training()) == {kept}
    assert store.stats()["training_judgments"] == 1


def test_history_query_walks_the_index(store):
    add_pair(store, "p", choice="a")
    where, params, _ = jh._where(HistoryFilter(verdict="tie"))
    plan = " ".join(r[3] for r in store.db.execute(
        f"EXPLAIN QUERY PLAN SELECT c.id {jh._from(False)} WHERE {where} "
        "ORDER BY c.judged_at DESC, c.id DESC LIMIT 10", params))
    assert "comparisons_judged" in plan and "TEMP B-TREE" not in plan


def test_migration_from_the_previous_version_keeps_judgments(tmp_path, monkeypatch):
    from desktop_app.core.data import store as store_mod
    path = tmp_path / "rlhf.db"
    previous = schema.MIGRATIONS[:3]
    with monkeypatch.context() as m:
        m.setattr(store_mod, "MIGRATIONS", previous)
        m.setattr(store_mod, "SCHEMA_VERSION", len(previous))
        with Store(path) as old:
            assert old.schema_version == 3
            cid = add_pair(old, "from before", choice="a", note="old note")
            pending = add_pair(old, "still pending")
            assert "judgment_changes" not in old.db.table_names()
    with Store(path) as s:
        assert s.schema_version == schema.SCHEMA_VERSION  # 4 and everything after it
        assert "judgment_changes" in s.db.table_names()
        assert {"comparisons_judged", "judgment_changes_comparison"} <= {
            r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        [row] = jh.list_judgments(s)
        assert (row.comparison_id, row.choice, row.note, row.changes) == (
            cid, "a", "old note", 0)
        jh.change_verdict(s, cid, "b")
        assert s.preference_rows()[0]["chosen"] == "response b"
        assert s.next_pending().comparison_id == pending
