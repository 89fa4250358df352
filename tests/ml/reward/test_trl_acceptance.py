"""What `rlhf-desk export` writes, TRL trains on: the exported JSONL loads with
``datasets.load_dataset("json", ...)`` and RewardTrainer and DPOTrainer each take a step on it,
in TRL's standard (strings) and conversational (message lists) forms."""

from __future__ import annotations

import math
import random

import pytest

from desktop_app.core.data.exports import export_judgments
from desktop_app.core.data.row_fields import conversation_text
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

# TRL's own calls into transformers use names transformers is deprecating; not ours to fix.
pytestmark = [pytest.mark.filterwarnings("ignore:.*checkpointing.*:FutureWarning"),
              pytest.mark.slow]  # TRL training steps

CHAT = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there, how are you today?"},
        {"role": "assistant", "content": "Fine, thanks."},
        {"role": "user", "content": "What is the capital of France?"}]
PAIRS = [  # (prompt, chat messages or None, chosen, rejected)
    ("Please write a short poem about the sea.", None, "The sea is blue and wide.", "No."),
    ("Where did the cat sit?", None, "The cat sat on the mat.", "A dog ran in the park."),
    ("What does water do at one hundred degrees?", None, "Water boils.", "It is four."),
    (conversation_text(CHAT, "p"), CHAT, "Paris is the capital of France.", "The rain."),
]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, corpus):
    """A tiny Llama whose tokenizer has a chat template (TRL's conversational form needs one)
    and a pad token."""
    tokenizer = train_tokenizer(corpus, vocab_size=320, chat_template=True)
    path = tmp_path_factory.mktemp("trl-models") / "tiny-llama"
    build_tiny_model("llama", tokenizer, path, hidden=32, heads=2)
    return path


def judged_store(path, pairs) -> Store:
    store = Store(path)
    for prompt, messages, chosen, rejected in pairs:
        store.add_prompts([(prompt, messages)])
        [row] = store.db.query("SELECT id FROM prompts WHERE text = ?", [prompt])
        # Choice 'b': the winner is the second response, as an annotator may well pick.
        store.add_pairs([(row["id"], GenerationIn(rejected, "m"), GenerationIn(chosen, "m"))],
                        rng=random.Random(0), choice="b")
    return store


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Judged pairs exported with the default format: plain prompts give TRL's standard form,
    and one chat prompt among them gives the conversational form."""
    folder = tmp_path_factory.mktemp("trl-data")
    with judged_store(folder / "plain.db", PAIRS[:3]) as store:
        assert export_judgments(store, folder / "standard.jsonl", "trl").pairs == 3
    with judged_store(folder / "chat.db", PAIRS) as store:
        assert export_judgments(store, folder / "chat.jsonl", "trl").pairs == 4
    return folder


def load(path, cache):
    datasets.disable_progress_bars()
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def common_args(out):
    return {"output_dir": str(out), "max_steps": 1, "per_device_train_batch_size": 2,
            "report_to": "none", "use_cpu": True, "save_strategy": "no", "logging_steps": 1,
            "max_length": 96, "disable_tqdm": True, "dataloader_pin_memory": False, "seed": 0}


@pytest.mark.parametrize("form", ["standard", "chat"])
def test_exported_data_loads_in_the_form_trl_expects(exported, tmp_path, form):
    data = load(exported / f"{form}.jsonl", tmp_path)
    assert data.column_names == ["prompt", "chosen", "rejected"]
    if form == "standard":
        assert data[0] == {"prompt": PAIRS[0][0], "chosen": PAIRS[0][2], "rejected": PAIRS[0][3]}
    else:
        assert data[3]["prompt"] == CHAT
        assert data[3]["chosen"] == [{"role": "assistant", "content": PAIRS[3][2]}]
        assert data[0]["prompt"] == [{"role": "user", "content": PAIRS[0][0]}]
    from trl.data_utils import is_conversational
    assert is_conversational(data[0]) == (form == "chat")


@pytest.mark.parametrize("form", ["standard", "chat"])
def test_reward_trainer_takes_a_step(exported, tiny_llama, tmp_path, form):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama, num_labels=1,
                                                               local_files_only=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = trl.RewardTrainer(model=model, args=trl.RewardConfig(**common_args(tmp_path)),
                                train_dataset=load(exported / f"{form}.jsonl", tmp_path),
                                processing_class=tokenizer)
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)


@pytest.mark.parametrize("form", ["standard", "chat"])
def test_dpo_trainer_takes_a_step(exported, tiny_llama, tmp_path, form):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, local_files_only=True)
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama, local_files_only=True)
    trainer = trl.DPOTrainer(model=model, ref_model=reference,
                             args=trl.DPOConfig(**common_args(tmp_path)),
                             train_dataset=load(exported / f"{form}.jsonl", tmp_path),
                             processing_class=tokenizer)
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)
