"""``rlhf-desk --smoke-test``: does this installation work? Checks, in a temporary workspace:

1. resources   the demo corpus, demo prompts and app icon are where the app looks for them
2. ml stack    torch, transformers, tokenizers, safetensors and peft import and run: a tiny
               model is built from the demo corpus, saved, loaded and wrapped in a LoRA adapter
3. main window the app opens its main window, visits every page, loads the tiny model through
               the Models page (a background QThread job), generates a pair for the Judge page,
               and closes

Exit 0 when all pass; otherwise 1, with one line on stderr saying which step failed and why.
Used by packaging/build.sh on the frozen app, and by tests/gui/test_smoke.py on the source tree.
On Linux without a display it runs offscreen.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from desktop_app.core.errors import UserError

TIMEOUT_S = 120.0


class SmokeTestError(UserError):
    """A part of the installation that does not work; the message says which."""


def run_smoke_test(out: Callable[[str], None] = print) -> int:
    if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rlhf-desk-smoke-") as tmp:
        state: dict = {"root": Path(tmp)}
        for name, check in (("resources", _resources), ("ml stack", _ml_stack),
                            ("main window", _main_window)):
            began = time.perf_counter()
            try:
                with warnings.catch_warnings():  # deprecation chatter from the ML libraries
                    warnings.simplefilter("ignore", FutureWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    detail = check(state)
            except BaseException as exc:  # the point is to report any failure
                if isinstance(exc, KeyboardInterrupt):
                    raise
                if os.environ.get("RLHF_DESK_DEBUG"):
                    traceback.print_exc()
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                print(f"rlhf-desk: smoke test failed at '{name}': {type(exc).__name__}"
                      + (f": {message}" if message else ""), file=sys.stderr, flush=True)
                return 1
            out(f"ok  {name}: {detail} ({time.perf_counter() - began:.1f} s)")
    out(f"smoke test passed in {time.perf_counter() - start:.1f} s")
    return 0


# ---- 1 ---------------------------------------------------------------------------------------

def _resources(state: dict) -> str:
    from desktop_app.core import resources

    names = ["demo_corpus.jsonl", "demo_prompts.txt"]
    for name in names:
        resources.resource_path(name)
    if resources.icon_path() is None:
        raise SmokeTestError(f"the app icon is missing from {resources.RESOURCES_DIR / 'icons'}")
    return str(resources.RESOURCES_DIR)


# ---- 2 ---------------------------------------------------------------------------------------

def _ml_stack(state: dict) -> str:
    import json

    import torch
    from peft import LoraConfig, get_peft_model

    from desktop_app.core.resources import resource_path
    from desktop_app.ml.models.loader import load_model
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer

    lines = []
    with resource_path("demo_corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            lines.extend(str(v) for v in row.values() if isinstance(v, str))
            if len(lines) > 200:
                break
    tokenizer = train_tokenizer(lines or ["hello world"], vocab_size=300, chat_template=True,
                                pad_token=False)
    folder = state["root"] / "tiny-model"
    build_tiny_model("llama", tokenizer, folder, hidden=32, heads=2)
    lm = load_model(folder, device="cpu")
    ids = lm.tokenizer("Hello", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        generated = lm.model.generate(ids, max_new_tokens=3, do_sample=False,
                                      pad_token_id=lm.tokenizer.pad_token_id)
    if generated.shape[1] <= ids.shape[1]:
        raise SmokeTestError("the tiny model generated nothing")
    peft_model = get_peft_model(lm.model, LoraConfig(r=2, lora_alpha=4,
                                                     target_modules="all-linear"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if not trainable:
        raise SmokeTestError("peft made no trainable LoRA parameters")
    state["model"] = str(folder)
    import transformers
    return f"torch {torch.__version__}, transformers {transformers.__version__}"


# ---- 3 ---------------------------------------------------------------------------------------

def _main_window(state: dict) -> str:
    from PySide6.QtCore import QCoreApplication

    from desktop_app.core.data.store import Store
    from desktop_app.core.workspace import Workspace
    from desktop_app.gui.app import create_app
    from desktop_app.gui.main_window import MainWindow

    errors: list[str] = []
    previous_hook = sys.excepthook

    def hook(exc_type, exc, tb):  # an exception in a slot would otherwise only be printed
        errors.append(f"{exc_type.__name__}: {exc}")
        traceback.print_exception(exc_type, exc, tb)

    sys.excepthook = hook
    app = create_app()
    workspace = Workspace.open(state["root"] / "workspace")
    store = Store(workspace.db_path)
    try:
        store.add_prompts(["Say hello.", "Name a colour."])
        window = MainWindow(workspace, store)
        window.show()

        def wait(until: Callable[[], bool], what: str, seconds: float = TIMEOUT_S) -> None:
            deadline = time.monotonic() + seconds
            while not until():
                if errors:
                    raise SmokeTestError(errors[0])
                if time.monotonic() > deadline:
                    raise SmokeTestError(f"timed out after {seconds:.0f} s waiting for {what}")
                QCoreApplication.processEvents()
                time.sleep(0.01)

        shown = time.monotonic()
        wait(lambda: time.monotonic() - shown > 0.5, "the window to settle")
        if app.windowIcon().isNull():
            raise SmokeTestError("the window has no icon")
        for row in range(window.sidebar.count()):
            window.sidebar.setCurrentRow(row)
            QCoreApplication.processEvents()

        loaded: list = []
        window.models_page.model_loaded.connect(loaded.append)
        window.models_page.select_path(state["model"])
        window.models_page.load_path(state["model"], device="cpu")
        failed: list[str] = []
        window.models_page.load_job.failed.connect(failed.append)
        wait(lambda: loaded or failed, "the model to load")
        if failed:
            raise SmokeTestError(f"loading the model failed: {failed[0]}")
        wait(lambda: store.pending_count() > 0, "a generated pair")

        window.close()
        wait(lambda: not window.isVisible(), "the window to close", 60)
        # The app ends its process here and leaves a scan behind; the smoke test goes on.
        from desktop_app.gui.jobs import running_jobs
        wait(lambda: not running_jobs(), "background jobs to end", 60)
        QCoreApplication.processEvents()
        pages = window.sidebar.count()
        window.deleteLater()
        QCoreApplication.processEvents()
    finally:
        store.close()
        sys.excepthook = previous_hook
    if errors:
        raise SmokeTestError(errors[0])
    platform = app.platformName()
    return f"{pages} pages, model loaded, pair generated, platform {platform}"
