"""The Runs page: table, overlays from stored metrics, CSV/PNG export, delete (no models needed)."""

import csv
import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox

from desktop_app.core.data.store import GenerationIn
from desktop_app.core.runs.record import Run, RunKind, RunStatus
from desktop_app.core.runs.summary import key_metric, run_seconds
from desktop_app.gui.runs.page import RunsPage
from desktop_app.gui.runs.table import COLUMNS, parent_links


def _stamp(minutes_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()


def _set_times(store, run_id, started_ago, took=None):
    store.db.execute("UPDATE runs SET created_at = ?, finished_at = ? WHERE id = ?",
                     [_stamp(started_ago),
                      _stamp(started_ago - took) if took is not None else None, run_id])
    store.db.conn.commit()


def _reward_metrics(steps, seed, acc):
    rng = random.Random(seed)
    points = []
    for s in range(1, steps + 1):
        loss = 0.69 * math.exp(-s / (steps / 3)) + 0.05 + rng.uniform(-0.05, 0.05)
        points += [(s, "train/loss", loss),
                   (s, "train/accuracy", min(1.0, 0.5 + 0.5 * (1 - math.exp(-s / 10))
                                             + rng.uniform(-0.1, 0.05))),
                   (s, "train/lr", 1e-3 * (1 - s / steps))]
        if s % 10 == 0 or s == steps:
            points += [(s, "eval/loss", 0.5 - 0.2 * s / steps), (s, "eval/accuracy", acc)]
    return points


def _ppo_metrics(steps, seed, gain):
    rng = random.Random(seed)
    points = []
    for s in range(1, steps + 1):
        points += [(s, "objective/scores", -0.1 + gain * s / steps + rng.uniform(-0.15, 0.15)),
                   (s, "objective/kl", 0.08 * s + rng.uniform(0, 0.3)),
                   (s, "loss/policy", rng.uniform(-0.03, 0.02)),
                   (s, "loss/value", 0.3 * math.exp(-s / 10) + 0.04 + rng.uniform(0, 0.02)),
                   (s, "objective/entropy", 1.3 + rng.uniform(-0.1, 0.1)),
                   (s, "policy/clipfrac", 0.05 + 0.07 * math.exp(-s / 3)),
                   (s, "objective/kl_coef", 0.05)]
    return points


def build_runs(store, workspace):
    """A realistic history: pairs, a reward model, PPO, the next round, a failed and a
    running PPO run and a blind evaluation. Returns the run ids by role."""
    ids = {}
    runs_dir = workspace.runs_dir
    ids["gen"] = store.create_run("generate", {"model": "/models/demo-chat-model", "pairs": 48})
    store.add_metrics(ids["gen"], [(1, "generate/pairs", 48), (1, "generate/tokens_per_s", 412.5)])
    store.finish_run(ids["gen"], "completed")
    _set_times(store, ids["gen"], 180, 3.2)

    ids["reward"] = store.create_run("reward", {"base_model": "/models/demo-chat-model",
                                                "epochs": 8, "learning_rate": 1e-3})
    store.add_metrics(ids["reward"], _reward_metrics(48, 1, 0.917))
    adapter = runs_dir / f"{ids['reward']:04d}-reward" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    store.finish_run(ids["reward"], "completed", artifact=str(adapter))
    _set_times(store, ids["reward"], 170, 0.1)

    ids["ppo"] = store.create_run("ppo", {"base_model": "/models/demo-chat-model", "steps": 30,
                                          "kl_coef": 0.05}, parent_run_id=ids["reward"])
    store.add_metrics(ids["ppo"], _ppo_metrics(30, 2, 0.7))
    policy = runs_dir / f"{ids['ppo']:04d}-ppo" / "policy"
    policy.mkdir(parents=True)
    (policy / "adapter_model.safetensors").write_bytes(b"\0" * 2048)
    store.finish_run(ids["ppo"], "completed", artifact=str(policy))
    _set_times(store, ids["ppo"], 160, 0.75)

    ids["reward2"] = store.create_run("reward", {"base_model": "/models/demo-chat-model",
                                                 "epochs": 8, "policy_run_ids": [ids["ppo"]]},
                                      parent_run_id=ids["ppo"])
    store.add_metrics(ids["reward2"], _reward_metrics(60, 3, 0.883))
    store.finish_run(ids["reward2"], "completed")
    _set_times(store, ids["reward2"], 90, 0.2)

    ids["failed"] = store.create_run("ppo", {"base_model": "/models/demo-chat-model"},
                                     parent_run_id=ids["reward2"])
    store.add_metrics(ids["failed"], _ppo_metrics(4, 4, 0.1))
    store.finish_run(ids["failed"], "failed", error="Out of GPU memory at step 5: lower the "
                     "batch size or turn on gradient checkpointing.")
    _set_times(store, ids["failed"], 60, 1.5)

    ids["eval"] = store.create_run("eval", {"policy_a": ids["ppo"], "policy_b": "base"},
                                   parent_run_id=ids["ppo"])
    store.add_metrics(ids["eval"], [(0, "eval/win_rate", 0.625), (0, "eval/ci_low", 0.41),
                                    (0, "eval/ci_high", 0.80), (0, "eval/n", 24),
                                    (0, "eval/rm_win_rate", 0.75), (0, "eval/rm_ci_low", 0.55),
                                    (0, "eval/rm_ci_high", 0.88), (0, "eval/rm_n", 24)])
    store.finish_run(ids["eval"], "completed")
    _set_times(store, ids["eval"], 40, 2)

    ids["running"] = store.create_run("ppo", {"base_model": "/models/demo-chat-model",
                                              "steps": 60}, parent_run_id=ids["reward2"])
    store.add_metrics(ids["running"], _ppo_metrics(12, 5, 0.4))
    _set_times(store, ids["running"], 3)
    return ids


@pytest.fixture
def runs(store, workspace):
    return build_runs(store, workspace)


@pytest.fixture
def page(qtbot, workspace, store, runs):
    page = RunsPage(workspace, store)
    qtbot.addWidget(page)
    page.resize(1240, 800)
    return page


def _table(page):
    model = page.proxy
    return [[model.index(r, c).data() for c in range(len(COLUMNS))]
            for r in range(model.rowCount())]


def _run(kind: RunKind, status: RunStatus = RunStatus.COMPLETED, **fields) -> Run:
    return Run(id=fields.pop("id", 1), kind=kind, status=status, **fields)


def test_row_texts():
    final = {"objective/scores": 0.615, "objective/kl": 1.923}
    assert key_metric(_run(RunKind.PPO), final) == ("score +0.615 · KL 1.923", 0.615)
    reward = _run(RunKind.REWARD)
    assert key_metric(reward, {"eval/accuracy": 0.9167})[0] == "val accuracy 0.917"
    assert key_metric(reward, {"eval/accuracy": 0.75, "eval/pairs": 4.0})[0] == \
        "val accuracy 0.750 on 4 pairs"
    assert key_metric(_run(RunKind.EVAL), {"eval/win_rate": 0.625, "eval/ci_low": 0.41,
                                           "eval/ci_high": 0.8, "eval/n": 24})[0] == \
        "win rate 62% (95% CI 41%–80%, n = 24)"
    judging = _run(RunKind.EVAL, RunStatus.JUDGING)
    assert key_metric(judging, {"eval/rm_win_rate": 0.7, "eval/rm_ci_low": 0.5,
                                "eval/rm_ci_high": 0.85})[0] \
        == "reward model: win rate 70% (95% CI 50%–85%) · waiting for your judgments"
    assert key_metric(judging, {})[0] == "waiting for your judgments"
    assert key_metric(_run(RunKind.GENERATE), {"generate/tokens_per_s": 412.5,
                                               "generate/pairs": 48})[0] == \
        "48 pairs · 412 tokens/s"
    runs = {1: _run(RunKind.PPO)}
    assert parent_links(_run(RunKind.EVAL, id=3, parent_run_id=1,
                             config={"policy_run_ids": [2, 1]}), runs) == [
        ("PPO #1", 1), ("policy #2 (deleted)", 2)]
    assert parent_links(_run(RunKind.EVAL, id=3, parent_run_id=9), runs) == [
        ("run #9 (deleted)", 9)]
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    run = _run(RunKind.PPO, RunStatus.RUNNING, created_at=start.isoformat())
    assert run_seconds(run, now=start + timedelta(seconds=75)) == 75
    assert run_seconds(_run(RunKind.PPO, RunStatus.FAILED, created_at=start.isoformat())) is None


def test_table_lists_every_run_with_result_and_parents(page, runs):
    rows = _table(page)
    assert [r[0] for r in rows] == [f"#{i}" for i in sorted(runs.values(), reverse=True)]
    by_id = {r[0]: r for r in rows}
    ppo = by_id[f"#{runs['ppo']}"]
    assert ppo[1] == "PPO" and "completed" in ppo[2] and ppo[4] == "0:45"
    assert ppo[5].startswith("score ") and "KL" in ppo[5]
    assert ppo[6] == f"reward model #{runs['reward']}"
    assert by_id[f"#{runs['reward2']}"][6] == f"policy #{runs['ppo']}"
    assert by_id[f"#{runs['eval']}"][5] == \
        "win rate 62% (95% CI 41%–80%, n = 24) · reward model 75%"
    assert by_id[f"#{runs['gen']}"][5] == "48 pairs · 412 tokens/s"
    failed = by_id[f"#{runs['failed']}"]
    assert "failed" in failed[2]
    index = page.proxy.index([r[0] for r in rows].index(f"#{runs['failed']}"), 2)
    assert "Out of GPU memory" in index.data(3)  # ToolTipRole
    running = by_id[f"#{runs['running']}"]
    assert "running" in running[2] and running[4].startswith("3:0")
    assert page.summary.text() == f"{len(runs)} runs · 1 running"

    # Sorting by the result column orders PPO runs by score, not by text.
    page.kind_filter.setCurrentIndex(page.kind_filter.findData("ppo"))
    assert {r[1] for r in _table(page)} == {"PPO"}
    page.table.sortByColumn(5, page.table.horizontalHeader().sortIndicatorOrder().AscendingOrder)
    scores = [page.proxy.index(r, 5).data(page.proxy.sortRole()) for r in
              range(page.proxy.rowCount())]
    assert scores == sorted(scores)


def test_failed_run_details_show_the_error(page, runs):
    page.select_runs([runs["failed"]])
    text = page.details.toPlainText()
    assert "Out of GPU memory at step 5" in text and f"Run #{runs['failed']}" in text


def test_overlay_charts_hold_exactly_the_stored_values(page, store, runs):
    page.select_runs([runs["ppo"], runs["failed"]])
    assert page.charts.run_ids == sorted([runs["ppo"], runs["failed"]], reverse=True)
    assert "objective/scores" in page.charts.checked_metrics()
    page.charts.smoothing.setValue(0)
    chart = next(c for c in page.charts.board.charts if c.metric_name == "objective/scores")
    assert len(chart.raw_curves) == 2
    colours = set()
    for run_id in (runs["ppo"], runs["failed"]):
        stored = store.metrics(run_id, "objective/scores")
        key = f"objective/scores@{run_id}"
        x, y = chart.raw_curves[key].getData()
        assert list(x) == [p["step"] for p in stored]
        assert list(y) == [p["value"] for p in stored]
        _, s = chart.smooth_curves[key].getData()
        assert list(s) == [p["value"] for p in stored]   # smoothing 0: raw values
        colours.add(chart.smooth_curves[key].opts["pen"].color().name())
    assert len(colours) == 2   # one colour per run
    legend = [label.text for _, label in chart.getPlotItem().legend.items]
    assert legend == [f"#{r} PPO" for r in page.charts.run_ids]

    # Smoothing draws an EMA over the faint raw curve.
    page.charts.smoothing.setValue(80)
    key = f"objective/scores@{runs['ppo']}"
    _, raw = chart.raw_curves[key].getData()
    _, smooth = chart.smooth_curves[key].getData()
    assert chart.raw_curves[key].isVisible() and list(smooth) != list(raw)


@pytest.mark.slow  # draws many charts
def test_metric_chooser_groups_by_namespace_and_charts_the_ticked(page, runs, qtbot):
    page.select_runs([runs["reward"]])
    groups = [page.charts.metric_tree.topLevelItem(i).text(0)
              for i in range(page.charts.metric_tree.topLevelItemCount())]
    assert groups == ["eval/", "train/"]
    # The usual reward-model charts, losses on the first row, accuracies on the second.
    assert [c.metric_name for c in page.charts.board.charts] == [
        "train/loss", "eval/loss", "train/accuracy", "eval/accuracy"]
    assert set(page.charts.checked_metrics()) == {c.metric_name for c in page.charts.board.charts}
    page.charts.set_metrics(["train/lr"])
    assert [c.metric_name for c in page.charts.board.charts] == ["train/lr"]
    # Ticking a whole group charts every metric in it.
    from PySide6.QtCore import Qt
    page.charts.metric_tree.topLevelItem(0).setCheckState(0, Qt.CheckState.Checked)
    qtbot.waitUntil(lambda: len(page.charts.board.charts) == 3)
    assert {c.metric_name for c in page.charts.board.charts} == {"train/lr", "eval/accuracy",
                                                                 "eval/loss"}
    # The choice is kept when another run of the same kind is opened.
    page.select_runs([runs["reward2"]])
    assert {c.metric_name for c in page.charts.board.charts} == {"train/lr", "eval/accuracy",
                                                                 "eval/loss"}


def test_running_run_is_followed_live(page, store, runs):
    page.select_runs([runs["running"]])
    chart = next(c for c in page.charts.board.charts if c.metric_name == "objective/kl")
    key = f"objective/kl@{runs['running']}"
    assert len(chart.buffers[key].data()[0]) == 12
    store.add_metrics(runs["running"], [(13, "objective/kl", 2.5), (13, "objective/scores", 0.3)])
    page._tick()
    page.charts.board.redraw_all()
    x, y = chart.raw_curves[key].getData()
    assert x[-1] == 13 and y[-1] == 2.5
    store.finish_run(runs["running"], "completed")
    page._tick()
    row = next(r for r in _table(page) if r[0] == f"#{runs['running']}")
    assert "completed" in row[2]
    assert page.summary.text() == f"{len(runs)} runs"


def test_new_run_appears_on_tick(page, store, runs):
    new = store.create_run("generate", {"model": "m"})
    page._tick()
    assert _table(page)[0][0] == f"#{new}"


def test_export_csv_of_selected_runs(page, store, runs, tmp_path):
    page.select_runs([runs["gen"], runs["eval"]])
    target = page.export_csv(str(tmp_path / "metrics.csv"))
    assert target == tmp_path / "metrics.csv"
    with open(target, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["run_id", "step", "name", "value"]
    expected = [[str(r), str(p["step"]), p["name"], repr(p["value"])]
                for r in page.selected_run_ids() for p in store.metrics(r)]
    assert rows[1:] == expected
    assert f"Wrote {len(expected)} metric points" in page.status_line.text()


def test_export_csv_error_is_a_message_not_a_traceback(page, runs, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a: shown.append(a[2]))
    page.select_runs([runs["gen"]])
    assert page.export_csv(str(tmp_path / "missing" / "m.csv")) is None
    assert shown and str(tmp_path / "missing" / "m.csv") in shown[0]


@pytest.mark.slow  # draws and renders the charts
def test_export_png_is_the_chart_area(page, runs, tmp_path, qtbot):
    page.show()
    qtbot.waitExposed(page)
    page.select_runs([runs["ppo"], runs["failed"]])
    target = page.export_png(str(tmp_path / "charts"))
    assert target == tmp_path / "charts.png"
    image = QImage(str(target))
    assert not image.isNull()
    ratio = page.charts.board.devicePixelRatioF()
    assert (image.width(), image.height()) == (round(page.charts.board.width() * ratio),
                                               round(page.charts.board.height() * ratio))
    assert image.width() > 400 and image.height() > 400
    # Not blank: the curves put more than one colour in the picture.
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
               for y in range(0, image.height(), 7)}
    assert len(colours) > 10


def test_delete_asks_first_then_removes_rows_and_folder(page, store, workspace, runs,
                                                        monkeypatch):
    asked = []

    def answer(parent, title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", answer)
    folder = workspace.runs_dir / f"{runs['reward']:04d}-reward"
    page.select_runs([runs["reward"]])
    assert page.delete_selected() == []
    text = asked[0]
    assert f"Run #{runs['reward']} (reward model, completed)" in text
    assert str(folder) in text and "KB" in text and "metric points" in text
    assert f"Run #{runs['ppo']} was made from it" in text and "lose their link" in text
    assert store.get_run(runs["reward"]) is not None and folder.is_dir()

    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a: QMessageBox.StandardButton.Yes)
    done = page.delete_selected()
    assert [d.run_id for d in done] == [runs["reward"]]
    assert store.get_run(runs["reward"]) is None and store.metrics(runs["reward"]) == []
    assert not folder.exists()
    assert store.get_run(runs["ppo"]).parent_run_id is None
    assert f"#{runs['reward']}" not in [r[0] for r in _table(page)]


def test_delete_refuses_a_running_run(page, store, runs, monkeypatch):
    told = []
    monkeypatch.setattr(QMessageBox, "information", lambda *a: told.append(a[2]))
    monkeypatch.setattr(QMessageBox, "question", lambda *a: pytest.fail("must not ask"))
    page.select_runs([runs["running"], runs["gen"]])
    assert page.delete_selected() == []
    assert "still running" in told[0]
    assert store.get_run(runs["running"]) and store.get_run(runs["gen"])


def test_delete_eval_run_removes_its_pairs(page, store, runs, monkeypatch):
    pid = store.add_prompt("Held-out prompt")
    store.add_pairs([(pid, GenerationIn("a", "m", run_id=runs["eval"]),
                      GenerationIn("b", "m", run_id=runs["eval"]))], eval_run_id=runs["eval"])
    store.add_pairs([(pid, GenerationIn("c", "m"), GenerationIn("d", "m"))])
    questions = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda p, t, text, *a: questions.append(text)
                        or QMessageBox.StandardButton.Yes)
    page.select_runs([runs["eval"]])
    page.delete_selected()
    assert "1 evaluation pair and its judgment" in questions[0]
    assert "2 generated responses" in questions[0]
    assert store.db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 1
    assert store.db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 2


