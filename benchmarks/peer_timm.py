"""End-to-end training images per second: ``skincls train`` vs the path timm's ``train.py`` takes.

Both train the same model from scratch on the same HAM10000 files (a class-interleaved subset),
at the same image size and batch, with AdamW, timm's cosine schedule with one warm-up epoch,
plain cross-entropy and uniform shuffling, for the same epochs, validating on the same images
after each epoch. The timm side is built from the timm library as ``train.py`` builds it:
``create_dataset`` on an image-folder view of skincls's own train/val split,
``create_transform``/``create_loader`` (``is_training=True``, no prefetcher on CPU),
``create_optimizer_v2``, ``create_scheduler_v2``, ``loss.item()`` per step as ``train.py`` logs
without distributed, AMP off on CPU. Rounds alternate the two in one sitting.

Reported: training images per second (the training loops only, validation excluded, the way
``train.py`` reports its rate) and the whole run's wall time, and the ratio skincls / timm.

    python benchmarks/peer_timm.py --out /tmp/skincls-peer --images 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

from provenance import provenance

HAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000"


def subset(out: Path, n: int) -> tuple[Path, Path]:
    """A manifest of ``n`` HAM10000 images, classes interleaved, and its region file."""
    rows = list(csv.DictReader((HAM / "manifest.csv").open(encoding="utf-8")))
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    chosen: list[dict] = []
    while len(chosen) < n and any(by_label.values()):
        for group in by_label.values():
            if group and len(chosen) < n:
                chosen.append(group.pop())
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "lesion_id"])
        for r in chosen:
            w.writerow([str((HAM / r["path"]).resolve()), r["label"], r["lesion_id"]])
    regions = out / "regions"
    regions.mkdir(exist_ok=True)
    classes = ", ".join(sorted(by_label))
    (regions / "lesion.yaml").write_text(f"name: lesion\nclasses: [{classes}]\n")
    return manifest, regions


def run_skincls(manifest: Path, regions: Path, out: Path, args) -> dict:
    from skincls.core.config import build_config
    from skincls.training.train import train

    t0 = time.perf_counter()
    result = train(
        build_config(
            dict(
                data=str(manifest),
                regions_dir=[str(regions)],
                region=["lesion"],
                group_column="lesion_id",
                output=str(out),
                overwrite=True,
                backbone=args.backbone,
                pretrained="none",
                image_size=args.image_size,
                batch_size=args.batch_size,
                epochs=args.epochs,
                lr=args.lr,
                weight_decay=args.weight_decay,
                warmup_epochs=1,
                grad_clip=0.0,
                dropout=0.0,
                loss="ce",
                sampler="none",
                workers=args.workers,
                test_fraction=0.0,
                val_fraction=0.2,
                seed=0,
                wandb="disabled",
                quiet=True,
                report=False,
            )
        )
    )
    wall = time.perf_counter() - t0
    images = sum(r["train_images_per_s"] * r["train_seconds"] for r in result.history)
    seconds = sum(r["train_seconds"] for r in result.history)
    return {"train_images_per_s": images / seconds, "wall_s": wall, "run_dir": str(out)}


def folder_view(run_dir: Path, manifest: Path, out: Path) -> Path:
    """skincls's split of the run as ``out/{train,val}/<label>/`` symlinks (a CSV row's key
    starts with its image path, relative to the CSV's folder when inside it)."""
    with (run_dir / "split.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        path = Path(r["key"].split("#", 1)[0])
        path = path if path.is_absolute() else manifest.parent / path
        link = out / r["part"] / r["label"] / f"{i:05d}_{path.name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(path)
    return out


def run_timm(folder: Path, args) -> dict:
    """The ``train.py`` path from the timm library, on ``folder/train`` and ``folder/val``."""
    import timm
    import torch
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    t0 = time.perf_counter()
    torch.manual_seed(0)
    train_ds = create_dataset("", root=str(folder / "train"), is_training=True)
    val_ds = create_dataset("", root=str(folder / "val"))
    model = timm.create_model(
        args.backbone, pretrained=False, num_classes=len(train_ds.reader.class_to_idx)
    )
    data_config = resolve_data_config(
        {"input_size": (3, args.image_size, args.image_size)}, model=model
    )
    common = dict(use_prefetcher=False, num_workers=args.workers, **data_config)
    train_loader = create_loader(
        train_ds, batch_size=args.batch_size, is_training=True, persistent_workers=True, **common
    )
    val_loader = create_loader(val_ds, batch_size=args.batch_size, is_training=False, **common)
    optimizer = create_optimizer_v2(model, "adamw", lr=args.lr, weight_decay=args.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        "cosine",
        num_epochs=args.epochs,
        warmup_epochs=1,
        min_lr=1e-6,
        updates_per_epoch=len(train_loader),
        step_on_epochs=False,
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    seen, train_seconds, updates = 0, 0.0, 0
    for epoch in range(args.epochs):
        model.train()
        t = time.perf_counter()
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
            scheduler.step_update(num_updates=updates)
            loss.item()  # train.py's losses_m.update(loss.item(), ...) without distributed
            seen += x.shape[0]
        train_seconds += time.perf_counter() - t
        scheduler.step(epoch + 1)
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
                total += y.shape[0]
    return {
        "train_images_per_s": seen / train_seconds,
        "wall_s": time.perf_counter() - t0,
        "val_accuracy_last": correct / max(total, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/skincls-peer"))
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--backbone", default="resnet10t")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    if not (HAM / "manifest.csv").is_file():
        print(f"HAM10000 manifest not found at {HAM}", file=sys.stderr)
        return 2
    manifest, regions = subset(args.out, args.images)
    rows: dict[str, list[dict]] = {"skincls": [], "timm": []}
    folder = None
    for _ in range(args.rounds):
        rows["skincls"].append(run_skincls(manifest, regions, args.out / "skincls-run", args))
        folder = folder or folder_view(args.out / "skincls-run", manifest, args.out / "folder")
        rows["timm"].append(run_timm(folder, args))
        print(json.dumps({k: v[-1] for k, v in rows.items()}), file=sys.stderr)
    print(report(rows, args, argv))
    return 0


def report(rows: dict[str, list[dict]], args, argv) -> str:
    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("train_images_per_s", "wall_s")}
        for k, v in rows.items()
    }
    s, t = med["skincls"], med["timm"]
    lines = [
        provenance(__file__, argv),
        "",
        "| | training img/s (median) | run wall s (median) | rounds, img/s |",
        "|---|---|---|---|",
    ]
    for k in rows:
        per = ", ".join(f"{r['train_images_per_s']:.1f}" for r in rows[k])
        lines.append(
            f"| {k} | {med[k]['train_images_per_s']:.1f} | {med[k]['wall_s']:.1f} | {per} |"
        )
    ratio = s["train_images_per_s"] / t["train_images_per_s"]
    lines.append(
        f"| skincls / timm | **{ratio:.2f}** | {t['wall_s'] / s['wall_s']:.2f} "
        "(timm wall / skincls wall) | |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
