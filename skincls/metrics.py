"""Per-region classification metrics from scikit-learn: the figures models are chosen on."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "grade_mae")
"""The figures of every region and their mean; ``--select`` picks among them
(``skincls.config.MetricName``)."""


def region_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, quadratic weighted kappa, mean absolute grade error,
    per-class precision/recall/F1/support and the confusion matrix (rows = true class).

    Balanced accuracy and macro F1 average over the classes present in ``y_true`` (and, for F1,
    predicted), as scikit-learn does; QWK is 0 when it is undefined (a single class).
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    yt, yp = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    labels = list(range(len(classes)))
    n = int(yt.size)
    if n == 0:
        return {
            "n": 0,
            **{m: float("nan") for m in METRICS},
            "per_class": {},
            "confusion_matrix": [],
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qwk = cohen_kappa_score(yt, yp, labels=labels, weights="quadratic")
        p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
        out: dict[str, Any] = {
            "accuracy": float(accuracy_score(yt, yp)),
            "balanced_accuracy": float(balanced_accuracy_score(yt, yp)),
            "macro_f1": float(f1_score(yt, yp, average="macro", zero_division=0)),
            "qwk": 0.0 if math.isnan(qwk) else float(qwk),
            "grade_mae": float(np.abs(yt - yp).mean()),
            "n": n,
        }
    out["per_class"] = {
        c: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, c in enumerate(classes)
    }
    out["confusion_matrix"] = confusion_matrix(yt, yp, labels=labels).tolist()
    return out


def mean_metrics(per_region: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Unweighted mean over regions of each scalar metric (regions with samples only)."""
    present = [m for m in per_region.values() if m["n"] > 0]
    return {
        k: float(np.mean([m[k] for m in present])) if present else float("nan") for k in METRICS
    }


def evaluate_predictions(
    region_names: Sequence[str],
    classes: dict[str, Sequence[str]],
    region_idx: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
) -> dict[str, Any]:
    """Metrics of every region and their mean, from flat arrays over samples of mixed regions."""
    regions = {}
    for i, name in enumerate(region_names):
        mask = region_idx == i
        regions[name] = region_metrics(labels[mask], preds[mask], classes[name])
    return {"regions": regions, "mean": mean_metrics(regions)}
