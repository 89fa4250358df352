"""Every trainer under torchrun: 2 CPU processes (gloo) on a tiny model, launched the way a
person launches them (`torchrun --nproc-per-node 2 ... rlhf-desk train-reward ...`).

One run record, one JSON line (rank 0's), each rank computing half of the pairs, and the same
steps as one process with the same global batch and seed: the first logged window of metrics
is equal, and the held-out accuracy within noise. A run cancelled in one process resumes
under torchrun with the uninterrupted run's steps; when one rank is killed the job ends, the
run is interrupted, and it resumes. DPO, which shards the same way, takes the same steps as one
process too. PPO and RLOO sample on every rank and write one run, once per step; RLOO runs as
an exported job (export-job, its launch.sh, import-run, evaluate)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from reward.test_reward_train import make_workspace
from waiting import poll_until

from desktop_app.cli import main
from desktop_app.core.data.store import Store

pytestmark = pytest.mark.slow  # starts torchrun with two training processes

REWARD = ["--epochs", "2", "--lr", "1e-2", "--batch-size", "8", "--lora-r", "8",
          "--lora-alpha", "16", "--max-length", "64", "--eval-every", "10", "--log-every", "5",
          "--val-fraction", "0.2", "--min-pairs", "16", "--json"]


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N -m desktop_app.cli ARGS` (rendezvous on a
    free localhost port), offline, one thread per process."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "OMP_NUM_THREADS": "1", "RLHF_DESK_DIST_BACKEND": "gloo"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         "--nproc-per-node", str(nproc), "-m", "desktop_app.cli", *args],
        capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)


def single(args: list[str]) -> dict:
    """The same command in this process, without torchrun."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def first_window(ws: Path, run_id: int) -> dict[str, float]:
    with Store(ws / "rlhf.db") as store:
        rows = store.db.execute(
            "SELECT name, value FROM metrics WHERE run_id = ? AND step = 5 AND name IN "
            "('train/loss', 'train/accuracy', 'train/grad_norm')", [run_id]).fetchall()
    return dict(rows)


