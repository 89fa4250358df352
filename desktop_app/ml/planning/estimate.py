"""Peak memory of a job, part by part, from the model's shape and the job's settings. Pure
arithmetic: no model is loaded, nothing is allocated.

What is counted, and why (bytes; "T" = tokens in the biggest batch that goes through the
model at once):
- **baseline**: on the CPU, the process itself (Python, torch, transformers, peft); on a GPU,
  nothing, since the plan compares with the device's free memory.
- **weights**: block linears at 8 or 4 bits when quantised (NF4 with double quantisation
  stores 4 bits plus ~0.13 bits of scales per weight), everything else at the dtype.
- **loading**: a quantised base is read at full precision and quantised layer by layer; the
  file's pages are in memory meanwhile (on the CPU, where they count).
- **adapters**: LoRA weights (fp32); trainable ones also carry a gradient and AdamW's two
  moments (16 bytes per weight in all).
- **activations**: what the backward pass keeps per token and layer, in the compute dtype
  (``ACT_PER_HIDDEN`` × hidden + ``ACT_PER_INTERMEDIATE`` × intermediate elements with LoRA on
  every linear, measured with torch's saved-tensor hooks on Llama-style blocks). Gradient
  checkpointing keeps one hidden state per layer and recomputes one layer at a time.
- **logits**: PPO's policy pass over the response tokens, DPO's over the pairs' tokens
  (vocab-wide, fp32, a few copies: scaled logits, log-softmax and their gradients). A reward
  model has a one-number head.
- **scoring**: PPO's pass over the whole rollout batch without gradients (old and reference
  log-probabilities, values, rewards).
- **kv_cache**: keys and values of every layer for every generated row, prompt and response.
- **dequantize**: bitsandbytes dequantises each quantised layer for its matmul. On a GPU one
  layer is briefly full size again; on the CPU the full-precision copies outlive their layer
  (measured: about the whole block's full size, 2.5 times that in reward training). This is
  why 4-bit saves little on the CPU, and the plan says so rather than promise savings.
- On the CPU the phases of a job (PPO's generation, scoring and training) add up, because the
  allocator keeps what a phase freed; on a GPU the largest phase is the peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from desktop_app.ml.planning.shape import ModelShape

# Saved activations per token per layer (elements), LoRA on all linears, SDPA attention:
# counted with saved-tensor hooks on Llama-style blocks, then scaled to the peaks that
# bench/bench_plan.py measured (the allocator's rounding and the backward's transients).
ACT_PER_HIDDEN = 17
ACT_PER_INTERMEDIATE = 6
# Working memory of one forward step (inference), per token: the widest intermediate tensors.
INFER_PER_HIDDEN = 6
INFER_PER_INTERMEDIATE = 3
# Vocab-wide fp32 tensors alive at PPO's peak (logits, scaled, log-softmax, their gradients).
LOGIT_COPIES = 5
# Process baseline on the CPU (Python, torch, transformers, peft, bitsandbytes, tokenizers,
# sqlite imported), measured as the peak RSS of a job on a tiny model.
CPU_BASELINE = 480 * 2**20
# bitsandbytes' CPU path: full-precision copies of the quantised weights alive at the peak, in
# units of the block linears' full size (bench_plan.py: about 1 for generation and PPO's small
# micro-batches, 2.5 for reward training).
CPU_DEQUANT_INFERENCE = 1.0
CPU_DEQUANT_TRAINING = 2.5
# NF4 with double quantisation: 4 bits, an 8-bit scale per 64 weights and an fp32 scale per
# 256 of those.
BYTES_4BIT = 0.5 + 1 / 64 + 4 / (64 * 256)
BYTES_8BIT = 1.0
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class Setup:
    """Where and how the model runs."""

    device: str  # "cpu", "cuda", "cuda:1", "mps"
    dtype: str  # dtype of the unquantised weights and the compute dtype
    quantize: str = "none"
    file_bytes: int = 0  # size of the weight files (read while quantising)

    @property
    def on_cpu(self) -> bool:
        return self.device.startswith("cpu")

    @property
    def bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]


@dataclass
class Estimate:
    """A job's peak memory, part by part (bytes), with notes on what the figure assumes."""

    breakdown: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return sum(self.breakdown.values())


# ---- parts -------------------------------------------------------------------------------

