"""The playground on tiny models: one base model with a policy adapter attached unmerged; the
base side (adapters off) is exactly the annotation sampler's response for the seed, the tuned
side differs when the adapter does something, deltas add up to the text, stop stops, and a
reward model scores both sides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from desktop_app.core.config import RewardConfig, SamplingConfig
from desktop_app.core.events import Progress, StopToken
from desktop_app.ml.generation.playground import (
    Playground,
    PlaygroundError,
    PlaygroundRequest,
    PlaygroundSession,
    TextDelta,
)
from desktop_app.ml.generation.sampling import PromptInput, sample_batch
from desktop_app.ml.models.device import pick_device
from desktop_app.ml.models.loader import load_model
from desktop_app.ml.reward.model import (
    RewardScorer,
    _is_conv1d,
    build_reward_model,
    load_tokenizer,
    lora_targets,
)

pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # loads models and generates

CFG = SamplingConfig(temperature=0.9, top_p=0.9, top_k=40, repetition_penalty=1.1,
                     max_new_tokens=16)


def make_policy_adapter(base_dir: Path, out_dir: Path, scale: float = 0.5, seed: int = 0) -> Path:
    """A LoRA policy adapter for ``base_dir`` saved as PPO saves one; ``scale`` 0 leaves B at
    zero (the adapter changes nothing)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    targets = lora_targets(model, "all-linear")
    peft = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                            target_modules=targets,
                                            fan_in_fan_out=_is_conv1d(model, targets)))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, scale) if scale else p.zero_()
    peft.save_pretrained(out_dir)
    return out_dir


def make_reward_adapter(base_dir: Path, run_dir: Path, mean: float = 0.25,
                        std: float = 2.0) -> Path:
    """An (untrained) reward adapter with its score head and tokenizer, in a run folder with
    reward_stats.json, as reward training leaves one."""
    tokenizer = load_tokenizer(base_dir)
    torch.manual_seed(0)
    model = build_reward_model(base_dir, tokenizer, pick_device("cpu"),
                               cfg=RewardConfig(lora_r=4, lora_alpha=8))
    with torch.no_grad():  # as if trained: the LoRA changes the scores
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    adapter = run_dir / "adapter"
    model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    (run_dir / "reward_stats.json").write_text(json.dumps({"mean": mean, "std": std}))
    return adapter


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def base_dir(request, gpt2_dir, llama_chat_dir) -> Path:
    return {"gpt2": gpt2_dir, "llama": llama_chat_dir}[request.param]


