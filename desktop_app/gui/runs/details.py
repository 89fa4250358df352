"""The Runs page's details pane: the HTML that describes the selected run, or the overlaid runs.

A plain function of the runs (no widget state), so the page re-renders it whenever a run
changes. Links are ``<a href='ID'>`` to other runs: the page's browser turns a click on one into
selecting that run. A run's settings are listed by the names its form gives them ("Learning
rate 0.0002"), nested settings (a generate run's sampling) under their own heading, never as
the stored JSON.
"""

from __future__ import annotations

import html
from dataclasses import fields
from typing import Callable

from desktop_app.core.config import (
    DPOConfig,
    EvalConfig,
    PPOConfig,
    RewardConfig,
    RLOOConfig,
    SamplingConfig,
)
from desktop_app.core.runs.record import Run, RunKind
from desktop_app.core.runs.summary import run_seconds
from desktop_app.gui.runs.table import KIND_LABELS, STATUS_COLOURS, fmt_time, parent_links
from desktop_app.gui.training.controller import duration

CONFIGS = {RunKind.REWARD: RewardConfig, RunKind.PPO: PPOConfig, RunKind.RLOO: RLOOConfig,
           RunKind.DPO: DPOConfig,
           RunKind.EVAL: EvalConfig, RunKind.GENERATE: SamplingConfig}
NESTED = {"sampling": SamplingConfig}
# Settings a job records beside its config's fields.
EXTRA_LABELS = {"base_model": "Base model", "model": "Model", "adapter": "Tuned policy",
                "device": "Device", "source": "Started from", "judgments": "Judgments",
                "policy_run_ids": "Policies in the data", "mode": "Judged by",
                "a": "Policy A", "b": "Policy B", "reward_run_id": "Reward model run",
                "prompt_source": "Prompts from", "prompts": "Prompts", "warnings": "Warnings",
                "pairs": "Pairs asked for", "versus_base": "Tuned against base"}

EMPTY_HTML = ("<p style='color:#6b7280'>Select a run to see its settings, result and "
              "files.</p>")


def details_html(ids: list[int], runs_by_id: dict[int, Run],
                 colour: Callable[[int], str]) -> str:
    """One run: its status, error, times, lineage, files and settings. Several: a legend of
    the overlay, each run in ``colour(run_id)`` as its curves are drawn."""
    runs = [runs_by_id[i] for i in ids if i in runs_by_id]
    if not runs:
        return EMPTY_HTML
    if len(runs) > 1:
        rows = "".join(
            f"<tr><td><span style='color:{colour(r.id)}'>■</span> "
            f"<a href='{r.id}'>#{r.id}</a></td>"
            f"<td>{html.escape(KIND_LABELS[r.kind])}</td>"
            f"<td style='color:{STATUS_COLOURS[r.status]}'>"
            f"{html.escape(r.status)}</td></tr>" for r in runs)
        return f"<b>{len(runs)} runs overlaid</b><table cellpadding='2'>{rows}</table>"
    return _one_run(runs[0], runs_by_id)


def _one_run(run: Run, runs_by_id: dict[int, Run]) -> str:
    seconds = run_seconds(run)
    colour = STATUS_COLOURS[run.status]
    title = (f"<p style='font-size:12pt'><b>Run #{run.id}</b> · "
             f"{html.escape(KIND_LABELS[run.kind])} · "
             f"<span style='color:{colour}'><b>{html.escape(run.status)}</b></span></p>")
    parts = [title]
    if run.error:
        parts.append("<p style='background:#fdecec; color:#8a1c1c; padding:4px; "
                     f"border:1px solid #f5c2c2'>{html.escape(run.error)}</p>")
    info = [("Started", fmt_time(run.created_at)),
            ("Finished", fmt_time(run.finished_at)),
            ("Duration", duration(seconds) if seconds is not None else "—")]
    rows = [f"<tr><td style='color:#6b7280'>{k}</td><td>{v}</td></tr>" for k, v in info]
    links = parent_links(run, runs_by_id)
    if links:
        # A deleted parent stays named (as plain text) so the lineage is still readable.
        rows.append("<tr><td style='color:#6b7280'>From</td><td>" + ", ".join(
            f"<a href='{rid}'>{html.escape(text)}</a>" if rid in runs_by_id
            else html.escape(text) for text, rid in links) + "</td></tr>")
    children = [r for r in runs_by_id.values() if any(
        rid == run.id for _, rid in parent_links(r, runs_by_id))]
    if children:
        rows.append("<tr><td style='color:#6b7280'>Used by</td><td>" + ", ".join(
            f"<a href='{c.id}'>{KIND_LABELS[c.kind]} #{c.id}</a>"
            for c in children) + "</td></tr>")
    came = run.config.get("imported_from")
    if isinstance(came, dict):  # trained elsewhere (export-job), brought home by import-run
        where = f"{came.get('folder', '?')}, run #{came.get('run_id', '?')} there"
        processes = run.config.get("world_size")
        where += f", {processes} processes" if processes else ""
        rows.append("<tr><td style='color:#6b7280'>Trained</td><td>as a job: "
                    f"{html.escape(where)}</td></tr>")
    if run.artifact:
        rows.append(f"<tr><td style='color:#6b7280'>Files</td>"
                    f"<td>{html.escape(run.artifact)}</td></tr>")
    parts.append("<table cellpadding='2'>" + "".join(rows) + "</table>")
    config = run.config
    if config:
        items = "".join(
            f"<tr><td colspan='2' style='padding-top:6px'><b>{html.escape(label)}</b></td></tr>"
            if value is None else
            f"<tr><td style='color:#6b7280'>{html.escape(label)}</td>"
            f"<td>{html.escape(value)}</td></tr>"
            for label, value in settings_rows(run.kind, config))
        parts.append("<p style='margin-top:8px'><b>Settings</b></p>"
                     f"<table cellpadding='1'>{items}</table>")
    return "".join(parts)


def _labels(config_type) -> dict[str, str]:
    if config_type is None:
        return {}
    return {f.name: f.metadata.get("label") or f.name.replace("_", " ").capitalize()
            for f in fields(config_type)}


def settings_rows(kind: RunKind, config: dict) -> list[tuple[str, str | None]]:
    """(label, value) for each setting in the order it was stored; a nested group of settings
    is a (heading, None) row followed by its own rows."""
    labels = _labels(CONFIGS.get(kind)) | EXTRA_LABELS
    rows: list[tuple[str, str | None]] = []
    nested = []
    for key, value in config.items():
        label = labels.get(key) or key.replace("_", " ").capitalize()
        if isinstance(value, dict) and "label" not in value:
            nested.append((label, _labels(NESTED.get(key)), value))
        else:
            rows.append((label, setting_text(value)))
    for heading, inner, values in nested:
        rows.append((heading, None))
        rows += [(inner.get(k) or k.replace("_", " ").capitalize(), setting_text(v))
                 for k, v in values.items()]
    return rows


def setting_text(value) -> str:
    """A setting as a person reads it: 0.0002 (not 0.00020000000000000001), yes/no, "—"."""
    if value is None or value == [] or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):   # a policy of an evaluation: its label says it
        return _short(str(value.get("label", value)))
    if isinstance(value, list):
        return _short(", ".join(setting_text(v) for v in value))
    return _short(str(value))


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "…"
