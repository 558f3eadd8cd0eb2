"""Epoch time on a generated AI Hub tree with and without merging the labels of one crop.

Before: every (crop, region) pair is its own sample, so a forehead crop (wrinkle and pigmentation
grades) and each cheek crop (pore and pigmentation grades) are decoded, augmented and sent through
the backbone once per region. After (the default): one sample per crop with all its labels. The
"before" arm is the same code with ``merge_labels`` replaced by the identity. Arms alternate in
one sitting; the figure is the mean training time per epoch (validation excluded), leaving out
each run's first epoch as warm-up.

    python benchmarks/multilabel_epoch.py --subjects 40 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance


def run(arm: str, data: Path, out: Path, args) -> dict:
    import skincls.data.sources as sources
    from skincls.core.config import build_config
    from skincls.training.train import train

    real = sources.merge_labels
    if arm == "before":
        sources.merge_labels = lambda samples, regions, image_of=None: list(samples)
    epochs: list[dict] = []
    try:
        t0 = time.perf_counter()
        train(
            build_config(
                dict(
                    data=str(data),
                    output=str(out / arm),
                    overwrite=True,
                    backbone=args.backbone,
                    pretrained="none",
                    image_size=args.image_size,
                    batch_size=args.batch_size,
                    epochs=args.epochs,
                    workers=args.workers,
                    wandb="disabled",
                    quiet=True,
                    report=False,
                    test_fraction=0.0,
                )
            ),
            on_epoch_end=lambda epoch, record: epochs.append(record),
        )
        total = time.perf_counter() - t0
    finally:
        sources.merge_labels = real
    return {
        "arm": arm,
        "epoch_train_s": [r["train_seconds"] for r in epochs],
        "images_per_s": [r["train_images_per_s"] for r in epochs],
        "total_s": total,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "skincls-multilabel")
    p.add_argument("--subjects", type=int, default=40)
    p.add_argument("--photo-size", type=int, nargs=2, default=(900, 1200))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--backbone", default="resnet10t")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    from skincls.data.regions import discover_regions
    from skincls.data.sources import load_data
    from skincls.data.synthetic import make_aihub_tree

    data = args.out / "aihub"
    if not data.is_dir():
        make_aihub_tree(data, n_subjects=args.subjects, image_size=tuple(args.photo_size))
    ds = load_data(data, discover_regions(include_entry_points=False))
    crops, labels = len(ds.samples), sum(len(s.labels) for s in ds.samples)
    rows = []
    for _ in range(args.repeats):
        for arm in ("before", "after"):
            rows.append(run(arm, data, args.out, args))
            print(json.dumps(rows[-1]), flush=True)
    epoch_s = {
        arm: [t for r in rows if r["arm"] == arm for t in r["epoch_train_s"][1:]]  # 1st: warm-up
        for arm in ("before", "after")
    }

    before, after = statistics.mean(epoch_s["before"]), statistics.mean(epoch_s["after"])
    print(
        provenance(__file__, argv)
        + f"data: {args.subjects} subjects, {crops} crops with {labels} labels "
        f"(decodes saved per epoch: {labels / crops:.3f}x)\n"
        f"epoch (training) seconds: before {before:.2f} (sd {statistics.stdev(epoch_s['before']):.2f}), "
        f"after {after:.2f} (sd {statistics.stdev(epoch_s['after']):.2f}); ratio {before / after:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
