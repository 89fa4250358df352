"""Tiny models built once per test session from a few lines of text: no downloads, ever."""

from __future__ import annotations

import os
import socket

# Before transformers or huggingface_hub are imported anywhere: a test that tried to reach the
# hub would fail instead of downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from desktop_app.ml.models.loader import load_model  # noqa: E402
from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer  # noqa: E402

# Few threads: the models are tiny, and the test machines may have two cores. Under
# pytest-xdist (`make test` runs a worker per core) one each: two workers with two threads
# each on two cores spin against each other.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection to another machine fails the test that made it."""
    connect, create_connection = socket.socket.connect, socket.create_connection

    def local(address) -> bool:  # this machine: a local server under test, torchrun's store
        host = address[0] if isinstance(address, tuple) else None
        return host is None or host in ("127.0.0.1", "::1", "localhost")

    def checked_connect(sock, address, *args, **kwargs):
        if not local(address):
            raise AssertionError("a test tried to use the network")
        return connect(sock, address, *args, **kwargs)

    def checked_create_connection(address, *args, **kwargs):
        if not local(address):
            raise AssertionError("a test tried to use the network")
        return create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", checked_connect)
    monkeypatch.setattr(socket, "create_connection", checked_create_connection)

CORPUS = [
    "The cat sat on the mat and looked at the rain.",
    "A dog ran in the park, chasing a red ball.",
    "Hello there, how are you today?",
    "Paris is the capital of France.",
    "Water boils at one hundred degrees.",
    "Please write a short poem about the sea.",
    "Two plus two is four, and three plus three is six.",
] * 3


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return list(CORPUS)


@pytest.fixture(scope="session")
def plain_tokenizer():
    """Has a pad token, no chat template."""
    return train_tokenizer(CORPUS, vocab_size=320)


@pytest.fixture(scope="session")
def chat_tokenizer():
    """Has a chat template and no pad token: the harder case for the loader."""
    return train_tokenizer(CORPUS, vocab_size=320, chat_template=True, pad_token=False)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def gpt2_dir(models_dir, plain_tokenizer) -> Path:
    path = models_dir / "tiny-gpt2"
    build_tiny_model("gpt2", plain_tokenizer, path, hidden=32, heads=2)
    return path


@pytest.fixture(scope="session")
def gpt2_nopad_dir(models_dir, corpus) -> Path:
    path = models_dir / "tiny-gpt2-nopad"
    build_tiny_model("gpt2", train_tokenizer(corpus, vocab_size=320, pad_token=False), path,
                     hidden=32, heads=2)
    return path


@pytest.fixture(scope="session")
def llama_chat_dir(models_dir, chat_tokenizer) -> Path:
    path = models_dir / "tiny-llama-chat"
    build_tiny_model("llama", chat_tokenizer, path, hidden=32, heads=2)
    return path


@pytest.fixture(scope="session")
def gpt2_lm(gpt2_dir):
    return load_model(gpt2_dir, device="cpu")


@pytest.fixture(scope="session")
def llama_lm(llama_chat_dir):
    return load_model(llama_chat_dir, device="cpu")


@pytest.fixture(params=["gpt2", "llama"])
def any_lm(request, gpt2_lm, llama_lm):
    """Each test that takes this runs on GPT-2 (plain text) and Llama (chat template)."""
    return {"gpt2": gpt2_lm, "llama": llama_lm}[request.param]


def make_policy_adapter(base: Path, folder: Path, scale: float = 0.5) -> Path:
    """A LoRA "tuned policy" on the tiny GPT-2 with weights large enough to change what it
    says: stands in for a PPO run's policy where the test is about what uses one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"],
                                             fan_in_fan_out=True))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, scale)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def gpt2_policy_dir(models_dir, gpt2_dir) -> Path:
    return make_policy_adapter(gpt2_dir, models_dir / "tiny-gpt2-policy")


@pytest.fixture(scope="session")
def marker_task(tmp_path_factory):
    """The synthetic RLHF task of tests/ml/marker_task.py (seed 0): base model, judged pairs
    and a trained reward model, built once for the PPO tests (about 10 s)."""
    from marker_task import build_task
    return build_task(tmp_path_factory.mktemp("marker-task"), seed=0)


@pytest.fixture(scope="session")
def short_task(tmp_path_factory):
    """The same task with the "short" preference (the shorter response wins), built once for
    the RLOO tests (about 10 s)."""
    from marker_task import build_task
    return build_task(tmp_path_factory.mktemp("short-task"), seed=0, prefer="short")