def test_folder_that_cannot_be_removed_is_reported(page, store, workspace, runs, monkeypatch):
    from desktop_app.core.runs import files as run_files

    def fail(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(run_files, "_remove", fail)
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.Yes)
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a: warned.append(a[2]))
    page.select_runs([runs["ppo"]])
    page.delete_selected()
    assert store.get_run(runs["ppo"]) is None   # the database part is done either way
    assert "Could not remove" in warned[0] and f"{runs['ppo']:04d}-ppo" in warned[0]
    assert "Permission denied" in warned[0]


@pytest.mark.slow  # the whole main window
def test_runs_page_in_the_sidebar(window, runs):
    window.show_page("Runs")
    assert window.pages.currentWidget() is window.runs_page
    assert window.runs_page.model.rowCount() == len(runs)
    assert window.runs_page.timer.isActive()


@pytest.mark.slow  # draws many charts
def test_generate_metrics_are_charted_against_pairs_or_seconds(page, store, runs):
    from desktop_app.gui.runs.charts import TIME_LABEL
    # As the Judge page records generation: one point per batch, at the run's pair count.
    new = store.create_run("generate", {"model": "/models/m"})
    store.add_metrics(new, [(8, "generate/tokens_per_s", 410.0),
                            (16, "generate/tokens_per_s", 395.5),
                            (24, "generate/tokens_per_s", 402.0)])
    store.finish_run(new, "completed")
    # As it was recorded before: every batch at step 0, apart only in when it was written.
    old = store.create_run("generate", {"model": "/models/m"})
    store.add_metrics(old, [(0, "generate/tokens_per_s", v) for v in (300.0, 320.0, 310.0)])
    store.finish_run(old, "completed")
    _set_times(store, old, 10, 1)
    spread_metric_times(store, old, first=5, every=5)
    page.refresh()

    page.select_runs([new])
    chart = next(c for c in page.charts.board.charts if c.metric_name == "generate/tokens_per_s")
    x, y = chart.raw_curves[f"generate/tokens_per_s@{new}"].getData()
    assert list(x) == [8, 16, 24] and list(y) == [410.0, 395.5, 402.0]
    assert chart.getAxis("bottom").labelText == "pairs generated"

    page.select_runs([old])
    chart = next(c for c in page.charts.board.charts if c.metric_name == "generate/tokens_per_s")
    x, _ = chart.raw_curves[f"generate/tokens_per_s@{old}"].getData()
    assert list(x) == pytest.approx([5, 10, 15])   # a curve, not a vertical line at step 0
    assert chart.getAxis("bottom").labelText == TIME_LABEL


