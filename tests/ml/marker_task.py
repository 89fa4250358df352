"""The synthetic RLHF task the policy tests learn on, and how far a tuned policy has come on it.

A tiny GPT-2 is taught to babble a few words. Pairs of its own samples are judged by one of two
preferences, a reward model learns that, and the policy is tuned against it:

    marker  the response with "cat" wins (PPO, DPO). The base is trained only a little (100
            steps) and is near-uniform: it hardly ever says "cat" by itself, so the tuned policy
            must find it.
    short   the shorter response wins (RLOO, GRPO). A group method learns only from reward
            differences *within* its k responses to a prompt, and on the marker task the
            reward model gives every response without "cat" the same score to 1e-4: RLOO found
            the word in 1 run of 3. So this base is trained longer (300 steps): it says the
            words and stops at varied lengths, and the groups' rewards differ from step one.

Everything is seeded, and everything that says "it learned" compares the tuned policy with the
base model *measured in the same run*, on the same prompts with the same sampling seed: a
dependency release that makes the models learn faster or slower moves both sides, not the
comparison.

``bench/learning_spread.py`` runs this task over many seeds to set the tests' thresholds.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from desktop_app.core.config import (
    DPOConfig,
    PPOConfig,
    RewardConfig,
    RLOOConfig,
    SamplingConfig,
)
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.workspace import Workspace
from desktop_app.ml.dpo.train import train_dpo
from desktop_app.ml.generation.sampling import PromptInput, sample_batch
from desktop_app.ml.models.loader import load_model
from desktop_app.ml.models.tiny import build_tiny_model, train_causal_lm, train_tokenizer
from desktop_app.ml.ppo.train import train_ppo
from desktop_app.ml.reward.model import RewardScorer
from desktop_app.ml.reward.train import train_reward_model
from desktop_app.ml.rloo.train import train_rloo

WORDS = "the cat sat on mat and looked at rain a dog ran in park red ball".split()
MARK = "cat"
REWARD = dict(epochs=4.0, lr=1e-2, batch_size=8, lora_r=8, lora_alpha=16, max_length=64,
              eval_every=100, log_every=5, val_fraction=0.2, warmup_ratio=0.1, min_pairs=16)
# 32 rollouts a step: the base hardly ever says "cat", and with 16 a step PPO found it too
# rarely on some seeds. A policy that learnt it is far from the near-uniform base (KL per
# response 23-41 over 20 seeds), so the KL stop is set well above that.
PPO = dict(steps=40, batch_size=32, mini_batch_size=8, ppo_epochs=4, lr=2e-3, max_new_tokens=10,
           kl_coef=0.05, lora_r=8, lora_alpha=16, sample_every=10, score_clip=3.0,
           missing_eos_penalty=0.0, checkpoint_every=1000, max_kl=200.0)
# RLOO (on the "short" task): the same 32 rollouts a step as PPO (8 prompts x k = 4), no value
# model, 2 update epochs over them. A response cut off at max_new_tokens loses 1 (in score
# standard deviations): without that, on 2 seeds of 12 the policy learnt to run on to the limit,
# which that seed's reward model happened to score high on the training prompts (it only ever
# saw finished responses), and its held-out responses came out longer than the base's.
RLOO = dict(steps=40, batch_size=32, k=4, mini_batch_size=8, ppo_epochs=2, lr=2e-3,
            max_new_tokens=10, kl_coef=0.05, lora_r=8, lora_alpha=16, sample_every=10,
            score_clip=3.0, missing_eos_penalty=1.0, checkpoint_every=1000, max_kl=200.0)
# DPO learns straight from the judged pairs (no reward model, no sampling): 4 epochs over the
# ~96 training pairs, 48 steps in a few seconds.
DPO = dict(epochs=4.0, lr=5e-3, batch_size=8, lora_r=8, lora_alpha=16, max_length=64, beta=0.1,
           eval_every=10, log_every=5, val_fraction=0.2, warmup_ratio=0.1, min_pairs=16,
           checkpoint_every=1000)
SAMPLING = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=10)
# Prompts the policies are compared on: never trained on (the workspace's are "Question i").
EVAL_PROMPTS = [f"Query {i}: tell me about the {w}" for i, w in
                enumerate(w for w in WORDS * 8 if w != MARK)][:64]


LM_STEPS = {"marker": 100, "short": 300}  # how long the base is trained, by preference


def build_task(root: Path, seed: int = 0, reward: bool = True, prefer: str = "marker") -> dict:
    """The base model, a workspace of pairs judged by ``prefer`` ("marker" or "short") and
    (unless ``reward`` is False: DPO needs none) a trained reward model."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(400)]
    tokenizer = train_tokenizer(corpus, vocab_size=300)
    model = build_tiny_model("gpt2", tokenizer, None, hidden=32, heads=2)
    # Gently trained on purpose for "marker" (lr 3e-3, 100 steps): it babbles the words and
    # stops, and a reward model still learns "cat" on top of it. At lr 1e-2 (60 steps) that
    # reward model learnt nothing for a third of the seeds (train loss stuck at log 2), at 200
    # steps worse still. Response length, the "short" task's preference, survives 300 steps.
    train_causal_lm(model, tokenizer, corpus, seconds=1e9, max_steps=LM_STEPS[prefer],
                    seq_len=64, lr=3e-3)
    base = root / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)

    ws = Workspace.open(root / "ws")
    base_lm = load_model(base, device="cpu")
    others = [w for w in WORDS if w != MARK]

    def with_marker(text: str) -> str:
        words = [MARK if rng.random() < 0.5 else w for w in (text.split() or ["x"])]
        words[rng.randrange(len(words))] = MARK
        return " ".join(words)

    with Store(ws.db_path) as store:
        store.add_prompts([f"Question {i}: tell me about the {rng.choice(others)}"
                           for i in range(60)])
        rows = store.list_prompts()
        samples = sample_batch(base_lm, [PromptInput(r["id"], r["text"]) for r in rows], 4,
                               SAMPLING, seed=7 + seed)
        if prefer == "short":
            pairs = [(r["id"], GenerationIn(min(a.text, b.text, key=len), "m"),
                      GenerationIn(max(a.text, b.text, key=len), "m"))
                     for r, s in zip(rows, samples) for a, b in ((s[0], s[1]), (s[2], s[3]))
                     if len(a.text) != len(b.text)]
        else:
            pairs = [(r["id"], GenerationIn(with_marker(a.text), "m"), GenerationIn(b.text, "m"))
                     for r, s in zip(rows, samples) for a, b in ((s[0], s[1]), (s[2], s[3]))
                     if MARK not in b.text]
        for cid in store.add_pairs(pairs, rng=random.Random(seed)):
            store.judge(cid, "a")
    if reward:
        reward = train_reward_model(ws, RewardConfig(**REWARD, seed=seed), base_model=str(base))
    return {"ws": ws, "base": base, "reward": reward or None, "seed": seed}


