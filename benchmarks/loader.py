"""Images per second of the training data pipeline alone, per worker: skincls vs timm's loader.

The same image files, the same network input size, one process (``num_workers=0``, one torch and one
OpenCV thread: the rate of one loader worker), batches of 32, no model. Three pipelines, alternated in rounds:

- ``skincls``: the training dataset ``skincls train`` builds (decode with JPEG draft mode when
  the stored crop is at least twice the input, crop, the region's train augmentation,
  normalise), drawn by its epoch sampler;
- ``skincls_full_decode``: the same without draft decoding (the rate before issue 17);
- ``timm``: ``timm.data.create_dataset`` on an image-folder view of the same files with
  ``timm.data.create_loader(is_training=True)`` (its default train transform:
  RandomResizedCrop, flip, colour jitter, normalise; no prefetcher on CPU).

Two data sets: HAM10000 as stored (600 x 450 JPEGs) and ``skincls prepare`` crops (512 px on the
longest side) of a generated AI Hub tree.

    python benchmarks/loader.py --out /tmp/skincls-loader --images 640 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from provenance import provenance

HAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000"


def skincls_loader(csv: Path, regions_dir: Path, size: int, batch: int, draft: bool):
    from skincls.data.dataset import SampleDataset, build_transforms
    from skincls.data.regions import discover_regions
    from skincls.data.sampler import EpochSampler
    from skincls.data.sources import ReadOptions, load_data
    from skincls.model.inference import make_loader

    data = load_data(csv, discover_regions([regions_dir]), read=ReadOptions("csv"))
    names = [r.name for r in data.regions]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    tf = build_transforms(data.regions, "train", size, mean, std)
    ds = SampleDataset(data.samples, names, tf, size, size if draft else None)
    sampler = EpochSampler(len(ds), [1.0] * len(ds), seed=0)
    import torch

    return make_loader(ds, sampler, batch, 0, torch.device("cpu"), drop_last=True)


def timm_loader(folder: Path, size: int, batch: int):
    from timm.data import create_dataset, create_loader

    ds = create_dataset("", root=str(folder), is_training=True)
    return create_loader(
        ds,
        input_size=(3, size, size),
        batch_size=batch,
        is_training=True,
        use_prefetcher=False,
        num_workers=0,
        persistent_workers=False,
    )


def rate(loader, images: int) -> float:
    """Images per second drawing ``images`` images (whole batches) from ``loader``."""
    seen, t0 = 0, time.perf_counter()
    for batch in loader:
        seen += batch[0].shape[0]
        if seen >= images:
            break
    return seen / (time.perf_counter() - t0)


def ham_data(work: Path, n: int) -> tuple[Path, Path, Path]:
    """A CSV of the first ``n`` HAM10000 images per class in turn, its region, and the same
    files as an image folder (symlinks)."""
    import csv

    rows = list(csv.DictReader((HAM / "manifest.csv").open(encoding="utf-8")))
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    chosen = [r for group in zip(*by_label.values(), strict=False) for r in group][:n]
    if len(chosen) < n:
        chosen = rows[:n]
    classes = sorted(by_label)
    return _views(work / "ham", [(HAM / r["path"], r["label"]) for r in chosen], classes)


def aihub_crops(work: Path, n: int) -> tuple[Path, Path, Path]:
    """``skincls prepare`` crops (512 px longest side) of a generated AI Hub tree with photos
    large enough for 512 px crops, as a CSV and an image folder of the same files."""
    import csv

    from skincls.data.prepare import PrepareOptions, prepare
    from skincls.data.synthetic import make_aihub_tree

    tree, crops = work / "aihub_tree", work / "aihub_crops"
    if not (crops / "manifest.csv").is_file():
        make_aihub_tree(tree, n_subjects=max(1, n // 8), image_size=(2400, 3200))
        prepare(tree, crops, PrepareOptions(max_side=512, progress=False))
    rows = csv.DictReader((crops / "manifest.csv").open(encoding="utf-8"))
    one_per_crop = {r["path"]: f"{r['region']}_{r['label']}" for r in rows}
    files = [(crops / path, label) for path, label in list(one_per_crop.items())[:n]]
    return _views(work / "aihub", files, sorted({label for _, label in files}))


def _views(work: Path, files: list[tuple[Path, str]], classes: list[str]):
    """``manifest.csv`` + ``regions/x.yaml`` for skincls and ``folder/<class>/`` for timm."""
    import csv

    folder = work / "folder"
    folder.mkdir(parents=True, exist_ok=True)
    (work / "regions").mkdir(exist_ok=True)
    (work / "regions" / "x.yaml").write_text(f"name: x\nclasses: [{', '.join(classes)}]\n")
    with (work / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "region"])
        for i, (path, label) in enumerate(files):
            link = folder / label / f"{i:05d}{path.suffix}"
            link.parent.mkdir(exist_ok=True)
            if not link.exists():
                link.symlink_to(path.resolve())
            w.writerow([str(path.resolve()), label, "x"])
    return work / "manifest.csv", work / "regions", folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/skincls-loader"))
    p.add_argument("--images", type=int, default=640, help="images drawn per measurement")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    import torch

    from skincls.model.inference import one_cv2_thread

    torch.set_num_threads(1)  # one loader worker's share of the machine, as in a worker
    one_cv2_thread()
    sets = {"aihub_512px_crops": aihub_crops(args.out, args.images)}
    if (HAM / "manifest.csv").is_file():
        sets["ham10000"] = ham_data(args.out, args.images)
    else:
        print(f"HAM10000 not found at {HAM}: measuring the AI Hub crops only", file=sys.stderr)
    size, bs = args.image_size, args.batch_size
    results: dict[str, dict[str, list[float]]] = {}
    for name, (csv, regions_dir, folder) in sets.items():
        make = {
            "skincls": lambda c=csv, r=regions_dir: skincls_loader(c, r, size, bs, True),
            "skincls_full_decode": lambda c=csv, r=regions_dir: skincls_loader(
                c, r, size, bs, False
            ),
            "timm": lambda f=folder: timm_loader(f, size, bs),
        }
        loaders = {k: m() for k, m in make.items()}
        for loader in loaders.values():
            rate(loader, bs)  # warm the page cache and imports
        results[name] = {k: [] for k in loaders}
        for _ in range(args.rounds):
            for k, loader in loaders.items():
                results[name][k].append(rate(loader, args.images))
    print(report(results, args, argv))
    return 0


def report(results: dict[str, dict[str, list[float]]], args, argv) -> str:
    lines = [provenance(__file__, argv), ""]
    lines.append(
        f"| data ({args.image_size} px input) | skincls img/s | skincls, full decode | "
        "timm img/s | skincls / timm | full decode / timm |"
    )
    lines.append("|---|---|---|---|---|---|")
    for name, r in results.items():
        med = {k: statistics.median(v) for k, v in r.items()}
        lines.append(
            f"| {name} | {med['skincls']:.1f} | {med['skincls_full_decode']:.1f} | "
            f"{med['timm']:.1f} | **{med['skincls'] / med['timm']:.2f}** | "
            f"{med['skincls_full_decode'] / med['timm']:.2f} |"
        )
    lines.append("")
    lines.append("raw rounds: " + json.dumps(results))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
