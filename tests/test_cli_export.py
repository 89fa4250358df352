"""`rlhf-desk export --format {trl,trl-chat,hh,csv} [--ties] OUT`: counts in --json, files that
`rlhf-desk import` reads back."""

from __future__ import annotations

import json
import random

import pytest

from desktop_app.cli import main
from desktop_app.core.data.store import GenerationIn, Store


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    with Store(ws / "rlhf.db") as store:
        store.add_prompts(["Say hi.", "Name a fruit.", "Count."])
        rows = {r["text"]: r["id"] for r in store.list_prompts()}
        for prompt, a, b, choice in (("Say hi.", "Hi!", "Go.", "a"),
                                     ("Name a fruit.", "Car.", "Apple.", "b"),
                                     ("Count.", "1 2 3", "3 2 1", "tie"),
                                     ("Count.", "one", "two", "both_bad")):
            store.add_pairs([(rows[prompt], GenerationIn(a, "m"), GenerationIn(b, "m"))],
                            rng=random.Random(0), choice=choice)
    return ws


@pytest.mark.parametrize("fmt, name", [("trl", "out.jsonl"), ("trl-chat", "out.jsonl"),
                                       ("hh", "out.jsonl"), ("csv", "out.csv")])
def test_each_format_exports_and_imports_back(capsys, tmp_path, workspace, fmt, name):
    target = tmp_path / name
    code, out, err = run(capsys, "--workspace", workspace, "export", "--format", fmt, target,
                         "--json")
    assert code == 0, err
    assert last_json(out) == {"file": str(target), "format": fmt, "pairs": 2, "ties": 0,
                              "left_out": {"tie": 1, "both_bad": 1, "skip": 0, "unusable": 0}}

    code, out, err = run(capsys, "--workspace", tmp_path / "fresh", "import", target, "--json")
    assert code == 0, err
    assert last_json(out)["imported"] == 2 and last_json(out)["malformed"] == 0
    with Store(tmp_path / "fresh" / "rlhf.db") as fresh:
        assert [(r["prompt"], r["chosen"], r["rejected"]) for r in fresh.preference_rows()] == [
            ("Say hi.", "Hi!", "Go."), ("Name a fruit.", "Apple.", "Car.")]


def test_trl_is_the_default_and_ties_are_opt_in(capsys, tmp_path, workspace):
    target = tmp_path / "pairs.jsonl"
    code, out, _ = run(capsys, "--workspace", workspace, "export", "--ties", target)
    assert code == 0
    assert out.startswith("Wrote 3 pairs (1 tie) to ") and "as trl" in out
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go.", "tie": False}
    assert rows[2] == {"prompt": "Count.", "chosen": "1 2 3", "rejected": "3 2 1", "tie": True}

    code, out, _ = run(capsys, "--workspace", workspace, "export", "--format", "csv", "--ties",
                       tmp_path / "pairs.csv", "--json")
    assert last_json(out)["ties"] == 1 and last_json(out)["left_out"]["tie"] == 0
    assert (tmp_path / "pairs.csv").read_text(encoding="utf-8").splitlines()[0] == \
        "prompt,chosen,rejected,tie"


def test_unwritable_target_is_one_line_error(capsys, tmp_path, workspace):
    code, _, err = run(capsys, "--workspace", workspace, "export", tmp_path / "no" / "x.jsonl")
    assert code == 1 and "Traceback" not in err
    assert err.strip().startswith("rlhf-desk: error:") and len(err.strip().splitlines()) == 1
    assert "the folder" in err and "does not exist" in err and ".tmp" not in err


def test_unknown_format_is_refused(capsys, tmp_path, workspace):
    with pytest.raises(SystemExit) as info:
        main(["--workspace", str(workspace), "export", "--format", "parquet", "x"])
    assert info.value.code == 2
    assert "invalid choice: 'parquet'" in capsys.readouterr().err
