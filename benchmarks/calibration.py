"""Calibration and the validation-chosen decision rule on HAM10000 (issue 15).

The quality benchmark's split and budget (``benchmarks/quality.py``: one lesion-grouped split,
resnet10t from scratch), 3 training seeds, three recipes: plain cross-entropy with uniform
sampling (``ce``), cross-entropy with the class-balanced sampler (``ce_sampler``, the default
until issue 19), the same with the weight EMA (``ce_sampler_ema``) and the tool's defaults
as they are now (``default``: the EMA on from scratch, area-averaged resizing). Each run is trained once (temperature and tau fitted on validation as
``skincls train`` does), then its test split is scored with three decision rules fixed in
advance: the raw argmax (no calibration: what ``--no-calibrate`` and a hand-written loop give),
the most probable calibrated class (``--rule argmax``) and the validation-chosen rule (the
default), and the test ECE (15 bins) is read before and after calibration. Runs already in
``--out`` (``benchmarks/quality.py`` with the same budget) are measured, not retrained.

    python benchmarks/calibration.py --out /tmp/skincls-calibration --seeds 0 1 2 --image-size 48
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from ham import DEFAULT_DATA, lesion_regions, raw_figures
from harness import Results, budget_line, budget_parser, run_cells, write_table
from quality import run_arm

RECIPES = ("ce", "ce_sampler", "ce_sampler_ema", "default")
FIGURES = ("balanced_accuracy", "macro_f1", "accuracy")


def measure(arm: str, seed: int, args, regions_dir: Path) -> dict:
    """One run's test figures under each rule and its calibration figures; a finished run
    already in ``--out`` (the quality benchmark's, same arm, seed and budget) is measured as it
    is, not trained again."""
    from skincls.serving.evaluate import EvalOptions, Selection, evaluate

    run = args.out / f"{arm}-s{seed}"
    if not (run / "evaluation.json").is_file():
        run_arm(arm, seed, args, regions_dir, args.out)
    row: dict = {"arm": arm, "seed": seed, "raw": raw_figures(run)["raw_best"]}
    for rule in ("argmax", "selected"):
        r = evaluate(run, options=EvalOptions(Selection("test"), rule=rule, device="cpu"))
        m = r["regions"]["lesion"]
        row[rule] = {k: m[k] for k in FIGURES}
        c = r["calibration"]["lesion"]
        row["ece_before"], row["ece_after"] = c["before"]["ece"], c["after"]["ece"]
        row["nll_before"], row["nll_after"] = c["before"]["nll"], c["after"]["nll"]
        row["temperature"] = c["temperature"]
    meta = json.loads((run / "best" / "meta.json").read_text())
    row["tau"] = meta["calibration"]["lesion"]["tau"]
    return row


def main(argv: list[str] | None = None) -> int:
    p = budget_parser(__doc__.split("\n")[0], Path("/tmp/skincls-calibration"), image_size=48)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--arms", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"HAM10000 manifest not found at {args.data}", file=sys.stderr)
        return 2
    regions_dir = lesion_regions(args.out)
    results = Results(args.out, ("arm", "seed"), args, name="calibration.json")
    cells = [] if args.report else [(a, s) for s in args.seeds for a in args.arms]
    run_cells(results, cells, lambda arm, seed: measure(arm, seed, args, regions_dir))
    rows = [r for r in results.rows if r["arm"] in args.arms and r["seed"] in args.seeds]
    write_table(args.out, __file__, argv, budget_line(args), table(rows), "calibration.md")
    return 0


def _ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    v = [x * scale for x in values]
    spread = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.{digits}f} ± {spread:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| recipe | rule | balanced acc. | macro F1 | accuracy | tau (per seed) |",
        "|---|---|---|---|---|---|",
    ]
    for arm in RECIPES:
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        for rule in ("raw", "argmax", "selected"):
            cells = [_ms([r[rule][k] for r in mine]) for k in FIGURES]
            taus = {"raw": "-", "argmax": "0"}.get(rule) or ", ".join(f"{r['tau']:g}" for r in mine)
            lines.append(f"| {arm} | {rule} | " + " | ".join(cells) + f" | {taus} |")
    lines += [
        "",
        "| recipe | temperature | test ECE before | test ECE after | test NLL before | after |",
        "|---|---|---|---|---|---|",
    ]
    for arm in RECIPES:
        mine = [r for r in rows if r["arm"] == arm]
        if mine:
            lines.append(
                f"| {arm} | {_ms([r['temperature'] for r in mine], 1, 2)} | "
                f"{_ms([r['ece_before'] for r in mine], 1, 3)} | "
                f"{_ms([r['ece_after'] for r in mine], 1, 3)} | "
                f"{_ms([r['nll_before'] for r in mine], 1, 3)} | "
                f"{_ms([r['nll_after'] for r in mine], 1, 3)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
