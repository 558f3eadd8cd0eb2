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
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError
from skincls.core.fileio import atomic_write


def _crop_image(
    task: tuple[str, list[tuple[str, tuple[int, int, int, int]]], int, int],
) -> list[tuple[str, str | None]]:
    """Decode one photo once and write each (output, bbox) crop; returns (output, reason|None).

    Crops come from :func:`skincls.data.images.read_crops`, the reader training uses, so EXIF
    orientation, box rounding and the pixel limit are the same; JPEG draft decoding keeps it fast.
    Crops are stored unmirrored: the manifest's ``mirror`` column flips them at load time.
    """
    from skincls.data.images import ImageReadError, read_crops

    src, jobs, max_side, quality = task
    try:
        crops = read_crops(src, [bbox for _, bbox in jobs], False, max_side)
    except ImageReadError as err:
        return [(out, f"{src}: {err}") for out, _ in jobs]
    results: list[tuple[str, str | None]] = []
    for (out, _), crop in zip(jobs, crops, strict=True):
        if isinstance(crop, ImageReadError):
            results.append((out, f"{src}: {crop}"))
            continue
        try:
            atomic_write(Path(out), partial(crop.save, format="JPEG", quality=quality), sync=False)
        except SkinclsError as err:  # disk full: the crops written so far are kept
            raise SkinclsError(
                f"{err}; the crops written so far are kept, rerun to go on"
            ) from None
        results.append((out, None))
    return results


CACHE_FILE = "prepare.json"
CACHE_VERSION = 2
"""Bumped when the reader changes the pixels of a crop (v2: EXIF orientation, shared reader)."""