def weight_bytes(shape: ModelShape, setup: Setup, *, lm_head: bool = True) -> int:
    """The base's weights at ``setup``'s dtype and quantisation (``lm_head=False``: a sequence
    classifier, which drops an untied LM head)."""
    other = shape.other_params - (0 if lm_head else shape.lm_head_params)
    per_block = {"none": setup.bytes, "8bit": BYTES_8BIT, "4bit": BYTES_4BIT}[setup.quantize]
    return int(shape.block_linear_params * per_block + other * setup.bytes)


def lora_params(shape: ModelShape, rank: int) -> int:
    return rank * shape.lora_width


def training_activations(shape: ModelShape, setup: Setup, tokens: int,
                         checkpointing: bool) -> int:
    per_layer = ACT_PER_HIDDEN * shape.hidden + ACT_PER_INTERMEDIATE * shape.intermediate
    if checkpointing:
        # One hidden state per layer kept, one layer's activations alive while recomputed.
        return tokens * (shape.layers * shape.hidden + per_layer) * setup.bytes
    return tokens * shape.layers * per_layer * setup.bytes


def inference_activations(shape: ModelShape, setup: Setup, tokens: int) -> int:
    return tokens * (INFER_PER_HIDDEN * shape.hidden
                     + INFER_PER_INTERMEDIATE * shape.intermediate) * setup.bytes


def kv_cache(shape: ModelShape, setup: Setup, rows: int, length: int) -> int:
    return rows * length * shape.layers * shape.kv_width * setup.bytes


def _common(shape: ModelShape, setup: Setup, *, lm_head: bool = True,
            dequantize: float = CPU_DEQUANT_INFERENCE) -> dict[str, int]:
    parts = {"baseline": CPU_BASELINE if setup.on_cpu else 0,
             "weights": weight_bytes(shape, setup, lm_head=lm_head)}
    if setup.quantize != "none":
        # Read at full precision, quantised as it loads: the files' pages are resident on the
        # CPU meanwhile; on a GPU, one layer at a time passes through at full size.
        parts["loading"] = (setup.file_bytes if setup.on_cpu
                            else shape.largest_linear_params * setup.bytes)
        # The matmuls dequantise: on a GPU one layer at a time; on the CPU the full-precision
        # copies outlive their layer, so 4-bit saves little there (honestly counted).
        parts["dequantize"] = int(
            dequantize * shape.block_linear_params * setup.bytes if setup.on_cpu
            else 2 * shape.largest_linear_params * setup.bytes)
    return parts


def _with_loading(parts: dict[str, int]) -> dict[str, int]:
    """Loading happens before the job's own allocations: the peak is the larger of the two, so
    the "loading" part counts only by how much it exceeds what the job adds later."""
    loading = parts.pop("loading", 0)
    later = sum(v for k, v in parts.items() if k not in ("baseline", "weights"))
    if loading > later:
        parts["loading"] = loading - later
    return parts


# ---- jobs --------------------------------------------------------------------------------

def generation(shape: ModelShape, setup: Setup, rows: int, prompt_tokens: int,
               new_tokens: int) -> Estimate:
    """Sampling ``rows`` responses at once (paired generation: two rows per prompt)."""
    parts = _common(shape, setup)
    parts["kv_cache"] = kv_cache(shape, setup, rows, prompt_tokens + new_tokens)
    parts["activations"] = inference_activations(shape, setup, rows * prompt_tokens)
    parts["logits"] = 3 * rows * shape.vocab * 4  # the last position's, and the samplers' copies
    return Estimate(_with_loading(parts), [f"{rows} rows of up to {prompt_tokens} prompt + "
                                           f"{new_tokens} new tokens"])


def reward_training(shape: ModelShape, setup: Setup, *, pairs_per_micro_batch: int,
                    max_length: int, lora_rank: int, checkpointing: bool) -> Estimate:
    """Bradley-Terry training: chosen and rejected of each pair go through together."""
    parts = _common(shape, setup, lm_head=False, dequantize=CPU_DEQUANT_TRAINING)
    trainable = lora_params(shape, lora_rank) + shape.hidden  # + the score head
    parts["adapters"] = trainable * 4
    parts["optimizer"] = trainable * 12
    tokens = 2 * pairs_per_micro_batch * max_length
    parts["activations"] = training_activations(shape, setup, tokens, checkpointing)
    return Estimate(_with_loading(parts), [f"{tokens} tokens per micro-batch (every pair at "
                                           f"the {max_length}-token limit: the worst case)"])


