"""Find model folders on this machine: snapshots in the local Hugging Face cache and folders the
user added. Listing only looks for config.json; ``inspect_model_folder`` judges a pick later,
so a slow or broken folder never stalls the list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ModelEntry:
    name: str
    path: str
    source: str  # "hf-cache" | "folder"


def discover_models(extra_folders: Iterable[str | Path] = (),
                    cache_dir: str | Path | None = None) -> list[ModelEntry]:
    """Model folders from the HF hub cache (default location when ``cache_dir`` is None) and from
    ``extra_folders``, deduplicated by resolved path and sorted by name."""
    entries: dict[Path, ModelEntry] = {}
    for entry in [*_scan_hf_cache(cache_dir), *_scan_folders(extra_folders)]:
        entries.setdefault(Path(entry.path).resolve(), entry)  # the cache's name wins
    return sorted(entries.values(), key=lambda e: (e.name.lower(), e.path))


def _scan_hf_cache(cache_dir: str | Path | None) -> list[ModelEntry]:
    """Each snapshot of a model repo that holds a config.json. A missing or damaged cache is
    simply empty: the user may never have used the hub."""
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(cache_dir)
    except Exception:  # CacheNotFound, CorruptedCacheException, permission errors
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        snapshots = [rev for rev in repo.revisions if _has_config(Path(rev.snapshot_path))]
        for rev in snapshots:
            # Several snapshots of one repo need telling apart; one does not.
            name = repo.repo_id if len(snapshots) == 1 else f"{repo.repo_id}@{rev.commit_hash[:7]}"
            found.append(ModelEntry(name=name, path=str(rev.snapshot_path), source="hf-cache"))
    return found


def _scan_folders(folders: Iterable[str | Path]) -> list[ModelEntry]:
    """A folder that is a model itself, or the direct children of one that holds models."""
    found = []
    for folder in folders:
        folder = Path(folder).expanduser()
        if not _is_dir(folder):
            continue
        if _has_config(folder):
            found.append(_folder_entry(folder))
            continue
        try:
            children = sorted(folder.iterdir())
        except OSError:
            continue
        # Hidden folders are work in progress (a GGUF import being written) or not meant to
        # be listed.
        found.extend(_folder_entry(child) for child in children
                     if not child.name.startswith(".") and _is_dir(child) and _has_config(child))
    return found


def _folder_entry(folder: Path) -> ModelEntry:
    return ModelEntry(name=folder.name, path=str(folder.resolve()), source="folder")


# Unreadable folders (permissions, dead network mounts) are skipped, not reported.
def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _has_config(folder: Path) -> bool:
    try:
        return (folder / "config.json").is_file()
    except OSError:
        return False
