"""Sampling settings that suit a model: what its authors put in generation_config.json, and a
response length that fits how it answers.

A fixed 128 new tokens cut off 23 of 40 answers of SmolLM2-135M-Instruct: chat models write
paragraphs, and a cut answer is a poor thing to judge. Only values the model's own file sets
are taken (transformers fills in its library defaults for the rest, which say nothing about
the model).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from desktop_app.core.config import SamplingConfig

# Longest default response of a chat model; longer answers are rare and cost time per pair.
CHAT_NEW_TOKENS = 512
PLAIN_NEW_TOKENS = 128  # a base model without a chat template rambles on: a short window
_TAKEN = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")


def sampling_for_model(folder: str | Path, has_chat_template: bool, context: int | None,
                       current: SamplingConfig) -> tuple[SamplingConfig, list[str]]:
    """``current`` with the model's own sampling values and a fitting response length; also
    the names of the settings that came from the model's generation_config.json."""
    own = _generation_file(Path(folder))
    values: dict = {}
    for name in _TAKEN:
        value = own.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = value
    from_model = sorted(values)
    if "max_new_tokens" not in values:
        values["max_new_tokens"] = CHAT_NEW_TOKENS if has_chat_template else PLAIN_NEW_TOKENS
    if context:
        # The prompt needs room too: never more than half the context for the response.
        values["max_new_tokens"] = min(values["max_new_tokens"], max(16, context // 2))
    cfg = dataclasses.replace(current, **{k: _clamped(k, v) for k, v in values.items()})
    return cfg, from_model


def context_length(model) -> int | None:
    """The longest sequence the model's positions allow, when its config says."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _generation_file(folder: Path) -> dict:
    try:
        data = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _clamped(name: str, value):
    """A value inside the range the settings form allows (a model may ship top_k=0 or a
    temperature of 0 meaning "greedy")."""
    field = SamplingConfig.__dataclass_fields__[name]
    meta = field.metadata
    low, high = meta.get("min"), meta.get("max")
    value = type(field.default)(value)
    if low is not None:
        value = max(low, value)
    if high is not None:
        value = min(high, value)
    return value
