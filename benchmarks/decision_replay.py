"""Replay the served decision on the logits the quality benchmark kept, with other tau choices.

``quality.py`` keeps each run's raw lesion logits (``<run>.logits.npz``: the best checkpoint on
validation and test). This script fits the run's calibration on the validation logits as
``skincls train`` does (:func:`skincls.model.calibration.fit_calibration`) and scores on the test
logits the decision ``argmax(log p - tau * log(train prior))`` with tau chosen on validation
for ``ba_f1`` (the served rule: its row should match the benchmark's served figures), for macro
F1 alone, or fixed. No training: seconds per run.

    python benchmarks/decision_replay.py --out /tmp/abl --arms default default_loop_recipe
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from provenance import provenance

RULES = (
    "served (tau for ba_f1)",
    "tau for macro F1",
    "tau 0 (calibrated argmax)",
    "tau 0.5",
    "tau 1",
)
FIGURES = ("balanced_accuracy", "macro_f1", "accuracy")


def train_prior(run: Path, classes: list[str]) -> list[float]:
    """The run's training split class mix."""
    from ham import train_counts

    counts = train_counts(run)
    return [counts.get(c, 0) / sum(counts.values()) for c in classes]


def calibrator(val: torch.Tensor, val_y) -> Callable[[Any], torch.Tensor]:
    """The calibrated probabilities of logits, with the temperature and biases fitted on the
    validation logits ``val`` as ``skincls train`` fits them."""
    from skincls.model.calibration import fit_calibration
    from skincls.model.heads import probabilities

    temperature, bias = fit_calibration(val, torch.as_tensor(val_y), "softmax")

    def calibrated(logits) -> torch.Tensor:
        return probabilities(torch.as_tensor(logits) / temperature + torch.tensor(bias), "softmax")

    return calibrated


def decided_figures(test_p: torch.Tensor, test_y: list[int], prior, tau: float, classes) -> dict:
    """Balanced accuracy, macro F1 and accuracy of ``argmax(log p - tau * log prior)``."""
    from skincls.core.metrics import region_metrics
    from skincls.model.calibration import log_shift
    from skincls.model.heads import decide

    pred = decide(test_p, "argmax", log_shift(prior, tau)).tolist()
    m = region_metrics(test_y, pred, classes)
    return {**{k: m[k] for k in FIGURES}, "tau": tau}


def replay(run: Path, classes: list[str]) -> dict[str, dict[str, float]]:
    """Test figures of each rule in :data:`RULES` for one run."""
    from skincls.model.calibration import choose_tau

    z = np.load(run.parent / f"{run.name}.logits.npz")
    val, val_y = torch.from_numpy(z["best_val_logits"]), torch.from_numpy(z["best_val_labels"])
    calibrated = calibrator(val, val_y)
    prior, val_p = train_prior(run, classes), calibrated(val)
    taus = {
        RULES[0]: choose_tau(val_p, val_y, "argmax", prior, classes, False, "ba_f1")[0],
        RULES[1]: choose_tau(val_p, val_y, "argmax", prior, classes, False, "macro_f1")[0],
        RULES[2]: 0.0,
        RULES[3]: 0.5,
        RULES[4]: 1.0,
    }
    test_p, test_y = calibrated(z["best_test_logits"]), z["best_test_labels"].tolist()
    return {
        rule: decided_figures(test_p, test_y, prior, tau, classes) for rule, tau in taus.items()
    }


def replay_args(doc: str, argv: list[str] | None) -> argparse.Namespace:
    """``--out`` (the quality benchmark's), ``--arms`` and ``--seeds`` of a replay script."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="the quality benchmark's --out")
    p.add_argument("--arms", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    return p.parse_args(argv)


def kept_runs(out: Path, arm: str, seeds: list[int]) -> list[Path]:
    """The arm's runs whose logits the quality benchmark kept (none: said on stderr)."""
    runs = [out / f"{arm}-s{s}" for s in seeds]
    runs = [r for r in runs if (r.parent / f"{r.name}.logits.npz").is_file()]
    if not runs:
        print(f"{arm}: no kept logits in {out}", file=sys.stderr)
    return runs


def mean_sd_cells(rows: list[dict], key: str) -> str:
    """``mean ± sd`` in percent of each of :data:`FIGURES` over ``rows[i][key]``, as table cells."""
    cells = []
    for k in FIGURES:
        values = [100 * x[key][k] for x in rows]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        cells.append(f"{statistics.mean(values):.1f} ± {sd:.1f}")
    return " | ".join(cells)


def main(argv: list[str] | None = None) -> int:
    from ham import CLASSES

    args = replay_args(__doc__ or "", argv)
    served = {
        (r["arm"], r["seed"]): r
        for r in json.loads((args.out / "results.json").read_text())["rows"]
    }
    lines = [
        "| arm | rule | runs | balanced acc | macro F1 | accuracy | tau per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in args.arms:
        runs = kept_runs(args.out, arm, args.seeds)
        if not runs:
            continue
        rows = [replay(r, CLASSES) for r in runs]
        for rule in RULES:
            taus = ", ".join(f"{x[rule]['tau']:g}" for x in rows)
            lines.append(f"| {arm} | {rule} | {len(rows)} | {mean_sd_cells(rows, rule)} | {taus} |")
        check = [served.get((arm, s)) for s in args.seeds if (arm, s) in served]
        if check:
            f1 = statistics.mean(r["macro_f1"] for r in check) * 100
            lines.append(
                f"| {arm} | (benchmark's served figures) | {len(check)} | | {f1:.1f} | | |"
            )
    text = provenance(__file__, argv) + "\n" + "\n".join(lines) + "\n"
    (args.out / "decision_replay.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
