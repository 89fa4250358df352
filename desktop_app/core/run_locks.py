"""Which 'running' runs really are running: one lock file per live run.

A process that creates (or resumes) a run holds an exclusive OS lock on
``locks/run-N.lock`` beside the database until it finishes the run or closes its store. The
OS drops the lock when the process dies, however it dies. So at start-up a run still marked
'running' whose lock nobody holds was cut off by a crash, and one whose lock is held belongs to
another live process (a second window, or ``rlhf-desk train-ppo`` in a terminal) and is left
alone.

POSIX uses ``flock``, Windows ``msvcrt.locking``. Where neither works, nothing is locked and
every run left 'running' counts as interrupted, as before locks existed.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None


def lock_path(db_path: Path, run_id: int) -> Path:
    return Path(db_path).parent / "locks" / f"run-{run_id}.lock"


def acquire(path: Path) -> int | None:
    """Open and lock ``path``; the file descriptor holds the lock (None: could not lock)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    if _try_lock(fd):
        return fd
    os.close(fd)
    return None


def release(fd: int, path: Path) -> None:
    try:
        _unlock(fd)
        os.close(fd)
        path.unlink(missing_ok=True)
    except OSError:
        pass


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on ``path``."""
    if not path.exists():
        return False
    fd = acquire(path)
    if fd is None:
        return True
    release(fd, path)
    return False


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif msvcrt is not None:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