def test_train_reward_under_torchrun_matches_one_process(tmp_path, gpt2_dir):
    ws = make_workspace(tmp_path / "ws", seed=0).root
    common = ["--workspace", str(ws), "train-reward", "--model", str(gpt2_dir), *REWARD]

    proc = torchrun(common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout  # rank 0 alone prints the result
    result = json.loads(lines[0])
    assert result["status"] == "completed" and Path(result["artifact"]).is_dir()
    with Store(ws / "rlhf.db") as store:
        runs = store.db.execute("SELECT id, kind, status FROM runs").fetchall()
        config = store.get_run(result["run_id"]).config
    assert runs == [(result["run_id"], "reward", "completed")]
    assert config["world_size"] == 2
    shares = re.search(r"computed per rank this session: (\d+), (\d+) \(of (\d+)\)",
                       proc.stderr)
    assert shares, proc.stderr[-3000:]
    a, b, total = map(int, shares.groups())
    assert a == b == total // 2  # each rank saw half of the data
    assert "2 processes" in proc.stderr

    alone = single(common)
    # The same steps: the first window of metrics agrees to float rounding (gradients summed
    # over the ranks in another order), and the held-out accuracy within noise after that.
    distributed, one = first_window(ws, result["run_id"]), first_window(ws, alone["run_id"])
    assert distributed.keys() == one.keys() and distributed
    for name in one:
        assert distributed[name] == pytest.approx(one[name], rel=1e-4, abs=1e-5), name
    assert abs(result["val_accuracy"] - alone["val_accuracy"]) <= 0.1


def test_dpo_under_torchrun_takes_the_steps_of_one_process(tmp_path, gpt2_dir):
    ws = make_workspace(tmp_path / "ws", seed=0).root
    common = ["--workspace", str(ws), "train-dpo", "--model", str(gpt2_dir), "--epochs", "1",
              "--batch-size", "8", "--lr", "5e-3", "--max-length", "64", "--log-every", "5",
              "--eval-every", "100", "--min-pairs", "16", "--json"]
    proc = torchrun(common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    assert result["status"] == "completed" and result["val_accuracy"] is not None
    assert sorted(p.name for p in (ws / "runs").iterdir()) == [f"{result['run_id']:04d}-dpo"]
    assert (Path(result["artifact"]) / "adapter_model.safetensors").is_file()

    alone = single(common)
    distributed, one = first_window(ws, result["run_id"]), first_window(ws, alone["run_id"])
    assert distributed.keys() == one.keys() and distributed
    for name in one:
        assert distributed[name] == pytest.approx(one[name], rel=1e-4, abs=1e-5), name


@pytest.fixture(scope="module")
def reward_ws(tmp_path_factory, gpt2_dir):
    """A workspace with a trained reward model (one process), for PPO and RLOO."""
    from desktop_app.core.config import RewardConfig
    from desktop_app.ml.reward.train import train_reward_model

    ws = make_workspace(tmp_path_factory.mktemp("reward-ws") / "ws", seed=0)
    reward = train_reward_model(ws, RewardConfig(epochs=1.0, batch_size=8, max_length=64,
                                                 min_pairs=16), base_model=str(gpt2_dir))
    return ws, reward.run_id


def count_runs(ws) -> int:
    with Store(ws.db_path) as store:
        return store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def test_ppo_under_torchrun_samples_on_every_rank_and_writes_once(reward_ws, gpt2_dir):
    ws, reward = reward_ws
    args = ["--workspace", str(ws.root), "train-ppo", "--model", str(gpt2_dir), "--reward",
            str(reward), "--steps", "2", "--batch-size", "8", "--mini-batch-size", "4",
            "--max-new-tokens", "8", "--json"]
    before = count_runs(ws)
    proc = torchrun(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    result = json.loads(lines[0])
    assert result["status"] == "completed" and Path(result["artifact"]).is_dir()
    assert count_runs(ws) == before + 1
    assert_each_step_recorded_once(ws.db_path, result["run_id"], "ppo")


def assert_each_step_recorded_once(db: Path, run_id: int, kind: str) -> None:
    with Store(db) as store:
        run = store.get_run(run_id)
        steps = store.db.execute("SELECT step FROM metrics WHERE run_id = ? AND "
                                 "name = 'objective/kl'", [run_id]).fetchall()
    assert run.kind == kind and run.config["world_size"] == 2
    assert sorted(step for (step,) in steps) == [1, 2]


def test_an_exported_rloo_job_runs_under_launch_sh_and_comes_home_to_be_evaluated(
        reward_ws, gpt2_dir, tmp_path):
    """export-job -> the job's launch.sh (torchrun, 2 CPU processes, rendezvous from the
    environment) -> import-run -> evaluate: the job's run joins the workspace as an RLOO run of
    the reward run it was tuned against, and evaluates like any other."""
    ws, reward = reward_ws
    job = tmp_path / "cluster" / "job"
    rloo = ["--model", str(gpt2_dir), "--reward", str(reward), "--steps", "2", "--batch-size",
            "8", "--mini-batch-size", "4", "--max-new-tokens", "8", "--k", "2"]
    exported = single(["--workspace", str(ws.root), "export-job", "train-rloo", *rloo,
                       str(job), "--json"])
    assert Path(exported["folder"]) == job and exported["prompts"] > 0

    env = launch_env(NPROC_PER_NODE="2", MASTER_PORT=str(free_port()))
    proc = subprocess.run(["bash", str(job / "launch.sh"), "--json"], capture_output=True,
                          text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout  # rank 0's JSON line
    trained = json.loads(lines[0])
    assert trained["status"] == "completed"
    assert_each_step_recorded_once(job / "workspace" / "rlhf.db", trained["run_id"], "rloo")

    imported = single(["--workspace", str(ws.root), "import-run", str(job), "--json"])
    assert (imported["kind"], imported["status"]) == ("rloo", "completed")
    assert imported["parent_run_id"] == reward and imported["config"]["world_size"] == 2
    assert imported["metrics"] > 0
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("Where is the cat?\nTell me about the rain.\n", encoding="utf-8")
    evaluated = single(["--workspace", str(ws.root), "evaluate", "--a", str(imported["id"]),
                        "--auto", "--reward", str(reward), "--prompts", str(held_out),
                        "--max-new-tokens", "8", "--device", "cpu", "--json"])
    assert evaluated["status"] == "completed" and evaluated["n"] == 2

    # Prompts that do not split over the ranks are refused in one sentence, before any run:
    # 6 responses are 3 prompts of k = 2. (Here, where launch.sh's torchrun is already paid.)
    uneven = tmp_path / "uneven"
    single(["--workspace", str(ws.root), "export-job", "train-rloo", *rloo, "--batch-size",
            "6", "--mini-batch-size", "6", str(uneven), "--json"])  # the last value counts
    proc = subprocess.run(["bash", str(uneven / "launch.sh")], capture_output=True, text=True,
                          env=env | {"MASTER_PORT": str(free_port())}, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "multiples of 2" in proc.stderr, proc.stderr[-2000:]
    with Store(uneven / "workspace" / "rlhf.db") as store:
        assert [r.kind for r in store.list_runs()] == ["reward"]


def launch_env(**settings: str) -> dict[str, str]:
    """The environment a person gives launch.sh here: this venv's rlhf-desk and torchrun on
    PATH, gloo, offline, one thread per process."""
    bin_dir = str(Path(sys.executable).parent)
    return os.environ | {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                         "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                         "OMP_NUM_THREADS": "1", "RLHF_DESK_DIST_BACKEND": "gloo"} | settings


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_run_cancelled_alone_resumes_under_torchrun_with_the_same_steps(tmp_path, gpt2_dir):
    """Rank 0 reopens the run, both ranks load its checkpoint, and the steps after it are the
    uninterrupted run's: the data order is the global one, whatever the number of ranks."""
    from desktop_app.core.config import RewardConfig
    from desktop_app.core.events import Progress, StopToken
    from desktop_app.ml.reward.train import train_reward_model

    ws = make_workspace(tmp_path / "ws", seed=0)
    cfg = RewardConfig(epochs=2.0, lr=1e-2, batch_size=8, lora_r=8, lora_alpha=16,
                       max_length=64, eval_every=10, log_every=5, val_fraction=0.2,
                       min_pairs=16)
    full = train_reward_model(ws, cfg, base_model=str(gpt2_dir))
    stop = StopToken()
    first = train_reward_model(ws, cfg, base_model=str(gpt2_dir), stop=stop,
                               emit=lambda e: stop.stop() if isinstance(e, Progress)
                               and e.done == 10 else None)
    assert (first.status, first.step) == ("cancelled", 10)

    proc = torchrun(["--workspace", str(ws.root), "train-reward", "--resume",
                     str(first.run_id), "--json"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip())
    assert (result["run_id"], result["status"]) == (first.run_id, "completed")
    with Store(ws.db_path) as store:
        def after_resume(run_id):
            return dict(store.db.execute(
                "SELECT name, value FROM metrics WHERE run_id = ? AND step = 15 AND name IN "
                "('train/loss', 'train/grad_norm')", [run_id]).fetchall())
        resumed, uninterrupted = after_resume(first.run_id), after_resume(full.run_id)
    assert resumed.keys() == uninterrupted.keys() and resumed
    for name in resumed:
        assert resumed[name] == pytest.approx(uninterrupted[name], rel=1e-4, abs=1e-5), name


def test_when_one_rank_dies_the_job_ends_and_the_run_resumes(tmp_path, gpt2_dir):
    """Rank 1 killed (SIGKILL) after the first checkpoint: rank 0's next collective fails,
    the job ends (no rank left waiting), the run reads as interrupted, and resuming it
    completes."""
    ws = make_workspace(tmp_path / "ws", seed=0).root

    def kill_rank_1(job):
        pid = rank_pid(ws, 1)
        assert pid, "rank 1 not found"
        os.kill(pid, signal.SIGKILL)

    job, err = reward_job_stopped_by(kill_rank_1, ws, gpt2_dir, tmp_path)
    assert job.returncode != 0
    with Store(ws / "rlhf.db") as store:
        store.mark_interrupted_runs()
        run = store.get_run(1)
    assert run.status == "interrupted", (run.status, run.error, err[-2000:])

    resumed = single(["--workspace", str(ws), "train-reward", "--resume", "1", "--json"])
    assert resumed["status"] == "completed" and resumed["run_id"] == 1


def test_a_signal_to_torchrun_cancels_the_run_with_a_checkpoint(tmp_path, gpt2_dir):
    """A cluster's SIGTERM to the launcher reaches every rank; they stop together at a step's
    end and the run is cancelled with its checkpoint, resumable. (Ctrl+C, SIGINT, goes the same
    way through the same handler; checked by hand, not here, to keep the suite short.)"""
    ws = make_workspace(tmp_path / "ws", seed=0).root
    _, log = reward_job_stopped_by(lambda job: job.send_signal(signal.SIGTERM), ws, gpt2_dir,
                                   tmp_path)
    checkpoint = ws / "runs" / "0001-reward" / "checkpoint" / "trainer_state.pt"
    with Store(ws / "rlhf.db") as store:
        run = store.get_run(1)
    assert run.status == "cancelled", (run.status, run.error, log[-2000:])
    assert checkpoint.exists()


def reward_job_stopped_by(act, ws: Path, model: Path, tmp_path: Path):
    """A long reward run under torchrun (2 CPU processes, checkpointed every 5 steps, its
    output in a file, not a pipe nobody reads while it runs); ``act(job)`` once its first
    checkpoint exists, then wait for the job to end. Returns (the job, its output)."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                        "RLHF_DESK_DIST_BACKEND": "gloo"}
    log = tmp_path / "torchrun.log"
    with log.open("w") as out:
        job = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
             "2", "-m", "desktop_app.cli", "--workspace", str(ws), "train-reward", "--model",
             str(model), "--epochs", "10", "--batch-size", "8", "--max-length", "64",
             "--checkpoint-every", "5", "--min-pairs", "16", "--json"],
            stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    try:
        checkpoint = ws / "runs" / "0001-reward" / "checkpoint" / "trainer_state.pt"
        assert poll_until(lambda: checkpoint.exists() or job.poll() is not None, timeout=300)
        assert job.poll() is None, log.read_text()[-3000:]
        act(job)
        job.wait(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    return job, log.read_text()


def rank_pid(workspace: Path, rank: int) -> int | None:
    """The pid of the torchrun worker of ``rank`` training in ``workspace`` (its command line
    names the workspace and its environment says RANK=rank), or None."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"desktop_app.cli" in cmdline and str(workspace).encode() in cmdline \
                and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None
