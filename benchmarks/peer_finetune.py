"""Fine-tuning quality side by side (issue 28 item 5): timm's own ``train.py`` fine-tuning the
same ImageNet EfficientNet-Lite0 weights on the same HAM10000 images as skincls.

The images are skincls's lesion-grouped split (split seed 0, the ``split.csv`` of a finished
``benchmarks/finetune.py`` run) as an image folder (``train/``, ``val/``, ``test/``, one folder
per diagnosis, symlinks); the weights are the packaged lukemelas file renamed to timm's tensor
names (skincls's own matching), passed as ``--pretrained --pretrained-path`` so ``train.py``
adapts the classifier as it does for hub weights. ``train.py`` is not in timm's wheel: give the
file from timm's repository (``--train-py``; its commit goes in the table).

The recipe (``TIMM_FLAGS``) is the EfficientNet-B0 line of timm's training docs
(``hfdocs/source/training_script.mdx``: dropout 0.2, drop path 0.2, RandAugment
``rand-m9-mstd0.5``, random erasing 0.2 per pixel) with what fine-tuning changes: AdamW at the
peak rate skincls fine-tunes with at this batch, a cosine schedule with one warm-up epoch, the
epochs and image size of the skincls runs, train.py's default label smoothing 0.1, no weight EMA
(a few hundred updates). ``train.py`` keeps the checkpoint with the best validation top-1
(``model_best.pth.tar``); that checkpoint is scored once on the test part with timm's own eval
transform. Wall time is the whole ``train.py`` process.

    python benchmarks/peer_finetune.py --train-py /path/to/timm/train.py \
        --split-run /tmp/skincls-finetune/lite0_pretrained-s0 --out /tmp/skincls-peer-ft
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ham import CLASSES, DEFAULT_DATA
from harness import Results, markdown, run_cells, summarize, write_table
from peer_timm import folder_view

TIMM_FLAGS = shlex.split(
    "--opt adamw --weight-decay 0.05 --sched cosine --warmup-epochs 1 --warmup-lr 1e-6 "
    "--min-lr 1e-6 --smoothing 0.1 --drop 0.2 --drop-path 0.2 --aa rand-m9-mstd0.5 "
    "--reprob 0.2 --remode pixel"
)
METRICS = ("balanced_accuracy", "macro_f1", "accuracy", "wall_minutes")


def timm_weights(out: Path) -> Path:
    """The packaged Lite0 file with timm's tensor names, classifier included (1000 classes)."""
    import timm
    import torch

    from skincls.model.weights import PACKAGED, match_weights, read_weights, resolve_packaged

    path = out / "tf_efficientnet_lite0.timm.pth"
    if not path.is_file():
        source = resolve_packaged("efficientnet-lite0", PACKAGED["efficientnet-lite0"][2])
        full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        mapped, how = match_weights(full.state_dict(), read_weights(source), source)
        full.load_state_dict(mapped)
        torch.save(full.state_dict(), path)
        print(f"weights {how}", file=sys.stderr)
    return path


def train_timm(seed: int, args, folder: Path, weights: Path) -> Path:
    from skincls.training.recipe import scaled_lr

    lr = args.lr or scaled_lr(args.batch_size, "fine-tuning")
    out = args.out / "timm"
    command = [
        sys.executable, str(args.train_py), "--data-dir", str(folder),
        "--train-split", "train", "--val-split", "val",
        "--model", "tf_efficientnet_lite0", "--pretrained", "--pretrained-path", str(weights),
        "--num-classes", str(len(CLASSES)), "--img-size", str(args.image_size),
        "-b", str(args.batch_size), "--epochs", str(args.epochs), "--lr", f"{lr:.3g}",
        *TIMM_FLAGS, "--device", "cpu", "--no-prefetcher", "-j", str(args.workers),
        "--seed", str(seed), "--output", str(out), "--experiment", f"s{seed}",
        "--checkpoint-hist", "1", "--log-interval", "1000",
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out / f"s{seed}" / "model_best.pth.tar"


def score(checkpoint: Path, folder: Path, args) -> dict:
    """Balanced accuracy, macro F1 and accuracy of ``checkpoint`` on ``folder/test`` with
    timm's eval transform (resize by its crop fraction, centre crop, the model's mean/std)."""
    import timm
    import torch
    from PIL import Image
    from timm.data import create_transform, resolve_data_config
    from timm.models import load_checkpoint

    from skincls.core.metrics import region_metrics

    model = timm.create_model("tf_efficientnet_lite0", num_classes=len(CLASSES))
    load_checkpoint(model, str(checkpoint))
    model.eval()
    config = resolve_data_config({"input_size": (3, args.image_size, args.image_size)}, model=model)
    transform = create_transform(**config)
    labels, preds = [], []
    files = sorted((folder / "test").glob("*/*"))
    with torch.no_grad():
        for i in range(0, len(files), 256):
            chunk = files[i : i + 256]
            x = torch.stack([transform(Image.open(f).convert("RGB")) for f in chunk])
            preds += model(x).argmax(1).tolist()
            labels += [CLASSES.index(f.parent.name) for f in chunk]
    m = region_metrics(labels, preds, CLASSES)
    return {k: m[k] for k in ("balanced_accuracy", "macro_f1", "accuracy")}


def run_seed(seed: int, args, folder: Path, weights: Path) -> dict:
    t0 = time.perf_counter()
    checkpoint = train_timm(seed, args, folder, weights)
    wall = (time.perf_counter() - t0) / 60
    return {"arm": "timm_train_py", "seed": seed, **score(checkpoint, folder, args),
            "wall_minutes": wall}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train-py", type=Path, required=True, help="timm's train.py")
    p.add_argument("--split-run", type=Path, required=True, help="a finetune.py run directory")
    p.add_argument("--out", type=Path, default=Path("/tmp/skincls-peer-ft"))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=None, help="default: skincls's fine-tuning lr")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--report", action="store_true", help="only summarise the runs in --out")
    args = p.parse_args(argv)
    results = Results(args.out, ("arm", "seed"), args)
    if not args.report:
        folder = folder_view(args.split_run, DEFAULT_DATA, args.out / "folder")
        weights = timm_weights(args.out)
        run_cells(results, [(s,) for s in args.seeds], lambda s: run_seed(s, args, folder, weights))
    commit = subprocess.run(
        ["git", "-C", str(args.train_py.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    header = (
        f"budget: HAM10000 lesion-grouped split of {args.split_run.name}, {args.image_size}px, "
        f"{args.epochs} epochs, batch {args.batch_size}; timm train.py "
        f"{commit or '(not in a git checkout)'} with {' '.join(TIMM_FLAGS)}; TEST figures\n"
    )
    body = markdown(summarize(results.rows, METRICS[:3]), METRICS[:3])
    times = "\n".join(
        f"- {s['arm']}: wall {s['wall_minutes']:.1f} ± {s['wall_minutes_sd']:.1f} min"
        for s in summarize(results.rows, METRICS[3:])
    )
    write_table(args.out, __file__, argv, header, body + "\n\n" + times)
    print(json.dumps(results.rows[-1]) if results.rows else "", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
