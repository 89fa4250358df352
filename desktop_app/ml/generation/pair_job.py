"""The paired-generation job: sample two responses for prompts that have no pair yet and store
each batch as soon as it is done (so cancelling or crashing loses at most one batch).

The GUI's background queue and ``rlhf-desk generate`` both call ``generate_pending_pairs``.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass

from desktop_app.core.config import SamplingConfig
from desktop_app.core.data.store import GenerationIn, Store
from desktop_app.core.events import Emit, Progress, StopToken, ignore
from desktop_app.ml.generation.sampling import PromptInput, Sample, generate_pairs
from desktop_app.ml.models.loader import LoadedModel


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
    adapter); store batch by batch.

    Each batch's prompts are claimed for ``run_id`` just before it is generated
    (``Store.claim_prompts``), so generators running side by side on one workspace share the
    prompts instead of answering the same ones twice."""
    cfg.validate()
    seed = secrets.randbits(31) if seed is None else seed
    rng = rng or random.Random(seed)
    report = GenerateReport(seed=seed)
    if limit < 1:
        return report
    total = min(limit, len(store.prompts_without_pairs(limit, model=lm.path, adapter=lm.adapter,
                                                       unclaimed=True, claimant=run_id)))
    sampling = cfg.to_dict()
    start = time.perf_counter()
    batch_index = 0
    while report.pairs < limit and not (stop is not None and stop.requested):
        rows = store.claim_prompts(min(cfg.batch_size, limit - report.pairs), model=lm.path,
                                   adapter=lm.adapter, run_id=run_id)
        if not rows:
            break
        prompts = [PromptInput(r["id"], r["text"], r["messages"]) for r in rows]
        for batch in generate_pairs(lm, prompts, cfg, seed, emit=ignore, stop=stop,
                                    first_batch=batch_index):
            store.add_pairs([(p.prompt_id, _generation(lm, p.a, sampling, run_id),
                              _generation(lm, p.b, sampling, run_id, base_side=True))
                             for p in batch],
                            rng=rng, flags=["identical" if p.identical else None for p in batch])
            report.pairs += len(batch)
            report.identical += sum(p.identical for p in batch)
            report.completion_tokens += sum(p.a.completion_tokens + p.b.completion_tokens
                                            for p in batch)
            report.seconds = time.perf_counter() - start
            total = max(total, report.pairs)
            emit(Progress(report.pairs, total,
                          f"Generated {report.pairs} of {total} pairs",
                          extra={"tokens_per_s": report.tokens_per_s, "pairs": report.pairs}))
        batch_index += 1
    report.seconds = time.perf_counter() - start
    return report
