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

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import provenance

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "ham10000" / "manifest.csv"

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
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def add_budget_args(p: argparse.ArgumentParser, image_size: int) -> None:
    """The training budget and run options every HAM10000 arm benchmark shares."""
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--backbone", default="resnet10t")
    p.add_argument("--image-size", type=int, default=image_size)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--report", action="store_true", help="only summarise the runs in --out")


def lesion_regions(out: Path, folder: str = "regions", extra: str = "") -> Path:
    """``out/folder/lesion.yaml``: the 7-diagnosis region, plus ``extra`` lines."""
    regions_dir = out / folder
    regions_dir.mkdir(parents=True, exist_ok=True)
    text = f"name: lesion\nclasses: [{', '.join(CLASSES)}]\n" + (f"{extra}\n" if extra else "")
    (regions_dir / "lesion.yaml").write_text(text)
    return regions_dir


def run_values(args, output: Path, seed: int, **options) -> dict:
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

    values = run_values(
        args,
        out / f"{name}-s{seed}",
        seed,
        data=str(args.data),
        regions_dir=[str(regions_dir)],
        region=["lesion"],
        group_column="lesion_id",
        batch_size=args.batch_size,
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


def train_counts(run: Path) -> dict[str, int]:
    """Labels per class in the run's training part (its ``split.csv``)."""
    import csv

    counts: dict[str, int] = {}
    with open(run / "split.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["part"] == "train":
                counts[row["label"]] = counts.get(row["label"], 0) + 1
    return counts


class _OneCycle:
    """torch's ``OneCycleLR`` behind the ``step_update`` of timm's schedulers."""

    def __init__(self, optimizer, max_lr: float, total: int):
        import torch

        self.sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=total)

    def step_update(self, num_updates: int) -> None:
        self.sched.step()

    def state_dict(self) -> dict:
        return self.sched.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sched.load_state_dict(state)


@contextlib.contextmanager
def loop_optimizer():
    """While open, ``skincls train`` optimizes as the minimal loop does: AdamW with weight decay
    0.05 on every parameter and a one-cycle schedule peaking at the run's ``lr`` (its Adam
    beta1 cycling 0.95 -> 0.85 -> 0.95). A diagnostic for the benchmark, not an option of the
    tool."""
    import torch

    import skincls.training.optim as optim

    saved = optim.create_optimizer, optim.create_scheduler
    used = []

    def create_optimizer(model, lr, weight_decay, *args, **kwargs):
        # the one-cycle schedule sets the starting rate itself (lr / 25)
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)

    def create_scheduler(optimizer, lr, eta_min, total, warmup):
        used.append(total)
        return _OneCycle(optimizer, lr, total)

    optim.create_optimizer, optim.create_scheduler = create_optimizer, create_scheduler
    try:
        yield
    finally:
        optim.create_optimizer, optim.create_scheduler = saved
    if not used:  # the engine no longer looks the factories up at run time: nothing was swapped
        raise RuntimeError("loop_optimizer: skincls.training.optim was not used; the arm ran as is")


