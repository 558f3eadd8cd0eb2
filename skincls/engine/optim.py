"""Optimizer and learning-rate schedule, built with timm's own factories.

AdamW with no weight decay on biases and normalisation weights (timm's
``param_groups_weight_decay``), and timm's cosine schedule with a linear warm-up, stepped once per
optimizer update: after the last update the learning rate is exactly ``--eta-min``.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn


def create_optimizer(model: nn.Module, lr: float, weight_decay: float) -> Any:
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(
        model, opt="adamw", lr=lr, weight_decay=weight_decay, filter_bias_and_bn=True
    )


def create_scheduler(optimizer: Any, lr: float, eta_min: float, total: int, warmup: int) -> Any:
    """Cosine from ``lr`` to ``eta_min`` over ``total`` updates, the first ``warmup`` of them a
    linear ramp from ``lr / warmup``. Call ``step_update(n)`` after the n-th update."""
    from timm.scheduler import CosineLRScheduler

    warmup = min(warmup, max(total - 1, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm warns when the cosine spans a single update
        return CosineLRScheduler(
            optimizer,
            t_initial=max(total - warmup, 1),
            lr_min=eta_min,
            warmup_t=warmup,
            warmup_lr_init=lr / warmup if warmup else 0.0,
            warmup_prefix=True,
            t_in_epochs=False,
        )
