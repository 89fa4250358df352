"""Data in and out: every export format reads back as the same pairs, imported files export
back to the same rows, ties are opt-in, and an import that fails part-way leaves nothing."""

from __future__ import annotations

import csv
import io
import json
import random

import pytest

from desktop_app.core.data.exports import FORMATS, JudgedPair, export_judgments, write_pairs
from desktop_app.core.data.importing import import_file
from desktop_app.core.data.row_fields import conversation_text
from desktop_app.core.data.store import GenerationIn, Store

CHAT = [{"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."}]
ONE_TURN = [{"role": "user", "content": "Name a fruit."}]


def judged(prompt, messages, chosen, rejected, choice="a"):
    return (prompt, messages, chosen, rejected, choice)


# (prompt, messages, a, b, choice). For choice 'b' the chosen response is b.
PLAIN = [
    judged("How do I boil an egg?", None, "Boil it for 8 minutes.", "Eggs are food."),
    judged("Write, with \"quotes\", a haiku.", None, "Pluie sur le toit —\nle thé refroidit.",
           "No, thanks.", "b"),
    judged("Say hi.", None, "Hi!", "Hello.", "tie"),
    judged("Say bye.", None, "Bye!", "Nope.", "both_bad"),
    judged("Count to 3.", None, "1, 2, 3", "3, 2, 1", "skip"),
    judged("How do I boil an egg?", None, "Put it in boiling water.", "Fry it."),
]
CHATTY = [
    judged(conversation_text(CHAT, "p"), CHAT, "Why did the cat sit on the computer?", "No."),
    judged(conversation_text(ONE_TURN, "p"), ONE_TURN, "Apple.", "Car.", "b"),
    judged("A plain prompt", None, "yes", "no"),
    judged(conversation_text(ONE_TURN, "p"), ONE_TURN, "Pear.", "Plum.", "tie"),
]


def make_store(path, pairs) -> Store:
    store = Store(path)
    for prompt, messages, a, b, choice in pairs:
        store.add_prompts([(prompt, messages)])
        [row] = store.db.query("SELECT id FROM prompts WHERE text = ?", [prompt])
        store.add_pairs([(row["id"], GenerationIn(a, "m"), GenerationIn(b, "m"))],
                        rng=random.Random(0), choice=choice)
    return store


def pairs_of(store, *, messages=True, system=True):
    """The store's judgments as comparable tuples. A plain prompt and a one-user-turn chat are
    the same prompt (formats differ in which they write), so both are compared as messages."""
    result = []
    for row in store.preference_rows():
        chat = row["prompt_messages"] or [{"role": "user", "content": row["prompt"]}]
        if not system:
            chat = [m for m in chat if m["role"] != "system"]
        result.append((row["prompt"], chat if messages else None, row["chosen"],
                       row["rejected"], row["tie"]))
    return result


@pytest.fixture(params=[PLAIN, CHATTY], ids=["plain", "chat"])
def source(request, tmp_path):
    with make_store(tmp_path / "source.db", request.param) as store:
        yield store


# --- export, then import into a fresh store -----------------------------------------------

@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("ties", [False, True], ids=["no-ties", "ties"])
def test_export_then_import_gives_the_same_pairs(tmp_path, source, fmt, ties):
    out = tmp_path / f"out{FORMATS[fmt].suffix}"
    result = export_judgments(source, out, fmt, include_ties=ties)
    expected = [p for p in pairs_of(source, messages=fmt != "csv", system=fmt != "hh")
                if ties or not p[4]]
    assert result.pairs == len(expected) and result.ties == sum(p[4] for p in expected)

    with Store(tmp_path / "fresh.db") as fresh:
        report = import_file(fresh, out)
        assert report.problems == [] and report.imported == len(expected)
        assert report.ties == result.ties
        got = pairs_of(fresh, messages=fmt != "csv", system=fmt != "hh")
    assert got == expected


