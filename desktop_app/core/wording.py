"""Small pieces of wording shared by the GUI and the CLI."""

from __future__ import annotations


def count(n: float, one: str, many: str | None = None) -> str:
    """``n`` with its noun in the right number: "1 tie", "2 ties", "0 ties" (a whole float
    such as a stored metric's 4.0 reads "4 pairs"). ``many`` is the plural where adding an s
    is wrong ("1 loss" / "2 losses")."""
    noun = one if n == 1 else (many or one + "s")
    return f"{n:.0f} {noun}" if isinstance(n, float) else f"{n} {noun}"
