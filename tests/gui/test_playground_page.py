"""The Playground page with tiny models: a prompt and Ctrl+Enter fill both panes live and put
the reward model's scores under them; Stop stops; problems arrive as a dialog, not a traceback."""

from __future__ import annotations

import json

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from desktop_app.core.config import RewardConfig

pytestmark = [pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning"),
              pytest.mark.slow]  # loads models and generates


def _policy_adapter(base_dir, out_dir, scale: float = 0.5) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from desktop_app.ml.reward.model import lora_targets

    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    peft = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                            target_modules=lora_targets(model, "all-linear")))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, scale)
    peft.save_pretrained(out_dir)


def _reward_adapter(base_dir, run_dir) -> None:
    from desktop_app.ml.models.device import pick_device
    from desktop_app.ml.reward.model import build_reward_model, load_tokenizer

    tokenizer = load_tokenizer(base_dir)
    torch.manual_seed(0)
    model = build_reward_model(base_dir, tokenizer, pick_device("cpu"),
                               cfg=RewardConfig(lora_r=4, lora_alpha=8))
    model.save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "adapter")
    (run_dir / "reward_stats.json").write_text(json.dumps({"mean": 0.1, "std": 0.5}))


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory, tiny_chat_model):
    root = tmp_path_factory.mktemp("playground-artifacts")
    _policy_adapter(tiny_chat_model, root / "policy")
    _reward_adapter(tiny_chat_model, root / "reward")
    return root


def add_runs(store, workspace, base_dir, artifacts, policy_artifact=None) -> tuple[int, int]:
    """A completed reward run and a completed PPO run on it, as training leaves them."""
    import shutil

    reward = store.create_run("reward", {"base_model": str(base_dir)})
    reward_dir = workspace.runs_dir / f"{reward:04d}-reward"
    shutil.copytree(artifacts / "reward", reward_dir)
    store.finish_run(reward, "completed", artifact=str(reward_dir / "adapter"))
    ppo = store.create_run("ppo", {"base_model": str(base_dir), "reward_run_id": reward},
                           parent_run_id=reward)
    policy_dir = workspace.runs_dir / f"{ppo:04d}-ppo" / "policy"
    shutil.copytree(artifacts / "policy", policy_dir)
    store.finish_run(ppo, "completed", artifact=str(policy_artifact or policy_dir))
    return reward, ppo


@pytest.fixture
def dialogs(monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "warning",
                        lambda parent, title, text, *a, **k: shown.append(text))
    return shown


def open_page(window, max_new_tokens: int = 24):
    window.show_page("Playground")
    page = window.playground_page
    page.device = "cpu"
    cfg = page.form.value()
    cfg.max_new_tokens = max_new_tokens
    page.form.set_value(cfg)
    return page


def test_run_fills_both_panes_and_scores_them(qtbot, window, workspace, store, tiny_chat_model,
                                              tiny_artifacts, dialogs):
    reward, ppo = add_runs(store, workspace, tiny_chat_model, tiny_artifacts)
    page = open_page(window)
    assert page.policy_box.currentData() == ppo
    assert page.policy_box.currentText() == f"PPO run {ppo} (reward run {reward})"
    assert page.reward_box.currentData() == reward  # the policy's own reward model
    assert page.panes["policy"].title.text() == f"Tuned policy (PPO run {ppo})"
    assert "tiny-llama" in page.base_label.text()

    redraws = []
    original = type(page.panes["base"]).show_text

    def spy(pane, text, streaming=False):
        redraws.append(streaming)
        original(pane, text, streaming)

    for pane in page.panes.values():
        pane.show_text = spy.__get__(pane)
    deltas = []
    page.prompt_edit.setPlainText("Tell me about cats.")
    page.new_seed_box.setChecked(False)
    page.seed_box.setValue(1234)
    qtbot.keyClick(page.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert page.running and not page.run_button.isEnabled() and page.stop_button.isEnabled()
    page.job.event.connect(deltas.append)
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)
    assert not dialogs, dialogs

    result = page.last_result
    assert result is not None and not result.stopped and result.seed == 1234
    for side in ("base", "policy"):
        pane = page.panes[side]
        assert pane.text == result.responses[side].text
        assert "tokens" in pane.footer.text()
        assert pane.score.text() == f"{result.scores[side].normalised:+.2f}"
        assert "normalised" in pane.caption.text()
        assert pane.meta.text() == "seed 1234"
    assert result.responses["base"].tokens != result.responses["policy"].tokens
    assert "0 = an average judged response" in page.explain.text()
    assert "Done" in page.status.text()
    # Redraws are coalesced: never more than one per text delta.
    assert redraws.count(True) <= max(1, len(deltas))

    # Same seed, same choices: the models stay loaded and the responses repeat.
    session_pg = page.session.playground
    page.run()
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)
    assert page.session.playground is session_pg
    assert page.last_result.responses["base"].text == result.responses["base"].text

    page.prompt_edit.setFocus()
    page.grab().save(str(workspace.root / "playground.png"))
    page.shutdown()
    assert page.session is None