def split_logits(
    run: Path, checkpoint: str, split: str, ema: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The run's raw (uncalibrated) lesion logits and labels on one of its saved splits; with
    ``ema``, of the EMA weights kept in the checkpoint's trainer state."""
    import torch

    from skincls.model.calibration import apply_serving
    from skincls.model.inference import head_logits, predict_loader
    from skincls.run.checkpoints import load_trainer_state
    from skincls.run.load import load_run
    from skincls.serving.evaluate import Selection, eval_loader, select_samples

    model, config, registry, specs, meta = load_run(run, checkpoint)
    if ema:
        model.load_state_dict(load_trainer_state(run / checkpoint)["ema"])
    apply_serving(model, None)
    _, samples = select_samples(run, config, registry, Path(config.data), Selection(split))
    cpu = torch.device("cpu")
    loader, _ = eval_loader(specs, meta, samples, 256, 0, cpu)
    logits, labels = head_logits(
        predict_loader(model, loader, cpu, keep_logits=True), model.region_names
    )["lesion"]
    return logits.numpy(), labels.numpy()


def raw_figures(run: Path) -> dict:
    """Test figures of the raw argmax (no calibration, no decision rule: what a hand-written
    loop reports) of the best and of the last checkpoint; the logits are kept in the run
    (``<run>.logits.npz`` beside it: best val and test, last test) for analyses after the fact."""
    from skincls.core.metrics import region_metrics

    arrays, out = {}, {}
    for checkpoint, split in (("best", "val"), ("best", "test"), ("last", "test")):
        logits, labels = split_logits(run, checkpoint, split)
        arrays[f"{checkpoint}_{split}_logits"], arrays[f"{checkpoint}_{split}_labels"] = (
            logits,
            labels,
        )
        if split == "test":
            m = region_metrics(labels, logits.argmax(1), CLASSES)
            out[f"raw_{checkpoint}"] = {
                k: m[k] for k in ("balanced_accuracy", "macro_f1", "accuracy")
            }
    np.savez(run.parent / f"{run.name}.logits.npz", **arrays)
    return out


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


def summarize(rows: list[dict], metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """Mean and sample standard deviation over seeds, per arm, in the order arms first appear."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm]
        entry = {"arm": arm, "runs": len(rs)}
        for k in metrics:
            vals = [r[k] for r in rs]
            entry[k] = statistics.mean(vals)
            entry[k + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(entry)
    return out


def markdown(summary: list[dict], metrics: tuple[str, ...] = METRICS) -> str:
    """A table of mean ± sd; fractions as percent, ``grade_mae`` and ``qwk`` as they are."""
    names = {
        "balanced_accuracy": "balanced acc",
        "macro_f1": "macro F1",
        "accuracy": "accuracy",
        "minority_recall": "minority recall",
        "qwk": "QWK",
        "grade_mae": "grade MAE",
    }
    lines = [
        "| arm | runs | " + " | ".join(names[k] for k in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for s in summary:
        cells = [
            f"{s[k]:.3f} ± {s[k + '_sd']:.3f}"
            if k in ("qwk", "grade_mae")
            else f"{100 * s[k]:.1f} ± {100 * s[k + '_sd']:.1f}"
            for k in metrics
        ]
        lines.append(f"| {s['arm']} | {s['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "skincls-quality")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    add_budget_args(p, image_size=64)
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"HAM10000 manifest not found at {args.data}", file=sys.stderr)
        return 2
    regions_dir = lesion_regions(args.out)
    results_path = args.out / "results.json"
    rows = json.loads(results_path.read_text())["rows"] if results_path.is_file() else []
    done = {(r["arm"], r["seed"]) for r in rows}
    for seed in [] if args.report else args.seeds:
        for arm in args.arms:
            if (arm, seed) in done:
                continue
            row = run_arm(arm, seed, args, regions_dir, args.out)
            rows.append(row)
            print(
                json.dumps(
                    {
                        k: row[k]
                        for k in (
                            "arm",
                            "seed",
                            "balanced_accuracy",
                            "macro_f1",
                            "accuracy",
                            "minority_recall",
                            "seconds",
                        )
                    }
                ),
                flush=True,
            )
            results_path.write_text(
                json.dumps(
                    {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2
                )
            )
    rows = [r for r in rows if r["arm"] in args.arms and r["seed"] in args.seeds]
    summary = summarize(rows)
    table = markdown(summary)
    if any("raw_best" in r for r in rows):
        table += "\n\n" + raw_table(rows)

    header = (
        provenance(__file__, argv)
        + f"budget: {args.backbone}, {args.image_size}px, {args.epochs} epochs, batch {args.batch_size}, "
        f"lr {args.lr}, no pretrained weights, seeds {args.seeds}\n"
    )
    (args.out / "table.md").write_text(header + "\n" + table + "\n")
    plot(summary, args.out / "quality.png")
    print(header)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
