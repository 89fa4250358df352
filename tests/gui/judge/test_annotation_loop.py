"""The annotation loop end to end in the real window: load a tiny model, generate pairs in the
background, judge with keys and clicks, undo, and check every row that lands in SQLite."""

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog

pytestmark = pytest.mark.slow  # loads a model and generates in the real window

PROMPTS = [f"Prompt number {i}: tell me something nice." for i in range(12)]


def load_and_wait_for_pair(qtbot, window, model_path):
    page = window.models_page
    page.select_path(str(model_path))
    assert page.info is not None and page.load_button.isEnabled()
    assert "parameters" in page.details.text() and "Runs as" in page.details.text()
    page.dtype_box.setCurrentText("float32")
    qtbot.mouseClick(page.load_button, Qt.MouseButton.LeftButton)
    judge = window.judge_page
    qtbot.waitUntil(lambda: judge.loop.current is not None, timeout=120_000)
    assert window.pages.currentWidget() is judge
    return judge


def row(store, comparison_id):
    return store.db["comparisons"].get(comparison_id)


def test_judge_with_keys_clicks_undo_and_note(qtbot, window, store, tiny_chat_model, monkeypatch):
    store.add_prompts(PROMPTS)
    window.judge_page.queue.cfg.max_new_tokens = 12
    window.judge_page.form.set_value(window.judge_page.queue.cfg)
    judge = load_and_wait_for_pair(qtbot, window, tiny_chat_model)
    view = judge.view
    view.setFocus()

    # 1. Key "1": the left response wins; the stored choice names that generation.
    first = judge.loop.current
    assert view.left.source_text == first.left["text"]
    assert view.right.source_text == first.right["text"]
    qtbot.keyClick(view, Qt.Key.Key_1)
    r = row(store, first.comparison_id)
    winner = r["generation_a_id"] if r["choice"] == "a" else r["generation_b_id"]
    assert winner == r["left_generation_id"] == first.left["id"]
    assert r["seconds"] is not None and r["seconds"] >= 0 and r["judged_at"]

    # 2. Right arrow: the right response wins.
    qtbot.waitUntil(lambda: judge.loop.current is not None, timeout=60_000)
    second = judge.loop.current
    assert second.comparison_id != first.comparison_id
    qtbot.keyClick(view, Qt.Key.Key_Right)
    r = row(store, second.comparison_id)
    winner = r["generation_a_id"] if r["choice"] == "a" else r["generation_b_id"]
    assert winner == second.right["id"] != r["left_generation_id"]

    # 3. Click "Tie", then Ctrl+Z brings the same pair back, pending again.
    qtbot.waitUntil(lambda: judge.loop.current is not None, timeout=60_000)
    third = judge.loop.current
    qtbot.mouseClick(view.buttons["tie"], Qt.MouseButton.LeftButton)
    assert row(store, third.comparison_id)["choice"] == "tie"
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert judge.loop.current.comparison_id == third.comparison_id
    assert row(store, third.comparison_id)["choice"] is None
    assert view.left.source_text == third.left["text"]

    # 4. N attaches a note; B stores "both bad" with it.
    monkeypatch.setattr(QInputDialog, "getMultiLineText",
                        staticmethod(lambda *a, **k: ("too short, both of them", True)))
    qtbot.keyClick(view, Qt.Key.Key_N)
    assert "too short" in view.note_label.text()
    qtbot.keyClick(view, Qt.Key.Key_B)
    r = row(store, third.comparison_id)
    assert (r["choice"], r["note"]) == ("both_bad", "too short, both of them")

    # 5. S skips; T ties (key versions).
    qtbot.waitUntil(lambda: judge.loop.current is not None, timeout=60_000)
    fourth = judge.loop.current
    qtbot.keyClick(view, Qt.Key.Key_S)
    assert row(store, fourth.comparison_id)["choice"] == "skip"
    qtbot.waitUntil(lambda: judge.loop.current is not None, timeout=60_000)
    fifth = judge.loop.current
    qtbot.keyClick(view, Qt.Key.Key_T)
    assert row(store, fifth.comparison_id)["choice"] == "tie"

    # 6. Click "Left is better" / "Right is better".
    qtbot.waitUntil(lambda: judge.loop.current is not None, timeout=60_000)
    sixth = judge.loop.current
    qtbot.mouseClick(view.buttons["right"], Qt.MouseButton.LeftButton)
    r = row(store, sixth.comparison_id)
    assert (r["generation_a_id"] if r["choice"] == "a" else r["generation_b_id"]) \
        == sixth.right["id"]

    # Generations record model, sampling, seed and token counts; the progress line adds up.
    g = store.db["generations"].get(first.left["id"])
    assert g["model"] == str(tiny_chat_model) and json.loads(g["sampling"])["max_new_tokens"] == 12
    assert g["seed"] is not None and g["completion_tokens"] >= 1 and g["prompt_tokens"] >= 1
    assert "This session: 6 judged" in view.status.text()
    assert store.stats()["judged"] == 6
    judge.queue.shutdown()
    runs = store.list_runs()
    assert runs and runs[0].kind == "generate" and runs[0].status == "completed"


def test_queue_stays_ahead_of_the_annotator(qtbot, window, store, tiny_chat_model):
    store.add_prompts(PROMPTS)
    judge = window.judge_page
    judge.queue.cfg.max_new_tokens = 8
    judge.queue.cfg.batch_size = 4
    judge.form.set_value(judge.queue.cfg)  # a setting changed by hand outlasts the model's own
    judge.target_spin.setValue(4)
    load_and_wait_for_pair(qtbot, window, tiny_chat_model)
    qtbot.waitUntil(lambda: not judge.queue.busy and store.pending_count() >= 4, timeout=120_000)
    # With a warm queue the next pair is on screen as soon as the judgment returns.
    for _ in range(3):
        before = judge.loop.current.comparison_id
        qtbot.keyClick(judge.view, Qt.Key.Key_2)
        assert judge.loop.current is not None and judge.loop.current.comparison_id != before
    judge.queue.shutdown()


def test_bad_model_folder_shows_message_and_app_stays_usable(qtbot, window, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    page = window.models_page
    page.select_path(str(empty))
    assert "config.json" in page.message.text() and str(empty) in page.message.text()
    assert not page.load_button.isEnabled()
    window.show_page("Prompts")
    assert window.pages.currentWidget() is window.prompts_page


def test_prompts_page_import_add_delete(qtbot, window, store, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox
    shown = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: shown.append(a[2]))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": "two"}\nnot json\n{"prompt": "one"}\n',
                    encoding="utf-8")
    page = window.prompts_page
    page.import_path(str(path))
    assert "imported 2 prompts" in shown[-1] and "1 duplicate," in shown[-1]
    assert "line 3" in shown[-1]
    assert page.model.rowCount() == 2
    page.table.selectRow(0)
    page.delete_selected()
    assert [p["text"] for p in store.list_prompts()] == ["two"]
