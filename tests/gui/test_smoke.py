"""``rlhf-desk --smoke-test`` (what packaging/build.sh runs on the frozen app) passes on this
installation, in a fresh process, and reports a broken one with one line and a non-zero exit."""

import os
import subprocess
import sys

import pytest

from desktop_app import smoke
from desktop_app.cli import main


@pytest.mark.slow  # a fresh process that loads a model and opens the window
def test_smoke_test_passes_in_a_subprocess(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)  # it must choose offscreen by itself without a display
    result = subprocess.run([sys.executable, "-m", "desktop_app", "--smoke-test"],
                            check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["ok  resources", "ok  ml stack",
                                                          "ok  main window"]
    assert "model loaded, pair generated" in lines[2]
    assert "platform offscreen" in lines[2]
    assert lines[-1].startswith("smoke test passed")


def test_a_failed_check_exits_non_zero_with_one_line(monkeypatch, capsys):
    def broken(state):
        raise FileNotFoundError("bundled resource /x/demo_prompts.txt is missing")

    monkeypatch.setattr(smoke, "_resources", broken)
    assert main(["--smoke-test"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("rlhf-desk: smoke test failed at 'resources': FileNotFoundError: bundled "
                    "resource /x/demo_prompts.txt is missing")]
