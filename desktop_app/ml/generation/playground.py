"""The playground: one prompt, the base model's and a tuned policy's responses side by side,
streamed token by token, each scored by a reward model.

Memory holds one base model. A tuned policy (a PPO run's ``policy/`` folder, a standard PEFT
adapter) is attached to it unmerged; the base response is generated with the adapters switched
off, the tuned one with the chosen adapter on. Several policy adapters may stay loaded; one is
active at a time. A reward model trained on the same base is attached the same way (its LoRA
adapter plus its score head, see ``reward_adapter``), so scoring needs no second copy of the
base; one trained on another base is loaded on its own.

Both responses stream at once: one loop on one thread takes a step of the base, then a step of
the policy, each with its own KV cache and its own random generator seeded with the same seed.
Sampling applies transformers' own logits processors in ``generate``'s order, so the base side
is exactly what the annotation sampler (``sampling.sample_batch``) draws for that seed.

    Playground.load(base)            the base model, once
      .add_policy(folder)            a policy adapter, unmerged
      .attach_reward(folder)         a reward adapter on the same base -> RewardScorer
      .stream(prompt, which, ...)    one side; text deltas through ``on_text``
      .stream_pair(prompt, ...)      both sides, interleaved token by token
    score_responses(scorer, ...)     reward-model scores, raw and normalised
    PlaygroundSession                what the GUI keeps between runs: models cached per choice
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from desktop_app.core.config import SamplingConfig
from desktop_app.core.errors import UserError
from desktop_app.core.events import Emit, Progress, StopToken, ignore
from desktop_app.ml.generation.sampling import (
    PromptInput,
    _prompt_budget,
    encode_prompt,
    encode_text,
)
from desktop_app.ml.models.cache_kwarg import cache_kwarg
from desktop_app.ml.models.loader import LoadedModel, _first_line, free_memory, load_model
from desktop_app.ml.models.lora_switch import only_adapter, tuner_layers
from desktop_app.ml.reward.adapter import AdapterError, attach_reward

# peft 0.21 asks transformers 5 for the deprecated is_gradient_checkpointing when it attaches an
# adapter; the warning is theirs, not the user's (as in reward_model.py).
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

BASE, POLICY = "base", "policy"
REWARD_ADAPTER = "reward"  # the attached reward model's adapter name
SIDES = (BASE, POLICY)
# Policy adapters kept loaded at once (each is small next to the base; the oldest goes first).
MAX_POLICIES = 4


class PlaygroundError(UserError):
    """The playground cannot run as asked; the message says why in words a user can act on."""


@dataclass(frozen=True)
class TextDelta:
    """New text of one side's response. ``text`` is the whole response so far, so a listener
    that drops or merges deltas (a UI redrawing on a timer) still shows the right text."""

    side: str  # "base" | "policy"
    delta: str
    text: str


@dataclass
class Completion:
    side: str
    text: str  # decoded response, end-of-sequence token excluded
    tokens: list[int]  # response token ids, end-of-sequence token excluded
    completion_tokens: int  # including the end-of-sequence token when finished
    finished: bool  # ended with an end-of-sequence token (rather than the token limit)
    stopped: bool  # cut short by a stop request
    seed: int
    seconds: float = 0.0
    prompt_tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Score:
    raw: float  # the reward model's output
    normalised: float | None  # (raw - mean) / std over the reward run's training responses

    @property
    def value(self) -> float:
        return self.normalised if self.normalised is not None else self.raw


@dataclass
class PlaygroundRequest:
    """One run of the playground: what the GUI (or a script) asks for."""

    prompt: PromptInput
    base_model: str
    sampling: SamplingConfig
    seed: int
    policy_adapter: str | None = None  # None: the base model only
    reward_adapter: str | None = None  # None: no scores
    reward_base_model: str | None = None  # the reward run's base; defaults to base_model


@dataclass
class PlaygroundResult:
    prompt: str
    seed: int
    responses: dict[str, Completion]  # "base", and "policy" when a policy was asked for
    scores: dict[str, Score] = field(default_factory=dict)  # empty: not scored
    stopped: bool = False
    device: str = ""


# ---- the model pair --------------------------------------------------------------------------

class Playground:
    """One base model with policy adapters attached unmerged."""

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        self.policies: dict[str, str] = {}  # adapter folder -> adapter name, oldest first
        self.active: str | None = None  # the adapter name the "policy" side uses
        self.reward_folder: str | None = None  # the attached reward adapter, if any
        self.reward_scorer = None
        self._layers: list = []
        self._counter = 0
        self._cache_kwarg: str | None = None

    @classmethod
    def load(cls, base_model: str | Path, device: str = "auto", dtype: str = "auto",
             emit: Emit = ignore, stop: StopToken | None = None,
             quantize: str = "none") -> Playground:
        return cls(load_model(base_model, device=device, dtype=dtype, emit=emit, stop=stop,
                              quantize=quantize))

    @property
    def model(self):
        return self.lm.model

    @property
    def cache_kwarg(self) -> str:
        """transformers 5 renamed ``past_key_values`` to ``cache``; a model that ships its own
        code may still take the old name."""
        if self._cache_kwarg is None:
            self._cache_kwarg = cache_kwarg(self.model)
        return self._cache_kwarg

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    # -- adapters ------------------------------------------------------------------------------

    def add_policy(self, folder: str | Path) -> str:
        """Attach the policy adapter in ``folder`` (once) and make it the active policy."""
        from peft import PeftModel

        key = str(Path(folder).expanduser())
        if key in self.policies:
            self.active = self.policies[key]
            return self.active
        if not (Path(key) / "adapter_config.json").is_file():
            raise PlaygroundError(f"The policy adapter folder {key} is missing or incomplete "
                                  "(no adapter_config.json).")
        if len(self.policies) >= MAX_POLICIES:
            oldest = next(iter(self.policies))
            self.model.delete_adapter(self.policies.pop(oldest))
        self._counter += 1
        name = f"policy_{self._counter}"
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(key, adapter_name=name, is_trainable=False)
            else:
                self.lm.model = PeftModel.from_pretrained(self.model, key, adapter_name=name,
                                                          is_trainable=False)
        except (torch.OutOfMemoryError, MemoryError):
            raise
        except Exception as exc:
            raise PlaygroundError(f"Could not attach the policy adapter in {key} to "
                                  f"{Path(self.lm.path).name}: {_first_line(exc)}") from exc
        self.model.eval()
        self.policies[key] = name
        self.active = name
        self._layers = tuner_layers(self.model)
        return name

    def attach_reward(self, folder: str | Path):
        """Score with the reward adapter in ``folder`` on this base (it must have been trained
        on the same base model): a ``RewardScorer`` that shares these weights. One reward
        adapter at a time; attaching another replaces it."""
        from desktop_app.ml.reward.model import RewardModelError, RewardScorer, reward_tokenizer

        key = str(Path(folder).expanduser())
        if self.reward_folder == key:
            return self.reward_scorer
        self.detach_reward()
        try:
            tokenizer = reward_tokenizer(Path(key), self.lm.path)
            self.lm.model, scorer_model = attach_reward(self.model, key, REWARD_ADAPTER,
                                                        tokenizer.pad_token_id)
        except (AdapterError, RewardModelError) as exc:
            raise PlaygroundError(str(exc)) from exc
        self.model.eval()
        self._layers = tuner_layers(self.model)
        self.reward_folder = key
        self.reward_scorer = RewardScorer.for_run(scorer_model, tokenizer, self.lm.device,
                                                  Path(key))
        return self.reward_scorer

    def detach_reward(self) -> None:
        if self.reward_folder is None:
            return
        if self.policies:
            self.model.delete_adapter(REWARD_ADAPTER)
        else:
            # peft cannot run a model left with no adapter at all: back to the bare base.
            self.lm.model = self.model.unload()
        self.reward_folder = self.reward_scorer = None
        self._layers = tuner_layers(self.model)

    @contextlib.contextmanager
    def _use(self, side: str):
        """Forward passes inside run on the bare base ("base") or with only the active policy
        adapter on ("policy"); see ``lora_switch`` for why not peft's own switches."""
        if side == POLICY and self.active is None:
            raise PlaygroundError("No tuned policy is loaded.")
        if not self._layers:
            yield
            return
        with only_adapter(self._layers, None if side == BASE else self.active):
            yield

    # -- generation ----------------------------------------------------------------------------

    def stream(self, prompt: str | PromptInput, which: str, sampling: SamplingConfig, seed: int,
               on_text: Callable[[str], None] | None = None,
               stop: StopToken | None = None) -> Completion:
        """One response from the base ("base") or the active policy ("policy"), its text
        reported as it grows: ``on_text(delta)``. The deltas add up to the returned text."""
        if which not in SIDES:
            raise ValueError(f"which must be 'base' or 'policy', not {which!r}")
        callback = (lambda side, delta, text: on_text(delta)) if on_text else None
        return self._generate(prompt, [which], sampling, seed, callback, stop)[which]

    def stream_pair(self, prompt: str | PromptInput, sampling: SamplingConfig, seed: int,
                    on_text: Callable[[str, str, str], None] | None = None,
                    stop: StopToken | None = None,
                    sides: tuple[str, ...] = SIDES) -> dict[str, Completion]:
        """Both responses at once, one token of each in turn, same seed for both:
        ``on_text(side, delta, text_so_far)``."""
        return self._generate(prompt, list(sides), sampling, seed, on_text, stop)

    def stream_raw(self, text: str, which: str, sampling: SamplingConfig, seed: int,
                   on_text: Callable[[str], None] | None = None,
                   stop: StopToken | None = None) -> Completion:
        """``stream`` for a plain text continued as it is, never through the chat template (a
        completion, not a chat turn)."""
        sampling.validate()
        ids = encode_text(self.tokenizer, text, self.prompt_budget(sampling))
        callback = (lambda side, delta, so_far: on_text(delta)) if on_text else None
        return self._run_streams(ids or self._fallback_ids(), [which], sampling, seed,
                                 callback, stop)[which]

    def _generate(self, prompt, sides, cfg, seed, on_text, stop) -> dict[str, Completion]:
        cfg.validate()
        prompt = prompt if isinstance(prompt, PromptInput) else PromptInput(0, prompt)
        return self._run_streams(self._prompt_ids(prompt, cfg), sides, cfg, seed, on_text, stop)

    def _run_streams(self, ids, sides, cfg, seed, on_text, stop) -> dict[str, Completion]:
        streams = [_Stream(self, side, ids, cfg, seed, on_text) for side in sides]
        live = list(streams)
        while live:
            for s in live:
                if stop is not None and stop.requested:
                    for t in live:
                        t.stopped = True
                    live = []
                    break
                s.step()
            live = [s for s in live if not s.done]
        return {s.side: s.result() for s in streams}

    def _prompt_ids(self, prompt: PromptInput, cfg: SamplingConfig) -> list[int]:
        """As ``sampling.generate_tokens`` does: keep the end of a prompt too long for the
        model's positions; an empty prompt still gets one token to condition on."""
        ids = encode_prompt(self.tokenizer, prompt, self.prompt_budget(cfg))
        return ids or self._fallback_ids()

    def prompt_budget(self, cfg: SamplingConfig) -> int | None:
        """The longest prompt, in tokens, that leaves room for ``cfg.max_new_tokens`` (None:
        the model names no limit)."""
        try:
            return _prompt_budget(self.model, cfg.max_new_tokens)
        except ValueError as exc:
            raise PlaygroundError(str(exc)) from exc

    def _fallback_ids(self) -> list[int]:
        return [next(t for t in (self.tokenizer.bos_token_id, *self.lm.eos_token_ids,
                                 self.tokenizer.pad_token_id) if t is not None)]

    def close(self) -> None:
        """Drop the model; its memory is freed once nothing else holds it."""
        device = self.lm.device
        self.lm.model = None
        self._layers = []
        self.policies.clear()
        self.reward_folder = self.reward_scorer = None
        free_memory(device)


