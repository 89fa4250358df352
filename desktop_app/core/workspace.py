"""Where a workspace lives and what is inside it.

A workspace is a folder holding ``rlhf.db`` (the store), ``runs/`` (artifacts of training runs),
``models/`` (models the app built, e.g. the demo model) and ``settings.json`` (small UI
preferences such as extra model folders). Choosing one: ``--workspace DIR`` beats
``RLHF_DESK_WORKSPACE`` beats the per-user default under the platform's data dir.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from desktop_app.core.errors import UserError

ENV_VAR = "RLHF_DESK_WORKSPACE"
APP_NAME = "rlhf-desk"


def default_root() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_workspace_dir() -> Path:
    return default_root() / "workspace"


def default_demo_dir() -> Path:
    return default_root() / "demo"


def resolve_workspace_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return default_workspace_dir()


class WorkspaceError(UserError):
    """The folder cannot be used as a workspace (the message says which folder and why)."""


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = True) -> "Workspace":
        root = Path(path).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} is a file, not a workspace folder")
        if not root.exists():
            if not create:
                raise WorkspaceError(f"{root} does not exist")
            try:
                root.mkdir(parents=True)
            except OSError as exc:
                raise WorkspaceError(
                    f"cannot create workspace folder {root}: {exc.strerror}") from None
        return cls(root)

    @property
    def db_path(self) -> Path:
        return self.root / "rlhf.db"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def settings_path(self) -> Path:
        return self.root / "settings.json"

    def load_settings(self) -> dict:
        """Settings are a convenience: a broken file is ignored rather than blocking the app."""
        try:
            data = json.loads(self.settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save_settings(self, settings: dict) -> None:
        tmp = self.settings_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.settings_path)
