"""discover_models on a fake Hugging Face cache and on folders the user added."""

from __future__ import annotations

from pathlib import Path

from desktop_app.ml.models.discovery import ModelEntry, discover_models


def fake_snapshot(cache: Path, repo: str, revision: str, *, config: bool = True,
                  kind: str = "models", ref: str | None = "main") -> Path:
    """The hub cache layout: <kind>--org--name/snapshots/<rev>/..., refs/<ref> -> rev."""
    repo_dir = cache / f"{kind}--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / ("config.json" if config else "README.md")).write_text("{}")
    if ref:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / ref).write_text(revision)
    return snapshot


def model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_finds_model_snapshots_in_the_cache(tmp_path):
    cache = tmp_path / "hub"
    gpt2 = fake_snapshot(cache, "openai-community/gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e")
    fake_snapshot(cache, "someone/dataset", "1111111", kind="datasets")
    fake_snapshot(cache, "someone/no-config", "2222222", config=False)
    found = discover_models(cache_dir=cache)
    assert found == [ModelEntry("openai-community/gpt2", str(gpt2), "hf-cache")]


def test_several_snapshots_of_one_repo_are_told_apart(tmp_path):
    cache = tmp_path / "hub"
    fake_snapshot(cache, "org/model", "aaaaaaaaaa11")
    fake_snapshot(cache, "org/model", "bbbbbbbbbb22", ref="dev")
    names = [e.name for e in discover_models(cache_dir=cache)]
    assert names == ["org/model@aaaaaaa", "org/model@bbbbbbb"]


def test_missing_or_broken_cache_is_empty(tmp_path):
    assert discover_models(cache_dir=tmp_path / "nowhere") == []
    cache = tmp_path / "hub"
    cache.mkdir()
    (cache / "models--broken").write_text("not a folder")  # a corrupt repo entry
    (cache / "models--half--done").mkdir()  # no snapshots folder
    good = fake_snapshot(cache, "org/good", "abc1234")
    assert [e.path for e in discover_models(cache_dir=cache)] == [str(good)]
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert discover_models(cache_dir=not_a_dir) == []


def test_extra_folders(tmp_path):
    empty_cache = tmp_path / "no-cache"
    single = model_folder(tmp_path / "my-model")
    parent = tmp_path / "models"
    zeta = model_folder(parent / "Zeta")
    alpha = model_folder(parent / "alpha")
    (parent / "notes").mkdir()
    (parent / "readme.txt").write_text("hi")
    model_folder(parent / "alpha" / "nested")  # only direct children are looked at

    found = discover_models([single, str(parent), tmp_path / "missing"], cache_dir=empty_cache)
    assert [(e.name, e.path, e.source) for e in found] == [
        ("alpha", str(alpha.resolve()), "folder"),
        ("my-model", str(single.resolve()), "folder"),
        ("Zeta", str(zeta.resolve()), "folder"),
    ]


def test_the_same_folder_is_listed_once(tmp_path):
    cache = tmp_path / "hub"
    snapshot = fake_snapshot(cache, "org/model", "abc1234")
    folder = model_folder(tmp_path / "mine")
    link = tmp_path / "link-to-mine"
    link.symlink_to(folder)
    found = discover_models([snapshot, folder, link, tmp_path / "." / "mine"], cache_dir=cache)
    assert [(e.name, e.source) for e in found] == [("mine", "folder"), ("org/model", "hf-cache")]


def test_real_tiny_models_are_found(models_dir, gpt2_dir, llama_chat_dir):
    found = discover_models([models_dir], cache_dir=models_dir / "no-cache")
    names = {e.name for e in found}
    assert {gpt2_dir.name, llama_chat_dir.name} <= names
