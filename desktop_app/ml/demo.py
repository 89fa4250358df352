"""The built-in demo workspace: a small chat model trained on CPU from ``resources/``, plus
sample prompts, so every part of the app can be tried without a GPU or a download.

The model is built once per workspace and cached; a marker file records which corpus and
recipe built it, so a changed corpus or recipe rebuilds it instead of silently reusing it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.events import Emit, Log, Progress, StopToken, ignore
from ..core.resources import resource_path
from ..core.store import Store
from ..core.workspace import Workspace

DEMO_MODEL_NAME = "demo-chat-model"
MARKER = "rlhf-desk-demo.json"
# Bump when the recipe below changes so cached demo models are rebuilt.
RECIPE = {"version": 3, "arch": "llama", "hidden": 128, "layers": 4, "heads": 4,
          "vocab": 2048, "seq_len": 96, "seconds": 300.0, "max_steps": 420, "batch_size": 32,
          "lr": 3e-3, "seed": 0}
# ~420 steps (about 70 s on a 2-core CPU): by then the model answers the demo prompts with
# short, mostly on-topic sentences of varying quality, which is what pairs need. Steps, not
# seconds, end training so a busy machine builds the same model; the seconds cap only guards
# against a very slow one. (At 100 s a machine busy with other work stopped early and the demo
# model wrote gibberish; 300 s leaves room for that.)


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

    from .tiny_models import build_tiny_model, train_causal_lm, train_tokenizer

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
             f"parameters) on {len(texts)} examples for up to {RECIPE['seconds']:.0f} s"))
    result = train_causal_lm(model, tokenizer, texts, seconds=RECIPE["seconds"],
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


DEMO_HELD_OUT = 12  # of the 60 demo prompts


def ensure_demo_workspace(workspace: Workspace, emit: Emit = ignore,
                          stop: StopToken | None = None) -> DemoInfo:
    """Make ``workspace`` a ready demo: the demo model built (or reused) and sample prompts."""
    start = time.perf_counter()
    model_dir = workspace.models_dir / DEMO_MODEL_NAME
    built, train = False, None
    if not demo_model_is_current(model_dir):
        workspace.models_dir.mkdir(parents=True, exist_ok=True)
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
