"""Switching LoRA adapters for a forward pass without touching ``requires_grad``.

peft's ``set_adapter`` and ``disable_adapter`` change ``requires_grad`` on every adapter (and
``disable_adapter`` walks the whole model twice per call). PPO needs frozen adapters to stay
frozen while it switches between policy, value and reward many times per step, and the
playground switches twice per generated token, so both flip the LoRA layers' own flags
instead. These are private peft attributes: the PPO tests that the reference is the starting
policy and that frozen weights stay frozen catch a peft release that renames them.
"""

from __future__ import annotations

import contextlib


def tuner_layers(model) -> list:
    """Every LoRA (tuner) layer of a peft model."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


@contextlib.contextmanager
def only_adapter(layers: list, name: str | None):
    """Forward passes inside run with only adapter ``name`` active (None: adapters off, the
    bare base); the layers' previous state is restored afterwards."""
    saved = [(m, m._active_adapter, m._disable_adapters) for m in layers]
    for m in layers:
        if name is None:
            m._disable_adapters = True
        else:
            m._active_adapter = [name]
            m._disable_adapters = False
    try:
        yield
    finally:
        for m, active, disabled in saved:
            m._active_adapter = active
            m._disable_adapters = disabled
