"""A run is 'running' only while its process lives, wherever runs are read; a live run cannot be
resumed or deleted from elsewhere; generators on one workspace share the prompts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from waiting import poll_until

from desktop_app.cli import main
from desktop_app.core.data.store import RunBusy, Store, StoreError
from desktop_app.core.runs import locks as run_locks

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process signals")


def owner_process(db_path, ready):
    """A separate process that creates a run, says so, and then waits to be killed."""
    code = textwrap.dedent(f"""
        import os, pathlib, time
        from desktop_app.core.data.store import Store
        store = Store({str(db_path)!r})
        run_id = store.create_run("reward", {{}})
        # Written whole, then renamed: the test must never read a half-written file.
        pathlib.Path({str(ready)!r} + ".tmp").write_text(str(run_id))
        os.replace({str(ready)!r} + ".tmp", {str(ready)!r})
        time.sleep(600)  # the child's own life: it lives until the test kills it
    """)
    process = subprocess.Popen([sys.executable, "-c", code])
    poll_until(ready.exists, timeout=60, interval=0.02)
    return process, int(ready.read_text())


@pytest.mark.slow  # a real process, killed
def test_a_run_whose_process_was_killed_reads_as_interrupted_everywhere(workspace, tmp_path,
                                                                         capsys):
    with Store(workspace.db_path):
        pass
    process, run_id = owner_process(workspace.db_path, tmp_path / "ready")
    try:
        with Store(workspace.db_path) as store:
            assert store.get_run(run_id).status == "running"
            assert run_locks.holder(run_locks.lock_path(workspace.db_path, run_id)) == process.pid
            # Alive: resuming or deleting it from here is refused, naming the process.
            with pytest.raises(RunBusy, match=f"still running in process {process.pid}"):
                store.reopen_run(run_id)
            with pytest.raises(RunBusy):
                store.delete_run(run_id)
        code = main(["--workspace", str(workspace.root), "train-reward", "--resume",
                     str(run_id)])
        err = capsys.readouterr().err
        assert code == 1 and f"still running in process {process.pid}" in err
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    # Dead: every way of reading runs says so, without the GUI ever having been opened.
    with Store(workspace.db_path) as store:
        assert store.get_run(run_id).status == "interrupted"
        assert [r.status for r in store.list_runs()] == ["interrupted"]
    assert main(["--workspace", str(workspace.root), "runs", "--json"]) == 0
    assert '"status": "interrupted"' in capsys.readouterr().out


def test_a_run_left_running_by_a_closed_store_is_interrupted(workspace):
    with Store(workspace.db_path) as store:
        run_id = store.create_run("ppo", {})
    with Store(workspace.db_path) as store:
        run = store.get_run(run_id)
        assert run.status == "interrupted" and run.error.startswith("interrupted")
        store.reopen_run(run_id)  # nobody holds it: resuming is fine
        assert store.get_run(run_id).status == "running"
        store.finish_run(run_id, "completed")


def test_the_owner_sees_its_own_run_running(store):
    run_id = store.create_run("generate", {})
    assert store.get_run(run_id).status == "running"
    with pytest.raises(StoreError, match="still running"):
        store.delete_run(run_id)


def test_claims_split_prompts_between_generators_and_lapse_with_their_run(workspace):
    with Store(workspace.db_path) as first, Store(workspace.db_path) as second:
        first.add_prompts([f"prompt {i}" for i in range(10)])
        run_a = first.create_run("generate", {})
        run_b = second.create_run("generate", {})
        a = first.claim_prompts(4, model="m", adapter=None, run_id=run_a)
        b = second.claim_prompts(4, model="m", adapter=None, run_id=run_b)
        assert len(a) == len(b) == 4 and not {r["id"] for r in a} & {r["id"] for r in b}
        # Another model is another job: its generator may take the same prompts.
        other = second.claim_prompts(10, model="other", adapter=None, run_id=run_b)
        assert len(other) == 10
        # The claims of a finished run lapse; so do those of a run whose process is gone.
        first.finish_run(run_a, "cancelled")
        again = second.claim_prompts(10, model="m", adapter=None, run_id=run_b)
        assert {r["id"] for r in a} <= {r["id"] for r in again}
        assert not {r["id"] for r in b} & {r["id"] for r in again} - {r["id"] for r in b}


@pytest.mark.slow
def test_two_generate_processes_share_the_prompts(workspace, tmp_path):
    """The issue's case: before, 2 x 40 pairs went onto the same 40 prompts (here 30)."""
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    model = tmp_path / "model"
    build_tiny_model("gpt2", train_tokenizer(["one two three four"] * 4, vocab_size=280),
                     model, hidden=32, heads=2)
    with Store(workspace.db_path) as store:
        store.add_prompts([f"Prompt number {i}" for i in range(30)])
    command = [sys.executable, "-m", "desktop_app", "--workspace", str(workspace.root),
               "generate", "--model", str(model), "--pairs", "30", "--batch-size", "1",
               "--max-new-tokens", "16", "--json"]
    processes = [subprocess.Popen(command + ["--seed", str(seed)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        # Either it generated, or the other one had already answered every prompt.
        assert process.returncode == 0 or "every prompt already has a pair" in err, err
    with Store(workspace.db_path) as store:
        per_prompt = dict(store.db.execute(
            "SELECT prompt_id, COUNT(*) FROM comparisons GROUP BY prompt_id").fetchall())
        per_run = dict(store.db.execute(
            "SELECT run_id, COUNT(*) / 2 FROM generations GROUP BY run_id").fetchall())
    assert len(per_prompt) == 30 and set(per_prompt.values()) == {1}, per_run
    print(f"\npairs per generate run: {per_run}")