@pytest.fixture(scope="module")
def adapters(base_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("playground")
    return {"policy": make_policy_adapter(base_dir, root / "policy"),
            "other": make_policy_adapter(base_dir, root / "other", seed=1),
            "zero": make_policy_adapter(base_dir, root / "zero", scale=0.0),
            "reward": make_reward_adapter(base_dir, root / "0001-reward")}


@pytest.fixture(scope="module")
def pg(base_dir, adapters) -> Playground:
    playground = Playground.load(base_dir, device="cpu")
    playground.add_policy(adapters["policy"])
    return playground


def test_base_side_is_the_samplers_response_and_deltas_add_up(pg, base_dir):
    plain = load_model(base_dir, device="cpu")
    prompt = PromptInput(0, "Hello there, how are you?")
    for seed in (1, 2, 3):
        expected = sample_batch(plain, [prompt], 1, CFG, seed)[0][0]
        deltas: dict[str, list[str]] = {"base": [], "policy": []}
        texts: dict[str, str] = {}

        def on_text(side, delta, text, deltas=deltas, texts=texts):
            deltas[side].append(delta)
            texts[side] = text

        out = pg.stream_pair(prompt, CFG, seed, on_text=on_text)
        base = out["base"]
        assert base.text == expected.text
        assert base.completion_tokens == expected.completion_tokens
        assert base.finished == expected.finished
        for side in ("base", "policy"):
            assert "".join(deltas[side]) == out[side].text
            assert texts.get(side, "") == out[side].text
            assert not out[side].stopped and out[side].seed == seed


def test_tuned_side_differs_and_matches_its_own_stream(pg):
    out = pg.stream_pair("Tell me about the cat", CFG, seed=5)
    assert out["policy"].tokens != out["base"].tokens
    # Interleaving changes nothing: each side alone gives the same response.
    alone = pg.stream("Tell me about the cat", "policy", CFG, seed=5)
    assert alone.tokens == out["policy"].tokens
    assert pg.stream("Tell me about the cat", "base", CFG, seed=5).tokens == out["base"].tokens


def test_an_adapter_that_changes_nothing_gives_the_base_response(base_dir, adapters):
    playground = Playground.load(base_dir, device="cpu")
    playground.add_policy(adapters["zero"])
    out = playground.stream_pair("Paris is", CFG, seed=11)
    assert out["policy"].tokens == out["base"].tokens


def test_several_policies_stay_loaded_and_switch(base_dir, adapters, pg):
    playground = Playground.load(base_dir, device="cpu")
    first = playground.add_policy(adapters["policy"])
    second = playground.add_policy(adapters["other"])
    assert first != second and playground.active == second
    other = playground.stream("Paris is", "policy", CFG, seed=3)
    assert playground.add_policy(adapters["policy"]) == first  # already loaded: just switched
    again = playground.stream("Paris is", "policy", CFG, seed=3)
    assert again.tokens == pg.stream("Paris is", "policy", CFG, seed=3).tokens
    assert again.tokens != other.tokens


class StopAfterChecks(StopToken):
    """A stop request that arrives after the job has looked ``n`` times."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    @property
    def requested(self) -> bool:
        self.n -= 1
        return self.n < 0 or super().requested


def test_stop_ends_both_sides_within_a_token(pg):
    cfg = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=40)
    full = pg.stream_pair("Hello", cfg, seed=0)
    out = pg.stream_pair("Hello", cfg, seed=0, stop=StopAfterChecks(6))  # 3 steps a side
    for side in ("base", "policy"):
        if full[side].completion_tokens > 3:
            assert out[side].stopped and not out[side].finished
            assert out[side].tokens == full[side].tokens[:3]

    # A stop from the listener: no further token on either side.
    stop, seen = StopToken(), []

    def on_text(side, delta, text):
        seen.append(side)
        stop.stop()

    out = pg.stream_pair("Hello", cfg, seed=0, on_text=on_text, stop=stop)
    assert out["base"].stopped or out["policy"].stopped
    assert sum(o.completion_tokens for o in out.values()) < 20


def test_a_4bit_session_generates_with_the_policy_and_scores_on_the_shared_base(base_dir,
                                                                              adapters):
    pytest.importorskip("bitsandbytes")
    from desktop_app.ml.models.quantize import is_quantized
    session = PlaygroundSession(device="cpu", quantize="4bit")
    request = PlaygroundRequest(prompt=PromptInput(0, "Write a poem about the sea."),
                                base_model=str(base_dir), sampling=CFG, seed=7,
                                policy_adapter=str(adapters["policy"]),
                                reward_adapter=str(adapters["reward"]))
    result = session.run(request)
    assert is_quantized(session.playground.model)
    assert set(result.scores) == {"base", "policy"} and session.shared_reward
    session.close()


def test_missing_policy_folder_is_a_clear_error(pg, tmp_path):
    with pytest.raises(PlaygroundError, match="missing"):
        pg.add_policy(tmp_path / "nope")


def test_session_generates_scores_and_caches_models(base_dir, adapters):
    session = PlaygroundSession(device="cpu")
    events = []
    request = PlaygroundRequest(prompt=PromptInput(0, "Write a poem about the sea."),
                                base_model=str(base_dir), sampling=CFG, seed=7,
                                policy_adapter=str(adapters["policy"]),
                                reward_adapter=str(adapters["reward"]))
    result = session.run(request, emit=events.append)
    assert set(result.responses) == {"base", "policy"} and set(result.scores) == {"base",
                                                                                    "policy"}
    streamed = {side: "".join(e.delta for e in events
                              if isinstance(e, TextDelta) and e.side == side)
                for side in ("base", "policy")}
    assert streamed == {side: result.responses[side].text for side in streamed}
    messages = [e.message for e in events if isinstance(e, Progress)]
    assert "Loading the base model…" in messages and "Loading the reward model…" in messages

    # The reward model was trained on this base, so it shares the loaded weights. Its scores
    # are the reward model's, normalised with the run's statistics (mean 0.25, std 2).
    assert session.shared_reward and session.scorer is session.playground.reward_scorer
    standalone = RewardScorer.load(base_dir, adapters["reward"], device="cpu")
    raw = standalone.score(request.prompt.text, [result.responses["base"].text,
                                                 result.responses["policy"].text])
    for side, value in zip(("base", "policy"), raw):
        assert result.scores[side].raw == pytest.approx(value, abs=1e-5)
        assert result.scores[side].normalised == pytest.approx((value - 0.25) / 2.0, abs=1e-5)

    # Nothing is loaded again while the choices stay the same.
    pg, scorer = session.playground, session.scorer
    events.clear()
    base_only = session.run(PlaygroundRequest(request.prompt, str(base_dir), CFG, seed=7,
                                              reward_adapter=str(adapters["reward"])),
                            emit=events.append)
    assert session.playground is pg and session.scorer is scorer
    assert not any(isinstance(e, Progress) and "Loading" in e.message for e in events)
    assert set(base_only.responses) == {"base"}
    assert base_only.responses["base"].text == result.responses["base"].text
    assert base_only.scores["base"].raw == pytest.approx(result.scores["base"].raw, abs=1e-5)

    session.close()
    assert session.playground is None and session.scorer is None


def test_session_stopped_run_is_not_scored(base_dir, adapters):
    session = PlaygroundSession(device="cpu")
    stop = StopToken()

    def emit(event):
        if isinstance(event, TextDelta):
            stop.stop()

    request = PlaygroundRequest(PromptInput(0, "Hello"), str(base_dir),
                                SamplingConfig(max_new_tokens=100), seed=1,
                                policy_adapter=str(adapters["policy"]),
                                reward_adapter=str(adapters["reward"]))
    result = session.run(request, emit=emit, stop=stop)
    assert result.stopped and not result.scores and session.scorer is None
    session.close()


def tokens(out: dict) -> dict[str, list[int]]:
    return {side: completion.tokens for side, completion in out.items()}


def test_an_attached_reward_model_scores_as_it_does_on_its_own_and_changes_no_response(
        base_dir, adapters):
    prompt, responses = "Tell me about the cat", ["It purrs.", "Cats sleep a lot, mostly.", ""]
    standalone = RewardScorer.load(base_dir, adapters["reward"], device="cpu")
    expected = standalone.score(prompt, responses)

    # Attached before any policy (the bare base gets wrapped), then a policy on top.
    playground = Playground.load(base_dir, device="cpu")
    before = playground.stream("Paris is", "base", CFG, seed=4)
    scorer = playground.attach_reward(adapters["reward"])
    assert scorer.score(prompt, responses) == pytest.approx(expected, abs=1e-5)
    assert scorer.stats == {"mean": 0.25, "std": 2.0}
    assert playground.attach_reward(adapters["reward"]) is scorer  # attached once
    playground.add_policy(adapters["policy"])
    out = playground.stream_pair("Paris is", CFG, seed=4)
    assert out["base"].tokens == before.tokens  # the reward adapter is off while generating

    # A policy attached first: the reward adapter goes beside it, and neither leaks into the
    # other's forward passes.
    other = Playground.load(base_dir, device="cpu")
    other.add_policy(adapters["policy"])
    alone = tokens(other.stream_pair("Paris is", CFG, seed=4))
    assert other.attach_reward(adapters["reward"]).score(prompt, responses) == \
        pytest.approx(expected, abs=1e-5)
    assert tokens(other.stream_pair("Paris is", CFG, seed=4)) == alone
    other.detach_reward()
    assert other.reward_scorer is None
    assert tokens(other.stream_pair("Paris is", CFG, seed=4)) == alone
    # Detached again from a base that carries nothing else: the bare base, as before.
    bare = Playground.load(base_dir, device="cpu")
    bare.attach_reward(adapters["reward"])
    bare.detach_reward()
    assert bare.stream("Paris is", "base", CFG, seed=4).tokens == before.tokens
    bare.add_policy(adapters["policy"])
    assert tokens(bare.stream_pair("Paris is", CFG, seed=4)) == alone
    with pytest.raises(PlaygroundError, match="No tuned policy"):
        playground_without_policy = Playground.load(base_dir, device="cpu")
        playground_without_policy.attach_reward(adapters["reward"])
        playground_without_policy.stream("Paris is", "policy", CFG, seed=4)


def test_a_reward_adapter_that_does_not_fit_the_base_is_a_clear_error(base_dir, adapters,
                                                                      gpt2_dir, llama_chat_dir):
    other_base = llama_chat_dir if base_dir == gpt2_dir else gpt2_dir
    playground = Playground.load(other_base, device="cpu")
    playground.add_policy(make_policy_adapter(other_base, base_dir.parent / f"p-{base_dir.name}"))
    before = tokens(playground.stream_pair("Paris is", CFG, seed=2))
    with pytest.raises(PlaygroundError, match="does not fit this base model"):
        playground.attach_reward(adapters["reward"])
    assert playground.reward_scorer is None and "reward" not in playground.model.peft_config
    assert tokens(playground.stream_pair("Paris is", CFG, seed=2)) == before


def test_a_reward_adapter_of_another_size_is_taken_out_again(base_dir, tmp_path):
    """Same architecture, other width: the LoRA layers fit by name, the weights by no shape."""
    from desktop_app.ml.models.tiny import build_tiny_model

    tokenizer = load_tokenizer(base_dir)
    arch = "gpt2" if "gpt2" in base_dir.name else "llama"
    wider = tmp_path / "wider"
    build_tiny_model(arch, tokenizer, wider, hidden=48, heads=2)
    adapter = make_reward_adapter(wider, tmp_path / "0001-reward")
    for bare in (True, False):
        playground = Playground.load(base_dir, device="cpu")
        if not bare:
            playground.add_policy(make_policy_adapter(base_dir, tmp_path / "policy"))
        before = playground.stream("Paris is", "base", CFG, seed=2).tokens
        with pytest.raises(PlaygroundError, match="does not fit this base model"):
            playground.attach_reward(adapter)
        assert playground.reward_scorer is None
        assert playground.stream("Paris is", "base", CFG, seed=2).tokens == before


def test_a_reward_model_on_another_base_folder_is_loaded_on_its_own(base_dir, adapters, tmp_path):
    import shutil

    copy = shutil.copytree(base_dir, tmp_path / "copy-of-base")
    session = PlaygroundSession(device="cpu")
    request = PlaygroundRequest(prompt=PromptInput(0, "Hello"), base_model=str(base_dir),
                                sampling=CFG, seed=3, reward_adapter=str(adapters["reward"]),
                                reward_base_model=str(copy))
    result = session.run(request)
    assert not session.shared_reward and session.playground.reward_scorer is None
    shared = PlaygroundSession(device="cpu")
    same = shared.run(PlaygroundRequest(request.prompt, str(base_dir), CFG, seed=3,
                                        reward_adapter=str(adapters["reward"])))
    assert shared.shared_reward
    assert same.scores["base"].raw == pytest.approx(result.scores["base"].raw, abs=1e-5)
    session.close()
    shared.close()
