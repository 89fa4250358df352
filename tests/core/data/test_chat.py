"""Chat in the store (``core/data/chat.py``): conversations and their turns, the prompt of a
conversation, a rated pair stored as it was shown, and a workspace from before chat."""

from __future__ import annotations

from desktop_app.core.data import chat, schema
from desktop_app.core.data.store import GenerationIn, Store


def test_turns_prompts_and_a_rating_as_shown(store):
    cid = chat.new_conversation(store, "  Where is\nthe cat?  " + "x" * 100)
    chat.add_turn(store, cid, chat.Turn("user", "Where is the cat?"))
    first = chat.prompt_for(store, [{"role": "user", "content": "Where is the cat?"}])
    assert chat.prompt_for(store, [{"role": "user", "content": "Where is the cat?"}]) == first
    left, right = GenerationIn("On the mat.", "m", adapter="/p"), GenerationIn("Gone.", "m")
    comparison = chat.record_rating(store, first, left, right, "b")
    chat.add_turn(store, cid, chat.Turn("assistant", "Gone.", None, comparison))
    pair = store.get_pair(comparison)
    assert pair.left_is_a and pair.left["text"] == "On the mat." and pair.choice == "b"
    assert pair.left["adapter"] == "/p"
    [row] = chat.conversations(store)
    assert row["title"] == "Where is the cat? " + "x" * 42 and row["turns"] == 2
    assert chat.turns(store, cid)[-1] == chat.Turn("assistant", "Gone.", None, comparison)

    chat.delete_conversation(store, cid)  # its prompt and judgment stay: they are data now
    assert chat.conversations(store) == [] and chat.turns(store, cid) == []
    assert store.get_pair(comparison) is not None and store.get_prompt(first)["source"] == "chat"


def test_a_workspace_from_before_chat_opens_with_its_judgments(tmp_path, monkeypatch):
    from desktop_app.core.data import store as store_mod
    path = tmp_path / "rlhf.db"
    with monkeypatch.context() as m:
        m.setattr(store_mod, "MIGRATIONS", schema.MIGRATIONS[:4])
        m.setattr(store_mod, "SCHEMA_VERSION", 4)
        with Store(path) as old:
            pid = old.add_prompts(["before"]).ids[0]
            old.add_pairs([(pid, GenerationIn("a", "m"), GenerationIn("b", "m"))], choice="a")
    with Store(path) as s:
        assert s.schema_version == schema.SCHEMA_VERSION
        assert {"conversations", "chat_turns"} <= set(s.db.table_names())
        assert s.preference_rows()[0]["chosen"] == "a"
