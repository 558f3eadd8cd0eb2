"""The harness every arm benchmark shares, so a benchmark script is its data and a table of arms.

- :func:`budget_parser`: the training budget and run options (``--out --seeds --backbone
  --image-size --batch-size --epochs --lr --workers --report``);
- :func:`run_values`: the ``skincls train`` options of one run at that budget;
- :class:`Results`: ``OUT/results.json``, resumable: a cell (dataset, arm, seed) already there
  is not run again, and each new row is written as soon as it exists;
- :func:`run_cells`: the loop over cells, printing one JSON line per run;
- :func:`summarize` and :func:`markdown`: mean ± sd over seeds per arm;
- :func:`write_table`: ``OUT/table.md`` with the command, machine, versions and budget first.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from provenance import provenance


def budget_parser(doc: str | None, out: Path, image_size: int = 48) -> argparse.ArgumentParser:
    """A parser with the budget every arm benchmark takes; add the script's own options."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=out)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--backbone", default="resnet10t")
    p.add_argument("--image-size", type=int, default=image_size)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--report", action="store_true", help="only summarise the runs in --out")
    return p


def budget_line(args: argparse.Namespace, extra: str = "") -> str:
    return (
        f"budget: {args.backbone}, {args.image_size}px, {args.epochs} epochs, batch "
        f"{args.batch_size}, lr {args.lr}, no pretrained weights, seeds {args.seeds}"
        + (f"; {extra}" if extra else "")
        + "\n"
    )


def run_values(args: argparse.Namespace, output: Path, seed: int, **options: Any) -> dict:
    """The ``skincls train`` options of one benchmark run: the budget in ``args`` (backbone,
    image size, epochs, workers), no pretrained weights, the split of split seed 0 for every
    arm and seed (``seed`` varies training only), no wandb, quiet, replacing an earlier run at
    ``output``; ``options`` add to them or override them."""
    return {
        "output": str(output),
        "overwrite": True,
        "backbone": args.backbone,
        "pretrained": "none",
        "image_size": args.image_size,
        "epochs": args.epochs,
        "workers": args.workers,
        "seed": seed,
        "split_seed": 0,
        "wandb": "disabled",
        "quiet": True,
        **options,
    }


class Results:
    """``OUT/results.json`` (or ``name``): the rows of every run so far, each keyed by ``key``
    fields. Files of the earlier layout (a bare list of rows) are read too."""

    def __init__(
        self,
        out: Path,
        key: Sequence[str],
        args: argparse.Namespace | None = None,
        name: str = "results.json",
    ):
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.key = out / name, tuple(key)
        self.args = {k: str(v) for k, v in vars(args).items()} if args else {}
        data = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.rows: list[dict] = data["rows"] if isinstance(data, dict) else data

    def has(self, cell: tuple) -> bool:
        return any(tuple(r[k] for k in self.key) == cell for r in self.rows)

    def add(self, rows: dict | list[dict]) -> None:
        self.rows += rows if isinstance(rows, list) else [rows]
        self.path.write_text(json.dumps({"args": self.args, "rows": self.rows}, indent=1))


def run_cells(
    results: Results,
    cells: Iterable[tuple],
    run: Callable[..., dict | list[dict]],
    shown: Sequence[str] | None = None,
) -> None:
    """``run(*cell)`` for every cell (a tuple of the key fields) not yet in ``results``; each
    row is printed as one JSON line (only the ``shown`` fields, if given) and saved at once."""
    for cell in cells:
        if results.has(cell):
            continue
        got = run(*cell)
        results.add(got)
        for row in got if isinstance(got, list) else [got]:
            print(json.dumps({k: row[k] for k in shown} if shown else row), flush=True)


def summarize(rows: list[dict], metrics: Sequence[str]) -> list[dict]:
    """Mean and sample standard deviation over seeds, per arm, in the order arms first appear."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm]
        entry: dict[str, Any] = {"arm": arm, "runs": len(rs)}
        for k in metrics:
            vals = [r[k] for r in rs]
            entry[k] = statistics.mean(vals)
            entry[k + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(entry)
    return out


NAMES = {
    "balanced_accuracy": "balanced acc",
    "macro_f1": "macro F1",
    "accuracy": "accuracy",
    "minority_recall": "minority recall",
    "qwk": "QWK",
    "grade_mae": "grade MAE",
    "val_balanced_accuracy": "val balanced acc",
    "val_macro_f1": "val macro F1",
    "val_accuracy": "val accuracy",
}
AS_IS = ("qwk", "grade_mae")
"""Figures shown as they are; the others are fractions, shown as percent."""


def markdown(summary: list[dict], metrics: Sequence[str]) -> str:
    """A table of mean ± sd per arm."""
    lines = [
        "| arm | runs | " + " | ".join(NAMES.get(k, k) for k in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for s in summary:
        cells = [
            f"{s[k]:.3f} ± {s[k + '_sd']:.3f}"
            if k in AS_IS
            else f"{100 * s[k]:.1f} ± {100 * s[k + '_sd']:.1f}"
            for k in metrics
        ]
        lines.append(f"| {s['arm']} | {s['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(
    out: Path, script: str, argv: list[str] | None, header: str, body: str, name: str = "table.md"
) -> str:
    """``OUT/table.md`` (or ``name``): provenance, then ``header`` (the budget), then ``body``;
    also printed."""
    text = provenance(script, argv) + header + "\n" + body.rstrip() + "\n"
    (out / name).write_text(text)
    print(text)
    return text
