"""The app as a person starts it: a child process with a model to load, closed by Ctrl+C.

Start-up imports the ML stack on one thread while the first model is inspected and loaded on
another; before ml/models/stack.py, about a quarter of such launches died with "cannot import name
'AutoConfig' from 'transformers'". Closing during start-up used to leave the process running
unseen, loading the model and opening a run nobody saw. bench/launch_repeat.py does the same
30+ times (and on screen under Xvfb)."""

from __future__ import annotations

import pytest
from launching import launch

# Real app processes, with deadlines: run alone (`make test`), not beside another worker.
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.serial]


@pytest.fixture(scope="module")
def model_and_workspace(tmp_path_factory):
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    root = tmp_path_factory.mktemp("launch")
    lines = ["Hello there, how are you today?", "The cat sat on the mat.",
             "Please write a short poem about the sea."] * 4
    tokenizer = train_tokenizer(lines, vocab_size=300, chat_template=True, pad_token=False)
    build_tiny_model("llama", tokenizer, root / "tiny-llama", hidden=32, heads=2)
    workspace = root / "workspace"
    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    with Store(Workspace.open(workspace).db_path) as store:
        store.add_prompts([f"Tell me about thing {i}." for i in range(20)])
    return root / "tiny-llama", workspace


def test_every_launch_loads_the_model_and_closes_cleanly(model_and_workspace):
    model, workspace = model_and_workspace
    for attempt in range(3):  # bench/launch_repeat.py does 30
        result = launch(workspace, model)
        assert result.seconds_to_load is not None, \
            f"launch {attempt + 1} never loaded the model: {result.stderr[-500:]}"
        assert not result.problems, f"launch {attempt + 1}: {result.problems}"
        assert result.seconds_to_exit < 10


@pytest.mark.parametrize("close_after", [0.5, 1.5, 3.0, 5.0])
def test_closing_during_start_up_ends_the_process_and_leaves_no_run(model_and_workspace,
                                                                       close_after):
    model, workspace = model_and_workspace
    result = launch(workspace, model, close_after=close_after)
    assert not result.problems, result.problems
    assert result.seconds_to_exit < 8
