"""Preference data in the field's published forms: HH-RLHF, UltraFeedback, TRL's implicit prompt,
CSV and Parquet. Each bad row is reported by file, line and reason; good rows around it are kept."""

from __future__ import annotations

import json
import sys

import pytest

from desktop_app.core.data.formats import FormatError, PairRecord, parse_file
from desktop_app.core.data.preference_formats import hh_transcript


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*rows):
    return "\n".join(json.dumps(row) for row in rows) + "\n"


def reasons(parsed):
    return {p.line: p.reason for p in parsed.problems}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# --- Anthropic HH-RLHF --------------------------------------------------------------------

def test_hh_single_turn(tmp_path):
    row = {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: It is 4.",
           "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: Five."}
    [pair] = parse_file(write(tmp_path, "hh.jsonl", jsonl(row))).pairs
    assert pair == PairRecord("What is 2+2?", [user("What is 2+2?")], "It is 4.", "Five.", 1)


def test_hh_multi_turn_prompt_is_the_shared_conversation(tmp_path):
    shared = "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke."
    row = {"chosen": shared + "\n\nAssistant: Why did the chicken cross the road?",
           "rejected": shared + "\n\nAssistant: No."}
    [pair] = parse_file(write(tmp_path, "hh.jsonl", jsonl(row))).pairs
    assert pair.prompt_messages == [user("Hi"), assistant("Hello! How can I help?"),
                                    user("Tell me a joke.")]
    assert pair.prompt == "User: Hi\n\nAssistant: Hello! How can I help?\n\nUser: Tell me a joke."
    assert (pair.chosen, pair.rejected) == ("Why did the chicken cross the road?", "No.")


def test_hh_answers_that_start_alike_are_split_at_the_assistant_turn(tmp_path):
    row = {"chosen": "\n\nHuman: Is it safe?\n\nAssistant: Yes, if you wear gloves.",
           "rejected": "\n\nHuman: Is it safe?\n\nAssistant: Yes."}
    [pair] = parse_file(write(tmp_path, "hh.jsonl", jsonl(row))).pairs
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Is it safe?", "Yes, if you wear gloves.",
                                                         "Yes.")


def test_hh_without_the_leading_blank_line(tmp_path):
    row = {"chosen": "Human: x\n\nAssistant: y", "rejected": "Human: x\n\nAssistant: z"}
    [pair] = parse_file(write(tmp_path, "hh.jsonl", jsonl(row))).pairs
    assert (pair.prompt, pair.chosen, pair.rejected) == ("x", "y", "z")


