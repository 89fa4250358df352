import random
import sqlite3
import threading

import pytest

from desktop_app.core.data.schema import SCHEMA_VERSION
from desktop_app.core.data.store import GenerationIn, Store, StoreError


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "rlhf.db") as s:
        yield s


def gen(text, **kw):
    return GenerationIn(text=text, model="/models/m", sampling={"temperature": 0.9}, seed=7,
                        batch_row=0, prompt_tokens=5, completion_tokens=3, finished=True, **kw)


def test_pragmas_and_schema(store, tmp_path):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version == SCHEMA_VERSION
    assert {"prompts", "generations", "comparisons", "runs", "metrics"} <= set(
        store.db.table_names())


def test_reopen_keeps_data_and_version(tmp_path):
    with Store(tmp_path / "rlhf.db") as s:
        s.add_prompts(["hello"])
    with Store(tmp_path / "rlhf.db") as s:
        assert s.schema_version == SCHEMA_VERSION
        assert [p["text"] for p in s.list_prompts()] == ["hello"]


def test_newer_database_is_refused(tmp_path):
    path = tmp_path / "rlhf.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer RLHF Desk"):
        Store(path)


def test_forward_migration_runs_only_missing_steps(tmp_path, monkeypatch):
    from desktop_app.core.data import schema
    from desktop_app.core.data import store as store_mod
    path = tmp_path / "rlhf.db"
    Store(path).close()
    extra = schema.MIGRATIONS + ["ALTER TABLE prompts ADD COLUMN tag TEXT;"]
    monkeypatch.setattr(store_mod, "MIGRATIONS", extra)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(extra))
    with Store(path) as s:
        assert s.schema_version == len(extra)
        assert "tag" in s.db["prompts"].columns_dict


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    from desktop_app.core.data import schema
    from desktop_app.core.data import store as store_mod
    path = tmp_path / "rlhf.db"
    Store(path).close()
    broken = schema.MIGRATIONS + ["CREATE TABLE t (x); THIS IS NOT SQL;"]
    monkeypatch.setattr(store_mod, "MIGRATIONS", broken)
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", len(broken))
    with pytest.raises(StoreError):
        Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "t" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "rlhf.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="rlhf.db"):
        Store(path)


def test_prompts_duplicates_are_counted(store):
    result = store.add_prompts(["a", "b", " a ", "c"])
    assert (result.added, result.duplicates) == (3, 1)
    again = store.add_prompts(["c", "d"])
    assert (again.added, again.duplicates) == (1, 1)
    with pytest.raises(StoreError):
        store.add_prompt("a")
    with pytest.raises(StoreError):
        store.add_prompts(["   "])


def test_edit_and_delete_prompts(store):
    ids = store.add_prompts(["one", "two"]).ids
    store.update_prompt(ids[0], "uno")
    assert store.get_prompt(ids[0])["text"] == "uno"
    with pytest.raises(StoreError, match="already has that text"):
        store.update_prompt(ids[0], "two")
    store.add_pairs([(ids[1], gen("x"), gen("y"))])
    store.judge(store.next_pending().comparison_id, "a")
    assert store.prompt_judgment_count([ids[1]]) == 1
    store.delete_prompts([ids[1]])
    assert store.stats()["comparisons"] == 0 and store.stats()["generations"] == 0


def test_pair_records_generation_details_and_side(store):
    pid = store.add_prompt("p")
    [cid] = store.add_pairs([(pid, gen("first"), gen("second"))], rng=random.Random(0))
    row = store.db["comparisons"].get(cid)
    assert row["left_generation_id"] in (row["generation_a_id"], row["generation_b_id"])
    g = store.db["generations"].get(row["generation_a_id"])
    assert (g["model"], g["seed"], g["prompt_tokens"], g["completion_tokens"], g["finished"]) == (
        "/models/m", 7, 5, 3, 1)
    assert '"temperature": 0.9' in g["sampling"]
    view = store.get_pair(cid)
    assert view.left["id"] == row["left_generation_id"]


def test_left_side_is_randomised(store):
    ids = store.add_prompts([f"p{i}" for i in range(200)]).ids
    store.add_pairs([(i, gen("a"), gen("b")) for i in ids], rng=random.Random(1))
    left_is_a = store.db.execute(
        "SELECT SUM(left_generation_id = generation_a_id) FROM comparisons").fetchone()[0]
    assert 70 < left_is_a < 130


