"""Launch the real app in a child process, the way a person starts it, and watch it start and
close. Used by tests/test_launch.py (a few launches) and bench/launch_repeat.py (30 or more,
on screen under Xvfb as well as offscreen).

A launch counts as good when the process exits within a few seconds of Ctrl+C (SIGINT), with
status 0 (130 when Ctrl+C came before the window existed, or death by SIGINT itself
when it came before Python ran any of our code), printed no error, wrote no
ERROR to the workspace log, and left no run in the database marked running.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOADED = "model loaded:"


@dataclass
class Launch:
    rc: int | None
    seconds_to_load: float | None      # None when Ctrl+C came first (or it never loaded)
    seconds_to_exit: float | None      # from Ctrl+C to the process gone; None if it hung
    stderr: str
    log: str
    running_runs: list = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.seconds_to_exit is None:
            found.append("did not exit after Ctrl+C")
        if self.rc not in (0, 130, -2):  # -2: SIGINT ended Python before our code ran
            found.append(f"exit status {self.rc}")
        lowered = self.stderr.lower()
        for word in ("error", "traceback", "fatal", "abort", "destroyed while"):
            if word in lowered:
                found.append(f"stderr mentions {word!r}: {_first_line_with(self.stderr, word)}")
        if " ERROR " in self.log:
            found.append(f"log has an ERROR: {_first_line_with(self.log, ' ERROR ')}")
        if self.running_runs:
            found.append(f"runs left running: {self.running_runs}")
        return found


def launch(workspace: Path, model: Path, *, close_after: float | None = None,
           load_timeout: float = 120.0, exit_timeout: float = 15.0,
           display: str | None = None) -> Launch:
    """Start ``rlhf-desk --workspace W gui --model M``; press Ctrl+C ``close_after`` seconds
    after starting, or as soon as the model is loaded when None."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    if display:
        env["DISPLAY"] = display
        env.pop("QT_QPA_PLATFORM", None)
    else:
        env["QT_QPA_PLATFORM"] = "offscreen"
    log_file = workspace / "logs" / "rlhf-desk.log"
    log_start = log_file.stat().st_size if log_file.exists() else 0
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "desktop_app", "--workspace", str(workspace), "gui",
         "--model", str(model)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    loaded_at = None
    while proc.poll() is None:
        elapsed = time.monotonic() - started
        if close_after is not None and elapsed >= close_after:
            break
        if close_after is None and LOADED in _read_from(log_file, log_start):
            loaded_at = elapsed
            break
        if close_after is None and elapsed > load_timeout:
            break
        # Timing is what is tested here (Ctrl+C at close_after seconds, or once the log says
        # loaded, within load_timeout), and the log of another process announces nothing.
        time.sleep(0.05)
    pressed = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=exit_timeout)
        to_exit = time.monotonic() - pressed
    except subprocess.TimeoutExpired:
        # Hung: SIGABRT makes faulthandler print every thread's stack, to say where.
        proc.send_signal(signal.SIGABRT)
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        to_exit = None
    return Launch(rc=proc.returncode, seconds_to_load=loaded_at, seconds_to_exit=to_exit,
                  stderr=_without_qt_chatter(stderr), log=_read_from(log_file, log_start),
                  running_runs=_running_runs(workspace / "rlhf.db"))


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            return handle.read()
    except OSError:
        return ""


def _running_runs(db: Path) -> list:
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id, kind FROM runs WHERE status = 'running'").fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def _without_qt_chatter(text: str) -> str:
    """Qt's offscreen platform and fontconfig talk on stderr; none of it is ours."""
    noise = ("QtInfoMsg", "QtWarningMsg", "propagateSizeHints", "OpenType support missing",
             "Fontconfig", "XDG_RUNTIME_DIR", "qt.qpa")
    return "\n".join(line for line in text.splitlines()
                     if line.strip() and not any(n in line for n in noise))


def _first_line_with(text: str, word: str) -> str:
    for line in text.splitlines():
        if word.lower() in line.lower():
            return line.strip()[:200]
    return ""
