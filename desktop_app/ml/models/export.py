"""Export a tuned policy: the LoRA adapter as it is (a standard PEFT folder), or merged into the
base weights as a full model folder (weights + config + generation config + tokenizer) that plain
``AutoModelForCausalLM.from_pretrained(folder)`` loads with no RLHF Desk code. Both get a model
card (``README.md``, see ``core/runs/model_card.py``) saying where the model came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from desktop_app.core.data.store import Store
from desktop_app.core.errors import UserError
from desktop_app.core.runs.model_card import collect_card_facts, write_model_card
from desktop_app.core.runs.record import POLICY_KINDS, UnusableRun
from desktop_app.ml.models.loader import _first_line
from desktop_app.ml.models.stack import building_a_model


class ExportError(UserError):
    """The run cannot be exported; the message says why."""


def export_policy(workspace, run_id: int, out_dir: str | Path, merged: bool = False) -> Path:
    """Write run ``run_id``'s policy to ``out_dir`` (which must not exist or be empty)."""
    out = Path(out_dir).expanduser()
    with Store(workspace.db_path) as store:
        run = store.get_run(run_id)
        card = collect_card_facts(workspace, store, run_id, merged=merged,
                                  name=out.name) if run is not None else None
    if run is None:
        raise UnusableRun(f"There is no run {run_id}.")
    adapter = run.require_artifact(POLICY_KINDS, "exporting a policy")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty folder.")
    base = run.config["base_model"]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)

    if not merged:
        def copy_adapter(folder: Path) -> None:
            shutil.copytree(adapter, folder)
            _point_adapter_at_base(folder, base)
        return _write_folder(out, tmp, card, copy_adapter)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with building_a_model():
            model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(adapter if (
            adapter / "tokenizer_config.json").is_file() else base, local_files_only=True)
    except Exception as exc:
        raise ExportError(f"Could not merge the policy of run {run_id} into {base}: "
                          f"{_first_line(exc)}") from exc

    def save_merged(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return _write_folder(out, tmp, card, save_merged)


def _write_folder(out: Path, tmp: Path, card, fill) -> Path:
    """Fill ``tmp``, add the model card, then swap it in as ``out``: a failed export leaves
    no half-written folder behind."""
    try:
        fill(tmp)
        write_model_card(tmp, card)
        _replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"Could not write {out}: {exc.strerror or exc}") from exc
    return out


def _point_adapter_at_base(folder: Path, base: str) -> None:
    """PEFT finds the base model through ``base_model_name_or_path``; make sure it is there."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if not config.get("base_model_name_or_path"):
        config["base_model_name_or_path"] = base
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _replace(tmp: Path, out: Path) -> None:
    """The finished folder appears at ``out`` in one step: never a half-written export."""
    if out.exists():
        out.rmdir()
    tmp.rename(out)
