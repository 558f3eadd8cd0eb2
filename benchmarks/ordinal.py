"""Ordinal grades: does an ordinal loss or the median decision lower the grade error?

Two data sets, one ordinal head each, one grouped split per data set (split seed 0) shared by
every arm and seed, the same budget for every arm:

- ``wrinkles``: generated forehead-wrinkle images (grade g has about 2g lines) with the seed
  project's AI Hub grade distribution 572/5083/3393/2340/1092/819/637 scaled by --scale;
- ``ham_age``: the real HAM10000 images, the target being the patient's age band (<30, 30-44,
  45-59, 60-74, 75+), grouped by lesion (images without an age are left out).

Arms (all with the class-balanced sampler, the default): ``ce`` (the default: cross-entropy,
argmax), ``ce_median`` (the same model, median decision), ``corn``, ``sord``, ``cdw_ce``.

    python benchmarks/ordinal.py --out /tmp/skincls-ordinal --seeds 0 1 2
    python benchmarks/ordinal.py --out /tmp/skincls-ordinal --seeds 0 1 2 --report
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import (  # noqa: E402
    Results,
    budget_line,
    budget_parser,
    run_cells,
    run_values,
    write_table,
)
from multitask import BANDS, DEFAULT_DATA, age_band  # noqa: E402

ARMS: dict[str, dict] = {
    "ce": {"loss": "ce", "decision": "argmax"},
    "ce_median": {"loss": "ce", "decision": "median"},
    "corn": {"loss": "corn", "decision": "argmax"},
    "sord": {"loss": "sord", "decision": "argmax"},
    "cdw_ce": {"loss": "cdw_ce", "decision": "argmax"},
}
METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "within1", "grade_mae", "qwk")


def make_wrinkles(out: Path, scale: float) -> tuple[Path, str]:
    from skincls.data.synthetic import FOREHEAD_WRINKLE_COUNTS, make_demo_data

    data = out / "wrinkles"
    if not (data / "manifest.csv").is_file():
        counts = [max(2, round(n * scale)) for n in FOREHEAD_WRINKLE_COUNTS]
        make_demo_data(
            data, counts={"forehead_wrinkle": counts}, size=64, seed=11, images_per_subject=2
        )
    return data, "forehead_wrinkle"


def make_ham_age(out: Path, ham: Path) -> tuple[Path, str]:
    """``ham_age/manifest.csv`` (absolute image paths) and its region file."""
    folder = out / "ham_age"
    (folder / "regions").mkdir(parents=True, exist_ok=True)
    (folder / "regions" / "age_band.yaml").write_text(
        json.dumps({"name": "age_band", "classes": BANDS, "ordinal": True})
    )
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        with (
            open(ham, newline="", encoding="utf-8") as fh,
            open(manifest, "w", newline="") as out_fh,
        ):
            w = csv.writer(out_fh)
            w.writerow(["path", "label", "region", "group"])
            for r in csv.DictReader(fh):
                band = age_band(r["age"])
                if band is not None:
                    path = (ham.parent / r["path"]).resolve()
                    w.writerow([str(path), band, "age_band", r["lesion_id"]])
    return manifest, "age_band"


def run_arm(dataset: str, arm: str, seed: int, data: Path, region: str, args) -> dict:
    from skincls.core.config import build_config
    from skincls.training.train import train

    values = run_values(
        args,
        args.out / "runs" / f"{dataset}-{arm}-s{seed}",
        seed,
        data=str(data),
        region=[region],
        batch_size=64,
        lr=2e-3,
        warmup_epochs=1,
        report=False,
        select="balanced_accuracy",
        sampler="class_balanced",
        **ARMS[arm],
    )
    if dataset == "ham_age":
        values["regions_dir"] = [str(data.parent / "regions")]
    t0 = time.perf_counter()
    result = train(build_config(values))
    m = result.test["regions"][region]
    return {
        "dataset": dataset,
        "arm": arm,
        "seed": seed,
        "best_epoch": result.best_epoch,
        "seconds": time.perf_counter() - t0,
        **{k: m[k] for k in METRICS},
    }


def table(rows: list[dict], dataset: str) -> str:
    lines = [
        "| arm | runs | balanced acc | macro F1 | exact | within one | grade MAE | QWK |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        rs = [r for r in rows if r["dataset"] == dataset and r["arm"] == arm]
        if not rs:
            continue
        cells = []
        for k in METRICS:
            vals = [r[k] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            if k in ("grade_mae", "qwk"):
                cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}")
            else:
                cells.append(f"{100 * statistics.mean(vals):.1f} ± {100 * sd:.1f}")
        lines.append(f"| {arm} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = budget_parser(__doc__, Path("/tmp/skincls-ordinal"), image_size=48)
    p.add_argument("--datasets", nargs="+", default=["wrinkles", "ham_age"])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--ham", type=Path, default=DEFAULT_DATA)
    args = p.parse_args(argv)
    results = Results(args.out, ("dataset", "arm", "seed"), args)
    for dataset in [] if args.report else args.datasets:
        if dataset == "ham_age" and not args.ham.is_file():
            print(f"HAM10000 manifest not found at {args.ham}; skipping ham_age", file=sys.stderr)
            continue
        data, region = (
            make_wrinkles(args.out, args.scale)
            if dataset == "wrinkles"
            else make_ham_age(args.out, args.ham)
        )
        cells = [(dataset, a, s) for s in args.seeds for a in args.arms]
        run_cells(
            results,
            cells,
            lambda d, arm, seed, data=data, region=region: run_arm(
                d, arm, seed, data, region, args
            ),
        )
    rows = [r for r in results.rows if r["seed"] in args.seeds]
    body = "".join(f"\n{d}\n\n{table(rows, d)}\n" for d in args.datasets)
    extra = "class-balanced sampler, best epoch on validation balanced accuracy"
    write_table(args.out, __file__, argv, budget_line(args, extra), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
