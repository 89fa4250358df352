"""The demo workspace: built from resources/, cached, rebuilt when the recipe changes.

The real recipe trains for ~70 s; here a shrunken one checks the mechanism in seconds."""

import pytest

from desktop_app.core.store import Store
from desktop_app.core.workspace import Workspace
from desktop_app.ml import demo
from desktop_app.ml.model_inspect import inspect_model_folder


@pytest.fixture
def quick_recipe(monkeypatch):
    monkeypatch.setattr(demo, "RECIPE", dict(demo.RECIPE, hidden=32, layers=1, heads=2,
                                             vocab=400, max_steps=3, batch_size=4, seq_len=32))


def test_demo_workspace_builds_once_and_imports_prompts(tmp_path, quick_recipe):
    ws = Workspace.open(tmp_path / "demo")
    first = demo.ensure_demo_workspace(ws)
    assert first.built and first.prompts_added >= 50 and first.train["steps"] == 3
    info = inspect_model_folder(first.model_path)
    assert info.has_chat_template and info.architecture == "LlamaForCausalLM"
    assert ws.load_settings()["last_model"] == first.model_path

    again = demo.ensure_demo_workspace(ws)
    assert not again.built and again.prompts_added == 0
    with Store(ws.db_path) as store:
        assert store.stats()["prompts"] == first.prompts_added


def test_changed_recipe_rebuilds(tmp_path, quick_recipe, monkeypatch):
    ws = Workspace.open(tmp_path / "demo")
    demo.ensure_demo_workspace(ws)
    monkeypatch.setattr(demo, "RECIPE", dict(demo.RECIPE, version=demo.RECIPE["version"] + 1))
    assert demo.ensure_demo_workspace(ws).built
    assert not (ws.models_dir / (demo.DEMO_MODEL_NAME + ".partial")).exists()