class _Stream:
    """One side's token loop state: KV cache, generator, logits processors, decoded text."""

    def __init__(self, pg: Playground, side: str, prompt_ids: list[int], cfg: SamplingConfig,
                 seed: int, on_text):
        self.pg, self.side, self.cfg, self.seed, self.on_text = pg, side, cfg, seed, on_text
        device = pg.model.device
        self.ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        self.prompt_tokens = len(prompt_ids)
        self.next_input = self.ids
        self.cache = None
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.processors = _processors(cfg)
        self.eos = set(pg.lm.eos_token_ids)
        self.tokens: list[int] = []
        self.finished = self.done = self.stopped = False
        self.emitted = ""
        self.seconds = 0.0

    def step(self) -> None:
        started = time.perf_counter()
        model = self.pg.model
        attention = torch.ones_like(self.ids)
        with torch.inference_mode(), self.pg._use(self.side):
            out = model(input_ids=self.next_input, attention_mask=attention, use_cache=True,
                        logits_to_keep=1, **{self.pg.cache_kwarg: self.cache})
        self.cache = out["cache"] if "cache" in out else out["past_key_values"]
        # As generate's sampling loop: float32 logits, processors, softmax, one draw.
        logits = out.logits[:, -1].to(dtype=torch.float32, copy=True)
        scores = self.processors(self.ids, logits)
        probs = torch.softmax(scores, dim=-1)
        token = torch.multinomial(probs, num_samples=1, generator=self.generator)
        self.ids = torch.cat([self.ids, token], dim=-1)
        token_id = int(token)
        if token_id in self.eos:
            self.finished = self.done = True
        else:
            self.tokens.append(token_id)
            self.next_input = token
            self.done = len(self.tokens) >= self.cfg.max_new_tokens
            self._report(final=self.done)
        self.seconds += time.perf_counter() - started

    def _report(self, final: bool) -> None:
        text = self.pg.tokenizer.decode(self.tokens, skip_special_tokens=True)
        # A character split over several tokens decodes to U+FFFD until its last byte arrives;
        # hold those back so a delta never has to be taken back.
        stable = text if final else text.rstrip("\ufffd")
        if stable.startswith(self.emitted) and len(stable) > len(self.emitted):
            delta, self.emitted = stable[len(self.emitted):], stable
            if self.on_text is not None:
                self.on_text(self.side, delta, stable)

    def result(self) -> Completion:
        if self.finished or self.stopped:
            self._report(final=True)
        text = self.pg.tokenizer.decode(self.tokens, skip_special_tokens=True)
        return Completion(side=self.side, text=text, tokens=list(self.tokens),
                          completion_tokens=len(self.tokens) + int(self.finished),
                          finished=self.finished, stopped=self.stopped and not self.done,
                          seed=self.seed, seconds=self.seconds,
                          prompt_tokens=self.prompt_tokens)


