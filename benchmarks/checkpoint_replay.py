"""Replay the served decision of the last epoch's weights (raw, EMA, or the better of the two on
validation) against the best validation epoch's, on runs the quality benchmark kept. No training:
each run's last checkpoint is scored on validation and test (about 15 s per run), its calibration
and the tau of the decision rule are fitted on validation for ``ba_f1`` as ``skincls train`` fits
them (:mod:`decision_replay`), and the test figures are compared.

    python benchmarks/checkpoint_replay.py --out /tmp/abl --arms default default_sqrt_sampler
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from decision_replay import (
    calibrator,
    decided_figures,
    kept_runs,
    mean_sd_cells,
    replay_args,
    train_prior,
)
from provenance import provenance

CHOICES = ("best (served before)", "last raw", "last EMA", "last, raw or EMA on val")


def served(val, val_y, test, test_y, prior, classes) -> dict[str, float]:
    """Test figures of the served rule (calibration and tau fitted on validation for ba_f1) and
    the validation ``ba_f1`` it was chosen with."""
    from skincls.model.calibration import choose_tau

    calibrated = calibrator(torch.as_tensor(val), val_y)
    tau, figures = choose_tau(
        calibrated(val), torch.as_tensor(val_y), "argmax", prior, classes, False, "ba_f1"
    )
    out = decided_figures(calibrated(test), list(test_y), prior, tau, classes)
    return {**out, "val_ba_f1": figures[tau]}


def replay(run: Path, classes: list[str]) -> dict[str, dict[str, float]]:
    """Test figures of each of :data:`CHOICES` for one run."""
    from ham import split_logits

    from skincls.run.checkpoints import load_trainer_state

    prior = train_prior(run, classes)
    z = np.load(run.parent / f"{run.name}.logits.npz")
    keys = ("best_val_logits", "best_val_labels", "best_test_logits", "best_test_labels")
    out = {CHOICES[0]: served(*(z[k] for k in keys), prior, classes)}
    trainer = load_trainer_state(run / "last")
    for ema, name in ((False, CHOICES[1]), (True, CHOICES[2])):
        if ema and "ema" not in trainer:
            out[name] = out[CHOICES[1]]
            continue
        val, val_y = split_logits(run, "last", "val", ema)
        test, test_y = split_logits(run, "last", "test", ema)
        out[name] = served(val, val_y, test, test_y, prior, classes)
    raw, ema_ = out[CHOICES[1]], out[CHOICES[2]]
    out[CHOICES[3]] = ema_ if ema_["val_ba_f1"] > raw["val_ba_f1"] else raw
    return out


def main(argv: list[str] | None = None) -> int:
    from ham import CLASSES

    args = replay_args(__doc__ or "", argv)
    lines = [
        "| arm | checkpoint | runs | balanced acc | macro F1 | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    raw = {}
    for arm in args.arms:
        runs = kept_runs(args.out, arm, args.seeds)
        if not runs:
            continue
        rows = [replay(r, CLASSES) for r in runs]
        raw[arm] = {r.name: x for r, x in zip(runs, rows, strict=True)}
        for choice in CHOICES:
            lines.append(f"| {arm} | {choice} | {len(rows)} | {mean_sd_cells(rows, choice)} |")
        print("\n".join(lines[-len(CHOICES) :]), flush=True)
    text = provenance(__file__, argv) + "\n" + "\n".join(lines) + "\n"
    (args.out / "checkpoint_replay.md").write_text(text)
    (args.out / "checkpoint_replay.json").write_text(json.dumps(raw, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
