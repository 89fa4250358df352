"""Launch the app N times with a model to load and close it with Ctrl+C, as a person would:
half the launches wait for the model to load, half close at a random moment of start-up.
Prints one line per launch and the count of bad ones (see tests/launching.py for what counts).

    python bench/launch_repeat.py [--n 30] [--display :99] [--model DIR]

With --display the app opens on that X server (e.g. Xvfb :99); without, offscreen. Without
--model a tiny model is built in a temporary folder. Exit 1 when any launch was bad.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from launching import launch  # noqa: E402


def tiny_model(root: Path) -> Path:
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    lines = ["Hello there, how are you today?", "The cat sat on the mat.",
             "Please write a short poem about the sea."] * 4
    tokenizer = train_tokenizer(lines, vocab_size=300, chat_template=True, pad_token=False)
    build_tiny_model("llama", tokenizer, root / "tiny-llama", hidden=32, heads=2)
    return root / "tiny-llama"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--display", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="rlhf-desk-launch-") as tmp:
        root = Path(tmp)
        model = Path(args.model) if args.model else tiny_model(root)
        from desktop_app.core.data.store import Store
        from desktop_app.core.workspace import Workspace
        with Store(Workspace.open(root / "workspace").db_path) as store:
            store.add_prompts([f"Tell me about thing number {i}." for i in range(500)])
        bad = 0
        loads = []
        for i in range(args.n):
            close_after = None if i % 2 == 0 else round(rng.uniform(0.5, 8.0), 1)
            result = launch(root / "workspace", model, close_after=close_after,
                            display=args.display)
            if result.seconds_to_load is not None:
                loads.append(result.seconds_to_load)
            when = "after loading" if close_after is None else f"at {close_after:.1f} s"
            exit_s = ("hung" if result.seconds_to_exit is None
                      else f"{result.seconds_to_exit:.1f} s")
            print(f"{i + 1:3d}  Ctrl+C {when:14s} exit {exit_s:7s} rc {result.rc}  "
                  + ("ok" if not result.problems else "; ".join(result.problems)), flush=True)
            if result.problems:
                bad += 1
                report = Path(tempfile.gettempdir()) / f"rlhf-desk-launch-{i + 1}.txt"
                report.write_text(result.stderr + "\n----- log -----\n" + result.log,
                                  encoding="utf-8")
                print(f"     stderr and log: {report}", flush=True)
        if loads:
            print(f"model loaded after {min(loads):.1f}-{max(loads):.1f} s "
                  f"(median {sorted(loads)[len(loads) // 2]:.1f} s)")
        print(f"{bad} bad launches of {args.n}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
