"""Replacing a file all at once: a crash or an error midway leaves the old file as it was.

Rows go to a temporary file in the target's folder (``os.replace`` is only atomic within one
filesystem), which is fsynced, given the permissions a saved file should have, and renamed
over the target; the folder is then fsynced so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_text_file(path: str | os.PathLike, newline: str = "\n") -> Iterator[IO[str]]:
    """``with atomic_text_file(path) as out: out.write(...)`` — UTF-8, replaced on success."""
    path = Path(path)
    # Said here, or the error would name the temporary file, which the user never asked for.
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private (0600); an export should be as readable as any file
        # the user saves, or as the file it replaces.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError) and exc.errno and exc.filename in (None, temporary):
            # Name the file the user asked for, not the temporary one (a full disk, say).
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable. POSIX only: Windows cannot open a folder to fsync."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
