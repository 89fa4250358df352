import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

LINES = ["Tell me about cats.", "Cats like to sleep in the sun.", "Write a poem about rain.",
         "Rain falls softly on the roof.", "How do I boil an egg?", "Put the egg in hot water."]


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory):
    """A tiny Llama with a chat template and no pad token, saved like a real checkpoint."""
    from desktop_app.ml.tiny_models import build_tiny_model, train_tokenizer
    path = tmp_path_factory.mktemp("gui-models") / "tiny-llama"
    tokenizer = train_tokenizer(LINES * 3, vocab_size=300, chat_template=True, pad_token=False)
    build_tiny_model("llama", tokenizer, path, hidden=32, heads=2)
    return path


@pytest.fixture
def window(qtbot, workspace, store):
    from desktop_app.gui.app import create_app
    from desktop_app.gui.main_window import MainWindow
    create_app()
    win = MainWindow(workspace, store)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()
