"""Defaults that follow from how a run trains rather than from one fixed number.

The peak learning rate, when ``--lr`` is not given, follows the global batch (per-rank batch x
ranks x accumulation steps) by timm's rule for adaptive optimisers (its ``--lr-base-scale
sqrt``): ``BASE_LR * sqrt(global_batch / BASE_BATCH)``; linear scaling (Goyal et al., 2017) is
the rule for SGD. The base is the standard AdamW rate for fine-tuning pretrained weights; from
scratch the quality benchmark found no gain from a higher one (BENCHMARKS.md), so both regimes
share it.
"""

from __future__ import annotations

import math

BASE_LR = 3e-4
BASE_BATCH = 32


def scaled_lr(global_batch: int) -> float:
    """AdamW's default peak learning rate for ``global_batch`` images per update."""
    return BASE_LR * math.sqrt(global_batch / BASE_BATCH)


def resolve_lr(config, world_size: int):
    """``config`` with its learning rate set (unchanged when ``--lr`` was given), and the line
    the start-of-run summary prints about it (empty when given)."""
    if config.lr is not None:
        return config, ""
    batch = config.batch_size * world_size * config.accum_steps
    lr = float(f"{scaled_lr(batch):.3g}")
    note = (
        f"  lr {lr:g}: {BASE_LR:g} x sqrt(global batch {batch} / {BASE_BATCH}) "
        "(the default for AdamW; --lr sets it)"
    )
    from skincls.config import build_config

    return build_config({**config.model_dump(), "lr": lr}), note