def test_hh_problems_name_the_line_and_reason(tmp_path):
    good = {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}
    path = write(tmp_path, "hh.jsonl", jsonl(
        good,
        {"chosen": "Hello", "rejected": "World"},                                    # 2
        {"chosen": "\n\nHuman: q\n\nAssistant: a",
         "rejected": "\n\nHuman: other\n\nAssistant: b"},                            # 3
        {"chosen": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: q\n\nAssistant: a",
         "rejected": "\n\nHuman: hi\n\nAssistant: go away\n\nHuman: q\n\nAssistant: b"},  # 4
        {"chosen": "\n\nHuman: q\n\nAssistant:", "rejected": "\n\nHuman: q\n\nAssistant: b"},  # 5
        {"chosen": "\n\nHuman: q", "rejected": "\n\nHuman: q"},                      # 6
        {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: a"},  # 7
        {"chosen": "\n\nHuman: q\n\nAssistant: a"},                                  # 8
        good,
    ))
    parsed = parse_file(path)
    assert [p.line for p in parsed.pairs] == [1, 9]
    problems = reasons(parsed)
    assert sorted(problems) == [2, 3, 4, 5, 6, 7, 8]
    assert "missing 'prompt'" in problems[2] and "HH transcript" in problems[2]
    assert "\\n\\nHuman:" in problems[2]  # the shape is shown, on one line
    assert "share no Human turn followed by an Assistant turn" in problems[3]
    assert "part ways before their last Assistant turn" in problems[4]
    assert problems[5] == "'chosen' has an empty last Assistant turn"
    assert "HH transcript" in problems[6]
    assert "same text" in problems[7]
    assert problems[8] == "missing 'rejected'"
    assert str(parsed.problems[0]).startswith("hh.jsonl line 2: ")


def test_hh_transcript_writes_what_the_reader_reads():
    messages = [{"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello!"),
                user("Bye?")]
    assert hh_transcript("ignored", messages, "Bye.") == (
        "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye?\n\nAssistant: Bye.")
    assert hh_transcript("Plain?", None, "Yes.") == "\n\nHuman: Plain?\n\nAssistant: Yes."


# --- UltraFeedback binarized and TRL's implicit prompt ---------------------------------------

def ultrafeedback_row(prompt="Name a fruit.", chosen="Apple.", rejected="Car.", **extra):
    return {"prompt": prompt, "prompt_id": "3f2a", "chosen": [user(prompt), assistant(chosen)],
            "rejected": [user(prompt), assistant(rejected)],
            "messages": [user(prompt), assistant(chosen)], **extra}


def test_ultrafeedback_rows_strip_the_repeated_prompt(tmp_path):
    path = write(tmp_path, "uf.jsonl", jsonl(
        ultrafeedback_row(score_chosen=8.5, score_rejected=3),
        ultrafeedback_row("Say hi.", "Hi!", "No."),   # scores are optional
    ))
    parsed = parse_file(path)
    assert parsed.problems == []
    assert parsed.pairs == [
        PairRecord("Name a fruit.", [user("Name a fruit.")], "Apple.", "Car.", 1,
                   score_chosen=8.5, score_rejected=3.0),
        PairRecord("Say hi.", [user("Say hi.")], "Hi!", "No.", 2),
    ]


def test_ultrafeedback_multi_turn_and_system_prompt(tmp_path):
    history = [{"role": "system", "content": "Be kind."}, user("Hi"), assistant("Hello!"),
               user("Name a fruit.")]
    row = {"prompt": "Name a fruit.", "chosen": history + [assistant("Pear.")],
           "rejected": history + [assistant("Rock.")]}
    [pair] = parse_file(write(tmp_path, "uf.jsonl", jsonl(row))).pairs
    assert pair.prompt_messages == history
    assert pair.prompt == "User: Hi\n\nAssistant: Hello!\n\nUser: Name a fruit."
    assert (pair.chosen, pair.rejected) == ("Pear.", "Rock.")


def test_ultrafeedback_problems(tmp_path):
    path = write(tmp_path, "uf.jsonl", jsonl(
        ultrafeedback_row(score_chosen=1, score_rejected=2.5),           # 1 contradicts itself
        ultrafeedback_row(score_chosen=5, score_rejected=5),              # 2 equal: kept
        {**ultrafeedback_row(), "prompt": "Another question"},            # 3 prompt mismatch
        {**ultrafeedback_row(), "rejected": [user("Name a veg."), assistant("Leek.")]},  # 4
        ultrafeedback_row(score_chosen="high", score_rejected=2),        # 5 not a number
        {**ultrafeedback_row(), "chosen": [user("Name a fruit.")]},      # 6 no answer
    ))
    parsed = parse_file(path)
    assert [p.line for p in parsed.pairs] == [2]
    problems = reasons(parsed)
    assert sorted(problems) == [1, 3, 4, 5, 6]
    assert "'score_chosen' (1) is below 'score_rejected' (2.5)" in problems[1]
    assert problems[3] == "the last user turn in 'chosen' differs from 'prompt'"
    assert "continue different conversations" in problems[4]
    assert problems[5] == "'score_chosen' must be a number, found 'high'"
    assert "ends with a user turn" in problems[6]


def test_trl_implicit_prompt_rows(tmp_path):
    row = {"chosen": [user("What colour is the sky?"), assistant("Blue.")],
           "rejected": [user("What colour is the sky?"), assistant("Green.")]}
    [pair] = parse_file(write(tmp_path, "implicit.jsonl", jsonl(row))).pairs
    assert pair == PairRecord("What colour is the sky?", [user("What colour is the sky?")],
                              "Blue.", "Green.", 1)

    only_answers = {"chosen": [assistant("Blue.")], "rejected": [assistant("Green.")]}
    parsed = parse_file(write(tmp_path, "no-prompt.jsonl", jsonl(only_answers)))
    assert reasons(parsed) == {1: "missing 'prompt'"}


def test_conversational_prompt_repeated_in_the_responses(tmp_path):
    prompt = [user("Hi")]
    rows = [{"prompt": prompt, "chosen": prompt + [assistant("Hello")],
             "rejected": prompt + [assistant("Go")]},
            {"prompt": prompt, "chosen": [user("Other"), assistant("Hello")],
             "rejected": [assistant("Go")]}]
    parsed = parse_file(write(tmp_path, "c.jsonl", jsonl(*rows)))
    assert [(p.prompt, p.chosen, p.rejected) for p in parsed.pairs] == [("Hi", "Hello", "Go")]
    assert reasons(parsed) == {2: "the conversation in 'chosen' differs from 'prompt'"}


def test_tie_field(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "tie": True},
            {"prompt": "p", "chosen": "a", "rejected": "c", "tie": False},
            {"prompt": "p", "chosen": "a", "rejected": "d", "tie": "maybe"}]
    parsed = parse_file(write(tmp_path, "t.jsonl", jsonl(*rows)))
    assert [(p.rejected, p.tie) for p in parsed.pairs] == [("b", True), ("c", False)]
    assert reasons(parsed) == {3: "'tie' must be true or false, found 'maybe'"}


