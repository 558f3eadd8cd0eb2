"""Consoles that print users' text as written.

Paths, labels and messages come from users' files, so rich markup is off everywhere: a label
``[/i]`` or a folder ``scans [left]`` prints as it is. Colour is given with ``style=`` instead.
Tables and progress go to the console they are given; ``stdout`` carries results, ``stderr``
carries progress, warnings and errors (so ``> log.txt`` keeps the results).
"""

from __future__ import annotations

from typing import Any

from skincls.core.names import NIA_COLUMNS, SHORT

PIPE_WIDTH = 160
"""Width of tables written to a pipe or file (a terminal's own width is used otherwise), so a
redirected table never cuts or wraps a region name or an option."""


def make_console(stderr: bool = False, quiet: bool = False) -> Any:
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ:
        width = PIPE_WIDTH
    return Console(
        stderr=stderr, quiet=quiet, markup=False, highlight=False, soft_wrap=True, width=width
    )


def duration(seconds: float) -> str:
    """``1h05m`` or ``3m07s``."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def print_epoch(
    console: Any,
    epoch: int,
    epochs: int,
    record: dict[str, Any],
    val: dict[str, Any] | None,
    improved: bool,
    remaining: float = 0.0,
) -> None:
    """The epoch line (loss, speed, learning rate, best, ETA) and the validation table."""
    console.print(
        f"epoch {epoch}/{epochs}  loss {record['train_loss']:.4f}  "
        f"{record['train_images_per_s']:.1f} img/s  lr {record['lr']:.2e}"
        + ("  new best" if improved else "")
        + ("  (EMA weights)" if record.get("selected_weights") == "ema" else "")
        + (f"  run eta {duration(remaining)}" if remaining > 0 else "")
    )
    if val:
        console.print(metrics_table(val, "val region"))


def print_eval(console: Any, title: str, result: dict[str, Any]) -> None:
    """A title line and the per-region table of an evaluation (with sample counts), then the
    ordinal regions in the data owners' layout (:func:`nia_table`)."""
    console.print(title)
    console.print(metrics_table(result, "region", counts=True))
    nia = nia_table(result)
    if nia is not None:
        console.print(nia)
    if result.get("calibration"):
        console.print(calibration_table(result))
    for entry in (result.get("subgroups") or {}).values():
        print_subgroups(console, entry, result)


def print_subgroups(console: Any, entry: dict[str, Any], overall: dict[str, Any]) -> None:
    """One field's subgroups: the mean over regions of each figure with its interval, the
    overall row last, subgroups under the minimum size marked, and the largest gap."""
    field, small = entry["field"], f"(under {entry['min_size']})"
    shown: dict[str, Any] = {"regions": {}, "mean": overall["mean"], "intervals": {}}
    ci = overall.get("intervals") or {}
    bounds: dict[str, Any] = {"regions": {}, "mean": ci.get("mean")}
    for s in entry["subgroups"]:
        name = f"{s['value']} {small}" if s["small"] else str(s["value"])
        shown["regions"][name] = {"n": s["n"], **s["mean"]}
        bounds["regions"][name] = (s.get("intervals") or {}).get("mean")
    if ci:
        shown["intervals"] = {**ci, **bounds}
    console.print(f"by {field} (mean over regions; the last row is every sample):")
    console.print(metrics_table(shown, field, counts=True, last="all"))
    gap = entry.get("largest_gap")
    if gap:
        console.print(
            f"largest gap: {field} = {gap['value']}: {gap['metric']} "
            f"{100 * gap['gap']:+.1f} points from all samples"
        )


MAX_PRINTED_CONFUSION = 20
"""Classes up to which evaluate prints a region's confusion matrix (a wider one does not fit
a terminal)."""