def test_ties_both_bad_and_skips_are_left_out_by_default(tmp_path, source):
    out = tmp_path / "out.jsonl"
    result = export_judgments(source, out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert result.ties == 0 and "tie" not in rows[0]
    assert len(rows) == sum(not p[4] for p in pairs_of(source))


def test_trl_switches_to_conversational_only_when_a_prompt_is_a_chat(tmp_path):
    with make_store(tmp_path / "plain.db", PLAIN) as store:
        export_judgments(store, tmp_path / "plain.jsonl", "trl")
        export_judgments(store, tmp_path / "forced.jsonl", "trl-chat")
    plain = json.loads((tmp_path / "plain.jsonl").read_text(encoding="utf-8").splitlines()[0])
    forced = json.loads((tmp_path / "forced.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert plain == {"prompt": "How do I boil an egg?", "chosen": "Boil it for 8 minutes.",
                     "rejected": "Eggs are food."}
    assert forced == {"prompt": [{"role": "user", "content": "How do I boil an egg?"}],
                      "chosen": [{"role": "assistant", "content": "Boil it for 8 minutes."}],
                      "rejected": [{"role": "assistant", "content": "Eggs are food."}]}


def test_hh_and_csv_rows(tmp_path):
    pairs = [JudgedPair("Say hi.", "Hi!", "Go away.", tie=True),
             JudgedPair(conversation_text(CHAT, "p"), "Chat answer", "Other", CHAT)]
    write_pairs(pairs, tmp_path / "hh.jsonl", "hh", include_ties=True)
    rows = [json.loads(line) for line in (tmp_path / "hh.jsonl").read_text().splitlines()]
    assert rows == [
        {"chosen": "\n\nHuman: Say hi.\n\nAssistant: Hi!",
         "rejected": "\n\nHuman: Say hi.\n\nAssistant: Go away.", "tie": True},
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a "
                   "joke.\n\nAssistant: Chat answer",
         "rejected": "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a "
                     "joke.\n\nAssistant: Other", "tie": False}]

    result = write_pairs(pairs, tmp_path / "pairs.csv", "csv")
    assert (result.pairs, result.ties) == (1, 0)  # the tie is left out
    text = (tmp_path / "pairs.csv").read_text(encoding="utf-8")
    assert list(csv.reader(io.StringIO(text))) == [
        ["prompt", "chosen", "rejected"],
        ["User: Hi\n\nAssistant: Hello! How can I help?\n\nUser: Tell me a joke.",
         "Chat answer", "Other"]]


def test_unknown_format_and_unusable_pairs(tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'parquet'"):
        write_pairs([], tmp_path / "x", "parquet")
    result = write_pairs([JudgedPair("p", "a", "a"), JudgedPair("p", "", "b"),
                          JudgedPair("p", "a", "b")], tmp_path / "x.csv", "csv")
    assert (result.pairs, result.unusable) == (1, 2)
    assert write_pairs([], tmp_path / "empty.csv", "csv").pairs == 0
    assert (tmp_path / "empty.csv").read_bytes() == b""


# --- import a file, then export it in the same format --------------------------------------

def hh(*turns):
    return "".join(f"\n\n{speaker}: {text}" for speaker, text in turns)


INPUTS = {
    "trl": [{"prompt": "How do I boil an egg?", "chosen": "Boil it.", "rejected": "Eggs."},
            {"prompt": "Quote \"this\", please", "chosen": "Line one\nline two", "rejected": "No"},
            {"prompt": "How do I boil an egg?", "chosen": "Eight minutes.", "rejected": "Fry."}],
    "trl-chat": [{"prompt": CHAT, "chosen": [{"role": "assistant", "content": "A joke."}],
                  "rejected": [{"role": "assistant", "content": "No."}]},
                 {"prompt": ONE_TURN, "chosen": [{"role": "assistant", "content": "Apple."}],
                  "rejected": [{"role": "assistant", "content": "Car."}]}],
    "hh": [{"chosen": hh(("Human", "What is 2+2?"), ("Assistant", "4.")),
            "rejected": hh(("Human", "What is 2+2?"), ("Assistant", "5."))},
           {"chosen": hh(("Human", "Hi"), ("Assistant", "Hello!"), ("Human", "Joke?"),
                         ("Assistant", "Knock knock.")),
            "rejected": hh(("Human", "Hi"), ("Assistant", "Hello!"), ("Human", "Joke?"),
                           ("Assistant", "No."))}],
}
CSV_INPUT = ('prompt,chosen,rejected\n'
             '"Hi, you","Hello,\nfriend",Go\n'
             'Say bye.,"She said ""bye""",No\n')


@pytest.mark.parametrize("fmt", list(INPUTS))
@pytest.mark.parametrize("ties", [False, True], ids=["no-ties", "ties"])
def test_import_then_export_reproduces_the_rows(tmp_path, fmt, ties):
    rows = [dict(row, tie=i == 1) if ties else row for i, row in enumerate(INPUTS[fmt])]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with Store(tmp_path / "ws.db") as store:
        report = import_file(store, source)
        assert report.problems == [] and report.imported == len(rows)
        export_judgments(store, tmp_path / "out.jsonl", fmt, include_ties=ties)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == rows


def test_import_then_export_reproduces_a_csv(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text(CSV_INPUT, encoding="utf-8")
    with Store(tmp_path / "ws.db") as store:
        import_file(store, source)
        export_judgments(store, tmp_path / "out.csv", "csv")
    assert (tmp_path / "out.csv").read_text(encoding="utf-8") == CSV_INPUT


def test_ultrafeedback_import_exports_as_trl_conversational(tmp_path):
    row = {"prompt": "Name a fruit.", "prompt_id": "x",
           "chosen": ONE_TURN + [{"role": "assistant", "content": "Apple."}],
           "rejected": ONE_TURN + [{"role": "assistant", "content": "Car."}],
           "messages": ONE_TURN, "score_chosen": 9.0, "score_rejected": 2.0}
    source = tmp_path / "uf.jsonl"
    source.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with Store(tmp_path / "ws.db") as store:
        import_file(store, source)
        export_judgments(store, tmp_path / "out.jsonl", "trl")
    [out] = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == {"prompt": ONE_TURN, "chosen": [{"role": "assistant", "content": "Apple."}],
                   "rejected": [{"role": "assistant", "content": "Car."}]}


# --- an import is all or nothing ---------------------------------------------------------

def test_a_failure_mid_import_leaves_nothing(tmp_path, monkeypatch):
    source = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "p1", "chosen": "a", "rejected": "b"},
            {"prompt": "p2", "chosen": "a", "rejected": "b", "tie": True},
            {"prompt": "p3", "chosen": "a", "rejected": "b"}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with Store(tmp_path / "ws.db") as store:
        store.add_prompts(["already here"])
        real_add_pairs, calls = store.add_pairs, []

        def add_pairs_then_fail(*args, **kwargs):
            # The first run of pairs is written; the second write fails as a full disk would.
            calls.append(real_add_pairs(*args, **kwargs))
            if len(calls) == 2:
                raise OSError("disk full")
            return calls[-1]

        monkeypatch.setattr(store, "add_pairs", add_pairs_then_fail)
        with pytest.raises(OSError, match="disk full"):
            import_file(store, source)
        assert len(calls) == 2  # rows really were written before the failure
        assert [p["text"] for p in store.list_prompts()] == ["already here"]
        assert store.db["generations"].count == 0 and store.db["comparisons"].count == 0

        monkeypatch.undo()
        report = import_file(store, source)  # and the same file imports cleanly afterwards
        assert (report.imported, report.ties) == (3, 1)
        assert store.stats()["by_choice"] | {} == {"a": 2, "b": 0, "tie": 1, "both_bad": 0,
                                                    "skip": 0}
