"""Optimizer and learning-rate schedule, built with timm's own factories.

AdamW with no weight decay on biases and normalisation weights (timm's
``param_groups_weight_decay``), and timm's cosine schedule with a linear warm-up, stepped once per
optimizer update: after the last update the learning rate is exactly ``--eta-min``. Optionally
the fresh heads learn ``--head-lr-mult`` times faster than the backbone, and the backbone's layers
decay their rate towards the input (``--layer-decay``, timm's ``param_groups_layer_decay``); both
are ``lr_scale`` entries of the parameter groups, which timm's schedulers apply at every update.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from torch import nn


def create_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    head_lr_mult: float = 1.0,
    layer_decay: float | None = None,
) -> Any:
    """AdamW over the model. With ``head_lr_mult`` != 1 or a ``layer_decay``, a model with a
    ``backbone`` and ``heads`` gets separate groups: the heads' scaled by ``head_lr_mult``, the
    backbone's by ``layer_decay ** depth`` from the output (needs timm's ``group_matcher``)."""
    from timm.optim import create_optimizer_v2
    from timm.optim._param_groups import param_groups_layer_decay, param_groups_weight_decay

    backbone, heads = getattr(model, "backbone", None), getattr(model, "heads", None)
    if backbone is None or heads is None or (head_lr_mult == 1.0 and not layer_decay):
        return create_optimizer_v2(
            model, opt="adamw", lr=lr, weight_decay=weight_decay, filter_bias_and_bn=True
        )
    if layer_decay:
        if not hasattr(backbone, "group_matcher"):
            from skincls.core.errors import SkinclsError

            raise SkinclsError(
                f"--layer-decay: backbone {type(backbone).__name__} has no layer groups in timm "
                "(no group_matcher); leave --layer-decay off for it"
            )
        groups = param_groups_layer_decay(backbone, weight_decay, layer_decay=layer_decay)
    else:
        groups = param_groups_weight_decay(backbone, weight_decay)
    for g in param_groups_weight_decay(heads, weight_decay):
        groups.append({**g, "lr_scale": head_lr_mult})
    # every group starts at ``lr``: timm's scheduler multiplies by ``lr_scale`` from its first
    # update of the groups (at construction) on
    return create_optimizer_v2(groups, opt="adamw", lr=lr, weight_decay=weight_decay)


def create_scheduler(optimizer: Any, lr: float, eta_min: float, total: int, warmup: int) -> Any:
    """Cosine from ``lr`` to ``eta_min`` over ``total`` updates, the first ``warmup`` of them a
    linear ramp from ``lr / warmup``. Call ``step_update(n)`` after the n-th update."""
    from timm.scheduler import CosineLRScheduler

    warmup = min(warmup, max(total - 1, 0))
    quiet = _QuietLogger("timm.scheduler.cosine_lr")
    with warnings.catch_warnings(), quiet:
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


class _QuietLogger:
    """Holds a library logger's warnings back while open (timm logs, rather than warns, that a
    cosine over one update has no effect: true, and nothing a user can act on)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        self.logger.setLevel(self.level)


SCHEDULE_SHAPE = ("t_initial", "warmup_t", "warmup_lr_init", "warmup_prefix", "warmup_steps")
"""The fields of timm's cosine scheduler that follow from ``--epochs``; the rest is progress."""


def restore_scheduler(scheduler: Any, saved: dict[str, Any], updates: int) -> tuple[int, int]:
    """Load a resumed run's scheduler ``saved`` state into ``scheduler`` (built for the epochs
    the run is resumed with) and set the learning rate for update ``updates + 1``.

    When the run is resumed with other ``--epochs`` than its schedule was built for, the new
    schedule is kept: from here on the learning rate is the one a run started with the new
    number of epochs would have, not the old schedule's floor. Returns the totals of updates
    (saved, now); they differ exactly when the schedule was extended or shortened.
    """
    shape = {k: getattr(scheduler, k) for k in SCHEDULE_SHAPE}
    scheduler.load_state_dict(saved)
    before = scheduler.t_initial + (scheduler.warmup_t if scheduler.warmup_prefix else 0)
    for key, value in shape.items():
        setattr(scheduler, key, value)
    after = scheduler.t_initial + (scheduler.warmup_t if scheduler.warmup_prefix else 0)
    scheduler.step_update(num_updates=updates)
    return before, after
