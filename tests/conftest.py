"""Shared test setup: never touch the network, never open a real window."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

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