def test_empty_failed_runs_are_hidden_unless_asked_for(page, store, runs):
    empty = store.create_run("generate", {"model": "/models/m"})
    store.finish_run(empty, "failed", error="CUDA out of memory")
    with_pairs = store.create_run("generate", {"model": "/models/m"})
    pid = store.add_prompt("A prompt")
    store.add_pairs([(pid, GenerationIn("a", "m", run_id=with_pairs),
                      GenerationIn("b", "m", run_id=with_pairs))])
    store.finish_run(with_pairs, "failed", error="stopped half-way")
    page.refresh()
    shown = [r[0] for r in _table(page)]
    assert f"#{empty}" not in shown
    assert f"#{with_pairs}" in shown and f"#{runs['failed']}" in shown  # they left something
    assert page.summary.text().endswith("· 1 hidden")
    page.show_empty.setChecked(True)
    assert f"#{empty}" in [r[0] for r in _table(page)]
    assert "hidden" not in page.summary.text()


def test_settings_read_as_a_list_not_a_dict(page, store, runs):
    run = store.create_run("generate", {"model": "/models/m", "adapter": None,
                                        "sampling": {"temperature": 0.9, "top_p": 0.95,
                                                     "max_new_tokens": 128},
                                        "source": "gui"})
    store.add_metrics(run, [(4, "generate/tokens_per_s", 100.0)])
    store.finish_run(run, "completed")
    page.refresh()
    page.select_runs([run])
    text = page.details.toPlainText()
    assert "{" not in text and "'" not in text and "None" not in text
    for shown in ("Model", "/models/m", "Sampling", "Temperature", "0.9", "Top-p",
                  "Max new tokens", "128"):
        assert shown in text
    page.select_runs([runs["reward"]])
    text = page.details.toPlainText()
    assert "Learning rate" in text or "learning_rate" not in text
    assert "Epochs" in text and "8.0" not in text


def spread_metric_times(store, run: int, first: float, every: float) -> None:
    """Write a run's metric points ``first`` seconds after it started and ``every`` seconds
    apart, as a run that generated for a while would have them."""
    start = datetime.fromisoformat(store.get_run(run).created_at).timestamp()
    rows = store.db.execute("SELECT rowid FROM metrics WHERE run_id = ? ORDER BY rowid",
                            [run]).fetchall()
    for i, (rowid,) in enumerate(rows):
        store.db.execute("UPDATE metrics SET time = ? WHERE rowid = ?",
                         [start + first + every * i, rowid])
    store.db.conn.commit()
