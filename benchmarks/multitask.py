"""Multi-task benchmark on HAM10000: one shared backbone with three heads vs three single-head models.

HAM10000 gives each image three labels: the diagnosis (7 classes), the body site
(``localization``, 14 values without ``unknown``, very imbalanced) and the patient's age, binned
into ordinal bands (<30, 30-44, 45-59, 60-74, 75+). Site and age are missing for some images, so
the data has partial labels, as AI Hub crops do. One lesion-grouped test split (15%) is held out
once; every model trains on the rest (its own validation split picks the best epoch) and is scored
on that same test split.

Arms, each with the same backbone, image size, epochs, batch and seeds:
  shared          one model, three heads; each image is decoded once per epoch for all its labels
  separate_<head> one model per head (three runs), the way the data owners train one ResNet per item

    python benchmarks/multitask.py --out /tmp/skincls-multitask --seeds 0 1 2
    python benchmarks/multitask.py --out /tmp/skincls-multitask --report   # tables only
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import Results, budget_line, budget_parser, run_cells, write_table

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "ham10000" / "manifest.csv"
HEADS = ("diagnosis", "site", "age_band")
DIAGNOSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
SITES = [
    "abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand",
    "lower extremity", "neck", "scalp", "trunk", "upper extremity",
]  # fmt: skip
BANDS = ["<30", "30-44", "45-59", "60-74", "75+"]


def age_band(age: str) -> str | None:
    if not age.strip():
        return None
    a = float(age)
    return next(b for b, hi in zip(BANDS, (30, 45, 60, 75, 1e9), strict=True) if a < hi)


def write_regions(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, classes, ordinal in (
        ("diagnosis", DIAGNOSES, False),
        ("site", SITES, False),
        ("age_band", BANDS, True),
    ):
        (folder / f"{name}.yaml").write_text(
            json.dumps({"name": name, "classes": classes, "ordinal": ordinal})
        )


def write_manifests(data: Path, out: Path, regions_dir: Path) -> dict[str, int]:
    """``all.csv`` (one row per label), then ``trainval.csv`` and ``test.csv``: a lesion-grouped
    stratified 85/15 split of the merged samples made once by skincls's own splitter."""
    from skincls.data.regions import discover_regions
    from skincls.data.sources import load_data
    from skincls.data.split import partition, split_samples

    rows = []
    with open(data, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            path = str((data.parent / r["path"]).resolve())
            labels = {
                "diagnosis": r["label"],
                "site": r["localization"] if r["localization"] != "unknown" else None,
                "age_band": age_band(r["age"]),
            }
            rows += [(path, v, k, r["lesion_id"]) for k, v in labels.items() if v is not None]
    header = ["path", "label", "region", "group"]
    _write(out / "all.csv", header, rows)
    registry = discover_regions([str(regions_dir)], include_entry_points=False)
    ds = load_data(out / "all.csv", registry, list(HEADS))
    parts = partition(ds.samples, split_samples(ds.samples, (0.85, 0.0, 0.15), seed=0))
    for part, name in (("train", "trainval.csv"), ("test", "test.csv")):
        keep = {s.path for s in parts[part]}
        _write(out / name, header, [r for r in rows if r[0] in keep])
    return {"images": len(ds.samples), "trainval": len(parts["train"]), "test": len(parts["test"])}


def _write(path: Path, header: list[str], rows: list[tuple]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def run_arm(arm: str, seed: int, args, out: Path) -> dict:
    from skincls.core.config import build_config
    from skincls.data.regions import discover_regions
    from skincls.data.sources import load_data
    from skincls.data.split import load_split, partition
    from skincls.serving.evaluate import EvalOptions, Selection, evaluate
    from skincls.training.train import train

    heads = list(HEADS) if arm == "shared" else [arm.removeprefix("separate_")]
    run_dir = out / "runs" / f"{arm}-s{seed}"
    values = dict(
        data=str(out / "trainval.csv"),
        regions_dir=[str(out / "regions")],
        region=heads,
        output=str(run_dir),
        overwrite=True,
        backbone=args.backbone,
        pretrained="none",
        image_size=args.image_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        warmup_epochs=1,
        workers=args.workers,
        seed=seed,
        split_seed=0,
        test_fraction=0.0,
        val_fraction=0.15,
        wandb="disabled",
        quiet=True,
        report=False,
    )
    t0 = time.perf_counter()
    result = train(build_config(values))
    seconds = time.perf_counter() - t0
    registry = discover_regions([str(out / "regions")], include_entry_points=False)
    samples = load_data(out / "trainval.csv", registry, heads).samples
    train_part = partition(samples, load_split(run_dir / "split.csv", samples))["train"]
    test = evaluate(
        result.run_dir,
        out / "test.csv",
        EvalOptions(Selection("all"), workers=args.workers),
    )
    weights = sum(f.stat().st_size for f in (run_dir / "best").glob("*.safetensors"))
    row = {
        "arm": arm,
        "seed": seed,
        "seconds": seconds,
        "decodes_per_epoch": len(train_part),
        "weights_bytes": weights,
        "best_epoch": result.best_epoch,
    }
    for h, m in test["regions"].items():
        row.update({f"{h}_{k}": m[k] for k in ("balanced_accuracy", "macro_f1", "grade_mae")})
    return row


def table(rows: list[dict]) -> str:
    """Per head: shared vs separate, mean ± sd over seeds; then cost per configuration."""

    def ms(vals: list[float], pct: bool = True) -> str:
        f = 100.0 if pct else 1.0
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{f * statistics.mean(vals):.{1 if pct else 3}f} ± {f * sd:.{1 if pct else 3}f}"

    lines = [
        "| head | metric | shared | separate | shared - separate |",
        "|---|---|---|---|---|",
    ]
    shared = [r for r in rows if r["arm"] == "shared"]
    for h in HEADS:
        sep = [r for r in rows if r["arm"] == f"separate_{h}"]
        metrics = ["balanced_accuracy", "macro_f1"] + (["grade_mae"] if h == "age_band" else [])
        for k in metrics:
            a, b = [r[f"{h}_{k}"] for r in shared], [r[f"{h}_{k}"] for r in sep]
            if not a or not b:
                continue
            pct = k != "grade_mae"
            diff = (statistics.mean(a) - statistics.mean(b)) * (100 if pct else 1)
            unit = " pt" if pct else ""
            lines.append(
                f"| {h} | {k} | {ms(a, pct)} | {ms(b, pct)} | {diff:+.{1 if pct else 3}f}{unit} |"
            )
    seeds = sorted({r["seed"] for r in shared})
    cost = {"shared": {"seconds": [], "decodes": [], "bytes": []}}
    cost["separate (3 models)"] = {"seconds": [], "decodes": [], "bytes": []}
    for s in seeds:
        sh = [r for r in shared if r["seed"] == s]
        sep = [r for r in rows if r["arm"].startswith("separate_") and r["seed"] == s]
        if not sh or len(sep) != len(HEADS):
            continue
        for key, rs in (("shared", sh), ("separate (3 models)", sep)):
            cost[key]["seconds"].append(sum(r["seconds"] for r in rs))
            cost[key]["decodes"].append(sum(r["decodes_per_epoch"] for r in rs))
            cost[key]["bytes"].append(sum(r["weights_bytes"] for r in rs))
    lines += [
        "",
        "| configuration | training time (s, all heads) | images decoded per epoch | deployed weights (MB) |",
        "|---|---|---|---|",
    ]
    for key, c in cost.items():
        if c["seconds"]:
            lines.append(
                f"| {key} | {ms(c['seconds'], False)} | {statistics.mean(c['decodes']):.0f} | "
                f"{statistics.mean(c['bytes']) / 1e6:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = budget_parser(__doc__, Path(tempfile.gettempdir()) / "skincls-multitask", image_size=48)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--arms", nargs="+", default=["shared"] + [f"separate_{h}" for h in HEADS])
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"HAM10000 manifest not found at {args.data}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_regions(args.out / "regions")
    if not (args.out / "test.csv").is_file():
        print(json.dumps(write_manifests(args.data, args.out, args.out / "regions")), flush=True)
    results = Results(args.out, ("arm", "seed"), args)
    cells = [] if args.report else [(a, s) for s in args.seeds for a in args.arms]
    run_cells(results, cells, lambda arm, seed: run_arm(arm, seed, args, args.out))
    rows = [r for r in results.rows if r["seed"] in args.seeds]
    write_table(args.out, __file__, argv, budget_line(args), table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
