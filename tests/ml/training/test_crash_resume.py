"""kill -9 in the middle of training, then resume: the run ends with exactly the adapter an
uninterrupted run makes, and between the two, every reader sees the run as interrupted.

Real processes, as a user would have them: ``rlhf-desk train-reward`` is started, killed with
SIGKILL once its first checkpoint is on disk, and resumed with ``--resume``. The uninterrupted
reference is a process too, so both sides run with the same threads and settings.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from waiting import poll_until

from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.workspace import Workspace

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

WORDS = "the cat sat on mat and looked at rain a dog ran in park red ball".split()
# Long enough (about 70 optimiser steps) that the kill lands mid-run; checkpoints often.
OPTIONS = ["--epochs", "12", "--batch-size", "8", "--lr", "5e-3", "--lora-r", "4",
           "--max-length", "48", "--eval-every", "50", "--checkpoint-every", "5",
           "--min-pairs", "8", "--seed", "3"]


def judged_workspace(root: Path) -> Workspace:
    rng = random.Random(0)
    ws = Workspace.open(root)
    with Store(ws.db_path) as store:
        ids = store.add_prompts([f"Question {i} about the {rng.choice(WORDS)}"
                                 for i in range(50)]).ids
        pairs = [(pid, GenerationIn("a banana " + " ".join(rng.sample(WORDS, 4)), "m"),
                  GenerationIn(" ".join(rng.sample(WORDS, 5)), "m")) for pid in ids]
        for cid in store.add_pairs(pairs, rng=random.Random(0)):
            store.judge(cid, "a")
    return ws


def cli(ws: Workspace, *args: str) -> list[str]:
    return [sys.executable, "-m", "desktop_app", "--workspace", str(ws.root), *args]


ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def adapter_weights(ws: Workspace) -> dict[str, torch.Tensor]:
    return load_file(ws.runs_dir / "0001-reward" / "adapter" / "adapter_model.safetensors")


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_resume_equals_an_uninterrupted_run(gpt2_dir, tmp_path):
    # The reference: one uninterrupted run.
    reference = judged_workspace(tmp_path / "reference")
    done = subprocess.run(cli(reference, "train-reward", "--model", str(gpt2_dir), *OPTIONS),
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    # The same run, killed with SIGKILL once its first checkpoint is written.
    ws = judged_workspace(tmp_path / "crashed")
    checkpoint = ws.runs_dir / "0001-reward" / "checkpoint" / "trainer_state.pt"
    process = subprocess.Popen(cli(ws, "train-reward", "--model", str(gpt2_dir), *OPTIONS),
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Checked often: the kill must land soon after the checkpoint, well before the run ends.
    poll_until(lambda: checkpoint.exists() or process.poll() is not None, timeout=300,
               interval=0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    # Every reader sees it as interrupted now: the list, a resume, a deletion.
    runs = subprocess.run(cli(ws, "runs", "--json"), env=ENV, capture_output=True, text=True,
                          timeout=120)
    run = json.loads(runs.stdout.splitlines()[-1])["runs"][0]
    assert (run["id"], run["kind"], run["status"]) == (1, "reward", "interrupted")
    assert run["error"].startswith("interrupted")

    resumed = subprocess.run(cli(ws, "train-reward", "--resume", "1", "--json"), env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["status"] == "completed"

    expected, got = adapter_weights(reference), adapter_weights(ws)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    run_dir = ws.runs_dir / "0001-reward"
    assert not list(run_dir.glob("*.tmp")) and not (run_dir / "checkpoint").exists()
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert sorted(config["modules_to_save"]) == ["classifier", "score"]  # not one more per resume
    with Store(ws.db_path) as store:
        metrics = store.metrics(1)
    steps = [(m["step"], m["name"]) for m in metrics]
    assert len(steps) == len(set(steps))  # the killed process's metrics past its checkpoint went
