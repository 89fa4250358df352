"""Which accelerator and number format a model runs on, and how much memory is free there.

``pick_device("auto", "auto")`` prefers CUDA (bf16 where the GPU supports it, else fp16), then
Apple MPS, then the CPU: in bf16 where the CPU has bf16 instructions (``cpu_has_fast_bf16``),
else fp32. Explicit choices override the automatic ones, and an explicit choice the machine
cannot honour is a ``ValueError`` that says why, never a silent fallback.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = ("bfloat16", "float16", "float32")

# Short spellings people type, mapped to the names torch uses.
_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16",
                  "fp32": "float32", "float": "float32"}
_DTYPE_LABELS = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


@dataclass(frozen=True)
class DeviceChoice:
    """A torch device string ("cuda", "cuda:0", "mps", "cpu") and a dtype name from ``DTYPES``."""

    device: str
    dtype: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def on_accelerator(self) -> bool:
        """Whether tensors here live in GPU (CUDA or MPS) memory rather than main memory."""
        return not self.device.startswith("cpu")

    def label(self) -> str:
        """Short text for the status bar, e.g. "CUDA bf16" or "CUDA:1 fp16"."""
        return f"{self.device.upper()} {_DTYPE_LABELS[self.dtype]}"


def pick_device(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """Resolve "auto" (or explicit values) into a device and dtype this machine can run."""
    device = _resolve_device(device.strip().lower())
    dtype = dtype.strip().lower()
    dtype = _DTYPE_ALIASES.get(dtype, dtype)
    if dtype == "auto":
        dtype = _default_dtype(device)
    elif dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}: choose auto, {', '.join(DTYPES)}.")
    elif dtype == "bfloat16" and not _supports_bf16(device):
        raise ValueError(f"{device} does not support bfloat16 on this machine: "
                         "choose float16 or float32.")
    return DeviceChoice(device, dtype)


def available_memory_bytes(device: str) -> int | None:
    """Free memory where the weights will live, or None when it cannot be known."""
    kind = device.split(":")[0]
    if kind == "cuda":
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    if kind == "mps":
        # MPS shares system memory; torch knows how much of it Metal is willing to give us.
        try:
            return int(torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory())
        except (AttributeError, RuntimeError):
            return _system_available()
    return _system_available()


# ---- helpers ---------------------------------------------------------------------------------

def _resolve_device(device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("CUDA was requested but no CUDA GPU is available to this torch build "
                             f"(torch {torch.__version__}).")
        if index:
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise ValueError(f"{device} does not exist: this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s).")
        return device
    if kind == "mps":
        if not _mps_available():
            raise ValueError("Apple MPS was requested but is not available on this machine.")
        return "mps"
    raise ValueError(f"Unknown device {device!r}: choose auto, cuda, cuda:N, mps or cpu.")


def _default_dtype(device: str) -> str:
    kind = device.split(":")[0]
    if kind == "cuda":
        return "bfloat16" if _supports_bf16(device) else "float16"
    if kind == "mps":
        # fp16 overflows to inf/NaN in some models and then sampling fails; bf16 keeps fp32's
        # range, and fp32 is the safe answer where MPS lacks bf16.
        return "bfloat16" if _supports_bf16(device) else "float32"
    # Without bf16 instructions a CPU emulates half precision, slower than fp32; with them
    # (AVX512-BF16, AMX, Arm's BF16) its matmuls ran 3-4x faster than fp32 (2-core Xeon).
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


CPU_BF16_ENV = "RLHF_DESK_CPU_BF16"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively, so "auto" picks bf16 on it. The environment
    variable RLHF_DESK_CPU_BF16=0 or 1 overrides the detection (the tests pin 0, so their
    numbers do not depend on the machine CI lands on)."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return _cpu_flags_say_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_flags_say_bf16() -> bool:
    """Linux's /proc/cpuinfo flags (x86: avx512_bf16 or amx_bf16; Arm: the bf16 feature).
    Elsewhere the answer is no: fp32 is never the slow choice."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _supports_bf16(device: str) -> bool:
    kind = device.split(":")[0]
    if kind == "cuda":
        with torch.cuda.device(torch.device(device)):
            return torch.cuda.is_bf16_supported()
    if kind == "mps":
        try:
            torch.zeros(1, dtype=torch.bfloat16, device="mps")
            return True
        except (RuntimeError, TypeError):
            return False
    return True  # CPU computes bf16, if slowly


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def _system_available() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)
