"""Class distribution per region: counts, shares, imbalance ratio, class-balanced weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skincls.core.fileio import atomic_write
from skincls.core.imbalance import class_balanced_weights, imbalance_ratio
from skincls.core.plots import class_key, class_ticks
from skincls.data.samples import Dataset


def summarize(
    dataset: Dataset,
    beta: float = 0.999,
    split: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The analysis as plain data (the ``--json`` schema)."""
    counts = dataset.counts()
    out: dict[str, Any] = {"source": dataset.source, "data": str(dataset.root), "regions": {}}
    region_names = {r.name for r in dataset.regions}
    general_skips: dict[str, int] = {}
    region_skips: dict[str, dict[str, int]] = {n: {} for n in region_names}
    for reason, n in dataset.report.skipped.items():
        head, _, rest = reason.partition(": ")
        if head in region_names and rest:
            region_skips[head][rest] = n
        else:
            general_skips[reason] = n
    for spec in dataset.regions:
        c = counts[spec.name]
        total = sum(c)
        weights = class_balanced_weights(c, beta)
        entry: dict[str, Any] = {
            "counts": dict(zip(spec.classes, c, strict=False)),
            "shares": {
                k: (n / total if total else 0.0) for k, n in zip(spec.classes, c, strict=False)
            },
            "total": total,
            "imbalance_ratio": imbalance_ratio(c),
            "empty_classes": [k for k, n in zip(spec.classes, c, strict=False) if n == 0],
            "cb_weights": dict(zip(spec.classes, weights, strict=False)),
            "beta": beta,
            "skipped": region_skips[spec.name],
        }
        if spec.label_map:
            raw: dict[str, int] = dict(dataset.report.raw_counts.get(spec.name, {}))
            entry["raw_counts"] = dict(sorted(raw.items(), key=lambda kv: _label_key(kv[0])))
            entry["label_map"] = dict(spec.label_map)
        if split is not None:
            per_part: dict[str, dict[str, int]] = {}
            for part in ("train", "val", "test"):
                pc = [0] * spec.num_classes
                for s in dataset.samples:
                    for lab in s.labels:
                        if lab.region == spec.name and split[s.key] == part:
                            pc[lab.index] += 1
                per_part[part] = dict(zip(spec.classes, pc, strict=False))
            entry["split"] = per_part
        out["regions"][spec.name] = entry
    out["skipped"] = general_skips
    out["skipped_examples"] = dataset.report.examples
    return out


def _label_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def render(summary: dict[str, Any], console: Any) -> None:
    """Rich tables: one per region, with a bar per class."""
    from rich.table import Table

    for name, r in summary["regions"].items():
        has_split = "split" in r
        ratio = r["imbalance_ratio"]
        table = Table(
            title=f"{name}: {r['total']} samples, imbalance max/min "
            + (f"{ratio:.1f}" if ratio is not None else "n/a"),
            title_justify="left",
        )
        table.add_column("class")
        if "raw_counts" in r:
            table.add_column("raw labels")
        table.add_column("count", justify="right")
        table.add_column("share", justify="right")
        table.add_column(f"CB weight (β={r['beta']})", justify="right")
        if has_split:
            for part in ("train", "val", "test"):
                table.add_column(part, justify="right")
        table.add_column("", no_wrap=True, min_width=20)
        biggest = max(r["counts"].values()) or 1
        for label, n in r["counts"].items():
            row = [label]
            if "raw_counts" in r:
                row.append(
                    ", ".join(
                        f"{k}:{v}"
                        for k, v in r["raw_counts"].items()
                        if _maps_to(summary, name, k, label)
                    )
                )
            row += [str(n), f"{r['shares'][label]:.1%}", f"{r['cb_weights'][label]:.3f}"]
            if has_split:
                row += [str(r["split"][p][label]) for p in ("train", "val", "test")]
            row.append("█" * max(1 if n else 0, round(20 * n / biggest)))
            table.add_row(*row)
        console.print(table)
        if r["empty_classes"]:
            console.print(
                f"  classes with no sample: {', '.join(r['empty_classes'])}", style="yellow"
            )
        for reason, n in r["skipped"].items():
            console.print(f"  skipped {n}: {reason}")
    for reason, n in summary["skipped"].items():
        console.print(f"skipped {n}: {reason}")


def _maps_to(summary: dict[str, Any], region: str, raw: str, label: str) -> bool:
    return summary["regions"][region].get("label_map", {}).get(raw, raw) == label


def plot(summary: dict[str, Any], path: Path) -> dict[str, str]:
    """A bar chart per region, saved as PNG (or PDF, SVG). Returns, per region whose class
    names the plotting font cannot draw, the key of the class numbers the plot shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regions = list(summary["regions"].items())
    cols = min(3, len(regions))
    rows = (len(regions) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, r) in zip(axes.flat, regions, strict=False):
        labels = list(r["counts"])
        ax.bar(range(len(labels)), [r["counts"][k] for k in labels], color="#4477aa")
        class_ticks(ax, labels)
        ratio = r["imbalance_ratio"]
        ax.set_title(f"{name} (n={r['total']}, max/min={ratio:.1f})" if ratio else name, fontsize=9)
        ax.set_xlabel("class")
        ax.set_ylabel("samples")
    for ax in list(axes.flat)[len(regions) :]:
        ax.axis("off")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    finally:
        plt.close(fig)
    return {name: key for name, r in regions if (key := class_key(list(r["counts"])))}


def analyze(
    data: str | Path,
    regions_dirs: Sequence[str | Path] = (),
    regions: Sequence[str] = (),
    read: Any = None,
    beta: float = 0.999,
    fractions: Sequence[float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Load ``data`` (read as :class:`skincls.data.sources.ReadOptions` says) and summarise it,
    with the class-balanced weights of ``beta`` and, given train/val/test ``fractions``, the
    split ``seed`` would give; the plain function behind ``skincls analyze``."""
    from skincls.data.regions import discover_regions
    from skincls.data.sources import load_data
    from skincls.data.split import split_samples

    if not 0.0 <= beta < 1.0:
        from skincls.core.errors import SkinclsError

        raise SkinclsError(f"--beta: expected 0 <= beta < 1, got {beta}")
    registry = discover_regions(regions_dirs)
    dataset = load_data(data, registry, regions, read)
    split = split_samples(dataset.samples, fractions, seed) if fractions else None
    return summarize(dataset, beta, split)
