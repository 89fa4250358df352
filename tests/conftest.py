"""Shared test setup: never touch the network, never open a real window."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# fp32 on every CPU: "auto" would pick bf16 on a CPU with bf16 instructions, and the suite's
# numbers must not depend on which CPU CI lands on. The bf16 path has tests that force it.
os.environ["RLHF_DESK_CPU_BF16"] = "0"

import pytest  # noqa: E402

from desktop_app.core.data.store import Store  # noqa: E402
from desktop_app.core.workspace import Workspace  # noqa: E402


# An empty workspace and its store, for tests that do not build their own.
@pytest.fixture
def workspace(tmp_path):
    return Workspace.open(tmp_path / "ws")


@pytest.fixture
def store(workspace):
    with Store(workspace.db_path) as s:
        yield s
