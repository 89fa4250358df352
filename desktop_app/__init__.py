"""RLHF Desk: the whole RLHF loop (judge, reward model, PPO, evaluate) on one workstation."""

__version__ = "0.1.0"
