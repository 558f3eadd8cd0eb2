"""Per-region classification metrics from scikit-learn: the figures models are chosen on."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from skincls.core.names import ALL_METRICS, METRICS

# ``accuracy`` is the data owners' "exact" accuracy and ``ba_f1`` the mean of balanced accuracy
# and macro F1 (the default selection figure: the first rewards recall of every class, the second
# also punishes false alarms on the rare ones). Ordinal regions add accuracy within one and two
# grades, mean absolute grade error, quadratic weighted kappa and the Pearson correlation of
# predicted and true grade (:data:`skincls.core.names.METRIC_TABLE`).


def region_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str], ordinal: bool = False
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, their mean ``ba_f1``, per-class
    precision/recall/F1/support and the confusion matrix (rows = true class); for an
    ``ordinal`` region also ``ORDINAL_METRICS``.

    Balanced accuracy and macro F1 average over the classes present in ``y_true`` (and, for F1,
    predicted), as scikit-learn does; QWK and the correlation are 0 where they are undefined (a
    single class, or a constant prediction).
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
    keys = ALL_METRICS if ordinal else METRICS
    if yt.size == 0:
        return {"n": 0, **{m: float("nan") for m in keys}, "per_class": {}, "confusion_matrix": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
        out: dict[str, Any] = {
            "accuracy": float(accuracy_score(yt, yp)),
            "balanced_accuracy": float(balanced_accuracy_score(yt, yp)),
            "macro_f1": float(f1_score(yt, yp, average="macro", zero_division=0)),
            "n": int(yt.size),
        }
        out["ba_f1"] = (out["balanced_accuracy"] + out["macro_f1"]) / 2
        if ordinal:
            qwk = cohen_kappa_score(yt, yp, labels=labels, weights="quadratic")
            corr = np.corrcoef(yt, yp)[0, 1] if yt.std() > 0 and yp.std() > 0 else 0.0
            out.update(
                {
                    "within1": float((np.abs(yt - yp) <= 1).mean()),
                    "within2": float((np.abs(yt - yp) <= 2).mean()),
                    "grade_mae": float(np.abs(yt - yp).mean()),
                    "qwk": 0.0 if math.isnan(qwk) else float(qwk),
                    "corr": float(corr),
                }
            )
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
    """Unweighted mean over regions with samples of each metric they report: the
    ``ORDINAL_METRICS`` over the ordinal regions only (absent when there is none)."""
    present = [m for m in per_region.values() if m["n"] > 0]
    out = {}
    for k in ALL_METRICS:
        values = [m[k] for m in present if k in m]
        if values:
            out[k] = float(np.mean(values))
        elif k in METRICS or any(k in m for m in per_region.values()):
            out[k] = float("nan")
    return out


def evaluate_predictions(
    region_names: Sequence[str],
    classes: dict[str, Sequence[str]],
    region_idx: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    ordinal: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Metrics of every region and their mean, from flat arrays over samples of mixed regions."""
    regions = {}
    for i, name in enumerate(region_names):
        mask = region_idx == i
        regions[name] = region_metrics(
            labels[mask], preds[mask], classes[name], bool((ordinal or {}).get(name))
        )
    return {"regions": regions, "mean": mean_metrics(regions)}


def chance_levels(support: Sequence[int], ordinal: bool) -> dict[str, float]:
    """The expected figures of a guess that ignores the image (a class drawn uniformly at
    random), for labels with per-class ``support``: accuracy and balanced accuracy ``1/K``,
    macro F1 ``mean_c 2 p_c (1/K) / (p_c + 1/K)`` (precision ``p_c``, the class's share; recall
    ``1/K``); for ordinal grades within-one, within-two and grade MAE over uniform guesses, QWK and
    correlation 0. Exact, not simulated."""
    n = np.asarray(support, dtype=np.float64)
    k = len(n)
    if k == 0 or n.sum() == 0:
        return {}
    share, guess = n / n.sum(), 1.0 / k
    f1 = np.where(share > 0, 2 * share * guess / np.maximum(share + guess, 1e-12), 0.0)
    out = {
        "accuracy": guess,
        "balanced_accuracy": guess,
        "macro_f1": float(f1.mean()),
    }
    if ordinal:
        grades = np.arange(k)
        distance = np.abs(grades[:, None] - grades[None, :])  # true x guessed
        out["within1"] = float(share @ (distance <= 1).mean(axis=1))
        out["within2"] = float(share @ (distance <= 2).mean(axis=1))
        out["grade_mae"] = float(share @ distance.mean(axis=1))
        out["qwk"] = 0.0
        out["corr"] = 0.0
    return out
