"""What every trainer sets up the same way: where it trains and in which number format, the
optimiser over its trainable weights (AdamW, gradient clipping, fp16 loss scaling), gradient
checkpointing on the base model, and the learning-rate schedule of the methods that train over
epochs of judged pairs."""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch

from desktop_app.core.config import TrainingConfig
from desktop_app.core.errors import UserError
from desktop_app.ml.models.device import DeviceChoice, cpu_has_fast_bf16, pick_device
from desktop_app.ml.training.distributed import device_for_rank, world


class PrecisionError(UserError):
    """The chosen device or number format is not available on this machine."""


def resolve_precision(cfg: TrainingConfig) -> tuple[DeviceChoice, torch.dtype | None]:
    """Where to train, the dtype of the frozen base weights, and the autocast dtype (None for
    fp32). "auto" is bf16 on a GPU that supports it (else fp16), bf16 on a CPU with bf16
    instructions, else fp32. The trainable weights stay fp32 whatever this says (master
    weights), so only the frozen base and the matmuls are in half precision."""
    try:
        device = device_for_rank(pick_device(cfg.device, "float32").device)
    except ValueError as exc:
        raise PrecisionError(str(exc)) from exc
    cuda = device.startswith("cuda")
    cpu = device.startswith("cpu")
    precision = cfg.precision
    if precision == "auto":
        if cuda:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu and cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and not cuda:
        raise PrecisionError(f"Precision fp16 needs a CUDA GPU; choose auto, bf16 or fp32 to "
                             f"train on {device}.")
    if precision == "bf16" and not (cuda or cpu):
        raise PrecisionError(f"Precision bf16 is not available for training on {device}; "
                             "choose auto or fp32.")
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise PrecisionError("This GPU does not support bf16; choose fp16 or auto.")
    names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
    choice = DeviceChoice(device, names[precision])
    return choice, None if precision == "fp32" else choice.torch_dtype


def autocast(dtype: torch.dtype | None, device: str):
    """Half-precision matmuls on ``device`` (CUDA, or a CPU in bf16); nothing in fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def enable_gradient_checkpointing(base: torch.nn.Module) -> None:
    """Recompute activations in the backward pass. Non-reentrant checkpointing works with
    frozen inputs; input grads on the embeddings are what peft needs should a model force
    reentrant checkpointing (transformers 5 adds that hook itself; a second one is harmless)."""
    enable = getattr(base, "activation_checkpointing_enable", None)
    if enable is not None:
        enable({"use_reentrant": False})
    else:  # the name in earlier transformers 5 releases
        base.gradient_checkpointing_enable({"use_reentrant": False})
    base.enable_input_require_grads()


class Optimiser:
    """AdamW over ``params`` (fp32 master weights), clipped to ``cfg.max_grad_norm``, with a
    loss scaler when autocast runs in fp16. A step is ``backward`` (any number of times),
    ``clip`` (the global gradient norm, for logs and checks; under torchrun it first sums the
    gradients over the ranks), then ``apply``."""

    def __init__(self, named: list[tuple[str, torch.nn.Parameter]], cfg: TrainingConfig,
                 device: str, autocast_dtype: torch.dtype | None):
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        self.adamw = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                       fused=device.startswith("cuda") or None)
        self.scaler = (torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16
                       else None)

    def set_lr(self, lr: float) -> None:
        for group in self.adamw.param_groups:
            group["lr"] = lr

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def clip(self) -> torch.Tensor:
        # Under torchrun: every rank's gradients, summed (each rank's loss was divided by the
        # global batch), so every rank clips and steps the same.
        world().sum_gradients(self.params)
        if self.scaler:
            self.scaler.unscale_(self.adamw)
        return torch.nn.utils.clip_grad_norm_(self.params, self.max_norm).detach().float()

    def apply(self) -> None:
        if self.scaler:
            self.scaler.step(self.adamw)
            self.scaler.update()
        else:
            self.adamw.step()
        self.adamw.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"optimizer": self.adamw.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "param_names": self.names}

    def load_state_dict(self, state: dict) -> None:
        self.adamw.load_state_dict(state["optimizer"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def learning_rate(cfg, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) for a config with ``lr``,
    ``warmup_ratio`` and ``scheduler`` (reward model, DPO): linear warm-up, then cosine,
    linear or constant. A pure function of the step (nanoGPT's get_lr), so the scheduler's
    whole state is the step number. Warm-up starts above zero and decay ends just above zero,
    so no step is wasted at lr 0."""
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / (warmup + 1)
    if cfg.scheduler == "constant":
        return cfg.lr
    progress = (step - warmup) / max(1, total_steps - warmup)
    if cfg.scheduler == "linear":
        return cfg.lr * (1.0 - progress)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
