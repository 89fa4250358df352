"""Typed configuration. Every field carries help text in ``metadata`` so that the CLI and the
GUI settings forms are generated from one place: a new option is one line here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def opt(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
        step: float | None = None, label: str | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with the metadata forms and argparse need."""
    meta = {"help": help, "min": minimum, "max": maximum, "step": step, "label": label,
            "choices": choices}
    return field(default=default, metadata=meta)


@dataclass
class SamplingConfig:
    """Nucleus sampling settings for paired generation."""

    temperature: float = opt(0.9, "Softmax temperature; higher gives more varied responses.",
                             minimum=0.05, maximum=2.0, step=0.05)
    top_p: float = opt(0.95, "Nucleus sampling: keep the smallest set of tokens whose "
                             "probability adds up to top-p.", minimum=0.05, maximum=1.0, step=0.01,
                       label="Top-p")
    top_k: int = opt(0, "Keep only the k most likely tokens (0 = off, the default).",
                     minimum=0, maximum=1000, step=1, label="Top-k")
    max_new_tokens: int = opt(128, "Longest response, in tokens.", minimum=1, maximum=4096,
                              step=16)
    repetition_penalty: float = opt(1.0, "Penalty for repeating tokens (1.0 = off).",
                                    minimum=1.0, maximum=2.0, step=0.05)
    batch_size: int = opt(8, "Prompts generated together (each gives two responses).",
                          minimum=1, maximum=256, step=1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SamplingConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its documented range."""
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if lo is not None and value < lo or hi is not None and value > hi:
                raise ValueError(f"{f.name} = {value} is outside [{lo}, {hi}]")
