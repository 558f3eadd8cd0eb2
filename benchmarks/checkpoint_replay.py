"""Replay the served decision of the last epoch's weights (raw, EMA, or the better of the two on
validation) against the best validation epoch's, on runs the quality benchmark kept. No training.

    python benchmarks/checkpoint_replay.py --out /tmp/abl --arms default default_sqrt_sampler
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from provenance import provenance

FIGURES = ("balanced_accuracy", "macro_f1", "accuracy")
CHOICES = ("best (served now)", "last raw", "last EMA", "last, raw or EMA on val")


def logits_of(run: Path, weights: str, split: str) -> tuple[torch.Tensor, list[int]]:
    """Raw lesion logits of the last checkpoint's raw or EMA weights on a split."""
    from skincls.calibration import apply_serving
    from skincls.checkpoints import load_trainer_state
    from skincls.evaluate import eval_loader, load_run_model, select_samples
    from skincls.inference import head_logits, predict_loader

    model, config, registry, specs, meta = load_run_model(run, "last")
    if weights == "ema":
        model.load_state_dict(load_trainer_state(run / "last")["ema"])
    apply_serving(model, None)
    _, samples = select_samples(
        run, config, registry, specs, Path(config.data), split, (), "auto", None, False
    )
    cpu = torch.device("cpu")
    loader, _ = eval_loader(specs, meta, samples, 256, 2, cpu)
    logits, labels = head_logits(
        predict_loader(model, loader, cpu, keep_logits=True), model.region_names
    )["lesion"]
    return logits, labels.tolist()


def served(val, val_y, test, test_y, prior, classes) -> dict[str, float]:
    """Test figures of the served rule: calibration and tau fitted on validation for ba_f1."""
    from skincls.calibration import choose_tau, fit_calibration, log_shift
    from skincls.heads import decide, probabilities
    from skincls.metrics import region_metrics

    temperature, bias = fit_calibration(val, torch.as_tensor(val_y), "softmax")

    def cal(z):
        return probabilities(torch.as_tensor(z) / temperature + torch.tensor(bias), "softmax")

    val_p = cal(val)
    tau, figs = choose_tau(val_p, torch.as_tensor(val_y), "argmax", prior, classes, False, "ba_f1")
    pred = decide(cal(test), "argmax", log_shift(prior, tau)).tolist()
    m = region_metrics(test_y, pred, classes)
    return {**{k: m[k] for k in FIGURES}, "val_ba_f1": figs[tau], "tau": tau}


def replay(run: Path, classes: list[str]) -> dict[str, dict[str, float]]:
    from decision_replay import train_prior

    prior = train_prior(run, classes)
    z = np.load(run.parent / f"{run.name}.logits.npz")
    out = {
        CHOICES[0]: served(
            torch.from_numpy(z["best_val_logits"]),
            z["best_val_labels"].tolist(),
            z["best_test_logits"],
            z["best_test_labels"].tolist(),
            prior,
            classes,
        )
    }
    has_ema = "ema" in torch.load(
        run / "last" / "trainer.pt", map_location="cpu", weights_only=True
    )
    for weights, name in (("raw", CHOICES[1]), ("ema", CHOICES[2])):
        if weights == "ema" and not has_ema:
            out[name] = out[CHOICES[1]]
            continue
        val, val_y = logits_of(run, weights, "val")
        test, test_y = logits_of(run, weights, "test")
        out[name] = served(val, val_y, test, test_y, prior, classes)
    a, b = out[CHOICES[1]], out[CHOICES[2]]
    out[CHOICES[3]] = b if b["val_ba_f1"] > a["val_ba_f1"] else a
    return out


def main(argv: list[str] | None = None) -> int:
    from quality import CLASSES

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="the quality benchmark's --out")
    p.add_argument("--arms", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = p.parse_args(argv)
    lines = [
        "| arm | checkpoint | runs | balanced acc | macro F1 | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    raw = {}
    for arm in args.arms:
        runs = [args.out / f"{arm}-s{s}" for s in args.seeds]
        runs = [r for r in runs if (r.parent / f"{r.name}.logits.npz").is_file()]
        if not runs:
            print(f"{arm}: no kept logits in {args.out}", file=sys.stderr)
            continue
        rows = [replay(r, CLASSES) for r in runs]
        raw[arm] = {r.name: x for r, x in zip(runs, rows, strict=True)}
        for choice in CHOICES:
            cells = [
                f"{100 * statistics.mean(x[choice][k] for x in rows):.1f} ± "
                f"{100 * statistics.stdev(x[choice][k] for x in rows) if len(rows) > 1 else 0:.1f}"
                for k in FIGURES
            ]
            lines.append(f"| {arm} | {choice} | {len(rows)} | {' | '.join(cells)} |")
        print("\n".join(lines[-len(CHOICES) :]), flush=True)
    text = provenance(__file__, argv) + "\n" + "\n".join(lines) + "\n"
    (args.out / "checkpoint_replay.md").write_text(text)
    (args.out / "checkpoint_replay.json").write_text(json.dumps(raw, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
