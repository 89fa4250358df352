"""Every hostile input ends in a clear message and intact data, on the command line.

Files: the corpus of tests/hostile_inputs.py through ``rlhf-desk import``. For each case, the
exit code; one line on stderr naming the file, and never a traceback; and a database that is
byte-for-byte what it was, wherever nothing valid was in the file. Arguments: every
subcommand's --help, and values out of range or not finite, refused before anything is loaded
or recorded.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from hostile_inputs import CASES, write_corpus

from desktop_app.cli import build_parser, main
from desktop_app.core.data.store import Store
from desktop_app.core.workspace import Workspace


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not hasattr(os, "mkfifo"):
        pytest.skip("the corpus makes a named pipe (POSIX)")
    return write_corpus(tmp_path_factory.mktemp("hostile"))


def dump(db_path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return list(conn.iterdump())


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_importing_a_hostile_file(case, corpus, tmp_path, capsys):
    ws = Workspace.open(tmp_path / "ws").root
    with Store(ws / "rlhf.db") as store:  # something in it already, so "unchanged" means it
        store.add_prompts(["A prompt that was there before"])
    before = dump(ws / "rlhf.db")

    if case.outcome == "imported":
        code, out, err = run(capsys, "--workspace", ws, "import", corpus[case.name], "--json")
        assert code == 0
        # With --json the report's lines go to stderr; they are the skipped rows, nothing else.
        assert all(line.startswith("  skipped ") for line in err.splitlines()), err
        result = json.loads(out.strip().splitlines()[-1])
        assert (result["imported"], result["malformed"]) == (case.imported, case.malformed)
        problems = " | ".join(result["problems"])
        if case.line is not None:
            assert f"{case.name} line {case.line}:" in problems
        assert case.mentions in problems
        with Store(ws / "rlhf.db") as store:
            stats = store.stats()
        stored = stats["comparisons"] if result["kind"] == "pairs" else stats["prompts"] - 1
        assert stored == case.imported
        return
    # Refused, or nothing usable: one line on stderr, exit 1, the database untouched.
    code, out, err = run(capsys, "--workspace", ws, "import", corpus[case.name])
    assert code == 1 and "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlhf-desk: error: "), err
    assert case.name in lines[0]
    if case.outcome == "refused":
        assert case.mentions in lines[0]
        if case.line is not None:
            assert f"line {case.line}" in lines[0]
    else:  # the rows and why each was skipped are on stdout
        assert f"imported 0 prompts, skipped 0 duplicates, {case.malformed} malformed" in out
        assert out.count("  skipped ") == case.malformed and case.mentions in out
    assert dump(ws / "rlhf.db") == before


def test_the_corpus_covers_what_the_issue_lists():
    names = {c.name for c in CASES}
    assert len(CASES) >= 40
    for needed in ("lone-surrogate.jsonl", "deep-nesting.jsonl", "huge-number.jsonl",
                   "huge-cell.csv", "unclosed-quote.csv", "pipe.txt", "long-prompt.txt",
                   "utf16-le-bom.txt", "utf8-bom.txt", "crlf.txt", "nul-bytes.txt",
                   "rtl-emoji.txt", "truncated.jsonl", "very-wide.csv", "many-lines.txt",
                   "a-folder.txt", "missing.txt", "chat-missing-role.jsonl", "wrong-types.jsonl"):
        assert needed in names
    for ext in (".txt", ".jsonl", ".json", ".csv", ".parquet"):
        assert f"junk{ext}" in names


def test_a_lone_surrogate_line_does_not_cost_the_other_thousand(corpus, tmp_path, capsys):
    """The issue's own example: before, the file imported nothing at all."""
    code, out, _ = run(capsys, "--workspace", tmp_path / "ws", "import",
                       corpus["lone-surrogate.jsonl"])
    assert code == 0
    assert "imported 1000 prompts" in out and "line 501" in out


def test_max_chars_is_configurable(corpus, tmp_path, capsys):
    code, out, _ = run(capsys, "--workspace", tmp_path / "ws", "import",
                       corpus["long-prompt.txt"], "--max-chars", "400000", "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["imported"] == 3


# ---- arguments ------------------------------------------------------------------------------

def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_help_works(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: rlhf-desk {command}")


def test_top_level_help_works_in_a_fresh_process():
    done = subprocess.run([sys.executable, "-m", "desktop_app", "train-reward", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "~30% of the speed" in done.stdout, done.stderr


@pytest.mark.parametrize("argv, mentions", [
    (["generate", "--model", "M", "--pairs", "-1"], "--pairs: -1 is outside"),
    (["generate", "--model", "M", "--pairs", "0"], "--pairs: 0 is outside"),
    (["generate", "--model", "M", "--top-p", "nan"], "--top-p = nan is not a finite number"),
    (["generate", "--model", "M", "--temperature", "nan"], "--temperature = nan"),
    (["generate", "--model", "M", "--temperature", "inf"], "--temperature = inf"),
    (["generate", "--model", "M", "--seed", "-5"], "--seed: -5 is outside"),
    (["train-reward", "--model", "M", "--lr", "nan"], "--lr = nan is not a finite number"),
    (["train-reward", "--model", "M", "--epochs=-inf"], "--epochs = -inf"),
    (["train-ppo", "--model", "M", "--reward", "1", "--kl-coef", "nan"], "--kl-coef = nan"),
    (["evaluate", "--a", "base", "--top-p", "inf"], "--top-p = inf"),
    (["train-reward", "--model", "M", "--lr", "abc"], "invalid float value: 'abc'"),
    (["import", "x.txt", "--max-chars", "0"], "--max-chars: 0 is outside"),
])
def test_bad_numbers_are_refused_before_anything_is_loaded_or_recorded(argv, mentions, tmp_path,
                                                                        capsys):
    ws = Workspace.open(tmp_path / "ws").root
    with Store(ws / "rlhf.db"):
        pass
    before = dump(ws / "rlhf.db")
    try:
        code = main(["--workspace", str(ws), *argv])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code in (1, 2)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and mentions in lines[0] and "Traceback" not in err, err
    assert dump(ws / "rlhf.db") == before  # no run row: nothing was loaded or recorded


def test_runs_show_json_is_strict_json_even_for_a_stored_nan(tmp_path, capsys):
    """Runs recorded before validation existed may hold NaN; --json must still parse."""
    ws = Workspace.open(tmp_path / "ws").root
    with Store(ws / "rlhf.db") as store:
        run_id = store.create_run("generate", {"sampling": {"top_p": 0.9}})
        store.db.execute("UPDATE runs SET config = ? WHERE id = ?",
                         ['{"sampling": {"top_p": NaN}}', run_id])
        store.add_metrics(run_id, [(1, "loss", float("inf"))])
        store.finish_run(run_id, "completed")
    code, out, _ = run(capsys, "--workspace", ws, "runs", "show", run_id, "--json")
    assert code == 0
    data = json.loads(out.strip().splitlines()[-1], parse_constant=lambda c: pytest.fail(c))
    assert data["config"]["sampling"]["top_p"] is None
    assert data["final_metrics"]["loss"] is None
