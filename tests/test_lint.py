"""The source passes ruff with the project's settings (pyproject.toml: [tool.ruff]), so style
problems show up in CI rather than in the next person's diff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff_command() -> list[str] | None:
    beside_python = Path(sys.executable).with_name("ruff")
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("ruff")
    return [found] if found else None


def test_ruff_finds_nothing():
    command = ruff_command()
    if command is None:
        pytest.skip("ruff is not installed (pip install -e .[test])")
    result = subprocess.run([*command, "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
