"""The start-of-run summary of ``skincls train``: what will be trained, and how."""

from __future__ import annotations

import statistics
from typing import Any

from skincls.training.context import RunContext


def print_run_summary(ctx: RunContext) -> None:
    """What ``skincls train`` prints before the first epoch: the run, then per region its
    classes, training counts, loss, resize policy and box aspect, and every imbalance
    correction in force (a double correction is flagged), then the batch arithmetic."""
    from skincls.core.names import ORDINAL_LOSSES, PRIOR_LOSSES, REWEIGHTING_LOSSES
    from skincls.model.losses import loss_of

    console, run, config, dataset, parts, kit = (
        ctx.console,
        ctx.run,
        ctx.config,
        ctx.dataset,
        ctx.parts,
        ctx.kit,
    )
    e = kit.engine
    console.print(
        f"run {run.path}  device={e.device} amp={e.dtype or 'off'} backbone={config.backbone} "
        f"train={len(parts['train'])} val={len(parts['val'])} test={len(parts['test'])}"
    )
    how = getattr(e.model, "pretrained_match", None)
    if how:
        console.print(f"  pretrained weights {config.pretrained}: matched {how}")
    counts = dataset.counts(parts["train"])
    for r in dataset.regions:
        loss, sampler = loss_of(r, config.loss), r.sampler or config.sampler
        fixes = [f"sampler={sampler}"] if sampler != "none" else []
        if loss in REWEIGHTING_LOSSES:
            fixes.append(f"loss weights (CB, beta={config.beta})")
        if loss in PRIOR_LOSSES:
            fixes.append(f"logit prior ({loss})")
        double = sampler != "none" and loss in REWEIGHTING_LOSSES + PRIOR_LOSSES
        share = kit.shares[r.name]
        drawn = listing([f"{x:.2f}" for x in share["classes"]])
        model: Any = e.model
        rule = f", decision={model.decisions[r.name]}" if r.ordinal else ""
        console.print(
            f"  {r.name}: {r.num_classes} classes, train counts [{listing(counts[r.name], ', ')}], "
            f"loss={loss}{rule}, "
            f"resize={r.resize_policy(config.resize)} ({box_aspect(parts['train'], r.name)}), "
            f"imbalance corrections: {', '.join(fixes) or 'none'}"
            + (" [double correction]" if double else "")
            + f"; share of the loss {share['loss_share']:.1%}"
            + (f" (weight {r.weight:g})" if r.weight != 1 else "")
            + f", drawn class shares [{drawn}]"
        )
    ordinal = sorted({loss_of(r, config.loss) for r in dataset.regions} & set(ORDINAL_LOSSES))
    if ordinal:
        console.print(
            f"  {', '.join(ordinal)}: ordinal loss(es) use the order of the grades and do not "
            "re-weight classes; the sampler alone corrects the imbalance"
        )
    multi = sum(1 for s in parts["train"] if len(s.labels) > 1)
    console.print(
        f"  region balance across regions: {config.region_balance}; loss: mean over labels"
        + (f"; {multi} training crop(s) carry several labels (decoded once)" if multi else "")
    )
    console.print(
        f"  batch: {config.batch_size} per rank x {ctx.dctx.world_size} rank(s) x "
        f"{config.accum_steps} accumulation step(s) = global batch "
        f"{config.batch_size * ctx.dctx.world_size * config.accum_steps}"
    )


def box_aspect(samples, region: str) -> str:
    """The median width / height of a region's training boxes, in words."""
    aspects = [
        (s.bbox[2] - s.bbox[0]) / max(s.bbox[3] - s.bbox[1], 1)
        for s in samples
        if s.bbox and any(lab.region == region for lab in s.labels)
    ]
    return f"median box aspect {statistics.median(aspects):.2f}" if aspects else "whole images"


def listing(values: list, sep: str = " ", shown: int = 12) -> str:
    """``values`` joined, or for many classes the first and last few with the count between."""
    items = [str(v) for v in values]
    if len(items) <= shown:
        return sep.join(items)
    half = shown // 2
    return sep.join([*items[:half], f"... {len(items) - shown} more ...", *items[-half:]])
