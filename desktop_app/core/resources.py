"""Files shipped in the repository's ``resources/`` folder (demo corpus, demo prompts)."""

from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parents[2] / "resources"


def resource_path(name: str) -> Path:
    path = RESOURCES_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"bundled resource {path} is missing; reinstall RLHF Desk")
    return path
