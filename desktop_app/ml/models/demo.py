"""The built-in demo workspace: a small chat model trained on CPU from ``resources/``, plus
sample prompts, so every part of the app can be tried without a GPU or a download.

The model is built once, by ``python -m desktop_app.ml.models.demo``, and shipped in
``resources/demo-model``: every machine gets the same model and the first start copies a few
megabytes instead of training for minutes (a slow machine used to hit a time cap and get a model
that wrote gibberish). A marker file records which corpus and recipe built it; a shipped model
that does not match the current corpus and recipe is not used, and the workspace builds its own
(the same fixed number of steps, however long that takes), so a stale model is never silently
reused."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from desktop_app.core.data.store import Store
from desktop_app.core.events import Emit, Log, Progress, StopToken, ignore
from desktop_app.core.resources import RESOURCES_DIR, resource_path
from desktop_app.core.workspace import Workspace

DEMO_MODEL_NAME = "demo-chat-model"
MARKER = "rlhf-desk-demo.json"
# Bump when the recipe below changes so cached demo models are rebuilt.
RECIPE = {"version": 4, "arch": "llama", "hidden": 128, "layers": 4, "heads": 4,
          "vocab": 2048, "seq_len": 96, "max_steps": 500, "batch_size": 32, "lr": 3e-3,
          "seed": 0}
# A fixed number of steps and no time cap: the recipe alone decides the model (a time cap made a
# busy machine stop early and ship gibberish). After 500 steps (about 90 s on an idle 2-core
# CPU, done once when the shipped model is built) it answers the demo prompts with short
# sentences of clearly varying quality, some on topic and some not, which is what pairs need;
# at 1200 steps it had learned the answers by heart and half the pairs were identical.
SHIPPED = "demo-model"  # resources/demo-model: the model built by this recipe


@dataclass
class DemoInfo:
    model_path: str
    built: bool
    seconds: float
    prompts_added: int
    train: dict | None = None


def _corpus_rows() -> list[dict]:
    rows = []
    with resource_path("demo_corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _fingerprint() -> str:
    digest = hashlib.sha256(resource_path("demo_corpus.jsonl").read_bytes())
    digest.update(json.dumps(RECIPE, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def demo_model_is_current(model_dir: Path) -> bool:
    try:
        marker = json.loads((model_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("fingerprint") == _fingerprint()


def build_demo_model(model_dir: Path, emit: Emit = ignore, stop: StopToken | None = None) -> dict:
    """Train the demo chat model into ``model_dir`` (written to a temp folder, then renamed)."""
    import torch

    from desktop_app.ml.models.tiny import build_tiny_model, train_causal_lm, train_tokenizer

    torch.manual_seed(RECIPE["seed"])
    rows = _corpus_rows()
    emit(Progress(0, 0, "Training the demo tokenizer"))
    lines = [r["prompt"] for r in rows] + [r["response"] for r in rows]
    tokenizer = train_tokenizer(lines, vocab_size=RECIPE["vocab"], chat_template=True)
    texts = [tokenizer.apply_chat_template(
        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}],
        tokenize=False) for r in rows]
    model = build_tiny_model(RECIPE["arch"], tokenizer, seed=RECIPE["seed"],
                             hidden=RECIPE["hidden"], layers=RECIPE["layers"],
                             heads=RECIPE["heads"], max_positions=512)
    emit(Log(f"Training the demo model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
             f"parameters) on {len(texts)} examples for {RECIPE['max_steps']} steps"))
    result = train_causal_lm(model, tokenizer, texts, seconds=math.inf,
                             max_steps=RECIPE["max_steps"], batch_size=RECIPE["batch_size"],
                             seq_len=RECIPE["seq_len"], lr=RECIPE["lr"], emit=emit, stop=stop)
    tmp = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps({"fingerprint": _fingerprint(), "recipe": RECIPE,
                                          "train": result}, indent=2), encoding="utf-8")
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)
    return result


def shipped_model_dir() -> Path:
    return RESOURCES_DIR / SHIPPED


def _copy_shipped_model(model_dir: Path, emit: Emit) -> bool:
    """Copy the shipped demo model into the workspace; False when there is none that matches
    the current corpus and recipe (then the workspace builds its own)."""
    source = shipped_model_dir()
    if not demo_model_is_current(source):
        if source.exists():
            emit(Log(f"The demo model in {source} was built from another corpus or recipe; "
                     "building a fresh one (rebuild the shipped one with "
                     "'python -m desktop_app.ml.models.demo')."))
        return False
    emit(Progress(0, 0, "Copying the demo model"))
    tmp = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)
    return True


DEMO_HELD_OUT = 12  # of the 60 demo prompts


def ensure_demo_workspace(workspace: Workspace, emit: Emit = ignore,
                          stop: StopToken | None = None) -> DemoInfo:
    """Make ``workspace`` a ready demo: the demo model built (or reused) and sample prompts."""
    start = time.perf_counter()
    model_dir = workspace.models_dir / DEMO_MODEL_NAME
    built, train = False, None
    if not demo_model_is_current(model_dir):
        workspace.models_dir.mkdir(parents=True, exist_ok=True)
        if not _copy_shipped_model(model_dir, emit):
            train = build_demo_model(model_dir, emit=emit, stop=stop)
            built = True
    prompts = [line.strip() for line in
               resource_path("demo_prompts.txt").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    with Store(workspace.db_path) as store:
        result = store.add_prompts(prompts, source="demo_prompts.txt")
        added = result.added
        if result.added == len(prompts):
            # A fresh demo keeps the last prompts back for blind evaluation, so the Evaluate
            # page works out of the box on prompts no model was trained on.
            store.set_held_out(result.ids[-DEMO_HELD_OUT:])
    settings = workspace.load_settings()
    settings.setdefault("last_model", str(model_dir))
    workspace.save_settings(settings)
    return DemoInfo(str(model_dir), built, time.perf_counter() - start, added, train)


def main(argv: list[str] | None = None) -> int:
    """Build the shipped demo model: ``python -m desktop_app.ml.models.demo [OUT_DIR]`` (default
    ``resources/demo-model`` in a checkout). Deterministic on one machine and torch build."""
    import argparse
    import sys

    from desktop_app.core.resources import PACKAGE_DIR

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", nargs="?", default=str(PACKAGE_DIR.parent / "resources" / SHIPPED))
    args = parser.parse_args(argv)

    def show(event) -> None:
        if isinstance(event, Log) or (isinstance(event, Progress) and event.done % 100 == 0):
            print(getattr(event, "message", ""), getattr(event, "done", ""), file=sys.stderr,
                  flush=True)

    start = time.perf_counter()
    result = build_demo_model(Path(args.out), emit=show)
    print(f"Built {args.out} in {time.perf_counter() - start:.0f} s: {result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