def run_ppo(task: dict, emit=None, **overrides):
    cfg = PPOConfig(**(PPO | {"seed": task["seed"]} | overrides))
    return train_ppo(task["ws"], cfg, base_model=str(task["base"]),
                     reward_run_id=task["reward"].run_id, emit=emit or (lambda e: None))


def run_rloo(task: dict, emit=None, **overrides):
    cfg = RLOOConfig(**(RLOO | {"seed": task["seed"]} | overrides))
    return train_rloo(task["ws"], cfg, base_model=str(task["base"]),
                      reward_run_id=task["reward"].run_id, emit=emit or (lambda e: None))


def run_dpo(task: dict, emit=None, **overrides):
    cfg = DPOConfig(**(DPO | {"seed": task["seed"]} | overrides))
    return train_dpo(task["ws"], cfg, base_model=str(task["base"]),
                     emit=emit or (lambda e: None))


def marker_rates(task: dict, adapter: str) -> dict:
    """How often the base and the tuned policy say the marker on the evaluation prompts (the
    same sampling seed for both)."""
    return {f"{name}_rate": sum(MARK in t for t in texts) / len(texts)
            for name, texts in (("base", policy_responses(task["base"], None)),
                                ("tuned", policy_responses(task["base"], adapter)))}


def policy_responses(base: Path, adapter: str | None, n: int = len(EVAL_PROMPTS)) -> list[str]:
    """One response per evaluation prompt from the base model or, with ``adapter``, the
    tuned policy; the same sampling seed for both, so they differ only by the policy."""
    from peft import PeftModel

    lm = load_model(base, device="cpu")
    if adapter is not None:
        lm.model = PeftModel.from_pretrained(lm.model, adapter).eval()
    prompts = [PromptInput(i, text) for i, text in enumerate(EVAL_PROMPTS[:n])]
    return [rows[0].text for rows in sample_batch(lm, prompts, 1, SAMPLING, seed=123)]


def compare_with_base(task: dict, adapter: str) -> dict:
    """The tuned policy against the base on the evaluation prompts: the reward model's mean
    normalised score of each, how often each says the marker, and each one's mean response
    length in characters."""
    scorer = RewardScorer.load(task["base"], task["reward"].artifact, device="cpu")
    mean, std = scorer.stats["mean"], scorer.stats["std"] or 1.0
    out = {}
    for name, which in (("base", None), ("tuned", adapter)):
        texts = policy_responses(task["base"], which)
        scores = [(scorer.score(p, [t])[0] - mean) / std for p, t in zip(EVAL_PROMPTS, texts)]
        out[f"{name}_score"] = sum(scores) / len(scores)
        out[f"{name}_rate"] = sum(MARK in t for t in texts) / len(texts)
        out[f"{name}_length"] = sum(len(t) for t in texts) / len(texts)
    return out
