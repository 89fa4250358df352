"""Files a training run writes so that a crash never leaves a half-written one, the random
state that makes a resume exact, and the memory figure every trainer reports."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch


def write_folder(final: Path, write: Callable[[Path], None]) -> None:
    """Make the folder ``final`` all at once: ``write(tmp)`` fills ``final.tmp``, which then
    replaces ``final``. A failure (a full disk) removes the half-written ``.tmp``; a crash
    that leaves one behind is cleaned up by ``core.runs.session.remove_leftovers`` on resume."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``final``: the old one is kept aside until
    the new one is in, so a crash at any moment leaves one complete folder."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def rng_state(device: str) -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.startswith("cuda") else None}


def set_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)


def memory_gib(device: str) -> float:
    """Peak allocated memory on CUDA; what Metal has allocated on MPS; process RSS on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    if device == "mps":
        return torch.mps.current_allocated_memory() / 2**30
    global _PROCESS
    if _PROCESS is None:
        import psutil

        _PROCESS = psutil.Process()
    return _PROCESS.memory_info().rss / 2**30


_PROCESS = None  # psutil's handle on this process, made once


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())
