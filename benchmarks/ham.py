"""HAM10000 as the arm benchmarks use it: the lesion region, its classes, and what a finished
run's files say (training counts, raw logits and their figures). Read in place from
``../shared/data/ham10000``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "ham10000" / "manifest.csv"

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def lesion_regions(out: Path, folder: str = "regions", extra: str = "") -> Path:
    """``out/folder/lesion.yaml``: the 7-diagnosis region, plus ``extra`` lines."""
    regions_dir = out / folder
    regions_dir.mkdir(parents=True, exist_ok=True)
    text = f"name: lesion\nclasses: [{', '.join(CLASSES)}]\n" + (f"{extra}\n" if extra else "")
    (regions_dir / "lesion.yaml").write_text(text)
    return regions_dir


def lesion_run_values(args, output: Path, seed: int, regions_dir: Path, **options) -> dict:
    """:func:`harness.run_values` for the lesion region of HAM10000 (``args.data``), split by
    ``lesion_id``, at ``args.batch_size``; ``options`` add to them or override them."""
    from harness import run_values

    return run_values(
        args,
        output,
        seed,
        data=str(args.data),
        regions_dir=[str(regions_dir)],
        region=["lesion"],
        group_column="lesion_id",
        batch_size=args.batch_size,
        **options,
    )


def train_counts(run: Path) -> dict[str, int]:
    """Labels per class in the run's training part (its ``split.csv``)."""
    import csv

    counts: dict[str, int] = {}
    with open(run / "split.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["part"] == "train":
                counts[row["label"]] = counts.get(row["label"], 0) + 1
    return counts


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