def _processors(cfg: SamplingConfig):
    """The logits processors ``generate`` builds for these settings, in its order."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if cfg.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
    if cfg.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(cfg.temperature))
    if cfg.top_k:
        processors.append(TopKLogitsWarper(top_k=cfg.top_k))
    if cfg.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=cfg.top_p))
    return processors


# ---- scores ----------------------------------------------------------------------------------

def score_responses(scorer, prompt: PromptInput, responses: list[str]) -> list[Score]:
    """Reward-model scores, normalised with the reward run's statistics when it saved them
    (0 = the average response it was trained on, 1 = one standard deviation above)."""
    raw = scorer.score(prompt.text, responses, prompt.messages)
    stats = scorer.stats or {}
    try:
        mean, std = float(stats["mean"]), float(stats["std"])
    except (KeyError, TypeError, ValueError):
        return [Score(r, None) for r in raw]
    std = std if std > 1e-8 else 1.0
    return [Score(r, (r - mean) / std) for r in raw]


# ---- what the GUI keeps between runs ---------------------------------------------------------

class PlaygroundSession:
    """The models a playground run needs, loaded on first use and kept while the choices stay
    the same: the base model (with its policy adapters) and one reward model."""

    def __init__(self, device: str = "auto", dtype: str = "auto", quantize: str = "none"):
        self.device, self.dtype, self.quantize = device, dtype, quantize
        self.playground: Playground | None = None
        self._base_key: str | None = None
        self.scorer = None
        self._scorer_key: tuple[str, str] | None = None
        self.shared_reward = False  # the scorer is attached to the playground's base

    def run(self, request: PlaygroundRequest, emit: Emit = ignore,
            stop: StopToken | None = None) -> PlaygroundResult:
        """Generate (streaming ``TextDelta`` events through ``emit``), then score."""
        stop = stop or StopToken()
        # 1-2. The base model, loaded once per base folder, and the tuned policy, attached.
        pg, side = self.model_for(request.base_model, request.policy_adapter, emit, stop)
        sides: tuple[str, ...] = SIDES if side == POLICY else (BASE,)
        stop.raise_if_requested()

        # 3. Both responses, streamed together.
        emit(Progress(0, 0, "Generating…"))
        responses = pg.stream_pair(
            request.prompt, request.sampling, request.seed, stop=stop, sides=sides,
            on_text=lambda side, delta, text: emit(TextDelta(side, delta, text)))
        result = PlaygroundResult(prompt=request.prompt.text, seed=request.seed,
                                  responses=responses, stopped=stop.requested,
                                  device=pg.lm.device.label())
        if result.stopped or not request.reward_adapter:
            return result

        # 4. Scores from the reward model.
        reward_base = request.reward_base_model or request.base_model
        if self._scorer_key != (str(reward_base), str(request.reward_adapter)):
            emit(Progress(0, 0, "Loading the reward model…"))
        scorer = self._reward(reward_base, request.reward_adapter)
        emit(Progress(0, 0, "Scoring…"))
        scores = score_responses(scorer, request.prompt, [responses[s].text for s in sides])
        result.scores = dict(zip(sides, scores))
        return result

    def model_for(self, base_model: str, policy_adapter: str | None, emit: Emit = ignore,
                  stop: StopToken | None = None) -> tuple[Playground, str]:
        """The loaded base with ``policy_adapter`` attached and active (when given), and the
        side to generate with: "policy", or "base" for the base model alone."""
        pg = self._base(base_model, emit, stop or StopToken())
        if not policy_adapter:
            return pg, BASE
        if str(Path(policy_adapter).expanduser()) not in pg.policies:
            emit(Progress(0, 0, "Loading the tuned policy…"))
        pg.add_policy(policy_adapter)
        return pg, POLICY

    def _base(self, path: str, emit: Emit, stop: StopToken) -> Playground:
        folder = str(Path(path).expanduser())
        if self.playground is not None and self._base_key == folder:
            return self.playground
        self.release_base()
        emit(Progress(0, 0, "Loading the base model…"))
        self.playground = Playground.load(folder, self.device, self.dtype, stop=stop,
                                          quantize=self.quantize)
        self._base_key = folder
        return self.playground

    def _reward(self, base: str, adapter: str):
        """The scorer for reward ``adapter``: attached to the loaded base when it was trained on
        that same base (no second copy of the weights), else a model of its own."""
        from desktop_app.ml.reward.model import RewardScorer

        key = (str(base), str(adapter))
        if self.scorer is None or self._scorer_key != key:
            self.release_reward()
            if not (Path(adapter) / "adapter_config.json").is_file():
                raise PlaygroundError(f"The reward model folder {adapter} is missing or "
                                      "incomplete (no adapter_config.json).")
            if self.playground is not None and _same_folder(base, self._base_key):
                self.scorer = self.playground.attach_reward(adapter)
                self.shared_reward = True
            else:
                self.scorer = RewardScorer.load(base, adapter, device=self.device,
                                                quantize=self.quantize)
                self.shared_reward = False
            self._scorer_key = key
        return self.scorer

    def release_base(self) -> None:
        if self.playground is not None:
            if self.shared_reward:
                self.release_reward()  # it lives on this base
            self.playground.close()
            self.playground = None
            self._base_key = None

    def release_reward(self) -> None:
        if self.scorer is not None:
            device = self.scorer.device
            if self.shared_reward and self.playground is not None:
                self.playground.detach_reward()
            self.scorer = None
            self._scorer_key = None
            self.shared_reward = False
            free_memory(device)

    def on_accelerator(self) -> bool:
        """Whether any model this session holds is on a GPU (CUDA or MPS)."""
        devices = [self.playground.lm.device] if self.playground is not None else []
        if self.scorer is not None:
            devices.append(self.scorer.device)
        return any(d.on_accelerator for d in devices)

    def close(self) -> None:
        self.release_base()
        self.release_reward()


# ---- helpers ---------------------------------------------------------------------------------

def _same_folder(a: str | Path | None, b: str | Path | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False