def _stat(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _open_cache(out: Path, settings: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Per-crop records of an existing cache in ``out`` made with ``settings``; {} for a new one."""
    import shutil

    record = out / CACHE_FILE
    if not out.exists() or not any(out.iterdir()):
        return {}
    saved: dict[str, Any] = {}
    if record.is_file():
        saved = _read_record(record, overwrite)
    differences = [
        f"{k} {saved.get(k)!r} (now {v!r})" for k, v in settings.items() if saved.get(k) != v
    ]
    if not differences:
        return saved.get("crops") or {}
    if not overwrite:
        if not record.is_file():
            raise SkinclsError(
                f"--output {out}: not empty and not a skincls prepare cache; choose another "
                "folder or pass --overwrite to replace its manifest.csv and crops/"
            )
        raise SkinclsError(
            f"--output {out}: cache made with other settings: {', '.join(differences)}; pass "
            "the same settings, another --output, or --overwrite to redo every crop"
        )
    shutil.rmtree(out / "crops", ignore_errors=True)
    for name in ("manifest.csv", CACHE_FILE):
        (out / name).unlink(missing_ok=True)
    return {}


def _read_record(record: Path, overwrite: bool) -> dict[str, Any]:
    """``prepare.json``; a damaged one (truncated, not JSON, or of another shape) is a clear
    error, or with ``overwrite`` an empty record (every crop is redone)."""
    import json

    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError(f"expected an object, found {type(saved).__name__}")
        if not isinstance(saved.get("crops", {}), dict):
            raise ValueError("crops: expected an object of crop records")
    except (ValueError, UnicodeDecodeError) as err:
        if overwrite:
            return {}
        raise SkinclsError(
            f"{record}: damaged ({err}); pass --overwrite to redo every crop"
        ) from None
    return saved


@dataclass(frozen=True)
class PrepareOptions:
    """What :func:`prepare` crops (regions from ``regions_dirs``; default all with data), how
    (longest side ``max_side``, JPEG ``quality``, ``workers`` processes; ``skip_bad`` counts bad
    labels instead of stopping), whether it shows a progress bar and may start afresh."""

    regions_dirs: Sequence[str | Path] = ()
    regions: Sequence[str] = ()
    max_side: int = 512
    workers: int | None = None
    quality: int = 95
    skip_bad: bool = False
    progress: bool = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 0:
            raise SkinclsError(f"--workers: expected 0 or more, got {self.workers}")
        if not 1 <= self.quality <= 100:
            raise SkinclsError(f"--quality: expected 1 to 100, got {self.quality}")


def prepare(
    data: str | Path, out: str | Path, options: PrepareOptions | None = None
) -> dict[str, Any]:
    """Crop every selected region box of the AI Hub tree ``data`` into ``out``; resumable.

    ``out/prepare.json`` records the settings that shape a crop (max side, quality, reader
    version) and, per crop, its source photo's size, mtime and box. A rerun redoes crops whose
    source or box changed, and refuses a cache made with other settings (or a folder that is no
    cache) unless ``overwrite``, which starts the cache afresh.
    """
    from skincls.core.fileio import atomic_write_json
    from skincls.data.regions import discover_regions
    from skincls.data.sources import ReadOptions, load_data

    o = options or PrepareOptions()
    max_side, quality, workers, overwrite = o.max_side, o.quality, o.workers, o.overwrite
    data, out = Path(data), Path(out)
    if max_side < 16:
        raise SkinclsError(f"--max-side: expected at least 16 pixels, got {max_side}")
    if out.resolve() == data.resolve() or data.resolve() in out.resolve().parents:
        raise SkinclsError(f"--output {out}: must not be inside the source data {data}")
    settings = {"version": CACHE_VERSION, "max_side": max_side, "quality": quality}
    done = _open_cache(out, settings, overwrite)
    read = ReadOptions("aihub", skip_bad=o.skip_bad, workers=workers)
    dataset = load_data(data, discover_regions(o.regions_dirs), o.regions, read)
    crops = {_crop_name(s): (s.path, s.bbox) for s in reversed(dataset.samples)}
    record = {name: [*_stat(src), list(bbox or ())] for name, (src, bbox) in crops.items()}
    by_image: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for name, (src, bbox) in crops.items():
        if not ((out / name).is_file() and done.get(name) == record[name]):
            by_image[src].append((str(out / name), bbox))
    tasks = [(src, jobs, max_side, quality) for src, jobs in sorted(by_image.items())]
    out.mkdir(parents=True, exist_ok=True)
    written, failed = _run(tasks, workers or min(os.cpu_count() or 1, 8), o.progress)
    if failed and not o.skip_bad:
        first = next(iter(failed.items()))
        raise SkinclsError(
            f"{len(failed)} crop(s) failed, first: {first[0]}: {first[1]} (use --skip-bad to go on)"
        )
    ok = {k: v for k, v in record.items() if str(out / k) not in failed}
    atomic_write_json(out / CACHE_FILE, {**settings, "crops": ok})
    manifest, rows = _write_manifest(out, dataset.samples, failed)
    return {
        "settings": settings,
        "manifest": str(manifest),
        "rows": rows,
        "crops": len(crops),
        "written": written,
        "reused": len(crops) - sum(len(jobs) for _, jobs, _, _ in tasks),
        "failed": len(failed),
        "skipped": dict(dataset.report.skipped),
        "skipped_examples": dataset.report.examples,
    }


def _crop_name(sample: Any) -> str:
    """``crops/<label file path>.jpg``: one crop per label file, shared by its regions."""
    return (Path("crops") / sample.key.split("#", 1)[0]).with_suffix(".jpg").as_posix()


def _run(tasks: list, n_workers: int, progress: bool) -> tuple[int, dict[str, str]]:
    """Crop every task (one photo each), in processes when there are several; returns the
    number written and the reason of each failed crop."""
    from rich.progress import Progress

    from skincls.core.console import make_console

    written, failed = 0, {}  # type: tuple[int, dict[str, str]]
    if not tasks:
        return written, failed
    err = make_console(stderr=True)
    with Progress(console=err, disable=not (progress and err.is_terminal), transient=True) as bar:
        job = bar.add_task("cropping", total=len(tasks))
        pool = ProcessPoolExecutor(n_workers) if n_workers > 1 and len(tasks) > 1 else None
        results = pool.map(_crop_image, tasks, chunksize=4) if pool else map(_crop_image, tasks)
        try:
            for res in results:
                for out, reason in res:
                    if reason is None:
                        written += 1
                    else:
                        failed[out] = reason
                bar.advance(job)
        finally:
            if pool:
                pool.shutdown()
    return written, failed


def _write_manifest(out: Path, samples: list[Any], failed: dict[str, str]) -> tuple[Path, int]:
    """``manifest.csv`` with raw labels (a region's ``label_map`` still applies) and each
    sample's ``info`` fields as further columns, atomically."""
    manifest = out / "manifest.csv"
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        fields = list(dict.fromkeys(k for s in samples for k, _ in s.info))
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "region", "group", "mirror", "source_key", *fields])
            for s in samples:
                name = _crop_name(s)
                if str(out / name) in failed:
                    continue
                info = [s.field(f) or "" for f in fields]
                for lab in s.labels:
                    w.writerow([name, lab.raw, lab.region, s.group, int(s.mirror), lab.key, *info])
                    rows += 1

    atomic_write(manifest, write)
    return manifest, rows