def test_judge_maps_sides_and_undo(store):
    pid = store.add_prompt("p")
    store.add_pairs([(pid, gen("A"), gen("B"))])
    pair = store.next_pending()
    choice = pair.choice_for_side("right")
    store.judge(pair.comparison_id, choice, note="clearer", seconds=2.5)
    winner = store.get_pair(pair.comparison_id)
    assert winner.choice == choice and winner.note == "clearer"
    [row] = store.preference_rows()
    assert row["chosen"] == pair.right["text"] and row["rejected"] == pair.left["text"]
    with pytest.raises(StoreError, match="already judged"):
        store.judge(pair.comparison_id, "a")
    again = store.unjudge(pair.comparison_id)
    assert again.choice is None and store.pending_count() == 1
    assert again.left["id"] == pair.left["id"]  # shown the same way round again
    with pytest.raises(StoreError):
        store.unjudge(pair.comparison_id)
    with pytest.raises(StoreError, match="unknown choice"):
        store.judge(pair.comparison_id, "left")


def test_judgment_is_visible_to_another_connection_immediately(store, tmp_path):
    pid = store.add_prompt("p")
    store.add_pairs([(pid, gen("A"), gen("B"))])
    pair = store.next_pending()
    store.judge(pair.comparison_id, "tie")
    with Store(tmp_path / "rlhf.db") as other:
        assert other.get_pair(pair.comparison_id).choice == "tie"


def test_stats_and_side_rates(store):
    ids = store.add_prompts(["p1", "p2", "p3", "p4"]).ids
    store.add_pairs([(i, gen(f"a{i}"), gen(f"b{i}")) for i in ids[:3]])
    for side in ("left", "left", "tie"):
        pair = store.next_pending()
        store.judge(pair.comparison_id, pair.choice_for_side(side))
    stats = store.stats()
    assert stats["prompts"] == 4 and stats["prompts_without_pairs"] == 1
    assert stats["judged"] == 3 and stats["pending"] == 0
    assert stats["left_wins"] == 2 and stats["right_wins"] == 0
    assert stats["by_choice"]["tie"] == 1


def test_writes_from_two_threads(tmp_path):
    path = tmp_path / "rlhf.db"
    with Store(path) as main:
        ids = main.add_prompts([f"p{i}" for i in range(50)]).ids

        def writer():
            with Store(path) as s:
                for i in ids:
                    s.add_pairs([(i, gen("a"), gen("b"))])

        thread = threading.Thread(target=writer)
        thread.start()
        judged = 0
        while thread.is_alive() or main.pending_count():
            pair = main.next_pending()
            if pair:
                main.judge(pair.comparison_id, "a")
                judged += 1
        thread.join()
        assert judged == 50 and main.stats()["judged"] == 50


def test_runs_and_metrics(store):
    run = store.create_run("generate", {"model": "m"})
    store.add_metrics(run, [(0, "loss", 1.0), (1, "loss", 0.5)])
    store.finish_run(run, "completed", artifact="/x")
    assert store.get_run(run).status == "completed"
    assert [m["value"] for m in store.metrics(run, "loss")] == [1.0, 0.5]



@pytest.mark.slow  # real processes
def test_only_runs_whose_process_died_count_as_interrupted(tmp_path):
    """A run left 'running' by a process that died is interrupted; one that a live process
    (another window, a command-line job) is still running is left alone."""
    import subprocess
    import sys
    db = tmp_path / "rlhf.db"
    crashed = subprocess.run(
        [sys.executable, "-c",
         "import os, sys; from desktop_app.core.data.store import Store; "
         f"s = Store({str(db)!r}); print(s.create_run('ppo', {{}})); sys.stdout.flush(); "
         "os._exit(9)"],  # no finish_run, no close: as a kill would leave it
        capture_output=True, text=True, check=False)
    crashed_id = int(crashed.stdout.strip())
    with Store(db) as other_process_like, Store(db) as app:
        live = other_process_like.create_run("reward", {})
        assert app.mark_interrupted_runs() == 1
        assert app.get_run(crashed_id).status == "interrupted"
        assert "interrupted" in app.get_run(crashed_id).error
        assert app.get_run(live).status == "running"
        other_process_like.finish_run(live, "completed")
    with Store(db) as store:
        late = store.create_run("generate", {})
    with Store(db) as app:  # the store that ran it closed without finishing it
        assert app.mark_interrupted_runs() == 1
        assert app.get_run(late).status == "interrupted"


def test_prompts_without_pairs_per_model_and_adapter(store):
    """A tuned policy (the next round) still has every prompt to answer."""
    ids = store.add_prompts(["p1", "p2"]).ids
    store.add_pairs([(ids[0], GenerationIn("a", "/base"), GenerationIn("b", "/base"))])
    assert [r["id"] for r in store.prompts_without_pairs(10)] == [ids[1]]
    assert [r["id"] for r in store.prompts_without_pairs(10, model="/base")] == [ids[1]]
    assert [r["id"] for r in store.prompts_without_pairs(10, model="/base", adapter="/ppo")] == ids
    store.add_pairs([(ids[0], GenerationIn("c", "/base", adapter="/ppo"),
                      GenerationIn("d", "/base", adapter="/ppo"))])
    assert [r["id"] for r in store.prompts_without_pairs(10, model="/base", adapter="/ppo")] \
        == [ids[1]]
