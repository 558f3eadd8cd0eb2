"""Seconds for the group-bootstrap intervals (issue 29): 2,000 resamples of a real HAM10000 test
split (a finished run's served predictions, lesions as groups) and of 20,000 generated labels
in 5,000 groups, 7 classes; the median of ``--repeats`` timings of
:func:`skincls.core.bootstrap.intervals` alone (the predictions are made once, before timing).

    python benchmarks/bootstrap.py --run /tmp/skincls-finetune/lite0_pretrained-s0
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from provenance import provenance


def run_rows(run: Path):
    """The served predictions of ``run`` on its test split: rows, groups and heads."""
    import torch

    from skincls.model.inference import predict_loader
    from skincls.run.load import load_run
    from skincls.serving.evaluate import Selection, eval_loader, select_samples

    model, config, registry, specs, meta = load_run(run)
    _, samples = select_samples(run, config, registry, Path(config.data), Selection("test"))
    cpu = torch.device("cpu")
    loader, _ = eval_loader(specs, meta, samples, 256, 0, cpu)
    p = predict_loader(model, loader, cpu)
    groups = [samples[i].group for i in p["index"].tolist()]
    heads = [(s.name, len(s.classes), bool(s.ordinal)) for s in specs]
    return (p["region"], p["label"], p["pred"]), groups, heads


def generated(n: int = 20000, groups: int = 5000, k: int = 7):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, n)
    preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, k, n))
    names = [f"g{i}" for i in rng.integers(0, groups, n)]
    return (np.zeros(n, dtype=int), labels, preds), names, [("generated", k, True)]


def timed(rows, groups, heads, resamples: int, repeats: int) -> tuple[float, dict]:
    from skincls.core.bootstrap import Bootstrap, intervals

    seconds, out = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = intervals(*rows, groups, heads, Bootstrap(resamples))
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, help="a finished HAM10000 run (benchmarks/finetune.py)")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    cases = [("generated: 20,000 labels, 5,000 groups, 7 classes", generated())]
    if args.run:
        cases.insert(0, (f"HAM10000 test split of {args.run.name}", run_rows(args.run)))
    lines = [provenance(__file__, argv), "", "| case | labels | groups | seconds (median) |"]
    lines.append("|---|---|---|---|")
    for name, (rows, groups, heads) in cases:
        seconds, out = timed(rows, groups, heads, args.resamples, args.repeats)
        lines.append(f"| {name} | {len(rows[1])} | {out['groups']} | {seconds:.2f} |")
        first = heads[0][0]
        ba = out["regions"][first]["balanced_accuracy"]
        lines.append(f"|  {first} balanced accuracy 95% interval | | | {ba[0]:.3f}-{ba[1]:.3f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
