"""RLOO: PPO's page (``ppo_page.PPOPage``) with RLOO's settings form and charts: the spread of
rewards within each prompt's group instead of the value model's loss."""

from __future__ import annotations

from desktop_app.core.config import RLOOConfig
from desktop_app.core.runs.record import RunKind
from desktop_app.gui.training.ppo_page import PPOPage

CHARTS = [
    ("Reward-model score", [("objective/scores", "score"),
                            ("objective/rlhf_reward", "rlhf reward")]),
    ("KL to the reference", [("objective/kl", "KL")]),
    ("Policy loss", [("loss/policy", "policy")]),
    ("Spread in groups", [("objective/group_reward_std", "reward std")]),
    ("Clip fraction", [("policy/clipfrac", "policy")]),
    ("Response length", [("response/length_mean", "tokens")]),
]


class RLOOPage(PPOPage):
    method = "RLOO"
    kind = RunKind.RLOO
    config_type = RLOOConfig
    command = "train-rloo"
    charts_spec = CHARTS

    @staticmethod
    def train_fn():
        from desktop_app.ml.rloo.train import train_rloo
        return train_rloo
