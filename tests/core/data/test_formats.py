"""parse_file: every supported format, and bad input reported by file and line."""

from __future__ import annotations

import json

import pytest

from desktop_app.core.data.formats import (
    FormatError,
    ImportProblem,
    PairRecord,
    PromptRecord,
    parse_file,
)


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def jsonl(*rows):
    return "\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n"


def reasons(parsed):
    return [(p.line, p.reason) for p in parsed.problems]


# --- .txt -------------------------------------------------------------------------------

def test_txt_one_prompt_per_non_empty_line(tmp_path):
    path = write(tmp_path, "prompts.txt", "  Write a haiku about rain.  \n\n\n"
                                          "How do I boil an egg?\n"
                                          "Explain \\n in C.\n   \n")
    parsed = parse_file(path)
    assert parsed.prompts == [
        PromptRecord("Write a haiku about rain.", None, 1),
        PromptRecord("How do I boil an egg?", None, 4),
        PromptRecord("Explain \\n in C.", None, 5),  # the backslash stays literal
    ]
    assert parsed.pairs == [] and parsed.problems == []
    assert parsed.path == str(path)


def test_bom_and_crlf_are_handled(tmp_path):
    path = write(tmp_path, "p.txt", b"\xef\xbb\xbfFirst prompt\r\n\r\nSecond prompt\r\n")
    parsed = parse_file(path)
    assert [(p.text, p.line) for p in parsed.prompts] == [("First prompt", 1), ("Second prompt", 3)]

    path = write(tmp_path, "p.jsonl", b'\xef\xbb\xbf{"prompt": "a"}\r\n{"prompt": "b"}\r\n')
    parsed = parse_file(path)
    assert [(p.text, p.line) for p in parsed.prompts] == [("a", 1), ("b", 2)]
    assert parsed.problems == []


# --- .jsonl prompts -----------------------------------------------------------------------

def test_jsonl_prompt_rows(tmp_path):
    path = write(tmp_path, "prompts.jsonl", jsonl({"prompt": " Hi there "}, "",
                                                  {"prompt": "Name a colour.", "id": 7}))
    parsed = parse_file(path)
    assert parsed.prompts == [PromptRecord("Hi there", None, 1),
                              PromptRecord("Name a colour.", None, 3)]
    assert parsed.problems == []


def test_jsonl_chat_messages_single_user_turn(tmp_path):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is a prime number?"},
                {"role": "assistant", "content": "A number with two divisors."}]
    parsed = parse_file(write(tmp_path, "chat.jsonl", jsonl({"messages": messages})))
    [record] = parsed.prompts
    # The prompt stops at the last user turn; the answer is not part of it.
    assert record.text == "What is a prime number?"
    assert record.messages == messages[:2]
    assert record.line == 1


def test_jsonl_chat_messages_several_user_turns_give_a_transcript(tmp_path):
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "User", "content": " Tell me a joke. "},
                {"role": "assistant", "content": "Knock knock."}]
    parsed = parse_file(write(tmp_path, "chat.jsonl", jsonl({"messages": messages})))
    [record] = parsed.prompts
    # The system message is kept in the messages but left out of the readable text.
    assert record.text == "User: Hi\n\nAssistant: Hello!\n\nUser: Tell me a joke."
    assert record.messages == messages[:3] + [{"role": "user", "content": "Tell me a joke."}]


def test_jsonl_trl_conversational_prompt_only_rows(tmp_path):
    prompt = [{"role": "user", "content": "Name a fruit."}]
    [record] = parse_file(write(tmp_path, "p.jsonl", jsonl({"prompt": prompt}))).prompts
    assert record == PromptRecord("Name a fruit.", prompt, 1)


def test_chat_messages_problems(tmp_path):
    path = write(tmp_path, "chat.jsonl", jsonl(
        {"messages": [{"role": "assistant", "content": "Hi"}]},
        {"messages": "hello"},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "robot", "content": "beep"}]},
        {"messages": [{"role": "user", "content": "  "}]},
        {"messages": []},
        {"messages": [{"role": "user", "content": "ok"}]},
    ))
    parsed = parse_file(path)
    assert [p.text for p in parsed.prompts] == ["ok"]
    lines = [line for line, _ in reasons(parsed)]
    assert lines == [1, 2, 3, 4, 5, 6]
    text = " | ".join(reason for _, reason in reasons(parsed))
    assert "no user turn" in text and "list of messages" in text and "'role'" in text
    assert "robot" in text and "empty" in text


