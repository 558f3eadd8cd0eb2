"""Data sources (image folder, CSV manifest, AI Hub tree) behind one ``load_data`` function."""

from __future__ import annotations

import csv
import dataclasses
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
        for class_dir in sorted(
            p for p in region_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            label = spec.class_index(class_dir.name)
            files = sorted(
                f
                for f in class_dir.iterdir()
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not f.name.startswith(".")
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


MAX_REPORTED_LINES = 20


def read_manifest(manifest: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line number, row)`` pairs of a CSV manifest in any encoding Excel writes."""
    import io

    from skincls.textio import read_text

    text = read_text(manifest)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as err:
        raise DataError(f"{manifest} line {reader.line_num}: not valid CSV: {err}") from None
    return columns, rows


def _check_columns(manifest: Path, columns: list[str], group_column, default_region) -> None:
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
    if "region" not in columns and default_region is None:
        raise DataError(
            f"{manifest}: no 'region' column; pass --region NAME to say which region the rows belong to"
        )
    bbox_cols = [c for c in BBOX_COLUMNS if c in columns]
    if bbox_cols and len(bbox_cols) != 4:
        raise DataError(
            f"{manifest}: bbox columns must be all of x1,y1,x2,y2; found only {bbox_cols}"
        )


def _parse_bbox(row: dict[str, str], where: str) -> tuple[int, int, int, int] | None:
    """The row's box, None when its four cells are empty; DataError for anything else wrong."""
    values = [(row.get(c) or "").strip() for c in BBOX_COLUMNS]
    if not any(values):
        return None
    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in values)
    except (ValueError, OverflowError):
        raise DataError(
            f"{where}: x1,y1,x2,y2: expected four finite numbers, got {values}"
        ) from None
    if x2 <= x1 or y2 <= y1 or x1 < 0 or y1 < 0:
        raise DataError(
            f"{where}: x1,y1,x2,y2: expected 0 <= x1 < x2 and 0 <= y1 < y2, got {values}"
        )
    return (x1, y1, x2, y2)


def _image_name(path: Path, base_real: str) -> str:
    """The spelling-independent name of an image: its real path (NFC), relative to the CSV's
    folder when inside it, so ``x.jpg``, ``./x.jpg`` and an absolute path are one image."""
    from skincls.textio import same_file_key

    real = same_file_key(path)
    rel = os.path.relpath(real, base_real)
    return Path(rel).as_posix() if not rel.startswith("..") else Path(real).as_posix()


class _Groups:
    """Union of groups that share an image, so one image never lands in two split parts."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, g: str) -> str:
        self.parent.setdefault(g, g)
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def load_csv(
    manifest: Path,
    registry: RegionRegistry,
    selected: list[RegionSpec],
    report: LoadReport,
    skip_bad: bool = False,
    group_column: str | None = None,
    default_region: str | None = None,
    skip_unknown_regions: bool = False,
) -> list[Sample]:
    """Rows ``path,label[,region][,group][,x1,y1,x2,y2][,mirror]``; paths relative to the CSV.

    Every bad row is reported (up to :data:`MAX_REPORTED_LINES`) in one error, or with
    ``skip_bad`` counted. Rows of regions that are known but not selected are ignored.
    """
    columns, rows = read_manifest(manifest)
    _check_columns(manifest, columns, group_column, default_region)
    base_real = os.path.realpath(manifest.parent)
    names = {r.name: r for r in selected}
    group_col = group_column or ("group" if "group" in columns else None)
    samples: list[Sample] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    groups = _Groups()
    image_group: dict[str, str] = {}
    for line, row in rows:
        where = f"{manifest} line {line}"
        report.files_read += 1
        try:
            sample = _row_sample(
                row,
                where,
                manifest.parent,
                base_real,
                names,
                registry,
                report,
                skip_bad or skip_unknown_regions and _region_of(row, columns) not in registry,
                group_col,
                default_region,
                columns,
                seen,
                line,
            )
        except DataError as err:
            problems.append(str(err))
            continue
        if sample is None:
            continue
        image = sample.key.split("#", 1)[0]
        if image in image_group:
            groups.union(image_group[image], sample.group)
        else:
            image_group[image] = sample.group
        samples.append(sample)
    if problems:
        more = len(problems) - MAX_REPORTED_LINES
        tail = [f"{manifest}: ... and {more} more bad line(s)"] if more > 0 else []
        raise DataError("\n".join(problems[:MAX_REPORTED_LINES] + tail))
    return [dataclasses.replace(s, group=groups.find(s.group)) for s in samples]


def _region_of(row: dict[str, str], columns: list[str]) -> str:
    return (row.get("region") or "").strip() if "region" in columns else ""


def _row_sample(
    row,
    where,
    base,
    base_real,
    names,
    registry,
    report,
    skip_bad,
    group_col,
    default_region,
    columns,
    seen,
    line,
) -> Sample | None:
    """One manifest row as a Sample; None when it is skipped (and counted)."""
    from skincls.textio import find_file

    region = (row.get("region") or "").strip() if "region" in columns else default_region
    if "region" in columns and default_region and region != default_region:
        return None
    assert region is not None
    spec = names.get(region)
    if spec is None:
        if region not in registry:
            report.reject(
                f"{where}: region: {region!r} is no known region (known: {', '.join(registry.names())})",
                "unknown region",
                f"{where}: {region!r}",
                skip_bad,
            )
        return None
    raw = (row.get("label") or "").strip()
    label = spec.class_index(raw)
    if label is None:
        report.reject(
            f"{where}: label: {raw!r} is not a class of region {spec.name!r} {spec.classes_hint()}",
            f"{spec.name}: label outside classes",
            f"{where}: {raw!r}",
            skip_bad,
        )
        return None
    rel = (row.get("path") or "").strip()
    if not rel:
        report.reject(f"{where}: path: empty", "empty path", where, skip_bad)
        return None
    written = Path(rel) if os.path.isabs(rel) else base / rel
    path = find_file(written)
    if path is None:
        report.reject(
            f"{where}: image not found: {written}", "missing image", str(written), skip_bad
        )
        return None
    try:
        bbox = _parse_bbox(row, where) if "x1" in columns else None
    except DataError as err:
        report.reject(str(err), "invalid bbox", where, skip_bad)
        return None
    mirror = _parse_bool(row["mirror"] or "", where) if "mirror" in columns else False
    image = _image_name(path, base_real)
    key = f"{image}#{spec.name}" + (f"#{','.join(map(str, bbox))}" if bbox else "")
    if key in seen:
        report.reject(
            f"{where}: the same image, region and box as line {seen[key]} (paths are compared "
            "after resolving ./, absolute paths, links and Unicode forms)",
            "duplicate row",
            where,
            skip_bad,
        )
        return None
    seen[key] = line
    report.count_raw(spec.name, raw)
    group = (row.get(group_col) or "").strip() if group_col else ""
    return Sample(
        key=key,
        path=str(path),
        region=spec.name,
        label=label,
        raw_label=raw,
        group=group or image,
        bbox=bbox,
        mirror=mirror,
    )


def load_data(
    data: str | Path,
    registry: RegionRegistry,
    regions: Sequence[str] = (),
    source: SourceName = "auto",
    group_column: str | None = None,
    skip_bad: bool = False,
    workers: int | None = None,
    skip_unknown_regions: bool = False,
) -> Dataset:
    """Read ``data`` into samples of the selected regions (default: every region with data).

    For a CSV without a ``region`` column, exactly one ``--region`` says which region the rows
    belong to. A named region that ends up with no sample is an error. With
    ``skip_unknown_regions`` (a run's own regions: evaluate, export) rows of regions the registry
    does not know are counted and skipped instead of being an error.
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
            header, _ = read_manifest(manifest)
            if "region" not in header:
                if len(explicit) != 1:
                    raise SkinclsError(
                        f"{manifest}: no 'region' column, so exactly one --region is needed "
                        f"(got {len(explicit)})"
                    )
                default_region = explicit[0]
        samples = load_csv(
            _manifest_path(root),
            registry,
            selected,
            report,
            skip_bad,
            group_column,
            default_region,
            skip_unknown_regions,
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
