"""Data sources (image folder, CSV manifest, AI Hub tree) behind one ``load_data`` function."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from skincls.data.aihub import load_aihub, looks_like_aihub
from skincls.data.samples import IMAGE_SUFFIXES, Dataset, LoadReport, Sample
from skincls.errors import DataError, SkinclsError
from skincls.regions import RegionRegistry, RegionSpec

SourceName = Literal["auto", "aihub", "folder", "csv"]
BBOX_COLUMNS = ("x1", "y1", "x2", "y2")
TRUE_STRINGS = {"1", "true", "yes", "y", "t"}
FALSE_STRINGS = {"0", "false", "no", "n", "f", ""}


def detect_source(data: Path) -> str:
    """``csv`` for a .csv file or a folder holding ``manifest.csv``; ``aihub``; else ``folder``."""
    if not data.exists():
        raise SkinclsError(f"{data}: no such file or directory")
    if data.is_file():
        if data.suffix.lower() == ".csv":
            return "csv"
        raise SkinclsError(f"{data}: expected a .csv manifest or a directory")
    if (data / "manifest.csv").is_file():
        return "csv"
    if looks_like_aihub(data):
        return "aihub"
    return "folder"


def _manifest_path(data: Path) -> Path:
    return data / "manifest.csv" if data.is_dir() else data


def load_folder(
    root: Path,
    registry: RegionRegistry,
    selected: list[RegionSpec],
    report: LoadReport,
    skip_bad: bool = False,
) -> list[Sample]:
    """``root/<region>/<class>/*.jpg``; each image is its own group (no subject ids here)."""
    names = {r.name: r for r in selected}
    samples: list[Sample] = []
    for region_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if region_dir.name.startswith("."):
            continue
        spec = names.get(region_dir.name)
        if spec is None:
            reason = (
                "folder of a region not selected"
                if region_dir.name in registry
                else "folder that is no known region"
            )
            report.skip(reason, str(region_dir))
            continue
        for class_dir in sorted(p for p in region_dir.iterdir() if p.is_dir()):
            label = spec.class_index(class_dir.name)
            files = sorted(
                f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
            )
            if label is None:
                msg = (
                    f"{class_dir}: class folder {class_dir.name!r} is not a class of region "
                    f"{spec.name!r} {spec.classes_hint()}"
                )
                if not skip_bad:
                    raise DataError(msg)
                for f in files:
                    report.skip(f"{spec.name}: label outside classes", str(f))
                continue
            for f in files:
                report.files_read += 1
                report.count_raw(spec.name, class_dir.name)
                rel = f.relative_to(root).as_posix()
                samples.append(
                    Sample(
                        key=rel,
                        path=str(f),
                        region=spec.name,
                        label=label,
                        raw_label=class_dir.name,
                        group=rel,
                    )
                )
    return samples


def _parse_bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in TRUE_STRINGS:
        return True
    if v in FALSE_STRINGS:
        return False
    raise DataError(f"{where}: mirror: expected true/false or 1/0, got {value!r}")


def load_csv(
    manifest: Path,
    registry: RegionRegistry,
    selected: list[RegionSpec],
    report: LoadReport,
    skip_bad: bool = False,
    group_column: str | None = None,
    default_region: str | None = None,
) -> list[Sample]:
    """Rows ``path,label[,region][,group][,x1,y1,x2,y2][,mirror]``; paths relative to the CSV."""
    base = manifest.parent
    names = {r.name: r for r in selected}
    samples: list[Sample] = []
    try:
        fh = open(manifest, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed by the with below
    except OSError as err:
        raise DataError(f"{manifest}: cannot read: {err.strerror or err}") from None
    with fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise DataError(
                f"{manifest}: missing column(s) {', '.join(missing)}; found {columns or 'no header'}"
                " (expected path,label[,region][,group][,x1,y1,x2,y2])"
            )
        if group_column and group_column not in columns:
            raise DataError(
                f"{manifest}: --group-column {group_column!r} is not a column (found {columns})"
            )
        group_col = group_column or ("group" if "group" in columns else None)
        has_region = "region" in columns
        if not has_region and default_region is None:
            raise DataError(
                f"{manifest}: no 'region' column; pass --region NAME to say which region the "
                "rows belong to"
            )
        bbox_cols = [c for c in BBOX_COLUMNS if c in columns]
        if bbox_cols and len(bbox_cols) != 4:
            raise DataError(
                f"{manifest}: bbox columns must be all of x1,y1,x2,y2; found only {bbox_cols}"
            )
        seen: set[str] = set()
        for row in reader:
            where = f"{manifest} line {reader.line_num}"
            report.files_read += 1
            region = (row.get("region") or "").strip() if has_region else default_region
            if has_region and default_region and region != default_region:
                continue
            assert region is not None
            spec = names.get(region)
            if spec is None:
                if region not in registry:
                    report.reject(
                        f"{where}: region: {region!r} is no known region "
                        f"(known: {', '.join(registry.names())})",
                        "unknown region",
                        f"{where}: {region!r}",
                        skip_bad,
                    )
                continue
            raw = (row.get("label") or "").strip()
            label = spec.class_index(raw)
            if label is None:
                report.reject(
                    f"{where}: label: {raw!r} is not a class of region {spec.name!r} "
                    f"{spec.classes_hint()}",
                    f"{spec.name}: label outside classes",
                    f"{where}: {raw!r}",
                    skip_bad,
                )
                continue
            rel = (row.get("path") or "").strip()
            if not rel:
                report.reject(f"{where}: path: empty", "empty path", where, skip_bad)
                continue
            path = Path(rel) if os.path.isabs(rel) else base / rel
            if not path.is_file():
                report.reject(
                    f"{where}: image not found: {path}", "missing image", str(path), skip_bad
                )
                continue
            bbox = None
            if bbox_cols:
                values = [(row.get(c) or "").strip() for c in BBOX_COLUMNS]
                if any(values):
                    try:
                        x1, y1, x2, y2 = (int(round(float(v))) for v in values)
                    except ValueError:
                        raise DataError(
                            f"{where}: x1,y1,x2,y2: expected four numbers, got {values}"
                        ) from None
                    if x2 <= x1 or y2 <= y1 or x1 < 0 or y1 < 0:
                        report.reject(
                            f"{where}: x1,y1,x2,y2: expected 0 <= x1 < x2 and 0 <= y1 < y2, "
                            f"got {values}",
                            "invalid bbox",
                            f"{where}: {values}",
                            skip_bad,
                        )
                        continue
                    bbox = (x1, y1, x2, y2)
            mirror = _parse_bool(row["mirror"], where) if "mirror" in columns else False
            report.count_raw(spec.name, raw)
            key = f"{rel}#{spec.name}" + (f"#{','.join(map(str, bbox))}" if bbox else "")
            if key in seen:
                report.reject(
                    f"{where}: the same path, region and box appear twice",
                    "duplicate row",
                    where,
                    skip_bad,
                )
                continue
            seen.add(key)
            group = (row.get(group_col) or "").strip() if group_col else ""
            samples.append(
                Sample(
                    key=key,
                    path=str(path),
                    region=spec.name,
                    label=label,
                    raw_label=raw,
                    group=group or rel,
                    bbox=bbox,
                    mirror=mirror,
                )
            )
    return samples


def load_data(
    data: str | Path,
    registry: RegionRegistry,
    regions: Sequence[str] = (),
    source: SourceName = "auto",
    group_column: str | None = None,
    skip_bad: bool = False,
    workers: int | None = None,
) -> Dataset:
    """Read ``data`` into samples of the selected regions (default: every region with data).

    For a CSV without a ``region`` column, exactly one ``--region`` says which region the rows
    belong to. A named region that ends up with no sample is an error.
    """
    root = Path(data)
    kind = detect_source(root) if source == "auto" else source
    if not root.exists():
        raise SkinclsError(f"{root}: no such file or directory")
    if group_column and kind != "csv":
        raise SkinclsError(f"--group-column applies to CSV manifests only; {root} is {kind} data")
    explicit = list(dict.fromkeys(regions))
    selected = registry.select(explicit) if explicit else [r.spec for r in registry.items()]
    report = LoadReport()
    if kind == "csv":
        default_region = None
        if explicit:
            manifest = _manifest_path(root)
            with open(manifest, newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), [])
            if "region" not in header:
                if len(explicit) != 1:
                    raise SkinclsError(
                        f"{manifest}: no 'region' column, so exactly one --region is needed "
                        f"(got {len(explicit)})"
                    )
                default_region = explicit[0]
        samples = load_csv(
            _manifest_path(root), registry, selected, report, skip_bad, group_column, default_region
        )
    elif kind == "aihub":
        if not root.is_dir():
            raise SkinclsError(f"{root}: --source aihub expects a directory")
        samples = load_aihub(root, registry, selected, report, skip_bad, workers)
    elif kind == "folder":
        if not root.is_dir():
            raise SkinclsError(f"{root}: --source folder expects a directory")
        samples = load_folder(root, registry, selected, report, skip_bad)
    else:
        raise SkinclsError(f"--source: expected auto, aihub, folder or csv, got {source!r}")
    present = {s.region for s in samples}
    if explicit:
        empty = [n for n in explicit if n not in present]
        if empty:
            raise SkinclsError(f"{root}: no samples for region(s) {', '.join(empty)}")
        chosen = selected
    else:
        chosen = [r for r in selected if r.name in present]
        if not chosen:
            raise SkinclsError(
                f"{root}: no samples found for any known region ({kind} source; "
                f"known regions: {', '.join(registry.names())})"
            )
    return Dataset(root=root, source=kind, regions=chosen, samples=samples, report=report)
