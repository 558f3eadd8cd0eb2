"""Confidence intervals that resample groups (subjects, lesions), not images.

Images of one person are not independent: a bootstrap over images treats ten crops of one face as
ten pieces of evidence and gives intervals that are too narrow. Here each resample draws the
groups with replacement (Efron's bootstrap on the cluster level, Field and Welsh 2007) and every
image of a drawn group comes with it. Each figure is a function of the confusion matrix, so a
resample is a weighted sum of per-group confusion matrices: ``counts (B x G) @ confusion (G x
K*K)``, vectorised over the resamples. The interval is the percentile interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skincls.core.names import ALL_METRICS, BOOTSTRAP_RESAMPLES, METRICS

DEFAULT_LEVEL = 0.95
CHUNK = 250
"""Resamples computed at once (bounds memory: CHUNK x groups counts)."""


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: ``resamples`` group resamples from ``seed``, a ``level``
    percentile interval; ``resamples`` 0 turns intervals off."""

    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 0
    level: float = DEFAULT_LEVEL

    def describe(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "seed": self.seed, "level": self.level}


def figures_from_confusion(cm: np.ndarray, ordinal: bool = False) -> dict[str, np.ndarray]:
    """The figures of :func:`skincls.core.metrics.region_metrics` from confusion matrices
    ``cm`` (``... x K x K``, rows = true class), one value per leading index; NaN where a matrix
    is empty. Balanced accuracy averages over classes with a true label, macro F1 over classes
    true or predicted (scikit-learn's rules); QWK and correlation are 0 where undefined."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[-1]
    total = cm.sum((-2, -1))
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(-1), cm.sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        present = support > 0
        recall = np.where(present, tp / np.where(present, support, 1), 0.0)
        ba = recall.sum(-1) / present.sum(-1)
        seen = present | (predicted > 0)
        f1 = np.where(seen, 2 * tp / np.where(seen, support + predicted, 1), 0.0)
        out = {
            "accuracy": tp.sum(-1) / total,
            "balanced_accuracy": ba,
            "macro_f1": f1.sum(-1) / seen.sum(-1),
        }
        out["ba_f1"] = (out["balanced_accuracy"] + out["macro_f1"]) / 2
        if ordinal:
            out.update(_ordinal_figures(cm, total, support, predicted, k))
    empty = total == 0
    return {m: np.where(empty, np.nan, v) for m, v in out.items()}


def _ordinal_figures(cm, total, support, predicted, k: int) -> dict[str, np.ndarray]:
    grades = np.arange(k, dtype=np.float64)
    distance = np.abs(grades[:, None] - grades[None, :])
    safe = np.where(total > 0, total, 1)
    observed = (cm * distance**2).sum((-2, -1))
    expected = (support[..., :, None] * predicted[..., None, :] * distance**2).sum((-2, -1))
    expected = expected / safe
    qwk = np.where(expected > 0, 1 - observed / np.where(expected > 0, expected, 1), 0.0)
    mean_t = (support * grades).sum(-1) / safe
    mean_p = (predicted * grades).sum(-1) / safe
    var_t = (support * grades**2).sum(-1) / safe - mean_t**2
    var_p = (predicted * grades**2).sum(-1) / safe - mean_p**2
    cross = (cm * grades[:, None] * grades[None, :]).sum((-2, -1)) / safe - mean_t * mean_p
    defined = (var_t > 1e-12) & (var_p > 1e-12)
    corr = np.where(defined, cross / np.sqrt(np.where(defined, var_t * var_p, 1)), 0.0)
    return {
        "within1": (cm * (distance <= 1)).sum((-2, -1)) / safe,
        "within2": (cm * (distance <= 2)).sum((-2, -1)) / safe,
        "grade_mae": (cm * distance).sum((-2, -1)) / safe,
        "qwk": qwk,
        "corr": corr,
    }


def group_confusions(
    group_index: np.ndarray, n_groups: int, y_true: np.ndarray, y_pred: np.ndarray, k: int
) -> np.ndarray:
    """``n_groups x K*K``: each group's confusion matrix, flattened."""
    flat = (group_index * k + y_true) * k + y_pred
    return np.bincount(flat, minlength=n_groups * k * k).reshape(n_groups, k * k)