# --- .jsonl pairs -------------------------------------------------------------------------

def test_jsonl_trl_standard_pairs(tmp_path):
    path = write(tmp_path, "pairs.jsonl", jsonl(
        {"prompt": "How do I boil an egg?", "chosen": " Put it in boiling water for 8 minutes. ",
         "rejected": "Eggs."},
        {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
    ))
    parsed = parse_file(path)
    assert parsed.pairs == [
        PairRecord("How do I boil an egg?", None, "Put it in boiling water for 8 minutes.",
                   "Eggs.", 1),
        PairRecord("Say hi.", None, "Hi!", "No.", 2),
    ]
    assert parsed.prompts == [] and parsed.problems == []


def test_jsonl_trl_conversational_pairs(tmp_path):
    prompt = [{"role": "user", "content": "What colour is the sky?"}]
    path = write(tmp_path, "pairs.jsonl", jsonl(
        {"prompt": prompt,
         "chosen": [{"role": "assistant", "content": "Blue on a clear day."}],
         "rejected": [{"role": "assistant", "content": "Green."}]},
    ))
    [pair] = parse_file(path).pairs
    assert pair == PairRecord("What colour is the sky?", prompt, "Blue on a clear day.",
                              "Green.", 1)


def test_pair_problems_are_reported_and_good_rows_kept(tmp_path):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    path = write(tmp_path, "pairs.jsonl", jsonl(
        good,
        {"prompt": "p", "chosen": "a"},                          # 2 missing rejected
        {"prompt": "p", "chosen": "same", "rejected": "same"},   # 3 identical
        {"prompt": 5, "chosen": "a", "rejected": "b"},           # 4 wrong type
        {"prompt": "p", "chosen": "", "rejected": "b"},          # 5 empty
        {"prompt": [{"role": "user", "content": "q"}],
         "chosen": [{"role": "user", "content": "a"}],
         "rejected": [{"role": "assistant", "content": "b"}]},   # 6 user turn in chosen
        {"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
         "chosen": "a", "rejected": "b"},                        # 7 prompt ends with assistant
        good,
    ))
    parsed = parse_file(path)
    assert [pair.line for pair in parsed.pairs] == [1, 8]
    problems = dict(reasons(parsed))
    assert sorted(problems) == [2, 3, 4, 5, 6, 7]
    assert problems[2] == "missing 'rejected'"
    assert "same text" in problems[3]
    assert "'prompt' must be text, found a number" == problems[4]
    assert problems[5] == "'chosen' is empty"
    assert "only assistant turns" in problems[6]
    assert "end with a user turn" in problems[7]


def test_bad_json_on_line_n_is_reported_as_line_n(tmp_path):
    path = write(tmp_path, "prompts.jsonl",
                 '{"prompt": "one"}\n{"prompt": "two"}\n\n{"prompt": "three" "x"}\n'
                 '[1, 2]\n"just text"\n{"prompt": "seven"}\n')
    parsed = parse_file(path)
    assert [(p.text, p.line) for p in parsed.prompts] == [("one", 1), ("two", 2), ("seven", 7)]
    assert [p.line for p in parsed.problems] == [4, 5, 6]
    bad_json = parsed.problems[0]
    assert bad_json.reason.startswith("not valid JSON (Expecting ',' delimiter")
    assert str(bad_json).startswith("prompts.jsonl line 4: not valid JSON (")
    assert parsed.problems[1].reason == "expected a JSON object, found an array"
    assert parsed.problems[2].reason == "expected a JSON object, found a string"


def test_row_without_known_fields(tmp_path):
    parsed = parse_file(write(tmp_path, "x.jsonl", jsonl({"text": "hello"}, {"prompt": None},
                                                         {"prompt": "a", "messages": []})))
    assert parsed.prompts == []
    assert [p.line for p in parsed.problems] == [1, 2, 3]
    assert "needs a 'prompt' or 'messages' field" in parsed.problems[0].reason
    assert "'text'" in parsed.problems[0].reason
    assert parsed.problems[1].reason == "'prompt' must be text, found null"
    assert "both 'prompt' and 'messages'" in parsed.problems[2].reason


def test_mixed_kinds_follow_the_first_valid_row(tmp_path):
    pair = {"prompt": "p", "chosen": "a", "rejected": "b"}
    path = write(tmp_path, "mixed.jsonl", jsonl(
        "{broken",                       # 1: invalid rows do not decide the kind
        {"prompt": "a prompt"},          # 2: first valid row: this is a prompts file
        pair,                            # 3: a pair in a prompts file
        {"prompt": "another prompt"},
    ))
    parsed = parse_file(path)
    assert [p.text for p in parsed.prompts] == ["a prompt", "another prompt"]
    assert parsed.pairs == []
    assert [p.line for p in parsed.problems] == [1, 3]
    assert "preference pair" in parsed.problems[1].reason
    assert "from line 2" in parsed.problems[1].reason

    parsed = parse_file(write(tmp_path, "mixed2.jsonl", jsonl(pair, {"prompt": "lonely"}, pair)))
    assert [p.line for p in parsed.pairs] == [1, 3]
    assert parsed.prompts == []
    assert [p.line for p in parsed.problems] == [2]
    assert "holds a prompt but the file holds a preference pair" in parsed.problems[0].reason


# --- .json arrays -----------------------------------------------------------------------

def test_json_array_of_objects_with_line_numbers(tmp_path):
    text = ('[\n'
            '  {"prompt": "first"},\n'
            '  {\n'
            '    "prompt": ""\n'
            '  },\n'
            '  {"prompt": "third"}, 42\n'
            ']\n')
    parsed = parse_file(write(tmp_path, "prompts.json", text))
    assert [(p.text, p.line) for p in parsed.prompts] == [("first", 2), ("third", 6)]
    assert reasons(parsed) == [(3, "'prompt' is empty"),
                               (6, "expected a JSON object, found a number")]


def test_json_pairs_array(tmp_path):
    rows = [{"prompt": "p1", "chosen": "a", "rejected": "b"},
            {"prompt": "p2", "chosen": "c", "rejected": "d"}]
    parsed = parse_file(write(tmp_path, "pairs.json", json.dumps(rows)))
    assert [(p.prompt, p.chosen, p.rejected, p.line) for p in parsed.pairs] == [
        ("p1", "a", "b", 1), ("p2", "c", "d", 1)]


def test_json_file_holding_json_lines_is_read_line_by_line(tmp_path):
    parsed = parse_file(write(tmp_path, "p.json",
                              '{"prompt": "a"}\n{"prompt": \n{"prompt": "c"}\n'))
    assert [(p.text, p.line) for p in parsed.prompts] == [("a", 1), ("c", 3)]
    assert [p.line for p in parsed.problems] == [2]


def test_json_whole_file_errors(tmp_path):
    with pytest.raises(FormatError, match=r"^bad\.json: not valid JSON: .* line 2"):
        parse_file(write(tmp_path, "bad.json", '[\n  {"prompt": "a",}\n]'))
    with pytest.raises(FormatError, match=r"^obj\.json: expected a JSON array of objects, "
                                          r"found an object"):
        parse_file(write(tmp_path, "obj.json", '{"data": [\n{"prompt": "a"}]}'))
    with pytest.raises(FormatError, match=r"^none\.json: the JSON array is empty"):
        parse_file(write(tmp_path, "none.json", "[ ]"))


# --- .csv -------------------------------------------------------------------------------

def test_csv_prompts_case_insensitive_header(tmp_path):
    path = write(tmp_path, "prompts.csv", "id,Prompt\n1,  Write a haiku.  \n2,\n3,\"Hi, you\"\n")
    parsed = parse_file(path)
    assert parsed.prompts == [PromptRecord("Write a haiku.", None, 2),
                              PromptRecord("Hi, you", None, 4)]
    assert reasons(parsed) == [(3, "'prompt' is empty")]


def test_csv_pairs(tmp_path):
    path = write(tmp_path, "pairs.csv", "prompt,chosen,rejected,note\n"
                                        "Say hi.,Hello!,No.,x\n"
                                        "Say bye.,Bye!,Bye!,\n")
    parsed = parse_file(path)
    assert parsed.pairs == [PairRecord("Say hi.", None, "Hello!", "No.", 2)]
    assert reasons(parsed) == [(3, "'chosen' and 'rejected' are the same text")]


def test_csv_multi_line_cells_report_the_starting_line(tmp_path):
    text = ('prompt,chosen,rejected\r\n'
            '"A poem\r\nplease",ok,"two\r\nlines"\r\n'    # lines 2-4
            '\r\n'                                        # 5 blank
            'p,"x\r\ny\r\nz",x\r\n'                       # lines 6-8
            ',a,b\r\n'                                    # 9: empty prompt
            'short,only\r\n'                              # 10: no rejected cell
            'q,a,b,extra\r\n'                             # 11: extra cell
            'r,a,b,,\r\n')                                # 12: empty extra cells are fine
    parsed = parse_file(write(tmp_path, "pairs.csv", text))
    assert parsed.pairs == [PairRecord("A poem\nplease", None, "ok", "two\nlines", 2),
                            PairRecord("p", None, "x\ny\nz", "x", 6),
                            PairRecord("r", None, "a", "b", 12)]
    problems = dict(reasons(parsed))
    assert sorted(problems) == [9, 10, 11]
    assert problems[9] == "'prompt' is empty"
    assert problems[10] == "missing 'rejected'"
    assert "4 cells but the header has 3" in problems[11]


def test_csv_without_prompt_column_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match=r"^data\.csv: .*'prompt' column.*'question'"):
        parse_file(write(tmp_path, "data.csv", "question,answer\nhi,there\n"))
    with pytest.raises(FormatError, match=r"separated by ';'"):
        parse_file(write(tmp_path, "semi.csv", "prompt;chosen\nhi;there\n"))
    with pytest.raises(FormatError, match=r"'chosen' column but no 'rejected'"):
        parse_file(write(tmp_path, "half.csv", "prompt,chosen\nhi,there\n"))
    with pytest.raises(FormatError, match=r"header but no rows"):
        parse_file(write(tmp_path, "header.csv", "prompt\n"))


