"""The Prompts page's *Export judgments…*: the save dialog's filter picks the format, ties are
asked about, the result is reported."""

from __future__ import annotations

import json
import random

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox, QPushButton

from desktop_app.core.data.store import GenerationIn
from desktop_app.gui.prompts_page import EXPORT_FILTERS, PromptsPage


@pytest.fixture
def page(qtbot, store, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: shown.append(("info", a[2])))
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(("warning", a[2])))
    widget = PromptsPage(store)
    qtbot.addWidget(widget)
    widget.shown = shown
    return widget


def add_judged(store):
    store.add_prompts(["Say hi.", "Count."])
    ids = {r["text"]: r["id"] for r in store.list_prompts()}
    for prompt, a, b, choice in (("Say hi.", "Hi!", "Go.", "a"), ("Count.", "1 2", "2 1", "tie")):
        store.add_pairs([(ids[prompt], GenerationIn(a, "m"), GenerationIn(b, "m"))],
                        rng=random.Random(0), choice=choice)


def save_as(monkeypatch, path, label):
    """Answer the save dialog with ``path`` and the filter whose label starts with ``label``."""
    [chosen] = [f for f in EXPORT_FILTERS if f.startswith(label)]
    asked = []

    def get_save_file_name(parent, caption, directory, filters):
        asked.append(filters.split(";;"))
        return str(path), chosen

    monkeypatch.setattr(QFileDialog, "getSaveFileName", get_save_file_name)
    return asked


def answer_ties(monkeypatch, yes):
    button = QMessageBox.StandardButton.Yes if yes else QMessageBox.StandardButton.No
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: button)


def test_export_button_offers_every_format(page, store, tmp_path, monkeypatch):
    add_judged(store)
    asked = save_as(monkeypatch, tmp_path / "pairs", "TRL preference")
    answer_ties(monkeypatch, yes=False)
    [button] = [b for b in page.findChildren(QPushButton) if b.text() == "Export judgments…"]
    button.click()
    assert asked == [list(EXPORT_FILTERS)] and len(asked[0]) == 4
    # No suffix typed: the format's is added.
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert rows == [{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go."}]
    kind, text = page.shown[-1]
    assert kind == "info" and "Wrote 1 pair to" in text and "1 tie was left out" in text


@pytest.mark.parametrize("label, name, check", [
    ("TRL conversational", "c.jsonl", lambda t: json.loads(t.splitlines()[0])["chosen"][0]["role"]
     == "assistant"),
    ("Anthropic HH", "h.jsonl", lambda t: json.loads(t.splitlines()[0])["chosen"].startswith(
        "\n\nHuman: Say hi.")),
    ("CSV", "p.csv", lambda t: t.startswith("prompt,chosen,rejected,tie\n")),
])
def test_filter_picks_the_format_and_ties_can_be_included(page, store, tmp_path, monkeypatch,
                                                          label, name, check):
    add_judged(store)
    save_as(monkeypatch, tmp_path / name, label)
    answer_ties(monkeypatch, yes=True)
    page.export_dialog()
    assert check((tmp_path / name).read_text(encoding="utf-8"))
    assert "Wrote 2 pairs" in page.shown[-1][1] and "1 of them is a tie" in page.shown[-1][1]


def test_nothing_judged_and_failed_export(page, store, tmp_path, monkeypatch):
    asked = save_as(monkeypatch, tmp_path / "x.jsonl", "TRL preference")
    page.export_dialog()
    assert asked == [] and page.shown[-1] == ("info", "There are no judged pairs yet.")

    add_judged(store)
    save_as(monkeypatch, tmp_path / "missing" / "x.jsonl", "TRL preference")
    answer_ties(monkeypatch, yes=False)
    page.export_dialog()
    kind, text = page.shown[-1]
    assert kind == "warning" and "x.jsonl" in text and "does not exist" in text


def test_cancelled_dialog_writes_nothing(page, store, tmp_path, monkeypatch):
    add_judged(store)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    page.export_dialog()
    assert page.shown == [] and list(tmp_path.iterdir()) == [tmp_path / "ws"]
