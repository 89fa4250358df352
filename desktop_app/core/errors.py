"""The app's error types, and one sentence for every failure.

``UserError`` is the base of every problem the person can fix (a bad file, too few judgments, a
run that cannot be resumed): its message says what went wrong and what to do, and it is shown
as it is. Everything else is either a failure from outside the app (the disk, the database
file, the operating system, memory), which ``explain`` turns into a sentence, or a bug.
``describe`` decides which, once, for the command line's ``main`` and the GUI's job layer.

Sentences for the failures that come from outside the app: the disk, the database file, the
operating system. Raw exception names and errno text ("OperationalError: disk I/O error",
"[Errno 21] Is a directory") mean nothing to the person at the desk; each case here becomes a
sentence that names the file and says what to do.

The store turns its own file-level SQLite failures into ``DatabaseUnavailable`` with
``sqlite_message``.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path


class UserError(Exception):
    """A problem the person can fix; the message (its first line) says what and how."""


def describe(exc: BaseException) -> tuple[str, bool]:
    """(one sentence for ``exc``, whether it is a bug). Our own errors carry their sentence;
    failures from outside get one from ``explain``; a device out-of-memory gets advice;
    anything else is unexpected, named by its type."""
    text = str(exc).strip()
    if isinstance(exc, UserError) and text:
        return text.splitlines()[0], False
    outside = explain(exc)
    if outside is not None:
        return outside, False
    if "out of memory" in text.lower():
        return ("The device ran out of memory. Try a smaller batch size, fewer new tokens, a "
                "smaller dtype, or a smaller model."), False
    first = text.splitlines()[0] if text else "no details"
    return f"{type(exc).__name__}: {first}", True


# Below this much free space a "disk I/O error" is a full disk, not a failing one: SQLite
# reports a failed write to its WAL or shared-memory file as an I/O error, not as "full".
_NEARLY_FULL = 16 * 2**20


def free_bytes(path: str | Path) -> int | None:
    """Free space on the disk that holds ``path`` (or its nearest existing parent)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def disk_full_message(path: str | Path | None, free: int | None) -> str:
    disk = f"The disk holding {path}" if path is not None else "The disk"
    left = f" ({human_bytes(free)} left)" if free is not None else ""
    return (f"{disk} is full{left}. Free some space and try again; what was already saved is "
            "intact.")


def sqlite_message(exc: sqlite3.Error, db_path: Path | None) -> str:
    """What a failed SQLite call on ``db_path`` (None: not known) means, in one sentence."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    free = free_bytes(db_path) if db_path is not None else None
    db_path = db_path or "the workspace database"
    if primary == 13 or "disk is full" in text:                        # SQLITE_FULL
        if free is None or free < _NEARLY_FULL:
            return disk_full_message(db_path, free)
        # Room on this disk: the temporary folder SQLite sorts in, or a size limit, is full.
        return (f"SQLite could not write to {db_path}: the temporary-files folder or the "
                "database's size limit is full. Free some space and try again; what was "
                "already saved is intact.")
    if primary == 10 or "disk i/o error" in text:                      # SQLITE_IOERR
        if free is not None and free < _NEARLY_FULL:
            return disk_full_message(db_path, free)
        return (f"Could not read or write {db_path}: the disk reported an input/output error. "
                "Check that the disk is attached and healthy, then try again.")
    if primary == 8 or "readonly" in text:                             # SQLITE_READONLY
        return (f"{db_path} is read-only: RLHF Desk needs to write to its workspace. Check the "
                "file's and the folder's permissions.")
    if primary == 14 or "unable to open" in text:                      # SQLITE_CANTOPEN
        return (f"Cannot open {db_path}: its folder is missing or not writable (the database "
                "also needs to create files beside it).")
    if primary in (5, 6) or "locked" in text:                          # SQLITE_BUSY / LOCKED
        return (f"{db_path} is busy: another RLHF Desk process has held it for more than 30 "
                "seconds. Try again when it is done.")
    if primary in (11, 26) or "malformed" in text or "not a database" in text:
        return (f"{db_path} is not a usable RLHF Desk database: the file is damaged or is not "
                "an SQLite database.")
    return f"The database {db_path} could not be used ({exc})."


_OS_ERRORS = {
    errno.ENOSPC: None,  # disk_full_message
    errno.EDQUOT: "your disk quota is used up; free some space and try again",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "is not a folder (a part of the path is a file)",
    errno.ENOENT: "does not exist",
    errno.EACCES: "cannot be opened: permission denied",
    errno.EPERM: "cannot be changed: the operation is not permitted",
    errno.EROFS: "is on a read-only disk",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "has a name that is too long",
    errno.EIO: "could not be read or written: the disk reported an input/output error",
    errno.EMFILE: "could not be opened: too many files are open",
}


def os_message(exc: OSError) -> str:
    """An OSError as "<file> <what happened>"."""
    where = exc.filename
    if exc.errno == errno.ENOSPC:
        return disk_full_message(where, free_bytes(where) if where else None)
    what = _OS_ERRORS.get(exc.errno)
    if what is None:
        what = f"could not be used ({exc.strerror or exc})"
    if where is None:
        # Our own OSErrors (FileNotFoundError raised with a message) already say it all.
        return str(exc) if exc.errno is None and str(exc) else f"A file {what}."
    return f"{where} {what}."


def explain(exc: BaseException) -> str | None:
    """A sentence for a failure from outside the app, or None when ``exc`` is not one."""
    if isinstance(exc, OSError):
        return os_message(exc)
    if isinstance(exc, sqlite3.Error):
        return sqlite_message(exc, None)
    if isinstance(exc, MemoryError):
        return ("The computer ran out of memory. Close other programs, or use a smaller model, "
                "batch or file.")
    if isinstance(exc, RecursionError):
        return "The input is nested too deeply to read."
    return None
