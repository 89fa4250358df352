"""write_trl_jsonl: TRL's row forms, atomic replacement, and reading back with parse_file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from desktop_app.core import atomic_files
from desktop_app.core.data.exports import JudgedPair, write_trl_jsonl
from desktop_app.core.data.formats import parse_file

PAIRS = [
    JudgedPair("How do I boil an egg?", "Boil it for 8 minutes.", "Eggs are food."),
    JudgedPair("Écris un haïku.", "Pluie sur le toit —\nle thé refroidit.", "Non."),
    JudgedPair("Quote \"this\" \\ and a tab\t.", "  padded answer  ", "other"),
]


def lines_of(path):
    return path.read_text(encoding="utf-8").splitlines()


def leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_writes_trl_standard_rows(tmp_path):
    target = tmp_path / "pairs.jsonl"
    assert write_trl_jsonl(PAIRS, target) == 3
    rows = [json.loads(line) for line in lines_of(target)]
    assert rows[0] == {"prompt": "How do I boil an egg?", "chosen": "Boil it for 8 minutes.",
                       "rejected": "Eggs are food."}
    assert rows[2]["chosen"] == "padded answer"  # stripped, as the importer strips
    # Non-ASCII text is written as itself, not as \u escapes.
    assert "Écris un haïku." in target.read_text(encoding="utf-8")
    assert leftovers(tmp_path, {"pairs.jsonl"}) == []


def test_round_trip_standard(tmp_path):
    target = tmp_path / "pairs.jsonl"
    write_trl_jsonl(iter(PAIRS), target)  # any iterable, a generator included
    parsed = parse_file(target)
    assert parsed.problems == []
    assert [(p.prompt, p.chosen, p.rejected, p.prompt_messages) for p in parsed.pairs] == [
        (j.prompt.strip(), j.chosen.strip(), j.rejected.strip(), None) for j in PAIRS]
    assert [p.line for p in parsed.pairs] == [1, 2, 3]


def test_round_trip_conversational(tmp_path):
    chat = [{"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell me a joke."}]
    pairs = [JudgedPair("User: Hi\n\nAssistant: Hello!\n\nUser: Tell me a joke.",
                        "Why did the cat sit on the computer? To watch the mouse.", "No.",
                        prompt_messages=chat),
             JudgedPair("Plain prompt", "yes", "no")]
    target = tmp_path / "chat.jsonl"
    assert write_trl_jsonl(pairs, target) == 2

    rows = [json.loads(line) for line in lines_of(target)]
    # One chat prompt makes every row conversational, so the file has one schema.
    assert rows[0]["chosen"] == [{"role": "assistant", "content": pairs[0].chosen}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "Plain prompt"}]

    parsed = parse_file(target)
    assert parsed.problems == []
    first, second = parsed.pairs
    assert (first.prompt, first.prompt_messages, first.chosen, first.rejected) == (
        pairs[0].prompt, chat, pairs[0].chosen, "No.")
    assert (second.prompt, second.chosen, second.rejected) == ("Plain prompt", "yes", "no")


def test_empty_iterable_writes_an_empty_file(tmp_path):
    target = tmp_path / "none.jsonl"
    assert write_trl_jsonl([], target) == 0
    assert target.read_bytes() == b""


def test_exception_from_the_iterable_leaves_the_old_file_alone(tmp_path):
    target = tmp_path / "pairs.jsonl"
    target.write_text("old content\n", encoding="utf-8")

    def pairs():
        yield PAIRS[0]
        yield PAIRS[1]
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        write_trl_jsonl(pairs(), target)
    assert target.read_text(encoding="utf-8") == "old content\n"
    assert leftovers(tmp_path, {"pairs.jsonl"}) == []


def test_bad_pair_midway_leaves_the_old_file_alone_and_no_temp_file(tmp_path):
    target = tmp_path / "pairs.jsonl"
    target.write_text("old content\n", encoding="utf-8")
    # Rows 1 and 2 are already in the temporary file when pair 3 fails.
    with pytest.raises(ValueError, match=r"pair 3: 'chosen' must be text, got NoneType"):
        write_trl_jsonl([PAIRS[0], PAIRS[1], JudgedPair("p", None, "b"), PAIRS[2]], target)
    assert target.read_text(encoding="utf-8") == "old content\n"
    assert leftovers(tmp_path, {"pairs.jsonl"}) == []

    with pytest.raises(ValueError, match=r"pair 2: the prompt is empty"):
        write_trl_jsonl([PAIRS[0], JudgedPair("  ", "a", "b")], target)
    with pytest.raises(ValueError, match=r"pair 1: 'prompt_messages' must end with a non-empty"):
        write_trl_jsonl([JudgedPair("p", "a", "b", [{"role": "assistant", "content": "x"}])],
                        target)
    with pytest.raises(ValueError, match=r"pair 1: each prompt message needs a role"):
        write_trl_jsonl([JudgedPair("p", "a", "b", [{"role": "robot", "content": "x"}])], target)
    assert target.read_text(encoding="utf-8") == "old content\n"
    assert leftovers(tmp_path, {"pairs.jsonl"}) == []


def test_pairs_without_a_preference_are_left_out_and_counted(tmp_path):
    target = tmp_path / "pairs.jsonl"
    pairs = [PAIRS[0], JudgedPair("p", "same", " same "), JudgedPair("p", "", "b"),
             JudgedPair("p", "a", "\n"), PAIRS[1]]
    assert write_trl_jsonl(pairs, target) == 2
    parsed = parse_file(target)
    assert parsed.problems == []
    assert [p.prompt for p in parsed.pairs] == [PAIRS[0].prompt, PAIRS[1].prompt]


def test_failed_rename_leaves_the_old_file_and_removes_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "pairs.jsonl"
    target.write_text("old content\n", encoding="utf-8")
    written = []

    def failing_replace(source, destination):
        # The full new file exists at this point, beside the target, fsynced.
        written.append(Path(source).read_text(encoding="utf-8"))
        raise OSError("disk full")

    monkeypatch.setattr(atomic_files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_trl_jsonl(PAIRS, target)
    assert len(written[0].splitlines()) == 3
    assert target.read_text(encoding="utf-8") == "old content\n"
    assert leftovers(tmp_path, {"pairs.jsonl"}) == []


def test_replaces_an_existing_file_and_keeps_its_permissions(tmp_path):
    target = tmp_path / "pairs.jsonl"
    target.write_text("old content\n", encoding="utf-8")
    os.chmod(target, 0o640)
    write_trl_jsonl(PAIRS[:1], target)
    assert len(lines_of(target)) == 1
    if os.name == "posix":
        assert target.stat().st_mode & 0o777 == 0o640
        fresh = tmp_path / "fresh.jsonl"
        write_trl_jsonl(PAIRS[:1], fresh)
        assert fresh.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
