"""Tiny models built in-process, for the tests and the demo workspace: no downloads, seconds on
a CPU. A byte-level BPE tokenizer trained on a few lines, a randomly initialised causal LM of a
common architecture on top of it, and a short training loop that teaches it to stop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from desktop_app.core.events import Emit, Metric, Progress, StopToken, ignore

EOS = "<|endoftext|>"
PAD = "<|pad|>"
USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"

# Each turn is wrapped in role markers and closed with <|end|>; the generation prompt opens an
# assistant turn, so the model's answer ends where it emits <|end|> (an EOS of the model).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}" + ASSISTANT + "{{ message['content'] }}" + END +
    "{% else %}" + USER + "{{ message['content'] }}" + END + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)

ARCHITECTURES = ("gpt2", "llama", "qwen2", "gpt_neox", "opt")


def train_tokenizer(lines: Iterable[str], vocab_size: int = 512, *, chat_template: bool = False,
                    pad_token: bool = True):
    """A byte-level BPE tokenizer (GPT-2 style: any text encodes, nothing is unknown).

    "<|endoftext|>" is BOS and EOS. ``pad_token`` adds "<|pad|>"; without it the tokenizer has no
    pad token, like many real checkpoints. ``chat_template`` adds the role tokens and a template;
    "<|end|>" then closes turns, and ``build_tiny_model`` makes it an EOS of the model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    roles = [USER, ASSISTANT, END] if chat_template else []
    specials = [EOS] + ([PAD] if pad_token else []) + roles
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(list(lines), trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=EOS, eos_token=EOS,
        pad_token=PAD if pad_token else None,
        additional_special_tokens=roles or None,
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(arch: str, tokenizer, out_dir: str | Path | None = None, *, seed: int = 0,
                     hidden: int = 64, layers: int = 2, heads: int = 4, max_positions: int = 512):
    """A randomly initialised causal LM of ``arch`` sized to ``tokenizer``; saved (safetensors
    weights + tokenizer) to ``out_dir`` when given."""
    from transformers import AutoModelForCausalLM

    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}: choose one of "
                         f"{', '.join(ARCHITECTURES)}.")
    eos_ids = [tokenizer.eos_token_id]
    end_id = tokenizer.convert_tokens_to_ids(END) if END in tokenizer.get_vocab() else None
    if end_id is not None:
        eos_ids.insert(0, end_id)
    special = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = _config(arch, hidden, layers, heads, max_positions, special)

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)  # safetensors is the default
        tokenizer.save_pretrained(out_dir)
    return model


def train_causal_lm(model, tokenizer, texts: list[str], *, seconds: float, max_steps: int,
                    batch_size: int = 16, seq_len: int = 128, lr: float = 3e-3,
                    emit: Emit = ignore, stop: StopToken | None = None) -> dict:
    """Next-token training on ``texts`` until ``max_steps`` or ``seconds``, whichever comes first.

    Each text is closed with EOS so the model learns to stop, and the texts are packed into one
    token stream that random windows are drawn from. The learning rate warms up, then follows a
    cosine to zero over whichever budget (steps or time) runs out first. Returns
    {"steps", "loss_first", "loss_last"}; loss_last averages the last 10 steps to smooth noise.
    A stop request raises ``Cancelled`` (the model keeps what it learned so far)."""
    # 1. One stream of tokens, every text ending in EOS.
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for text in texts:
        ids = list(tokenizer(text)["input_ids"])
        stream.extend(ids if ids and ids[-1] == eos else ids + [eos])
    if len(stream) < 2:
        raise ValueError("train_causal_lm needs at least two tokens of text.")
    data = torch.tensor(stream, dtype=torch.long)
    seq_len = min(seq_len, len(data) - 1)

    # 2. Optimiser; the schedule is computed per step from the progress made.
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, min(20, max_steps // 10))
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    losses: list[float] = []
    model.train()
    try:
        for step in range(max_steps):
            elapsed = time.perf_counter() - started
            if step > 0 and elapsed >= seconds:
                break
            if stop is not None:
                stop.raise_if_requested()

            # 3. A batch of random windows of seq_len + 1 tokens: inputs and next-token targets.
            starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
            batch = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()]).to(device)
            progress = max(step / max_steps, elapsed / seconds if seconds > 0 else 0.0)
            cosine = 0.5 * (1 + math.cos(math.pi * progress))
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup) * cosine
            logits = model(input_ids=batch[:, :-1]).logits
            loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            # 4. Report now and then, not every step: the GUI redraws on a timer anyway.
            losses.append(loss.item())
            if step % 10 == 0 or step == max_steps - 1:
                emit(Metric(step, "loss/train", losses[-1]))
                emit(Progress(step + 1, max_steps, "Training demo model",
                              extra={"loss": losses[-1]}))
    finally:
        model.eval()
    tail = losses[-10:]
    return {"steps": len(losses), "loss_first": losses[0] if losses else float("nan"),
            "loss_last": sum(tail) / len(tail) if tail else float("nan")}


def _config(arch: str, hidden: int, layers: int, heads: int, max_positions: int, special: dict):
    """The same small shape in each architecture's own vocabulary of config names."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, OPTConfig, Qwen2Config

    if arch == "gpt2":
        return GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=max_positions,
                          **special)
    if arch == "opt":
        return OPTConfig(hidden_size=hidden, ffn_dim=4 * hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, max_position_embeddings=max_positions,
                         word_embed_proj_dim=hidden, **special)
    if arch == "gpt_neox":
        return GPTNeoXConfig(hidden_size=hidden, intermediate_size=4 * hidden,
                             num_hidden_layers=layers, num_attention_heads=heads,
                             max_position_embeddings=max_positions, **special)
    config_class = LlamaConfig if arch == "llama" else Qwen2Config
    return config_class(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, num_key_value_heads=heads,
                        max_position_embeddings=max_positions, **special)
