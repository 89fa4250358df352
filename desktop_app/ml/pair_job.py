"""The paired-generation job: sample two responses for prompts that have no pair yet and store
each batch as soon as it is done (so cancelling or crashing loses at most one batch).

The GUI's background queue and ``rlhf-desk generate`` both call ``generate_pending_pairs``.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass

from ..core.config import SamplingConfig
from ..core.events import Emit, Progress, StopToken, ignore
from ..core.store import GenerationIn, Store
from .model_loader import LoadedModel
from .sampling import PromptInput, Sample, generate_pairs


@dataclass
class GenerateReport:
    pairs: int = 0
    identical: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    seed: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"pairs_generated": self.pairs, "identical_pairs": self.identical,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
                "tokens_per_s": round(self.tokens_per_s, 2), "seed": self.seed}


def _generation(lm: LoadedModel, sample: Sample, sampling: dict, run_id: int | None,
                base_side: bool = False) -> GenerationIn:
    # Against the base, response b is the base model's: it records no adapter.
    adapter = None if base_side and lm.versus_base else lm.adapter
    return GenerationIn(
        text=sample.text, model=lm.path, adapter=adapter, sampling=sampling, seed=sample.seed,
        batch_row=sample.row, prompt_tokens=sample.prompt_tokens,
        completion_tokens=sample.completion_tokens, finished=sample.finished, run_id=run_id)


def generate_pending_pairs(store: Store, lm: LoadedModel, cfg: SamplingConfig, *, limit: int,
                           seed: int | None = None, run_id: int | None = None,
                           emit: Emit = ignore, stop: StopToken | None = None,
                           rng: random.Random | None = None) -> GenerateReport:
    """Generate up to ``limit`` pairs for the oldest prompts without one from this model (and
    adapter); store batch by batch."""
    cfg.validate()
    seed = secrets.randbits(31) if seed is None else seed
    rng = rng or random.Random(seed)
    report = GenerateReport(seed=seed)
    rows = store.prompts_without_pairs(limit, model=lm.path, adapter=lm.adapter)
    if not rows:
        return report
    prompts = [PromptInput(r["id"], r["text"], r["messages"]) for r in rows]
    sampling = cfg.to_dict()
    start = time.perf_counter()
    for batch in generate_pairs(lm, prompts, cfg, seed, emit=ignore, stop=stop):
        store.add_pairs([(p.prompt_id, _generation(lm, p.a, sampling, run_id),
                          _generation(lm, p.b, sampling, run_id, base_side=True))
                         for p in batch],
                        rng=rng, flags=["identical" if p.identical else None for p in batch])
        report.pairs += len(batch)
        report.identical += sum(p.identical for p in batch)
        report.completion_tokens += sum(p.a.completion_tokens + p.b.completion_tokens
                                        for p in batch)
        report.seconds = time.perf_counter() - start
        emit(Progress(report.pairs, len(prompts),
                      f"Generated {report.pairs} of {len(prompts)} pairs",
                      extra={"tokens_per_s": report.tokens_per_s, "pairs": report.pairs}))
    report.seconds = time.perf_counter() - start
    return report
