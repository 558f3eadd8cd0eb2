"""``skincls prepare``: crop each AI Hub region box once into small JPEGs plus a CSV manifest.

Decoding a 12 MP DSLR photo per crop per epoch is the bottleneck of AI Hub training. Here every
source photo is decoded once (JPEG draft mode: the decoder itself downscales by 1/2, 1/4 or 1/8 when
the boxes allow), all of its boxes are cropped, and the crops are written atomically; a second run
skips crops that exist. The manifest holds raw labels, so a region's ``label_map`` still applies.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from skincls.errors import SkinclsError


def _crop_image(
    task: tuple[str, list[tuple[str, tuple[int, int, int, int]]], int, int],
) -> list[tuple[str, str | None]]:
    """Decode one photo and write each (output, bbox) crop; returns (output, error or None)."""
    from PIL import Image

    src, jobs, max_side, quality = task
    results: list[tuple[str, str | None]] = []
    try:
        with Image.open(src) as img:
            full_w, full_h = img.size
            smallest = min(min(b[2] - b[0], b[3] - b[1]) for _, b in jobs)
            largest_side = max(max(b[2] - b[0], b[3] - b[1]) for _, b in jobs)
            reduce = 1
            while (
                reduce < 8
                and largest_side / (reduce * 2) >= max_side
                and smallest / (reduce * 2) >= 8
            ):
                reduce *= 2
            if reduce > 1 and img.format == "JPEG":
                img.draft("RGB", (full_w // reduce, full_h // reduce))
            img = img.convert("RGB")
            sx, sy = img.size[0] / full_w, img.size[1] / full_h
            for out, (x1, y1, x2, y2) in jobs:
                box = (
                    max(0, int(x1 * sx)),
                    max(0, int(y1 * sy)),
                    min(img.size[0], int(round(x2 * sx))),
                    min(img.size[1], int(round(y2 * sy))),
                )
                if box[2] <= box[0] or box[3] <= box[1]:
                    results.append((out, f"box {x1, y1, x2, y2} lies outside the image"))
                    continue
                crop = img.crop(box)
                crop.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                tmp = f"{out}.tmp{os.getpid()}"
                crop.save(tmp, format="JPEG", quality=quality)
                os.replace(tmp, out)
                results.append((out, None))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        results.extend(
            (out, f"cannot decode {src}: {err}") for out, _ in jobs if out not in dict(results)
        )
    return results


def prepare(
    data: str | Path,
    out: str | Path,
    regions_dirs: Sequence[str | Path] = (),
    regions: Sequence[str] = (),
    max_side: int = 512,
    workers: int | None = None,
    quality: int = 95,
    skip_bad: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Crop every selected region box of the AI Hub tree ``data`` into ``out``; resumable."""
    from skincls.data.sources import load_data
    from skincls.regions import discover_regions

    data, out = Path(data), Path(out)
    if max_side < 16:
        raise SkinclsError(f"--max-side: expected at least 16 pixels, got {max_side}")
    if out.resolve() == data.resolve() or data.resolve() in out.resolve().parents:
        raise SkinclsError(f"--out {out}: must not be inside the source data {data}")
    registry = discover_regions(regions_dirs)
    dataset = load_data(data, registry, regions, "aihub", skip_bad=skip_bad, workers=workers)
    crops: dict[str, tuple[str, tuple[int, int, int, int]]] = {}
    for s in dataset.samples:
        rel = s.key.split("#", 1)[0]
        crop_rel = (Path("crops") / rel).with_suffix(".jpg").as_posix()
        assert s.bbox is not None
        crops.setdefault(crop_rel, (s.path, s.bbox))
    by_image: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = defaultdict(list)
    reused = 0
    for crop_rel, (src, bbox) in crops.items():
        target = out / crop_rel
        if target.is_file():
            reused += 1
        else:
            by_image[src].append((str(target), bbox))
    tasks = [(src, jobs, max_side, quality) for src, jobs in sorted(by_image.items())]
    failed: dict[str, str] = {}
    written = 0
    n_workers = workers or min(os.cpu_count() or 1, 8)
    out.mkdir(parents=True, exist_ok=True)

    def consume(results: list[tuple[str, str | None]]) -> None:
        nonlocal written
        for o, err in results:
            if err is None:
                written += 1
            else:
                failed[o] = err

    if tasks:
        from rich.progress import Progress

        with Progress(disable=not progress, transient=True) as bar:
            job = bar.add_task("cropping", total=len(tasks))
            if n_workers > 1 and len(tasks) > 1:
                with ProcessPoolExecutor(n_workers) as pool:
                    for res in pool.map(_crop_image, tasks, chunksize=4):
                        consume(res)
                        bar.advance(job)
            else:
                for t in tasks:
                    consume(_crop_image(t))
                    bar.advance(job)
    if failed and not skip_bad:
        first = next(iter(failed.items()))
        raise SkinclsError(
            f"{len(failed)} crop(s) failed, first: {first[0]}: {first[1]} (use --skip-bad to go on)"
        )
    manifest = out / "manifest.csv"
    tmp = manifest.with_name("manifest.csv.tmp")
    rows = 0
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "region", "group", "mirror", "source_key"])
        for s in dataset.samples:
            crop_rel = (Path("crops") / s.key.split("#", 1)[0]).with_suffix(".jpg").as_posix()
            if str(out / crop_rel) in failed:
                continue
            w.writerow([crop_rel, s.raw_label, s.region, s.group, int(s.mirror), s.key])
            rows += 1
    os.replace(tmp, manifest)
    return {
        "manifest": str(manifest),
        "rows": rows,
        "crops": len(crops),
        "written": written,
        "reused": reused,
        "failed": len(failed),
        "skipped": dict(dataset.report.skipped),
    }
