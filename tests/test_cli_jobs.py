"""export-job, run-job and import-run on the command line: the folder they write and read is
`tests/core/jobs/`, the round trip with training under torchrun
`tests/ml/distributed/test_torchrun.py`; here, the refusals, each in one line."""

from __future__ import annotations

import json

from core.jobs.test_job_folder import judged_workspace

from desktop_app.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_job_writes_the_folder_and_says_how_to_run_it(capsys, tmp_path):
    ws = judged_workspace(tmp_path / "ws")
    model = tmp_path / "base"
    model.mkdir()
    (model / "config.json").write_text("{}")
    code, out, err = run(capsys, "--workspace", ws.root, "export-job", "train-dpo", "--model",
                         model, "--beta", "0.3", "--min-pairs", "4", tmp_path / "job", "--json")
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["folder"] == str(tmp_path / "job")
    assert result["pairs"] == 12  # 11 winners judged, 1 from an evaluation; no tie
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["config"]["beta"] == 0.3 and job["command"] == "train-dpo"

    code, out, err = run(capsys, "--workspace", ws.root, "export-job", "train-dpo", "--model",
                         model, "--min-pairs", "4", tmp_path / "job")
    assert code == 1 and "already exists and is not empty" in err and len(err.splitlines()) == 1


def test_refusals_name_the_problem(capsys, tmp_path):
    ws = judged_workspace(tmp_path / "ws")
    model = tmp_path / "base"
    model.mkdir()
    (model / "config.json").write_text("{}")
    cases = [
        (["export-job", "train-ppo", "--model", model, tmp_path / "j"], "--reward RUN_ID is "
         "required"),
        (["export-job", "train-reward", "--model", tmp_path, tmp_path / "j"], "is not a model "
         "folder (it has no config.json)"),
        (["export-job", "train-reward", "--model", model, "--resume", "1", tmp_path / "j"],
         "launch.sh with --resume"),
        (["export-job", "train-reward", "--model", model, "--min-pairs", "500", tmp_path / "j"],
         "500"),
        (["import-run", tmp_path], "is not a job folder"),
        (["run-job", tmp_path], "is not a job folder"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, "--workspace", ws.root, *argv)
        assert code != 0 and message in err and len(err.splitlines()) == 1, (argv, err)
    assert not (tmp_path / "j").exists()
