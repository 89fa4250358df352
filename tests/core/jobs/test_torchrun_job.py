"""The pieces of a torchrun job run by the app (``core/jobs/torchrun.py``) that need no
torchrun: a config as CLI options, and the events file between rank 0 and the app. The whole
thing runs in `tests/gui/training/test_gpus.py`."""

from __future__ import annotations

import json

import pytest

from desktop_app.cli import _config_from_args, build_parser
from desktop_app.core.config import DPOConfig, PPOConfig, RewardConfig, RLOOConfig
from desktop_app.core.events import Log, Metric, Progress
from desktop_app.core.jobs.torchrun import EventFile, EventReader, config_options


@pytest.mark.parametrize("command, cfg", [
    ("train-reward", RewardConfig(epochs=3.5, lr=3e-5, ties="drop", gradient_checkpointing=True,
                                  target_modules="q_proj,v_proj")),
    ("train-ppo", PPOConfig(steps=7, kl_coef=0.0, init_policy="/a b/policy",
                            whiten_advantages=False)),
    ("train-rloo", RLOOConfig(k=4, advantage="grpo", temperature=0.7)),
    ("train-dpo", DPOConfig(beta=0.25, label_smoothing=0.1, seed=12)),
])
def test_a_config_as_options_reads_back_as_the_same_config(command, cfg):
    args = build_parser().parse_args([command, *config_options(cfg)])
    assert _config_from_args(type(cfg), args) == cfg


def test_rank_0s_events_reach_the_app_whole_and_in_order(tmp_path):
    path = tmp_path / "events"
    shown = []
    write = EventFile(path, shown.append)
    reader = EventReader(path)
    assert reader.new() == []
    write(Progress(0, 10, "Loading"))
    write(Metric(1, "train/loss", 0.5))  # from the database instead
    write(Log("Reward-model run 3: 10 steps on cpu.", "info"))
    write(Progress(10, 10, "done", {"eta_s": 0.0, "samples_per_s": 12.5}))
    assert len(shown) == 4  # the progress bar still sees everything
    assert reader.new() == [Progress(0, 10, "Loading"),
                            Log("Reward-model run 3: 10 steps on cpu.", "info"),
                            Progress(10, 10, "done", {"eta_s": 0.0, "samples_per_s": 12.5})]
    # A line still being written waits for its end; a line naming a class that is not RLHF
    # Desk's is dropped, never imported.
    with path.open("a") as f:
        f.write(json.dumps({"event": "os.system", "fields": {}}) + "\n")
        f.write('{"event": "desktop_app.core.events.Log", "fields": {"mess')
    assert reader.new() == []
    with path.open("a") as f:
        f.write('age": "later"}}\n')
    assert reader.new() == [Log("later")]
    write.close()
