"""The Models page's "Open model file…": a GGUF file is imported in the background into the
workspace's models folder, then listed and selected; a name already taken is offered another;
a file that is not a model says so on the page and leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_files import not_gguf, write_gguf
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QInputDialog


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, tiny_chat_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model, local_files_only=True)
    return write_gguf(model, tokenizer, tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture
def page(qtbot, workspace):
    from desktop_app.gui.models_page import ModelsPage
    page = ModelsPage(workspace)
    qtbot.addWidget(page)
    yield page
    for job in (page.load_job, page.scan_job):
        if job is not None:
            qtbot.waitUntil(lambda job=job: not job.running, timeout=60_000)


def _choose(monkeypatch, file: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(file), ""))


def _import(qtbot, page) -> None:
    qtbot.mouseClick(page.open_file_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.load_job is not None and not page.load_job.running,
                    timeout=120_000)


def _selected(page) -> Path | None:
    item = page.tree.currentItem()
    return Path(item.data(0, Qt.ItemDataRole.UserRole)).resolve() if item else None


def test_a_gguf_file_is_imported_listed_and_selected(qtbot, page, workspace, gguf_file,
                                                      monkeypatch):
    _choose(monkeypatch, gguf_file)
    _import(qtbot, page)
    target = (workspace.models_dir / "tiny-llama").resolve()
    assert page.message.text() == f"Imported tiny-llama into {target}."
    assert page.info is not None and Path(page.info.path) == target
    assert page.info.has_chat_template and page.load_button.isEnabled()
    qtbot.waitUntil(lambda: _selected(page) == target, timeout=60_000)

    # The same file again: the page offers a free name rather than replacing the folder.
    offered = []

    def answer(*args, **kwargs):
        offered.append(kwargs["text"])
        return kwargs["text"], True

    monkeypatch.setattr(QInputDialog, "getText", answer)
    _import(qtbot, page)
    assert offered == ["tiny-llama-2"]
    qtbot.waitUntil(lambda: _selected(page) == target.with_name("tiny-llama-2"), timeout=60_000)
    assert sorted(p.name for p in workspace.models_dir.iterdir()) == ["tiny-llama",
                                                                      "tiny-llama-2"]


def test_a_file_that_is_not_gguf_says_so_and_leaves_nothing(qtbot, page, workspace, tmp_path,
                                                            monkeypatch):
    bad = not_gguf(tmp_path / "weights.gguf")
    _choose(monkeypatch, bad)
    _import(qtbot, page)
    assert str(bad) in page.message.text() and "not a GGUF file" in page.message.text()
    assert "b00020" in page.message.styleSheet()   # the page's error colour
    assert not workspace.models_dir.exists() or not any(workspace.models_dir.iterdir())
