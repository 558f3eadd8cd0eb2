"""Defaults that depend on how a run trains: from scratch or fine-tuning pretrained weights.

- The peak learning rate, when ``--lr`` is not given, follows the global batch (per-rank batch
  x ranks x accumulation steps) by timm's rule for adaptive optimisers (its ``--lr-base-scale
  sqrt``): ``base * sqrt(global_batch / BASE_BATCH)``; linear scaling (Goyal et al., 2017) is
  the rule for SGD. The base is 9e-4 when fine-tuning pretrained weights: three times the
  textbook AdamW rate 3e-4, which won on both balanced accuracy and macro F1 in the fine-tuning
  ablation (ImageNet EfficientNet-Lite0 on HAM10000; a third of 3e-4 lost 15 points:
  BENCHMARKS.md, issue 28); and 1.4e-3 (2e-3 at batch 64) from scratch, where the fine-tuning
  rate lost 6 points of macro F1 in the quality benchmark (issue 19's ablation).
- The weight EMA, when ``--ema-decay`` is not given, is on (``EMA_DECAY``) in both regimes: from
  scratch the quality benchmark measured it (issue 19), and when fine-tuning it won on both
  figures in the fine-tuning ablation (issue 28).
- The served epoch, when ``--serve-epoch`` is not given, is the last one: with the learning rate
  annealed to its floor it beat the best validation epoch in the quality benchmark (the choice
  made on a small validation split cost up to 2.5 points of macro F1), unless ``--patience``
  ends the run, whose last epoch is by construction past the best.

Resolved once when a run starts and written to its ``config.yaml``; a resumed run keeps what it
started with.
"""

from __future__ import annotations

import math
from pathlib import Path

BASE_LR = {"fine-tuning": 9e-4, "from scratch": 1.4e-3}
BASE_BATCH = 32
EMA_DECAY = 0.999
RECIPE_FIELDS = ("lr", "ema_decay", "serve_epoch")


def regime(config) -> str:
    """``from scratch`` (``--no-pretrained``) or ``fine-tuning``."""
    return "from scratch" if config.pretrained == "none" else "fine-tuning"


def scaled_lr(global_batch: int, regime: str) -> float:
    """AdamW's default peak learning rate for ``global_batch`` images per update."""
    return BASE_LR[regime] * math.sqrt(global_batch / BASE_BATCH)


def resolve_recipe(config, world_size: int):
    """``config`` with its learning rate, EMA decay and served epoch set (what was given is
    kept), and the lines the start-of-run summary prints about the defaults it chose."""
    from skincls.core.config import build_config

    if config.resume:  # what the run started with (a run from before these defaults: no EMA)
        from skincls.run.rundir import RunDir

        saved = RunDir(Path(config.resume)).config()
        fill = {k: getattr(saved, k) for k in RECIPE_FIELDS if getattr(config, k) is None}
        if "serve_epoch" in fill and fill["serve_epoch"] is None:
            fill["serve_epoch"] = "best"  # a run from before --serve-epoch kept the best epoch
        return (build_config({**config.model_dump(), **fill}) if fill else config), []
    values, notes, mode = config.model_dump(), [], regime(config)
    if config.lr is None:
        batch = config.batch_size * world_size * config.accum_steps
        values["lr"] = float(f"{scaled_lr(batch, mode):.3g}")
        notes.append(
            f"  lr {values['lr']:g}: {BASE_LR[mode]:g} x sqrt(global batch {batch} / "
            f"{BASE_BATCH}) (the AdamW default {mode}; --lr sets it)"
        )
    if config.ema_decay is None:
        values["ema_decay"] = EMA_DECAY
        notes.append(
            f"  weight EMA {EMA_DECAY:g}, validated beside the raw weights (the default {mode}; "
            "--ema-decay 0 turns it off)"
        )
    if config.serve_epoch is None:
        values["serve_epoch"] = "best" if config.patience else "last"
        notes.append(
            "  serving the best validation epoch (the default with --patience)"
            if config.patience
            else "  serving the last epoch (the default; --serve-epoch best keeps the best "
            "validation epoch)"
        )
    return build_config(values), notes
