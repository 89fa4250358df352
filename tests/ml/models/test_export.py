"""Exported policies are standard folders other tools open with no RLHF Desk code: the merged
model loads with plain ``AutoModelForCausalLM``/``AutoTokenizer``, the adapter with plain peft,
and both carry a model card (README.md) naming the base model, the runs and their metrics."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app.core.config import PPOConfig, RewardConfig
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.workspace import Workspace
from desktop_app.ml.models.export import ExportError, export_policy
from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
from desktop_app.ml.ppo.train import train_ppo
from desktop_app.ml.reward.train import train_reward_model

pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # trains, exports, loads in a fresh process

WORDS = ["the", "cat", "sat", "on", "mat", "and", "looked", "at", "rain", "a", "dog", "ran",
         "in", "park", "red", "ball"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny chat Llama with no pad token (the harder case), a few judgments, a short reward
    run and a two-step PPO run on it."""
    root = tmp_path_factory.mktemp("export")
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(5)) for _ in range(60)]
    tokenizer = train_tokenizer(corpus, vocab_size=300, chat_template=True, pad_token=False)
    base = root / "tiny-llama"
    build_tiny_model("llama", tokenizer, base, hidden=32, heads=2)

    ws = Workspace.open(root / "ws")
    with Store(ws.db_path) as store:
        store.add_prompts([f"Tell me about the {w} {i}" for i, w in enumerate(WORDS)])
        pairs = [(row["id"], GenerationIn(f"the cat {row['text']}", "m"),
                  GenerationIn(f"a dog {row['text']}", "m")) for row in store.list_prompts()]
        for cid in store.add_pairs(pairs, rng=random.Random(0)):
            store.judge(cid, "a")
    reward = train_reward_model(ws, RewardConfig(epochs=1.0, batch_size=4, lora_r=4,
                                                 lora_alpha=8, max_length=32, eval_every=2,
                                                 log_every=1, val_fraction=0.25, min_pairs=4),
                                base_model=str(base))
    assert reward.status == "completed", reward.error
    ppo = train_ppo(ws, PPOConfig(steps=2, batch_size=4, mini_batch_size=2, ppo_epochs=1,
                                  max_new_tokens=4, lora_r=4, lora_alpha=8, lr=1e-3),
                    base_model=str(base), reward_run_id=reward.run_id)
    assert ppo.status == "completed", ppo.error
    return {"ws": ws, "base": base, "reward": reward, "ppo": ppo}


def _front_matter(card: str) -> dict:
    yaml = pytest.importorskip("yaml")
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_merged_export_loads_in_a_fresh_python_with_plain_transformers(finished, tmp_path):
    out = export_policy(finished["ws"], finished["ppo"].run_id, tmp_path / "merged", merged=True)
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not (tmp_path / "merged.tmp").exists()
    # A separate interpreter that never imports desktop_app: what a user of the folder has.
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "assert not any('lora' in n for n, _ in model.named_parameters())\n"
        "ids = tok.apply_chat_template([{'role': 'user', 'content': 'the cat'}],\n"
        "                              add_generation_prompt=True, return_tensors='pt',\n"
        "                              return_dict=True)['input_ids']\n"
        "out = model.generate(ids, max_new_tokens=3, do_sample=False)\n"
        "assert out.shape[1] > ids.shape[1]\n"
        "assert 'desktop_app' not in sys.modules\n"
        "print('ok', tok.decode(out[0, ids.shape[1]:]))\n")
    result = subprocess.run([sys.executable, "-c", code, str(out)], check=False,
                            capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                 "PATH": "/usr/bin:/bin"},
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_merged_export_has_a_model_card(finished, tmp_path):
    ppo, reward = finished["ppo"], finished["reward"]
    out = export_policy(finished["ws"], ppo.run_id, tmp_path / "my-policy", merged=True)
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(card)
    assert meta["base_model"] == "tiny-llama"
    assert meta["library_name"] == "transformers"
    assert {"rlhf", "ppo", "lora"} <= set(meta["tags"])
    assert "# my-policy" in card
    assert str(finished["base"].resolve()) in card
    assert f"## Reward model: run {reward.run_id}" in card
    assert f"## PPO: run {ppo.run_id}" in card
    assert "| eval/accuracy |" in card and "| objective/scores |" in card
    assert "| objective/kl |" in card and "| kl_coef |" in card
    split = json.loads((Path(reward.artifact).parent / "split.json").read_text())
    assert f"trained on {len(split['train'])} judged pairs" in card
    assert "AutoModelForCausalLM.from_pretrained" in card


def test_adapter_export_is_a_plain_peft_folder_with_a_card(finished, tmp_path):
    from peft import PeftConfig

    ppo = finished["ppo"]
    out = export_policy(finished["ws"], ppo.run_id, tmp_path / "adapter")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(finished["base"].resolve())
    assert PeftConfig.from_pretrained(out).base_model_name_or_path == config[
        "base_model_name_or_path"]
    assert (out / "adapter_model.safetensors").read_bytes() == (
        Path(ppo.artifact) / "adapter_model.safetensors").read_bytes()
    meta = _front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert meta["library_name"] == "peft" and "lora" in meta["tags"]
    # The run's own folder is untouched (the card goes only into the copy).
    assert not (Path(ppo.artifact) / "README.md").exists()
    with pytest.raises(ExportError, match="not an empty folder"):
        export_policy(finished["ws"], ppo.run_id, out)


def test_cli_export_model_writes_the_card(finished, tmp_path, capsys):
    from desktop_app.cli import main

    code = main(["--workspace", str(finished["ws"].root), "export-model",
                 str(finished["ppo"].run_id), str(tmp_path / "cli-out"), "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["merged"] is False
    assert (tmp_path / "cli-out" / "README.md").is_file()