def print_per_class(console: Any, result: dict[str, Any]) -> None:
    """Per region, precision, recall, F1 and support per class, then the confusion matrix."""
    from rich.table import Table

    for name, m in result["regions"].items():
        table = Table(title=f"{name}: per class", title_justify="left")
        for col in ("class", "precision", "recall", "f1", "support"):
            table.add_column(col, justify="right")
        for label, pc in m["per_class"].items():
            table.add_row(
                label,
                f"{pc['precision']:.3f}",
                f"{pc['recall']:.3f}",
                f"{pc['f1']:.3f}",
                str(pc["support"]),
            )
        console.print(table)
        k = len(m["confusion_matrix"])
        if k > MAX_PRINTED_CONFUSION:
            console.print(
                f"confusion matrix: {k} x {k}, too large to print (in --json and the report)"
            )
            continue
        console.print("confusion matrix (rows true, columns predicted):")
        for label, row in zip(m["per_class"], m["confusion_matrix"], strict=False):
            console.print(f"  {label:>6} " + " ".join(f"{v:5d}" for v in row))


def calibration_table(result: dict[str, Any]) -> Any:
    """Per head: its decision rule, its temperature, and ECE / Brier / NLL before -> after."""
    from rich.table import Table

    table = Table(title="calibration (ECE 15 bins; before -> after calibration)")
    for col in ("region", "decision", "T", "ECE", "Brier", "NLL"):
        table.add_column(col, justify="left" if col in ("region", "decision") else "right")
    serving = result.get("serving", {})
    for name, c in result["calibration"].items():
        b, a = c["before"], c["after"]
        table.add_row(
            name,
            serving.get(name, ""),
            f"{c['temperature']:.2f}",
            *(f"{b[k]:.3f} -> {a[k]:.3f}" for k in ("ece", "brier", "nll")),
        )
    return table


def _cell(m: dict[str, Any], k: str) -> str:
    return f"{m[k]:.3f}" if k in m else "-"


def _bounds(m: dict[str, Any], k: str, percent: bool = False) -> str:
    if k not in m or any(v is None or v != v for v in m[k]):
        return ""
    lo, hi = (100 * v for v in m[k]) if percent else m[k]
    return f"{lo:.1f}–{hi:.1f}" if percent else f"{lo:.2f}–{hi:.2f}"


def interval_title(result: dict[str, Any]) -> str | None:
    """What the bracketed rows under each figure are, or None without intervals."""
    ci = result.get("intervals") or {}
    if not ci:
        return None
    return (
        f"{100 * ci['level']:g}% intervals (low–high, dim rows): bootstrap over {ci['groups']} groups "
        f"(subjects or lesions: the split's groups), {ci['resamples']} resamples, seed {ci['seed']}"
    )


def metrics_table(
    result: dict[str, Any], first: str, counts: bool = False, last: str = "mean"
) -> Any:
    """One row per region and a bold mean row; region names are never cut. Ordinal figures
    appear only when some region is ordinal, as "-" for the nominal ones; their mean is over the
    ordinal regions. With ``intervals`` in ``result``, each row has a dim row of intervals
    under it. ``last`` names the bold mean row."""
    from rich.table import Table

    from skincls.core.names import ALL_METRICS

    regions, ci = result["regions"], result.get("intervals") or {}
    keys = [k for k in ALL_METRICS if k in result["mean"]]
    table = Table(caption=interval_title(result))
    table.add_column(first, min_width=max(map(len, regions), default=4), no_wrap=True)
    if counts:
        table.add_column("n", justify="right")
    for k in keys:
        table.add_column(SHORT[k], justify="right", min_width=9 if ci else None)
    blank = [""] if counts else []
    rows = [(name, m, ci.get("regions", {}).get(name), "") for name, m in regions.items()]
    rows.append((last, result["mean"], ci.get("mean"), "bold"))
    for name, m, bounds, style in rows:
        n = [str(m["n"])] if counts and "n" in m else blank
        table.add_row(name, *n, *(_cell(m, k) for k in keys), style=style)
        if bounds:
            table.add_row("", *blank, *(_bounds(bounds, k) for k in keys), style="dim")
    return table


