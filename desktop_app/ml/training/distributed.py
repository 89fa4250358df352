"""Training under torchrun: which process this is, and the few collectives the trainers need.

`torchrun --nproc-per-node N $(which rlhf-desk) COMMAND ...` starts N copies of the CLI with
RANK, LOCAL_RANK and WORLD_SIZE in their environment. ``init_from_env`` (called by the CLI
before any command runs) joins them into one process group: NCCL when they train on CUDA
GPUs, gloo on the CPU. Without torchrun (or with one process) nothing here does anything, and
the single-process path is exactly what it was.

Data parallelism, the way DDP does it: every rank holds the same trainable weights (broadcast
from rank 0 at the start), computes gradients on its own shard of each global batch, and the
gradients are summed across ranks before the clip and the optimiser step
(``training.optim.Optimiser``), so every rank takes the same step. The model is not wrapped in
``DistributedDataParallel``: the trainers also call it with adapters switched off, score with
a second adapter and generate, which DDP's wrapper does not support; the trainable weights
(LoRA and heads, a few MB) are reduced in one flat bucket per step instead.

A loss is divided by the *global* number of examples in the step, so the summed gradient is
the same mean the single process computes over the same global batch. Rank 0 alone writes the
database, the run folder, checkpoints and artifacts, and prints the CLI's output.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from desktop_app.core.errors import UserError

# How long a collective waits for a rank that has died or hangs before the job ends (NCCL and
# gloo both honour the process group's timeout). A step on a big model can take minutes.
COLLECTIVE_TIMEOUT = timedelta(minutes=int(os.environ.get("RLHF_DESK_DIST_TIMEOUT_MIN", "10")))


class RankLost(UserError):
    """Another process of the torchrun job died or stopped answering: this one cannot go on.
    The training loop ends the run as interrupted (resumable from its last checkpoint)."""


def _collective(method):
    """A collective that fails (a rank died: its connection reset; or hung: the timeout
    passed) raises ``RankLost`` with one sentence instead of the backend's message."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except RankLost:
            raise
        except (RuntimeError, dist.DistError) as exc:
            raise RankLost(f"Another process of this torchrun job (of {self.size}) stopped or "
                           f"stopped answering, so rank {self.rank} cannot go on "
                           f"({_cause(exc)}).") from exc
    return wrapper


def _cause(exc: BaseException) -> str:
    """The backend's reason, short: its first sentence without the source-file prefix."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip().splitlines()[0] if str(exc) else "")
    return (text.split(". ")[0] or type(exc).__name__)[:120]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def step_seed(self, seed: int, step: int) -> int:
        """The random seed of this rank at optimiser step ``step`` of a run seeded ``seed``:
        its own stream (dropout, sampling) on every rank, the same again on a resume, so a run
        repeats for a given number of processes."""
        return ((seed * 1_000_003 + step) * 1_009 + self.rank) % 2**63

    def shard(self, items: list) -> list:
        """This rank's share of ``items``: every size-th one from its rank (ranks' shares
        differ in length by at most one)."""
        return items[self.rank::self.size] if self.active else items

    @_collective
    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums ``tensor`` over the ranks, in place; returns it."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @_collective
    def any(self, flag: bool, device: str = "cpu") -> bool:
        """True on every rank when ``flag`` is True on any (a stop request, say)."""
        if not self.active:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    @_collective
    def from_main(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a run id, a message)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @_collective
    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    @_collective
    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sums the gradients of ``params`` over the ranks in one flat bucket. A parameter
        with no gradient on this rank counts as zeros, so every rank sends the same shape."""
        if not self.active or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).clone()
            offset += n

    @_collective
    def same_weights(self, params: list[torch.nn.Parameter]) -> None:
        """Rank 0's values of ``params`` on every rank (the start of a run or a resume)."""
        if not self.active:
            return
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)

    @_collective
    def barrier(self) -> None:
        if self.active:
            dist.barrier()


_world = World()


def world() -> World:
    """This process's place in the job (rank 0 of 1 outside torchrun)."""
    return _world


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env() -> World:
    """Join torchrun's process group (once); the single-process world otherwise. On CUDA each
    rank takes the GPU of its LOCAL_RANK and the group uses NCCL; on the CPU, gloo."""
    global _world
    if _world.active or not launched_by_torchrun():
        return _world
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and os.environ.get("RLHF_DESK_DIST_BACKEND") != "gloo"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    _world = World(rank, size, local_rank)
    return _world


def shutdown() -> None:
    """Leave the process group (at the end of a CLI command)."""
    global _world
    if _world.active and dist.is_initialized():
        dist.destroy_process_group()
    _world = World()


def device_for_rank(device: str) -> str:
    """A rank's own GPU: "cuda" becomes "cuda:LOCAL_RANK" under torchrun."""
    if _world.active and device == "cuda":
        return f"cuda:{_world.local_rank}"
    return device