def test_base_only_without_a_tuned_policy(qtbot, window, workspace, store, tiny_chat_model,
                                          dialogs):
    page = open_page(window)
    assert page.policy_box.currentData() is None and page.reward_box.currentData() is None
    page.set_base_model(str(tiny_chat_model))
    page.prompt_edit.setPlainText("Write a poem about rain.")
    page.run()
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)
    assert not dialogs, dialogs
    assert set(page.last_result.responses) == {"base"}
    assert page.panes["base"].text == page.last_result.responses["base"].text
    assert page.panes["base"].caption.text() == "no reward model chosen"
    assert "Choose a tuned policy" in page.panes["policy"].browser.toPlainText()
    page.shutdown()


def test_stop_cuts_the_run_short(qtbot, window, workspace, store, tiny_chat_model,
                                 tiny_artifacts, dialogs, monkeypatch):
    from desktop_app.ml.generation.playground import PlaygroundSession, TextDelta

    # The worker waits after its first streamed text until the page has asked it to stop, so
    # the stop lands mid-generation however short the tiny model's answers happen to be
    # (a free race let both sides reach end-of-text first on some seeds).
    real_run = PlaygroundSession.run

    def run_until_stopped(self, request, emit, stop):
        def emit_then_wait(event):
            emit(event)
            if isinstance(event, TextDelta):
                assert stop._event.wait(30), "the page never asked the worker to stop"
        return real_run(self, request, emit=emit_then_wait, stop=stop)

    monkeypatch.setattr(PlaygroundSession, "run", run_until_stopped)
    add_runs(store, workspace, tiny_chat_model, tiny_artifacts)
    page = open_page(window, max_new_tokens=400)
    page.prompt_edit.setPlainText("How do I boil an egg?")
    page.run()
    page.job.event.connect(lambda e: isinstance(e, TextDelta) and page.stop())
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)
    assert not dialogs, dialogs
    result = page.last_result
    assert result.stopped and not result.scores
    assert all(len(c.tokens) < 400 for c in result.responses.values())
    assert "Stopped" in page.status.text()
    assert page.panes["base"].caption.text() == "not scored"
    assert page.run_button.isEnabled() and not page.stop_button.isEnabled()
    page.shutdown()


def test_problems_are_shown_in_a_dialog(qtbot, window, workspace, store, tiny_chat_model,
                                        tiny_artifacts, dialogs):
    page = open_page(window)
    page.base_model = None

    page.prompt_edit.setPlainText("")
    page.run()
    assert "Type a prompt" in page.status.text() and not dialogs

    page.prompt_edit.setPlainText("Hello")
    page.run()
    assert dialogs and "No base model" in dialogs[-1]

    # A PPO run whose policy folder has gone.
    _, ppo = add_runs(store, workspace, tiny_chat_model, tiny_artifacts,
                      policy_artifact=workspace.root / "gone" / "policy")
    page.refresh()
    page.policy_box.setCurrentIndex(page.policy_box.findData(ppo))
    page.run()
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)
    assert "missing" in dialogs[-1] and "Traceback" not in dialogs[-1]
    assert not dialogs[-1].startswith("ValueError")
    assert page.status.property("error") == "true"
    assert page.run_button.isEnabled()
    page.shutdown()


def test_training_frees_models_held_on_a_gpu_between_runs(qtbot, window, workspace, store,
                                                          tiny_chat_model, dialogs, monkeypatch):
    from desktop_app.ml.generation.playground import PlaygroundSession

    page = open_page(window)
    page.set_base_model(str(tiny_chat_model))
    page.prompt_edit.setPlainText("Hello")
    page.run()
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)
    assert page.session is not None and page.session.playground is not None
    # On the CPU the models stay: main memory is not what training is short of.
    window.reward_page.training_started.emit()
    assert page.session is not None
    window.reward_page.training_finished.emit()

    monkeypatch.setattr(PlaygroundSession, "on_accelerator", lambda self: True)  # as on a GPU
    window.reward_page.training_started.emit()
    assert page.session is None and "freed for training" in page.status.text()
    window.reward_page.training_finished.emit()
    page.run()  # the next run loads them again
    qtbot.waitUntil(lambda: not page.running, timeout=120_000)
    assert page.last_result is not None and page.session is not None
    assert not dialogs, dialogs
    page.shutdown()


def test_serve_starts_and_stops_the_chosen_policy_for_other_apps(qtbot, window, workspace,
                                                                 store, tiny_chat_model,
                                                                 tiny_artifacts):
    """"Serve to other apps": the chosen policy behind an OpenAI-compatible address on this
    machine, its requests counted, its prompts kept when asked, stopped on request."""
    import openai

    _, ppo = add_runs(store, workspace, tiny_chat_model, tiny_artifacts)
    page = open_page(window)
    panel = page.serve
    panel.port.setValue(0)  # any free port
    panel.collect.setChecked(True)
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.server is not None, timeout=60_000)
    assert panel.button.text() == "Stop serving" and not panel.port.isEnabled()
    model_id = f"{tiny_chat_model.name}-ppo-{ppo}"
    assert model_id in panel.status.text() and panel.server.url in panel.status.text()

    reply = openai.OpenAI(base_url=panel.server.url, api_key="-", max_retries=0).chat \
        .completions.create(model=model_id, max_tokens=4,
                            messages=[{"role": "user", "content": "Served prompt?"}])
    assert reply.choices[0].message.role == "assistant"
    qtbot.waitUntil(lambda: "1 request" in panel.status.text(), timeout=5_000)
    assert "Served prompt?" in {p["text"] for p in store.list_prompts()}

    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)
    assert panel.server is None and panel.status.text() == "Stopped after 1 request."
    assert panel.button.text() == "Start serving"
