"""Files shipped with the app: the demo corpus and prompts, the app icon.

The repository's ``resources/`` folder is the source of truth. A wheel installs it as the
package data folder ``desktop_app/_resources`` (see pyproject.toml), and the PyInstaller build
bundles it at the same place inside the frozen app. ``RESOURCES_DIR`` is the first of these that
exists:

1. a frozen build: ``sys._MEIPASS/desktop_app/_resources``
2. an installed package: ``desktop_app/_resources`` beside this package's code
3. the source tree (a checkout, ``pip install -e``): ``resources/`` at the repository root
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # desktop_app/
MARKER = "demo_prompts.txt"  # a file every copy of the resources has


def candidate_dirs(frozen_root: str | None = None) -> list[Path]:
    """Where the resources may be, most specific first."""
    frozen_root = frozen_root if frozen_root is not None else getattr(sys, "_MEIPASS", None)
    dirs = [Path(frozen_root) / "desktop_app" / "_resources"] if frozen_root else []
    return dirs + [PACKAGE_DIR / "_resources", PACKAGE_DIR.parent / "resources"]


def find_resources_dir(candidates: list[Path] | None = None) -> Path:
    """The first candidate that holds the resources; the source-tree one if none does (so the
    error names a real place to look)."""
    candidates = candidate_dirs() if candidates is None else candidates
    for path in candidates:
        if (path / MARKER).is_file():
            return path
    return candidates[-1]


RESOURCES_DIR = find_resources_dir()


def resource_path(name: str) -> Path:
    path = RESOURCES_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"bundled resource {path} is missing; reinstall RLHF Desk")
    return path


def icon_path(size: int = 256) -> Path | None:
    """The app icon as a PNG (256 px), or None when it was not shipped."""
    path = RESOURCES_DIR / "icons" / f"rlhf-desk-{size}.png"
    return path if path.is_file() else None
