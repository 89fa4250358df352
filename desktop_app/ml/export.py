"""Export a tuned policy: the LoRA adapter as it is, or merged into the base weights as a full
model folder (weights + config + tokenizer) that plain ``AutoModelForCausalLM`` loads."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..core.store import Store
from .model_loader import _first_line


class ExportError(Exception):
    """The run cannot be exported; the message says why."""


def export_policy(workspace, run_id: int, out_dir: str | Path, merged: bool = False) -> Path:
    """Write run ``run_id``'s policy to ``out_dir`` (which must not exist or be empty)."""
    with Store(workspace.db_path) as store:
        run = store.get_run(run_id)
    if run is None:
        raise ExportError(f"There is no run {run_id}.")
    if run["kind"] != "ppo":
        raise ExportError(f"Run {run_id} is a {run['kind']} run; only PPO policies are exported.")
    adapter = Path(run["artifact"]) if run["artifact"] else None
    if run["status"] != "completed" or adapter is None or not (
            adapter / "adapter_config.json").is_file():
        raise ExportError(f"Run {run_id} has no finished policy to export ({run['status']}).")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty folder.")

    if not merged:
        shutil.copytree(adapter, out, dirs_exist_ok=True)
        return out

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = run["config"]["base_model"]
    try:
        model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(adapter if (
            adapter / "tokenizer_config.json").is_file() else base, local_files_only=True)
    except Exception as exc:
        raise ExportError(f"Could not merge the policy of run {run_id} into {base}: "
                          f"{_first_line(exc)}") from exc
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
