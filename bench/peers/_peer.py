"""What the peer scripts share (they run in a peer venv, without desktop_app).

A peer script is run as ``<peer venv>/bin/python bench/peers/trl_X.py JOB.json``: the job file
(written by bench/peers.py) names the model folder, the data files (TRL's jsonl formats) and
the settings; the script prints one line ``RESULT {json}`` with its figures, the last line
bench/peers.py reads. Nothing is downloaded: the offline switches are set before any import.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def load_job() -> dict:
    with open(sys.argv[1], encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB: VmHWM, the high-water mark of this
    process's own memory. Not ru_maxrss: Linux carries the parent's peak across fork and exec
    into it, so a child of a large process would report the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clock() -> float:
    return time.perf_counter()


def report(result: dict) -> None:
    print("RESULT " + json.dumps(result | {"peak_rss_mb": peak_rss_mb()}), flush=True)