def nia_table(result: dict[str, Any]) -> Any:
    """The ordinal regions as the AI Hub data owners report their items: exact accuracy and
    accuracy within one and two grades in percent, mean absolute error, correlation, and the average
    row; None when no region is ordinal."""
    from rich.table import Table

    items = {n: m for n, m in result["regions"].items() if "grade_mae" in m and m["n"] > 0}
    if not items:
        return None
    ci = (result.get("intervals") or {}).get("regions", {})
    table = Table(title="ordinal regions (AI Hub baseline layout)", caption=interval_title(result))
    table.add_column("item", no_wrap=True)
    for heading in ("n", *NIA_COLUMNS.values()):
        table.add_column(heading, justify="right")
    percent = tuple(NIA_COLUMNS)[:3]

    def row(m: dict[str, Any]) -> list[str]:
        return [f"{100 * m[k]:.1f}" if k in percent else f"{m[k]:.2f}" for k in NIA_COLUMNS]

    for name, m in items.items():
        table.add_row(name, str(m["n"]), *row(m))
        if name in ci:
            bounds = [_bounds(ci[name], k, k in percent) for k in NIA_COLUMNS]
            table.add_row("", "", *bounds, style="dim")
    mean = {k: sum(m[k] for m in items.values()) / len(items) for k in NIA_COLUMNS}
    table.add_row("average", "", *row(mean), style="bold")
    average = (result.get("intervals") or {}).get("ordinal_mean")
    if average:
        bounds = [_bounds(average, k, k in percent) for k in NIA_COLUMNS]
        table.add_row("", "", *bounds, style="dim")
    return table


COMPARED = ("accuracy", "balanced_accuracy", "macro_f1", "ba_f1", "within1", "grade_mae", "qwk")
"""The figures ``compare`` prints (``--json`` has every one)."""


def print_comparison(console: Any, result: dict[str, Any]) -> None:
    """Per region and figure: A, B, B - A, its interval and p-value; then the verdict."""
    from rich.table import Table

    b = result["bootstrap"]
    table = Table(
        title=f"B - A on {result['n']} labels of split {result['split']}",
        caption=f"{100 * b['level']:g}% paired intervals: bootstrap over {result['groups']} "
        f"groups (subjects or lesions), {b['resamples']} resamples, seed {b['seed']}",
    )
    for col in ("region", "figure", "A", "B", "B - A", "interval", "p"):
        table.add_column(col, justify="left" if col in ("region", "figure") else "right")
    blocks = [*result["regions"].items(), ("mean", result["mean"])]
    for name, figures in blocks:
        for k in COMPARED:
            if k not in figures:
                continue
            d = figures[k]
            lo, hi = d["interval"]
            table.add_row(
                name,
                SHORT[k],
                f"{d['a']:.3f}",
                f"{d['b']:.3f}",
                f"{d['difference']:+.3f}",
                f"[{lo:+.3f}, {hi:+.3f}]",
                f"{d['p']:.3f}",
                style="bold" if name == "mean" else "",
            )
            name = ""
    console.print(f"A: {result['run_a']}\nB: {result['run_b']}\ndata: {result['data']}")
    console.print(table)
    if result.get("b_trained_on"):
        console.print(
            f"warning: run B trained or validated on {result['b_trained_on']} of these samples "
            "that run A did not (the runs have different splits): B's figures are optimistic",
            style="yellow",
        )
    m = result["mean"].get(result["select"])
    words = {"better": "B is better than A", "worse": "B is worse than A"}
    head = words.get(result["verdict"], "A and B are not distinguishable")
    if m:
        lo, hi = m["interval"]
        console.print(
            f"{head} on {result['select']} (mean over regions): {m['difference']:+.3f} "
            f"(interval {lo:+.3f} to {hi:+.3f}, p = {m['p']:.3f})"
        )
    else:
        console.print(f"{head}: no {result['select']} figure on these samples")


def print_cv(console: Any, result: dict[str, Any]) -> None:
    """The pooled out-of-fold figures with intervals, then each mean figure over folds."""
    console.print(f"{result['folds']}-fold cross-validation, out of fold: {result['oof']}")
    console.print(metrics_table(result, "region", counts=True))
    over = result["over_folds"]
    shown = [k for k in ("balanced_accuracy", "macro_f1", "accuracy", "within1") if k in over]
    console.print(
        "over folds (mean ± sd): "
        + ", ".join(f"{SHORT[k]} {over[k][0]:.3f} ± {over[k][1]:.3f}" for k in shown)
    )
    console.print("runs: " + ", ".join(result["runs"]))


def progress_bar(console: Any, quiet: bool = False) -> Any:
    """A transient bar (terminals only): description, bar, n/N, an info field, elapsed, ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )
