"""Model-quality benchmark on HAM10000: which imbalance recipe wins at a fixed CPU budget?

Every arm trains the same backbone for the same epochs on one lesion-grouped stratified split
(seed 0), with 3 training seeds; the best epoch is chosen on the validation split by the
default ``--select`` (``ba_f1``) and the test split is scored once per run with the served
decisions (plus the raw argmax of the best and last checkpoints). ``minimal_loop`` and
``loop_*`` arms are the hand-written yardstick of ``minimal_loop.py``, alone or with pieces of
skincls's recipe. Writes results JSON, a markdown table and a PNG plot.

    python benchmarks/quality.py --out /tmp/skincls-quality            # all arms, 3 seeds
    python benchmarks/quality.py --arms ce ce_sampler --seeds 0        # a quick look
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ham import CLASSES, DEFAULT_DATA, lesion_regions, lesion_run_values, raw_figures, train_counts
from harness import (
    Results,
    budget_line,
    budget_parser,
    markdown,
    run_cells,
    summarize,
    write_table,
)
from minimal_loop import loop_optimizer

DEFAULT_ARM = {"loss": "ce", "sampler": "class_balanced", "ema_decay": None}
"""The tool's defaults during issue 19's ablation (``ema_decay`` None: resolved from
--pretrained as a user's run is); the arms are served from the best validation epoch unless they
say otherwise (:func:`run_arm`). Today's defaults are the arm ``default_sqrt_sampler_last``."""

ARMS: dict[str, dict] = {
    "ce": {"loss": "ce", "sampler": "none"},
    "ce_sampler": {"loss": "ce", "sampler": "class_balanced"},
    "ce_sqrt_sampler": {"loss": "ce", "sampler": "sqrt"},
    "cb_softmax": {"loss": "cb_softmax", "sampler": "none", "beta": 0.999},
    "cb_focal": {"loss": "cb_focal", "sampler": "none", "beta": 0.999, "gamma": 1.0},
    "cb_focal_sampler": {
        "loss": "cb_focal",
        "sampler": "class_balanced",
        "beta": 0.999,
        "gamma": 1.0,
    },
    "logit_adjust": {"loss": "logit_adjust", "sampler": "none", "tau": 1.0},
    "balanced_softmax": {"loss": "balanced_softmax", "sampler": "none"},
    # issue 17: recipe features on top of ce + class-balanced sampler; with the EMA it is the
    # default from scratch since issue 19
    "ce_sampler_ema": {"loss": "ce", "sampler": "class_balanced", "ema_decay": 0.999},
    # the tool's defaults as they are now (weight EMA on from scratch, area-averaged resizing)
    "default": DEFAULT_ARM,
    "ce_sampler_head_lr10": {"loss": "ce", "sampler": "class_balanced", "head_lr_mult": 10.0},
    # issue 19: the yardstick, a plain hand-written timm loop (benchmarks/minimal_loop.py)
    "minimal_loop": {},
    "minimal_loop_train": {"train_only": True},  # on the train part only (skincls's images)
    # the loop on the train part with pieces of skincls's recipe (minimal_loop.SKINCLS_PIECES)
    "loop_optim": {"train_only": True, "pieces": ("optim",)},
    "loop_schedule": {"train_only": True, "pieces": ("schedule",)},
    "loop_weight_decay": {"train_only": True, "pieces": ("weight_decay",)},
    "loop_clip": {"train_only": True, "pieces": ("clip",)},
    "loop_dropout": {"train_only": True, "pieces": ("dropout",)},
    "loop_data": {"train_only": True, "pieces": ("data",)},
    "loop_data_no_augment": {"train_only": True, "pieces": ("data", "no_augment")},
    "loop_skincls": {"train_only": True, "pieces": ("optim", "clip", "dropout", "data")},
    # issue 19: the default recipe with one change towards the yardstick ("region": extra lines
    # of the lesion region file)
    "ablate_no_augment": {
        "loss": "ce",
        "sampler": "class_balanced",
        "region": "augment: {train: [], eval: []}",
    },
    "ablate_squash": {"loss": "ce", "sampler": "class_balanced", "region": "resize: squash"},
    "ablate_no_dropout": {"loss": "ce", "sampler": "class_balanced", "dropout": 0.0},
    "ablate_no_warmup": {"loss": "ce", "sampler": "class_balanced", "warmup_epochs": 0},
    "ablate_wd005": {"loss": "ce", "sampler": "class_balanced", "weight_decay": 0.05},
    "ablate_batch32": {"loss": "ce", "sampler": "class_balanced", "batch_size": 32, "lr": 1e-3},
    "default_no_clip": {
        **DEFAULT_ARM,
        "grad_clip": 0.0,
    },
    # the defaults with the loop's pieces that each cost it macro F1 (loop_clip, loop_dropout,
    # loop_data) taken out
    "default_no_clip_dropout": {
        **DEFAULT_ARM,
        "grad_clip": 0.0,
        "dropout": 0.0,
    },
    "default_no_clip_dropout_augment": {
        **DEFAULT_ARM,
        "grad_clip": 0.0,
        "dropout": 0.0,
        "region": "augment: {train: [], eval: []}",
    },
    # every loop setting skincls has an option for, augmentation kept (warm-up 2 epochs: the
    # one-cycle schedule peaks at 30% of 6 epochs)
    "default_loop_options": {
        **DEFAULT_ARM,
        "grad_clip": 0.0,
        "dropout": 0.0,
        "weight_decay": 0.05,
        "warmup_epochs": 2,
    },
    # skincls's optimizer and schedule swapped for the loop's (a diagnostic: loop_optimizer)
    "default_loop_optimizer": {
        **DEFAULT_ARM,
        "optimizer": "loop",
    },
    # the loop's whole recipe inside skincls train (its optimizer and schedule, no clipping, no
    # dropout, no augmentation, squash), with skincls's EMA, selection and served decisions
    "default_loop_recipe": {
        **DEFAULT_ARM,
        "optimizer": "loop",
        "grad_clip": 0.0,
        "dropout": 0.0,
        "region": "augment: {train: [], eval: []}\nresize: squash",
    },
    # the defaults with the milder square-root sampler (the tau rule corrects the rest)
    "default_sqrt_sampler": {**DEFAULT_ARM, "sampler": "sqrt"},
    # the defaults since issue 19: the square-root sampler and the last epoch served
    "default_sqrt_sampler_last": {**DEFAULT_ARM, "sampler": "sqrt", "serve_epoch": "last"},
    "ce_serve_last": {"loss": "ce", "sampler": "none", "serve_epoch": "last"},
    "ablate_lr_auto": {"loss": "ce", "sampler": "class_balanced", "lr": None},
    "ablate_select_ba": {"loss": "ce", "sampler": "class_balanced", "select": "balanced_accuracy"},
}


def run_arm(name: str, seed: int, args, regions_dir: Path, out: Path) -> dict:
    from skincls.core.config import build_config
    from skincls.training.train import train

    if name.startswith(("minimal_loop", "loop_")):
        return _minimal_row(name, seed, args, regions_dir)
    arm = dict(ARMS[name])
    swap = loop_optimizer() if arm.pop("optimizer", None) == "loop" else contextlib.nullcontext()
    extra = arm.pop("region", None)
    if extra:  # this arm's own lesion region file
        regions_dir = lesion_regions(out, f"regions-{name}", extra)

    values = lesion_run_values(
        args,
        out / f"{name}-s{seed}",
        seed,
        regions_dir,
        lr=args.lr,
        warmup_epochs=1,
        region_balance="none",
        ema_decay=0.0,  # the recipe these arms were measured with; ce_sampler_ema sets 0.999
        serve_epoch="best",  # ditto, before --serve-epoch last became the default
    )
    values.update(arm)
    t0 = time.perf_counter()
    with swap:
        result = train(build_config(values))
    m = result.test["regions"]["lesion"]
    counts = train_counts(Path(result.run_dir))
    total = sum(counts.values())
    minority = [c for c in CLASSES if counts.get(c, 0) / total < 0.05]
    return {
        "arm": name,
        "seed": seed,
        "best_epoch": result.best_epoch,
        "served_epoch": result.served_epoch,
        "balanced_accuracy": m["balanced_accuracy"],
        "macro_f1": m["macro_f1"],
        "accuracy": m["accuracy"],
        "minority_recall": statistics.mean(m["per_class"][c]["recall"] for c in minority),
        "minority_classes": minority,
        "per_class_recall": {c: v["recall"] for c, v in m["per_class"].items()},
        "seconds": time.perf_counter() - t0,
        **raw_figures(Path(result.run_dir)),
    }


def _minimal_row(name: str, seed: int, args, regions_dir: Path) -> dict:
    """A ``minimal_loop`` arm: its test figures in the same row shape as the other arms
    (minority classes: those under 5% of its training images, as for the others)."""
    from minimal_loop import run_minimal, split_parts

    arm = ARMS[name]
    result = run_minimal(
        seed, args.data, regions_dir, args, arm.get("train_only", False), arm.get("pieces", ())
    )
    m = result["metrics"]
    parts = split_parts(args.data, regions_dir)
    train = [s.labels[0].index for s in parts["train"]]
    minority = [i for i in range(len(CLASSES)) if train.count(i) / len(train) < 0.05]
    recall = {CLASSES[int(c)]: v["recall"] for c, v in m["per_class"].items()}
    return {
        "arm": name,
        "seed": seed,
        "best_epoch": args.epochs,
        "balanced_accuracy": m["balanced_accuracy"],
        "macro_f1": m["macro_f1"],
        "accuracy": m["accuracy"],
        "minority_recall": statistics.mean(recall[CLASSES[i]] for i in minority),
        "minority_classes": [CLASSES[i] for i in minority],
        "per_class_recall": recall,
        "seconds": result["seconds"],
    }


METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "minority_recall")


