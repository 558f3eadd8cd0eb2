"""Defaults that follow from how a run trains rather than from one fixed number.

- The peak learning rate, when ``--lr`` is not given, follows the global batch (per-rank batch
  x ranks x accumulation steps) by timm's rule for adaptive optimisers (its ``--lr-base-scale
  sqrt``): ``BASE_LR * sqrt(global_batch / BASE_BATCH)``; linear scaling (Goyal et al., 2017)
  is the rule for SGD. The base is the standard AdamW rate for fine-tuning pretrained weights.
- The weight EMA, when ``--ema-decay`` is not given, is on (``EMA_DECAY``) when training from
  scratch, where the quality benchmark measured it (BENCHMARKS.md, issue 19's ablation), and
  off when fine-tuning pretrained weights, which could not be measured here.

Resolved once when a run starts and written to its ``config.yaml``; a resumed run keeps what it
started with.
"""

from __future__ import annotations

import math

BASE_LR = 3e-4
BASE_BATCH = 32
EMA_DECAY = 0.999


def scaled_lr(global_batch: int) -> float:
    """AdamW's default peak learning rate for ``global_batch`` images per update."""
    return BASE_LR * math.sqrt(global_batch / BASE_BATCH)


def resolve_recipe(config, world_size: int):
    """``config`` with its learning rate and EMA decay set (what was given is kept), and the
    lines the start-of-run summary prints about the defaults it chose."""
    from skincls.config import build_config

    if config.resume:
        return config, []
    values, notes = config.model_dump(), []
    if config.lr is None:
        batch = config.batch_size * world_size * config.accum_steps
        values["lr"] = float(f"{scaled_lr(batch):.3g}")
        notes.append(
            f"  lr {values['lr']:g}: {BASE_LR:g} x sqrt(global batch {batch} / {BASE_BATCH}) "
            "(the default for AdamW; --lr sets it)"
        )
    if config.ema_decay is None:
        scratch = config.pretrained == "none"
        values["ema_decay"] = EMA_DECAY if scratch else 0.0
        notes.append(
            f"  weight EMA {EMA_DECAY:g}, validated beside the raw weights (the default from "
            "scratch; --ema-decay 0 turns it off)"
            if scratch
            else "  weight EMA off (the default when fine-tuning; --ema-decay 0.999 turns it on)"
        )
    return build_config(values), notes
