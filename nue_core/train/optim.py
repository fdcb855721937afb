"""AdamW over the trainable parameters and the warm-up-then-decay learning-rate schedule."""

from __future__ import annotations

import math

import torch

from nue_core.train.config import TrainConfig


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: matrices decay, biases and norm gains (1-d) do not."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    if not decay and not no_decay:
        from nue_core.errors import ConfigError

        raise ConfigError("the model has no trainable parameters; check trainable/freeze/lora in its config")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over trainable parameters only (frozen ones get no optimizer state)."""
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, betas=config.betas)


def lr_factor(step: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak lr after ``step`` optimizer steps: linear warm-up, then decay."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        decayed = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        decayed = 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decayed


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over ``lr_factor``; its state_dict is plain numbers (JSON in checkpoints)."""
    def factor(step: int) -> float:
        return lr_factor(step, config.warmup_steps, total_steps, config.schedule, config.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
