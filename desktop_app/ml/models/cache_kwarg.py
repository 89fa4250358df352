"""The name under which a model's forward takes a KV cache."""

from __future__ import annotations

import inspect


def cache_kwarg(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (the old name is deprecated); a
    model that ships its own code may still take only the old name. ``model`` may be a peft
    wrapper: its base model's forward says."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params or "past_key_values" not in params else "past_key_values"
