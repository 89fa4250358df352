"""The Chat page with a tiny chat model: the history goes through the chat template turn after
turn and is kept; a rating turn stores a judged pair as shown (sides, the policy that wrote
both answers, the conversation as its prompt) and the chosen answer goes on; a private
conversation stores nothing."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt

from desktop_app.core.data import chat
from desktop_app.ml.generation import playground

from .test_playground_page import add_runs, tiny_artifacts  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # loads a model and generates


def open_chat(window, base=None):
    window.show_page("Chat")
    page = window.chat_page
    page.device = "cpu"
    if base is not None:
        page.set_base_model(str(base))
    cfg = page.form.value()
    cfg.max_new_tokens = 12
    page.form.set_value(cfg)
    return page


def say(qtbot, page, text: str) -> None:
    page.input.setPlainText(text)
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not page.running, timeout=60_000)


@pytest.fixture
def prompts_seen(monkeypatch):
    """What the model was given, turn by turn, as the chat template renders it."""
    seen = []
    stream = playground.Playground.stream

    def spy(self, prompt, *args, **kwargs):
        from desktop_app.ml.generation.sampling import render_prompt
        seen.append((prompt.messages, render_prompt(self.tokenizer, prompt)))
        return stream(self, prompt, *args, **kwargs)
    monkeypatch.setattr(playground.Playground, "stream", spy)
    return seen


def test_a_multi_turn_chat_goes_through_the_template_and_is_kept(qtbot, window, store,
                                                                tiny_chat_model, prompts_seen):
    page = open_chat(window, tiny_chat_model)
    page.rate_box.setCurrentText("Never")
    say(qtbot, page, "Where is the cat?")
    say(qtbot, page, "And the dog?")

    [first, second] = prompts_seen
    reply = page.turns[1].content
    assert second[0] == [{"role": "user", "content": "Where is the cat?"},
                         {"role": "assistant", "content": reply},
                         {"role": "user", "content": "And the dog?"}]
    text, templated = second[1]
    assert templated and text.index("Where is the cat?") < text.index("And the dog?")
    assert first[1][0] in text  # the second turn's prompt extends the first's

    [conversation] = chat.conversations(store)
    assert conversation["title"] == "Where is the cat?" and conversation["turns"] == 4
    stored = chat.turns(store, conversation["id"])
    assert [t.role for t in stored] == ["user", "assistant"] * 2
    assert stored[1].policy_run_id is None  # the base model wrote it
    kept = [store.get_prompt(p["id"]) for p in store.list_prompts()]
    assert [(p["source"], len(json.loads(p["messages"]))) for p in kept] == [("chat", 1),
                                                                           ("chat", 3)]
    assert "Where is the cat?" in page.transcript.toPlainText()
    assert page.conversation_list.count() == 1


def test_a_rating_turn_stores_the_pair_as_shown_and_the_choice_goes_on(
        qtbot, window, workspace, store, tiny_chat_model, tiny_artifacts):  # noqa: F811
    _, ppo = add_runs(store, workspace, tiny_chat_model, tiny_artifacts)
    page = open_chat(window)
    page.refresh()
    page.policy_box.setCurrentIndex(page.policy_box.findData(ppo))
    page.rate_box.setCurrentText("Every turn")
    say(qtbot, page, "Tell me about the rain.")
    assert page.pending is not None and page.rating_panel.isVisible()
    left, right = (generation.text for generation in page.pending[1])
    assert page.candidates[0].toPlainText().strip() and page.candidates[1].toPlainText().strip()
    assert not page.send_button.isEnabled()

    qtbot.keyClick(page, Qt.Key.Key_2)  # the right one is better
    assert page.pending is None and not page.rating_panel.isVisible()
    [row] = store.db.execute("SELECT id, choice, source, left_generation_id, generation_a_id, "
                             "generation_b_id, prompt_id FROM comparisons").fetchall()
    cid, choice, source, shown_left, a, b, prompt_id = row
    assert (choice, source, shown_left) == ("b", "chat", a)
    pair = store.get_pair(cid)
    assert (pair.left["text"], pair.right["text"]) == (left, right)
    policy_dir = str(workspace.runs_dir / f"{ppo:04d}-ppo" / "policy")
    assert pair.left["adapter"] == pair.right["adapter"] == policy_dir
    assert pair.left["seed"] != pair.right["seed"]
    assert pair.messages == [{"role": "user", "content": "Tell me about the rain."}]
    [conversation] = chat.conversations(store)
    stored = chat.turns(store, conversation["id"])
    assert stored[-1] == chat.Turn("assistant", right, ppo, cid)  # the chosen one goes on
    assert store.preference_rows()[0]["chosen"] == right  # training data like any judgment


def test_a_private_conversation_stores_nothing(qtbot, window, store, tiny_chat_model):
    page = open_chat(window, tiny_chat_model)
    page.private_box.setChecked(True)
    page.rate_box.setCurrentText("Every turn")  # and is never rated
    say(qtbot, page, "A secret question?")
    say(qtbot, page, "Another one?")
    assert [t.role for t in page.turns] == ["user", "assistant"] * 2
    assert page.pending is None
    assert chat.conversations(store) == [] and store.list_prompts() == []
    assert store.db.execute("SELECT COUNT(*) FROM comparisons").fetchone() == (0,)


def test_chat_and_the_playground_keep_one_copy_of_the_model(qtbot, window, tiny_chat_model):
    page = open_chat(window, tiny_chat_model)
    page.rate_box.setCurrentText("Never")
    say(qtbot, page, "Hi?")
    assert page.session is not None
    window.playground_page.models_needed.emit()  # a Playground run starts
    assert page.session is None
    closed = []
    window.playground_page.session = type("Session", (), {"close": lambda s: closed.append(1)})()
    say(qtbot, page, "Again?")  # a chat turn starts: the Playground's copy goes
    assert closed == [1] and window.playground_page.session is None
    assert page.turns[-1].role == "assistant"
