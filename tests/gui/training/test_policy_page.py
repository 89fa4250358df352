"""The Policy page: one tab per method (PPO, RLOO, DPO), each with its own generated form, start
button, memory plan and a sentence on when to pick it."""

from desktop_app.core.config import DPOConfig, PPOConfig, RLOOConfig


def test_one_tab_per_method_with_its_own_form_and_plan(window, tiny_chat_model):
    window.show_page("Policy")
    page = window.policy_page
    assert [page.tabs.tabText(i) for i in range(page.tabs.count())] == ["PPO", "RLOO", "DPO"]
    texts = set()
    for name, tab, config, command in (("PPO", window.ppo_page, PPOConfig, "train-ppo"),
                                       ("RLOO", window.rloo_page, RLOOConfig, "train-rloo"),
                                       ("DPO", window.dpo_page, DPOConfig, "train-dpo")):
        page.show_method(name)
        assert page.stack.currentWidget() is tab
        assert name in page.when.text()
        texts.add(page.when.text())
        assert isinstance(tab.form.value(), config)
        assert tab.start_button.text() == f"Start {name}"
        tab.set_base_model(str(tiny_chat_model))
        job = tab._plan_job()
        if name == "DPO":
            assert job.command == command
        else:  # PPO and RLOO need a reward model first
            assert job is None and not tab.start_button.isEnabled()
    assert len(texts) == 3
    # RLOO's own settings are on its form, and nothing of PPO's value model.
    fields = window.rloo_page.form.value().to_dict()
    assert {"k", "advantage"} <= set(fields) and "vf_coef" not in fields
