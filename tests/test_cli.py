"""The headless CLI: same functions as the GUI, JSON on the last stdout line, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from desktop_app.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    lines = ["Hello there.", "How are you?", "The sky is blue.", "Cats sleep a lot."] * 4
    path = tmp_path_factory.mktemp("cli-models") / "tiny-gpt2"
    build_tiny_model("gpt2", train_tokenizer(lines, vocab_size=300, pad_token=False), path,
                     hidden=32, heads=2)
    return path


def test_import_generate_judge_export_stats(capsys, tmp_path, tiny_model):
    ws = str(tmp_path / "ws")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\nName a colour.\nSay hello.\n\nCount to three.\n",
                       encoding="utf-8")
    code, out, _ = run(capsys, "--workspace", ws, "import", str(prompts), "--json")
    assert code == 0
    assert last_json(out) | {"problems": []} == {
        "file": str(prompts), "kind": "prompts", "imported": 3, "skipped": 1, "malformed": 0,
        "problems": []}

    # --workspace after the subcommand works too.
    code, out, err = run(capsys, "generate", "--model", str(tiny_model), "--pairs", "2",
                         "--max-new-tokens", "6", "--seed", "3", "--workspace", ws, "--json")
    assert code == 0, err
    result = last_json(out)
    assert result["pairs_generated"] == 2 and result["tokens_per_s"] > 0 and result["seed"] == 3

    from desktop_app.core.data.store import Store
    with Store(tmp_path / "ws" / "rlhf.db") as store:
        assert store.stats()["prompts_without_pairs"] == 1
        first = store.next_pending()
        store.judge(first.comparison_id, "a")
        second = store.next_pending()
        store.judge(second.comparison_id, "tie")
        chosen_text = store.db["generations"].get(
            store.db["comparisons"].get(first.comparison_id)["generation_a_id"])["text"]

    code, out, _ = run(capsys, "stats", "--workspace", ws, "--json")
    stats = last_json(out)
    assert stats["prompts"] == 3 and stats["judged"] == 2 and stats["by_choice"]["tie"] == 1
    assert stats["runs"] == {"generate": {"completed": 1}}

    target = tmp_path / "pairs.jsonl"
    code, out, _ = run(capsys, "--json", "--workspace", ws, "export", "--format", "trl",
                       str(target))
    assert code == 0
    assert last_json(out)["pairs"] == 1 and last_json(out)["left_out"]["tie"] == 1
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1 and rows[0]["chosen"] == chosen_text


def test_workspace_from_environment(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_DESK_WORKSPACE", str(tmp_path / "env-ws"))
    code, out, _ = run(capsys, "stats", "--json")
    assert code == 0 and last_json(out)["workspace"] == str((tmp_path / "env-ws").resolve())


def test_import_reports_malformed_lines(capsys, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{broken\n{"prompt": ""}\n', encoding="utf-8")
    code, out, err = run(capsys, "--workspace", str(tmp_path / "ws"), "import", str(path), "--json")
    result = last_json(out)
    assert code == 0 and result["imported"] == 1 and result["malformed"] == 2
    assert any("line 2" in p for p in result["problems"])
    assert "line 2" in err


def test_import_pairs(capsys, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "p", "chosen": "good", "rejected": "bad"}\n', encoding="utf-8")
    ws = str(tmp_path / "ws")
    code, out, _ = run(capsys, "--workspace", ws, "import", str(path), "--json")
    assert last_json(out)["kind"] == "pairs" and last_json(out)["imported"] == 1
    code, out, _ = run(capsys, "--workspace", ws, "import", str(path), "--json")
    assert last_json(out)["imported"] == 0 and last_json(out)["skipped"] == 1
    code, out, _ = run(capsys, "--workspace", ws, "stats", "--json")
    assert last_json(out)["by_choice"]["a"] == 1 and last_json(out)["pending"] == 0


@pytest.mark.parametrize("argv, fragment", [
    (["import", "{tmp}/missing.txt"], "missing.txt"),
    (["import", "{tmp}/prompts.pdf"], "prompts.pdf"),
    (["generate", "--model", "{tmp}/no-model"], "no-model"),
])
def test_errors_are_one_line_without_traceback(capsys, tmp_path, argv, fragment):
    (tmp_path / "prompts.pdf").write_bytes(b"%PDF")
    ws = tmp_path / "ws"
    from desktop_app.core.data.store import Store
    with Store(ws.mkdir() or ws / "rlhf.db") as store:
        store.add_prompts(["x"])
    code, out, err = run(capsys, "--workspace", str(ws),
                         *[a.format(tmp=tmp_path) for a in argv])
    assert code == 1
    # Progress lines may come first; the error itself is exactly one line, and the last.
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in err
    assert fragment in errors[0] and err.strip().splitlines()[-1].startswith("rlhf-desk: error:")


def test_module_entry_point_and_version():
    result = subprocess.run([sys.executable, "-m", "desktop_app", "--version"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("rlhf-desk ")


def _runs_workspace(tmp_path):
    """A workspace with a reward run (folder + metrics) and a PPO run made from it."""
    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    workspace = Workspace.open(tmp_path / "ws")
    with Store(workspace.db_path) as store:
        reward = store.create_run("reward", {"epochs": 1})
        store.add_metrics(reward, [(1, "train/loss", 0.7), (2, "train/loss", 0.5),
                                   (2, "eval/accuracy", 0.75)])
        folder = workspace.runs_dir / f"{reward:04d}-reward" / "adapter"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
        store.finish_run(reward, "completed", artifact=str(folder))
        ppo = store.create_run("ppo", {}, parent_run_id=reward)
        store.add_metrics(ppo, [(1, "objective/kl", 0.125)])
    return workspace, reward, ppo


def test_runs_export_writes_metrics_csv(capsys, tmp_path):
    import csv
    workspace, reward, ppo = _runs_workspace(tmp_path)
    ws = str(workspace.root)
    target = tmp_path / "metrics.csv"
    code, out, err = run(capsys, "--workspace", ws, "runs", "export", str(reward), str(ppo),
                         str(target), "--json")
    assert code == 0, err
    assert last_json(out) == {"file": str(target), "run_ids": [reward, ppo], "points": 4}
    with open(target, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["run_id", "step", "name", "value"],
                    [str(reward), "2", "eval/accuracy", "0.75"],
                    [str(reward), "1", "train/loss", "0.7"],
                    [str(reward), "2", "train/loss", "0.5"],
                    [str(ppo), "1", "objective/kl", "0.125"]]
    # `runs` and `runs show ID` still work.
    code, out, _ = run(capsys, "--workspace", ws, "runs", "--json")
    assert code == 0 and [r["id"] for r in last_json(out)["runs"]] == [reward, ppo]
    code, out, _ = run(capsys, "--workspace", ws, "runs", "show", str(reward), "--json")
    assert code == 0 and last_json(out)["final_metrics"]["eval/accuracy"] == 0.75
    code, out, _ = run(capsys, "--workspace", ws, "runs", "show", str(reward))
    assert code == 0 and f"Run {reward} (reward): completed" in out


@pytest.mark.parametrize("argv, fragment", [
    (["runs", "export", "1"], "usage: rlhf-desk runs export"),
    (["runs", "export", "99", "{tmp}/m.csv"], "there is no run 99"),
    (["runs", "export", "x", "{tmp}/m.csv"], "run ids are numbers"),
    (["runs", "export", "1", "{tmp}/no-folder/m.csv"], "no-folder"),
    (["runs", "show"], "usage: rlhf-desk runs show"),
    (["runs", "frobnicate"], "unknown runs action"),
    (["runs", "delete", "1"], "add --yes"),
])
def test_runs_errors_are_one_line(capsys, tmp_path, argv, fragment):
    workspace, _, _ = _runs_workspace(tmp_path)
    code, _, err = run(capsys, "--workspace", str(workspace.root),
                       *[a.format(tmp=tmp_path) for a in argv])
    assert code == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_runs_delete_removes_rows_and_folder(capsys, tmp_path):
    from desktop_app.core.data.store import Store
    workspace, reward, ppo = _runs_workspace(tmp_path)
    ws = str(workspace.root)
    folder = workspace.runs_dir / f"{reward:04d}-reward"
    code, _, err = run(capsys, "--workspace", ws, "runs", "delete", str(reward))
    assert code == 1 and str(folder) in err and folder.is_dir()   # not without --yes
    with Store(workspace.db_path) as owner:  # a live process still running the PPO run
        owner.reopen_run(ppo)
        code, _, err = run(capsys, "--workspace", ws, "runs", "delete", str(ppo), "--yes")
        assert code == 1 and f"still running in process {os.getpid()}" in err
        owner.finish_run(ppo, "cancelled")
    code, out, err = run(capsys, "--workspace", ws, "runs", "delete", str(reward), "--yes",
                         "--json")
    assert code == 0, err
    result = last_json(out)
    assert result["metrics"] == 3 and result["children"] == [ppo] and result["failed"] == []
    assert result["folders"] == [str(folder)] and not folder.exists()
    with Store(workspace.db_path) as store:
        assert store.get_run(reward) is None and store.metrics(reward) == []
        assert store.get_run(ppo).parent_run_id is None