def resample_counts(n_groups: int, resamples: int, seed: int):
    """Chunks of ``(chunk x n_groups)`` counts: how often each group is drawn in each resample
    (``n_groups`` draws with replacement); the same ``seed`` gives the same chunks."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        b = min(CHUNK, resamples - done)
        draws = rng.integers(0, n_groups, size=(b, n_groups))
        rows = np.repeat(np.arange(b), n_groups)
        yield np.bincount(rows * n_groups + draws.ravel(), minlength=b * n_groups).reshape(
            b, n_groups
        )
        done += b


Draws = dict[str, dict[str, np.ndarray]]
"""Per region, per figure: its value in each resample."""


def resampled_figures(
    region_idx: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    groups: Sequence[str],
    heads: Sequence[tuple[str, int, bool]],
    options: Bootstrap,
) -> tuple[Draws, int]:
    """Every region's figures in each group resample, and the number of groups. The draws
    depend only on the set of groups and the seed, so two runs scored on the same rows are
    resampled alike (a paired bootstrap)."""
    codes, group_index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = len(codes)
    confusions = []
    for i, (_, k, _) in enumerate(heads):
        mask = region_idx == i
        confusions.append(
            group_confusions(group_index[mask], n_groups, labels[mask], preds[mask], k)
        )
    draws: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name, _, _ in heads}
    for counts in resample_counts(n_groups, options.resamples, options.seed):
        weights = counts.astype(np.float64)
        for (name, k, ordinal), conf in zip(heads, confusions, strict=True):
            figures = figures_from_confusion((weights @ conf).reshape(-1, k, k), ordinal)
            for m, v in figures.items():
                draws[name].setdefault(m, []).append(v)
    per_region = {name: {m: np.concatenate(v) for m, v in d.items()} for name, d in draws.items()}
    return per_region, n_groups


def mean_draws(per_region: Draws) -> dict[str, np.ndarray]:
    """Each figure's mean over the regions that have it, per resample (a region without labels
    in a resample is left out of that resample's mean)."""
    out = {}
    for m in ALL_METRICS:
        stacks = [d[m] for d in per_region.values() if m in d]
        if stacks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a resample without a region
                out[m] = np.nanmean(np.stack(stacks), axis=0)
    return out


def percentile_bounds(values: np.ndarray, level: float) -> list[float]:
    """The central ``level`` percentile interval, NaN resamples left out."""
    if np.isnan(values).all():
        return [float("nan"), float("nan")]
    low, high = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
    return [float(low), float(high)]


def intervals(
    region_idx: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    groups: Sequence[str],
    heads: Sequence[tuple[str, int, bool]],
    options: Bootstrap = Bootstrap(),
) -> dict[str, Any]:
    """Percentile intervals of every region's figures and of their mean over regions, from
    flat rows (one per sample and head, as :func:`skincls.core.metrics.evaluate_predictions`
    takes them) and each row's group. ``heads``: (name, classes, ordinal) in region-index order.
    Every region is resampled with the same draws of groups, so a subject's crops of several
    regions stay together. Returns ``{"regions": {name: {metric: [low, high]}}, "mean": {...},
    "ordinal_mean": {...} (over the ordinal regions, when there are any), "groups": G,
    **options}``; empty when ``options.resamples`` is 0 or there is no row."""
    if options.resamples <= 0 or len(labels) == 0:
        return {}
    per_region, n_groups = resampled_figures(region_idx, labels, preds, groups, heads, options)

    def bounds(d: dict[str, np.ndarray]) -> dict[str, list[float]]:
        return {m: percentile_bounds(v, options.level) for m, v in d.items()}

    out: dict[str, Any] = {"regions": {n: bounds(d) for n, d in per_region.items()}}
    out["mean"] = bounds(mean_draws(per_region))
    for m in METRICS:
        out["mean"].setdefault(m, [float("nan"), float("nan")])
    graded = {name: per_region[name] for name, _, o in heads if o}
    if graded:
        out["ordinal_mean"] = bounds(mean_draws(graded))
    return {**out, "groups": n_groups, **options.describe()}
