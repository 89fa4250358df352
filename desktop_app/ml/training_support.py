"""What every training job (reward model, PPO) does the same way: end a run cleanly on a guard
rail or an out-of-memory, save and restore RNG state for exact resumes, report device memory,
and write files so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from ..core.atomic_files import atomic_text_file
from ..core.events import Log
from .model_loader import _first_line


def guarded(trainer, guard_rail: type[Exception], oom_advice: str):
    """Run a trainer's loop; a guard rail (e.g. a non-finite loss) or a device out-of-memory
    ends the run as failed with a one-sentence error, any other exception fails it and is
    re-raised. Shared by reward training and PPO."""
    store, run_id = trainer.store, trainer.run_id
    error = None
    try:
        return trainer.run()
    except guard_rail as exc:
        error = str(exc)
    except BaseException as exc:  # noqa: BLE001 - every way out must leave the run finished
        if not is_oom(exc):
            store.finish_run(run_id, "failed", error=_first_line(exc))
            raise
        error = f"Ran out of device memory at step {trainer.step + 1}: {oom_advice}."
    # Out of the except block, so the traceback no longer pins the model's tensors.
    result = trainer.result("failed", error=error)
    store.finish_run(run_id, "failed", error=error)
    trainer.emit(Log(error, "error"))
    trainer.release()
    return result


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


def write_json(path: Path, data: dict) -> None:
    """All at once: a full disk or a crash never leaves half a file (core.atomic_files)."""
    with atomic_text_file(path) as out:
        out.write(json.dumps(data, indent=2))


def write_folder(final: Path, write: Callable[[Path], None]) -> None:
    """Make the folder ``final`` all at once: ``write(tmp)`` fills ``final.tmp``, which then
    replaces ``final``. A failure (a full disk) removes the half-written ``.tmp``; a crash
    that leaves one behind is cleaned up by ``remove_leftovers`` when the run goes on."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_leftovers(run_dir: Path) -> None:
    """Half-written ``*.tmp`` files and folders of a save that a crash (kill -9, power loss)
    cut short. Never the ``.old`` copy, which may be the only checkpoint left."""
    for path in run_dir.glob("*.tmp"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def replace_folder(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``final``: the old one is kept aside until
    the new one is in, so a crash at any moment leaves one complete folder."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
