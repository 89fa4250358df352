"""The demo workspace: its model ships in resources/demo-model (copied on first start); a model
that does not match the corpus and recipe is rebuilt, never silently reused.

The real recipe trains for minutes; here a shrunken one checks the building in seconds."""

import json

import pytest

from desktop_app.core.data.store import Store
from desktop_app.core.workspace import Workspace
from desktop_app.ml.models import demo
from desktop_app.ml.models.folder_check import inspect_model_folder

pytestmark = pytest.mark.slow  # builds the demo model


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


def test_the_shipped_model_is_current_and_copied_not_trained(tmp_path):
    """resources/demo-model is what ``python -m desktop_app.ml.models.demo`` builds from today's
    corpus and recipe: change either without rebuilding it and this fails."""
    shipped = demo.shipped_model_dir()
    assert demo.demo_model_is_current(shipped), (
        "resources/demo-model is stale: rebuild it with 'python -m desktop_app.ml.models.demo'")
    marker = json.loads((shipped / demo.MARKER).read_text(encoding="utf-8"))
    assert marker["train"]["steps"] == demo.RECIPE["max_steps"]  # trained to the end
    ws = Workspace.open(tmp_path / "demo")
    info = demo.ensure_demo_workspace(ws)
    assert not info.built and info.seconds < 30
    assert demo.demo_model_is_current(ws.models_dir / demo.DEMO_MODEL_NAME)
    assert inspect_model_folder(info.model_path).has_chat_template


def test_demo_answers_are_readable(tmp_path):
    """The demo model answers demo prompts in words (a model cut short by a time cap wrote
    "Youish coffee,ing.")."""
    from desktop_app.core.config import SamplingConfig
    from desktop_app.ml.generation.sampling import PromptInput, sample_batch
    from desktop_app.ml.models.loader import load_model

    lm = load_model(demo.shipped_model_dir(), device="cpu", dtype="float32")
    prompts = ["How do I boil an egg?", "Give me a tip for sleeping better.",
               "Tell me a fun fact about cats.", "What should I wear on a rainy day?"]
    out = sample_batch(lm, [PromptInput(i, p, None) for i, p in enumerate(prompts)], 2,
                       SamplingConfig(max_new_tokens=96), 7, None)

    def words(text: str) -> list[str]:
        return [w for w in (w.strip(".,!?:;\"'()").lower() for w in text.split()) if w]

    vocabulary = {w for row in demo._corpus_rows() for w in words(row["response"])}
    said = [words(sample.text) for pair in out for sample in pair]
    assert all(len(s) >= 3 for s in said), said
    known = sum(w in vocabulary for s in said for w in s) / sum(len(s) for s in said)
    assert known > 0.85, said
    texts = [sample.text for pair in out for sample in pair]
    assert len(set(texts)) >= 6, texts  # pairs to judge, not one answer learned by heart