def dpo_training(shape: ModelShape, setup: Setup, *, pairs_per_micro_batch: int,
                 max_length: int, lora_rank: int, reference_adapter: bool,
                 checkpointing: bool) -> Estimate:
    """DPO: chosen and rejected of each pair go through the policy together with gradients,
    and the LM head's vocab-wide logits over their tokens are alive at the peak. The
    reference's log-probabilities come from a pass without gradients before it (smaller, and
    its memory is reused)."""
    parts = _common(shape, setup, dequantize=CPU_DEQUANT_TRAINING)
    policy = lora_params(shape, lora_rank)
    parts["adapters"] = (policy * (2 if reference_adapter else 1)) * 4
    parts["optimizer"] = policy * 12
    tokens = 2 * pairs_per_micro_batch * max_length
    parts["activations"] = training_activations(shape, setup, tokens, checkpointing)
    parts["logits"] = LOGIT_COPIES * tokens * shape.vocab * 4
    return Estimate(_with_loading(parts), [f"{tokens} tokens per micro-batch (every pair at "
                                           f"the {max_length}-token limit: the worst case)"])


def ppo_training(shape: ModelShape, setup: Setup, *, rollout_rows: int,
                 rows_per_micro_batch: int, prompt_tokens: int, new_tokens: int,
                 lora_rank: int, reward_rank: int, reference_adapter: bool,
                 checkpointing: bool, value_model: bool = True) -> Estimate:
    """PPO: rollouts (generation), then scoring and policy/value passes with gradients. The
    policy and value losses go backward one after the other, so their activations are not
    alive together; the policy's pass adds the vocab-wide logits. RLOO is the same without
    the value model (``value_model=False``)."""
    parts = _common(shape, setup)
    policy = lora_params(shape, lora_rank)
    value = lora_params(shape, reward_rank) + shape.hidden if value_model else 0
    frozen = lora_params(shape, reward_rank) + shape.hidden  # the reward adapter and head
    if reference_adapter:
        frozen += policy
    parts["adapters"] = (policy + value + frozen) * 4
    parts["optimizer"] = (policy + value) * 12
    length = prompt_tokens + new_tokens
    rollout = (kv_cache(shape, setup, rollout_rows, length)
               + inference_activations(shape, setup, rollout_rows * prompt_tokens))
    # Scoring the rollouts (no gradients): reference and old log-probabilities, values and
    # rewards over the whole batch, vocab-wide for the log-probabilities.
    scoring = (3 * rollout_rows * (new_tokens + 1) * shape.vocab * 4
               + inference_activations(shape, setup, rollout_rows * length))
    rows = rows_per_micro_batch
    activations = training_activations(shape, setup, rows * length, checkpointing)
    logits = LOGIT_COPIES * rows * (new_tokens + 1) * shape.vocab * 4
    if setup.on_cpu:
        # glibc keeps much of what one phase freed for the next, so the phases add up.
        parts.update(kv_cache=rollout, scoring=scoring, activations=activations, logits=logits)
    else:  # the caching allocator reuses a phase's memory: the largest phase is the peak
        phase = max((rollout, {"kv_cache": rollout}), (scoring, {"scoring": scoring}),
                    (activations + logits, {"activations": activations, "logits": logits}),
                    key=lambda p: p[0])[1]
        parts.update(phase)
    return Estimate(_with_loading(parts), [
        f"rollouts of {rollout_rows} rows, {rows} rows per micro-batch of up to "
        f"{prompt_tokens} prompt + {new_tokens} new tokens"])


def evaluation(shape: ModelShape, setup: Setup, *, rows: int, prompt_tokens: int,
               new_tokens: int, reward_rank: int) -> Estimate:
    """Evaluation loads one policy at a time to generate, then the reward model to score:
    the peak is the larger of the two."""
    generate = generation(shape, setup, rows, prompt_tokens, new_tokens)
    score = _common(shape, setup, lm_head=False)
    score["adapters"] = (lora_params(shape, reward_rank) + shape.hidden) * 4
    score["activations"] = inference_activations(shape, setup,
                                                 2 * rows * (prompt_tokens + new_tokens))
    score = _with_loading(score)
    if sum(score.values()) > generate.peak_bytes:
        return Estimate(score, ["scoring with the reward model is the larger phase"])
    return generate
