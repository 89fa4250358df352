"""Playground memory benchmark (run by hand: `python bench/bench_playground.py`; under a minute on
a 2-core CPU).

The playground holds a base model with a tuned policy attached, and scores both responses with a
reward model. A reward model trained on the same base is attached to that same base (its LoRA
adapter and score head); this measures what that saves against loading the reward model as its
own sequence classifier, as the playground did before. Each way runs in a fresh subprocess:
load the base, attach the policy, generate a pair, score it. CUDA: max_memory_allocated; CPU:
peak RSS (VmHWM, reset after imports) over the RSS after imports. Both ways must give the same
scores.
Target: shared at most 0.6x of separate (one copy of the weights instead of two).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench_ppo import Probe  # noqa: E402  (CUDA allocator counters, or RSS with a resettable peak)


def build(root: Path, hidden: int, layers: int) -> dict:
    """A random Llama, a policy adapter and a reward adapter with its run folder."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from desktop_app.core.config import RewardConfig
    from desktop_app.ml.models.device import pick_device
    from desktop_app.ml.models.tiny import build_tiny_model, train_tokenizer
    from desktop_app.ml.reward.model import build_reward_model, load_tokenizer, lora_targets

    lines = [f"Describe scene {i} in a few words, please." for i in range(200)]
    base = root / "base"
    build_tiny_model("llama", train_tokenizer(lines, vocab_size=2000, chat_template=True), base,
                     hidden=hidden, layers=layers, heads=8)
    lm = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    params = sum(p.numel() for p in lm.parameters())
    policy = get_peft_model(lm, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32,
                                           target_modules=lora_targets(lm, "all-linear")))
    policy.save_pretrained(root / "policy")
    tokenizer = load_tokenizer(base)
    torch.manual_seed(0)
    reward = build_reward_model(base, tokenizer, pick_device("cpu"),
                                cfg=RewardConfig(lora_r=16, lora_alpha=32))
    with torch.no_grad():
        for name, p in reward.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.02)
    reward.save_pretrained(root / "0001-reward" / "adapter")
    tokenizer.save_pretrained(root / "0001-reward" / "adapter")
    return {"base": str(base), "policy": str(root / "policy"),
            "reward": str(root / "0001-reward" / "adapter"), "params": params}


def phase(way: str, paths: dict, device: str) -> dict:
    from desktop_app.core.config import SamplingConfig
    from desktop_app.ml.generation.playground import PlaygroundRequest, PlaygroundSession
    from desktop_app.ml.generation.sampling import PromptInput
    from desktop_app.ml.reward.model import RewardScorer  # noqa: F401  (imports before the baseline)

    probe = Probe(device)
    probe.reset()
    before = probe.now()
    session = PlaygroundSession(device=device)
    request = PlaygroundRequest(
        prompt=PromptInput(0, "Describe scene 3 in a few words, please."),
        base_model=paths["base"], sampling=SamplingConfig(max_new_tokens=32), seed=1,
        policy_adapter=paths["policy"], reward_adapter=paths["reward"],
        reward_base_model=paths["base_link"] if way == "separate" else paths["base"])
    result = session.run(request)
    assert session.shared_reward == (way == "shared")
    return {"peak_over_imports": probe.peak() - before,
            "scores": [result.scores[s].raw for s in ("base", "policy")]}


def spawn(way: str, paths: dict, device: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", way, "--paths", json.dumps(paths),
                          "--device", device], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, json.loads(args.paths), args.device)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = build(root, args.hidden, args.layers)
        # The same weights under another folder name: the playground cannot know they are the
        # same, so it loads the reward model on its own (the old behaviour for every run).
        (root / "base-link").mkdir()
        for f in Path(paths["base"]).iterdir():
            (root / "base-link" / f.name).write_bytes(f.read_bytes())
        paths["base_link"] = str(root / "base-link")
        shared, separate = spawn("shared", paths, args.device), spawn("separate", paths,
                                                                      args.device)
    mib = 1024 * 1024
    ratio = shared["peak_over_imports"] / separate["peak_over_imports"]
    same = all(abs(a - b) < 1e-4 for a, b in zip(shared["scores"], separate["scores"]))
    print(f"Playground on {args.device}: Llama {paths['params'] / 1e6:.1f} M parameters "
          f"({paths['params'] * 4 / mib:.0f} MiB fp32), policy + reward LoRA r 16, one pair")
    print(f"  reward model attached to the base : "
          f"peak {shared['peak_over_imports'] / mib:7.0f} MiB")
    print(f"  reward model loaded on its own    : "
          f"peak {separate['peak_over_imports'] / mib:7.0f} MiB")
    print(f"  ratio {ratio:.2f}; target <= 0.6 -> {'met' if ratio <= 0.6 else 'NOT met'}; "
          f"scores {'equal' if same else 'DIFFER'} ({shared['scores']} vs {separate['scores']})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
