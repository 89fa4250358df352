"""Which 'running' runs really are running: one lock file per live run.

A process that creates (or resumes) a run holds an exclusive OS lock on
``locks/run-N.lock`` beside the database until it finishes the run or closes its store, and
writes its process id into the file. The OS drops the lock when the process dies, however it
dies (kill -9, power loss). So a run still marked 'running' whose lock nobody holds was cut off,
and one whose lock is held belongs to a live process (a second window, or ``rlhf-desk
train-ppo`` in a terminal), which ``holder`` names.

Only the owner removes the file, on release. A lock taken on a file that its old owner removed
meanwhile would be a lock on nothing, so ``acquire`` checks that the file it locked is still
the one at the path.

POSIX uses ``flock``, Windows ``msvcrt.locking``. Where neither works, nothing is locked and
every run left 'running' counts as interrupted, as before locks existed.
"""

from __future__ import annotations

import os
import time
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


def acquire(path: Path, attempts: int = 3) -> int | None:
    """Open and lock ``path`` and write this process's id into it; the returned file
    descriptor holds the lock (None: another live process holds it, or it cannot be made).
    A few attempts, because another process's ``holder`` check holds the lock for a moment."""
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.05)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        if not _try_lock(fd):
            os.close(fd)
            continue
        if not _still_at(fd, path):  # its owner removed it after we opened it: start again
            _unlock(fd)
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError:
            pass  # the lock is what counts; the id is only for messages
        return fd
    return None


def release(fd: int, path: Path) -> None:
    # Removed before unlocking, so nobody locks a file on its way out. Each step on its own:
    # Windows cannot remove an open file, and the lock must be let go of all the same.
    for step in (lambda: path.unlink(missing_ok=True), lambda: _unlock(fd), lambda: os.close(fd)):
        try:
            step()
        except OSError:
            pass


def holder(path: Path) -> int | None:
    """The process id of the live process holding ``path`` (0 when it holds it but the id
    cannot be read), or None when nobody holds it. Never removes the file."""
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
        try:
            return int(os.read(fd, 32).decode().strip() or 0)
        except (OSError, ValueError):
            return 0
    finally:
        os.close(fd)


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on ``path``."""
    return holder(path) is not None


def _still_at(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
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