def raw_table(rows: list[dict]) -> str:
    """Per arm, the decision rule's part: the test figures of the served decision (calibrated,
    the validation-chosen rule) beside the raw argmax of the best and of the last checkpoint."""
    lines = [
        "| arm | runs | served BA / F1 / acc | raw best BA / F1 / acc | raw last BA / F1 / acc |",
        "|---|---|---|---|---|",
    ]
    keys = ("balanced_accuracy", "macro_f1", "accuracy")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm and "raw_best" in r]
        if not rs:
            continue
        cells = [
            " / ".join(f"{100 * statistics.mean(get(r)[k] for r in rs):.1f}" for k in keys)
            for get in (lambda r: r, lambda r: r["raw_best"], lambda r: r["raw_last"])
        ]
        lines.append(f"| {arm} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["balanced_accuracy", "macro_f1", "accuracy", "minority_recall"]
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(summary)
    for i, s in enumerate(summary):
        xs = [j + i * width for j in range(len(keys))]
        ax.bar(
            xs,
            [100 * s[k] for k in keys],
            width,
            yerr=[100 * s[k + "_sd"] for k in keys],
            label=s["arm"],
            capsize=2,
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))], keys)
    ax.set_ylabel("% on the test split (mean ± sd over seeds)")
    ax.legend(fontsize=7, ncol=4)
    ax.set_title("HAM10000, lesion-grouped split: imbalance recipes at one budget")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = budget_parser(__doc__, Path(tempfile.gettempdir()) / "skincls-quality", image_size=64)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"HAM10000 manifest not found at {args.data}", file=sys.stderr)
        return 2
    regions_dir = lesion_regions(args.out)
    results = Results(args.out, ("arm", "seed"), args)
    cells = [] if args.report else [(a, s) for s in args.seeds for a in args.arms]
    shown = ("arm", "seed", *METRICS, "seconds")
    run_cells(
        results, cells, lambda arm, seed: run_arm(arm, seed, args, regions_dir, args.out), shown
    )
    rows = [r for r in results.rows if r["arm"] in args.arms and r["seed"] in args.seeds]
    summary = summarize(rows, METRICS)
    table = markdown(summary, METRICS)
    if any("raw_best" in r for r in rows):
        table += "\n\n" + raw_table(rows)
    write_table(args.out, __file__, argv, budget_line(args), table)
    if summary:
        plot(summary, args.out / "quality.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