# --- whole-file problems ----------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match=r"^nowhere\.jsonl: file not found"):
        parse_file(tmp_path / "nowhere.jsonl")


def test_folder_instead_of_file(tmp_path):
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(FormatError, match=r"^folder\.txt: is a folder"):
        parse_file(tmp_path / "folder.txt")


def test_unknown_extension(tmp_path):
    with pytest.raises(FormatError, match=r"^prompts\.xlsx: unsupported file type '\.xlsx'"):
        parse_file(write(tmp_path, "prompts.xlsx", "prompt\nhi\n"))


def test_extension_is_case_insensitive(tmp_path):
    assert [p.text for p in parse_file(write(tmp_path, "P.TXT", "hi\n")).prompts] == ["hi"]


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = write(tmp_path, "latin.txt", "caf\u00e9\nna\u00efve\n", encoding="latin-1")
    with pytest.raises(FormatError, match=r"^latin\.txt: not UTF-8 text: byte 0xe9 on line 1"):
        parse_file(path)
    path = write(tmp_path, "late.jsonl", b'{"prompt": "ok"}\n{"prompt": "\xff"}\n')
    with pytest.raises(FormatError, match=r"byte 0xff on line 2"):
        parse_file(path)
    # UTF-16 with its byte-order mark (Windows' "Unicode text") is read; without it, refused.
    path = write(tmp_path, "wide.txt", "hello\n", encoding="utf-16")
    assert [p.text for p in parse_file(path).prompts] == ["hello"]
    path = write(tmp_path, "bare.txt", "hello\n", encoding="utf-16-le")
    with pytest.raises(FormatError, match=r"UTF-16"):
        parse_file(path)


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl", "empty.json", "empty.csv"])
def test_empty_file(tmp_path, name):
    with pytest.raises(FormatError, match=rf"^{name.replace('.', '[.]')}: the file is empty"):
        parse_file(write(tmp_path, name, " \n\r\n"))


def test_problem_str_names_file_and_line():
    assert str(ImportProblem("prompts.jsonl", 7, "not valid JSON (x)")) == \
        "prompts.jsonl line 7: not valid JSON (x)"
