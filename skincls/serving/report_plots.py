"""The report's pictures: matplotlib plots as PNG data URIs, thumbnails as JPEG data URIs."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from skincls.core.plots import class_ticks

THUMB = 112
"""Longest side of a thumbnail in the report, in pixels."""


# ---- plots and images --------------------------------------------------------------------------


def png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def jpeg(image) -> str:
    image = image.convert("RGB")
    image.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


MAX_CELL_TEXT = 20
"""Classes up to which the confusion plot writes each cell's value; above it, one heat map."""
MAX_WIDTH = 16.0
"""Widest plot, in inches: with hundreds of classes a plot stays a plot, not a poster."""


def distribution_plot(spec, counts: dict[str, list[int]]) -> str:
    fig, ax = figure(min(MAX_WIDTH, max(4.0, 0.6 * spec.num_classes + 2)), 2.6)
    x = np.arange(spec.num_classes)
    for i, part in enumerate(("train", "val", "test")):
        ax.bar(x + (i - 1) * 0.27, counts[part], width=0.27, label=part)
    class_ticks(ax, spec.classes)
    ax.set_ylabel("samples")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"{spec.name}: class distribution", fontsize=10)
    return png(fig)


def training_plot(history: list[dict[str, Any]], select: str, best: int | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(11, 2.8))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set_title("train loss", fontsize=10)
    metrics = [k for k in history[-1] if k.startswith("val_") and k.count("_") <= 3]
    for k in ("val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_qwk"):
        if k in metrics:
            b.plot(epochs, [h.get(k) for h in history], marker=".", label=k[4:])
    b.set_title(
        f"validation (selection: {select})" if metrics else "no validation split", fontsize=10
    )
    if metrics:
        b.legend(frameon=False, fontsize=7)
    c.plot(epochs, [h["lr"] for h in history])
    c.set_title("learning rate", fontsize=10)
    c.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b, c):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best:
            ax.axvline(best, color="tab:green", linestyle="--", linewidth=1)
    return png(fig)


def confusion_plot(spec, cm: np.ndarray) -> str:
    """Counts and row-normalised recall side by side, each cell written; above
    ``MAX_CELL_TEXT`` classes one row-normalised heat map with a colour bar instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = spec.num_classes
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    if k > MAX_CELL_TEXT:
        fig, ax = plt.subplots(figsize=(9, 8))
        shown = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
        class_ticks(ax, spec.classes, "x")
        class_ticks(ax, spec.classes, "y")
        ax.set(xlabel="predicted", ylabel="true")
        ax.set_title(f"row-normalised (recall), {k} classes: cells not written", fontsize=9)
        return png(fig)
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(3.0, 0.45 * k + 1.6), max(2.8, 0.4 * k + 1.4)))
    for ax, matrix, title, fmt in (
        (axes[0], cm, "counts", "{:d}"),
        (axes[1], norm, "row-normalised (recall)", "{:.2f}"),
    ):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                value = matrix[i, j]
                text = fmt.format(int(value) if fmt == "{:d}" else float(value))
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
        class_ticks(ax, spec.classes, "x")
        class_ticks(ax, spec.classes, "y")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
    return png(fig)


def per_class_plot(spec, per_class: dict[str, dict[str, float]]) -> str:
    fig, ax = figure(min(MAX_WIDTH, max(4.0, 0.7 * spec.num_classes + 2)), 2.6)
    x = np.arange(spec.num_classes)
    for i, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [per_class[c][key] for c in spec.classes], width=0.27, label=key)
    labels = [f"{c}\nn={per_class[c]['support']}" for c in spec.classes]
    class_ticks(ax, spec.classes, labels=labels if spec.num_classes <= 40 else None)
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False, fontsize=7, ncol=3)
    ax.set_title(f"{spec.name}: per class", fontsize=10)
    return png(fig)


def subgroup_plot(entry: dict[str, Any], overall: float | None, metric: str) -> str:
    """One field's subgroups: ``metric`` (mean over regions) with its interval, the overall
    figure as a dashed line; subgroups under the minimum size drawn pale and marked."""
    groups = entry["subgroups"]
    fig, ax = figure(6.0, min(MAX_WIDTH, 0.8 + 0.35 * len(groups)))
    y = np.arange(len(groups))[::-1]
    values = np.array([s["mean"].get(metric, np.nan) for s in groups], dtype=float)
    bounds = [((s.get("intervals") or {}).get("mean") or {}).get(metric) for s in groups]
    low = np.array([v - b[0] if b else 0.0 for v, b in zip(values, bounds, strict=True)])
    high = np.array([b[1] - v if b else 0.0 for v, b in zip(values, bounds, strict=True)])
    colours = ["#c5cbd6" if s["small"] else "#3b6fb6" for s in groups]
    ax.barh(y, values, color=colours, xerr=np.vstack([low, high]), capsize=3)
    labels = [f"{s['value']} (n={s['n']}{', small' if s['small'] else ''})" for s in groups]
    ax.set_yticks(y, labels, fontsize=8)
    if overall is not None:
        ax.axvline(overall, color="#b3261e", linestyle="--", linewidth=1, label="all samples")
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{metric} (mean over regions), 95% interval")
    ax.set_title(f"by {entry['field']}", fontsize=10)
    return png(fig)