# --- CSV ----------------------------------------------------------------------------------

def test_csv_hh_transcripts_without_a_prompt_column(tmp_path):
    text = ('chosen,rejected\n'
            '"\n\nHuman: Hi, you\n\nAssistant: Hello!","\n\nHuman: Hi, you\n\nAssistant: Go."\n'
            'plain,text\n')
    parsed = parse_file(write(tmp_path, "hh.csv", text))
    assert [(p.prompt, p.chosen, p.rejected, p.line) for p in parsed.pairs] == [
        ("Hi, you", "Hello!", "Go.", 2)]
    # The first row spans lines 2-10 (its cells hold line breaks); the next starts on 11.
    assert list(reasons(parsed)) == [11] and "HH transcript" in reasons(parsed)[11]


def test_csv_scores_and_ties(tmp_path):
    text = ("prompt,chosen,rejected,score_chosen,score_rejected,tie\n"
            "p1,a,b,9,2,\n"
            "p2,a,b,,,true\n"
            "p3,a,b,1,2,false\n"
            "p4,a,b,x,2,\n")
    parsed = parse_file(write(tmp_path, "s.csv", text))
    assert [(p.prompt, p.score_chosen, p.score_rejected, p.tie) for p in parsed.pairs] == [
        ("p1", 9.0, 2.0, False), ("p2", None, None, True)]
    assert sorted(reasons(parsed)) == [4, 5]
    assert "is below" in reasons(parsed)[4] and "must be a number" in reasons(parsed)[5]


def test_csv_header_errors_mention_both_shapes(tmp_path):
    with pytest.raises(FormatError, match=r"^data\.csv: .*'prompt' column \(or 'chosen' and "
                                          r"'rejected'.*found 'question', 'answer'"):
        parse_file(write(tmp_path, "data.csv", "question,answer\nhi,there\n"))
    with pytest.raises(FormatError, match=r"'rejected' column but no 'chosen'"):
        parse_file(write(tmp_path, "half.csv", "rejected,other\nhi,there\n"))


# --- Parquet ------------------------------------------------------------------------------

def write_parquet(path, rows):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_ultrafeedback_rows_report_row_numbers(tmp_path):
    rows = [ultrafeedback_row(score_chosen=8.0, score_rejected=2.0),
            ultrafeedback_row("Say hi.", "Hi!", "No.", score_chosen=1.0, score_rejected=7.0),
            ultrafeedback_row("Count.", "1 2 3", "a b c", score_chosen=6.0, score_rejected=6.0)]
    parsed = parse_file(write_parquet(tmp_path / "train.parquet", rows))
    assert [(p.prompt, p.chosen, p.line) for p in parsed.pairs] == [
        ("Name a fruit.", "Apple.", 1), ("Count.", "1 2 3", 3)]
    assert [str(p) for p in parsed.problems] == [
        ("train.parquet line 2: 'score_chosen' (1) is below 'score_rejected' (7), so the row "
         "contradicts itself; fix the scores or swap the responses")]


def test_parquet_hh_and_prompt_tables(tmp_path):
    hh = [{"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}]
    [pair] = parse_file(write_parquet(tmp_path / "hh.parquet", hh)).pairs
    assert (pair.prompt, pair.chosen, pair.rejected) == ("q", "a", "b")

    prompts = [{"prompt": "one"}, {"prompt": None}, {"prompt": "three"}]
    parsed = parse_file(write_parquet(tmp_path / "prompts.parquet", prompts))
    assert [(p.text, p.line) for p in parsed.prompts] == [("one", 1), ("three", 3)]
    assert reasons(parsed) == {2: "'prompt' must be text, found null"}


def test_parquet_whole_file_errors(tmp_path):
    pytest.importorskip("pyarrow")
    with pytest.raises(FormatError, match=r"^bad\.parquet: not a readable Parquet file \("):
        parse_file(write(tmp_path, "bad.parquet", "this is not parquet"))
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match=r"^empty\.parquet: the file is empty"):
        parse_file(empty)
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), tmp_path / "none.parquet")
    with pytest.raises(FormatError, match=r"^none\.parquet: the table has no rows"):
        parse_file(tmp_path / "none.parquet")


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path, monkeypatch):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 whatever")
    # A None entry in sys.modules makes the import fail, as if pyarrow were not installed.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(FormatError) as info:
        parse_file(path)
    assert str(info.value) == "train.parquet: reading Parquet needs pyarrow: pip install pyarrow"
