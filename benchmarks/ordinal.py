"""Ordinal grades with a controlled imbalance: QWK and grade MAE beside balanced accuracy.

Generated forehead-wrinkle images (grade g has about 2g lines) with the seed project's AI Hub grade
distribution 572/5083/3393/2340/1092/819/637 scaled by --scale, one grouped split, the same budget
for every arm.

    python benchmarks/ordinal.py --scale 0.1 --seeds 0 --out /tmp/skincls-ordinal
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ARMS, markdown, summarize  # noqa: E402

METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "qwk", "grade_mae")


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("/tmp/skincls-ordinal"))
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument(
        "--arms",
        nargs="+",
        default=["ce", "ce_sampler", "cb_focal_sampler", "ce_sqrt_sampler"],
        choices=list(ARMS),
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--backbone", default="resnet10t")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    from skincls.config import build_config
    from skincls.data.synthetic import FOREHEAD_WRINKLE_COUNTS, make_demo_data
    from skincls.train import train

    counts = [max(2, round(n * args.scale)) for n in FOREHEAD_WRINKLE_COUNTS]
    data = args.out / "data"
    if not (data / "manifest.csv").is_file():
        make_demo_data(
            data, counts={"forehead_wrinkle": counts}, size=64, seed=11, images_per_subject=2
        )
    rows = []
    for seed in args.seeds:
        for arm in args.arms:
            t0 = time.perf_counter()
            values = dict(
                data=str(data),
                region=["forehead_wrinkle"],
                output=str(args.out / f"{arm}-s{seed}"),
                overwrite=True,
                backbone=args.backbone,
                pretrained="none",
                image_size=args.image_size,
                batch_size=64,
                epochs=args.epochs,
                lr=2e-3,
                warmup_epochs=1,
                workers=args.workers,
                seed=seed,
                split_seed=0,
                wandb="disabled",
                quiet=True,
                region_balance="none",
            )
            values.update(ARMS[arm])
            result = train(build_config(values))
            m = result.test["regions"]["forehead_wrinkle"]
            row = {
                "arm": arm,
                "seed": seed,
                **{k: m[k] for k in METRICS},
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    import platform

    import torch

    header = (
        f"command: python benchmarks/ordinal.py {' '.join(sys.argv[1:])}\n"
        f"counts per grade 0..6: {counts} (max/min {max(counts) / min(counts):.1f})\n"
        f"budget: {args.backbone}, {args.image_size}px, {args.epochs} epochs, seeds {args.seeds}; "
        f"python {platform.python_version()}, torch {torch.__version__}\n"
    )
    table = markdown(summarize(rows, METRICS), METRICS)
    (args.out / "table.md").write_text(header + "\n" + table + "\n")
    print(header)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
