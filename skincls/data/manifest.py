"""CSV manifests: ``path,label[,region][,group][,x1,y1,x2,y2][,mirror]``, paths relative to the
CSV, in any encoding Excel writes (see :mod:`skincls.core.textio`).

One image written several ways (``x.jpg``, ``./x.jpg``, absolute, another Unicode form) is one
image: rows are compared on its real path, and groups that share an image are merged so the
image never lands in two split parts. Every bad row is reported (up to
:data:`MAX_REPORTED_LINES`) in one error, or with ``--skip-bad`` counted.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from skincls.core.errors import DataError
from skincls.data.regions import RegionRegistry, RegionSpec
from skincls.data.samples import LoadReport, Sample

BBOX_COLUMNS = ("x1", "y1", "x2", "y2")
SAMPLE_COLUMNS = ("path", "label", "region", "group", "mirror", "source_key", *BBOX_COLUMNS)
"""Columns that make the sample; every other column is kept as the sample's ``info``."""
TRUE_STRINGS = {"1", "true", "yes", "y", "t"}
FALSE_STRINGS = {"0", "false", "no", "n", "f", ""}


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

    from skincls.core.textio import read_text

    text = read_text(manifest)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    twice = sorted({c for c in columns if c and columns.count(c) > 1})
    if twice:
        raise DataError(
            f"{manifest} line 1: column {', '.join(repr(c) for c in twice)} named more than once "
            f"in the header ({', '.join(columns)}); keep one and rename or remove the others"
        )
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
    from skincls.core.textio import same_file_key

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
    options: ManifestOptions | None = None,
    parsed: tuple[list[str], list[tuple[int, dict[str, str]]]] | None = None,
) -> list[Sample]:
    """The samples of the selected regions; rows of regions that are known but not selected are
    ignored, rows of unknown regions are errors (counted with ``skip_unknown_regions``).
    ``parsed`` is :func:`read_manifest`'s result when the caller has read the file already."""
    options = options or ManifestOptions()
    columns, rows = parsed or read_manifest(manifest)
    _check_columns(manifest, columns, options.group_column, options.default_region)
    reader = _RowReader(manifest, columns, registry, selected, report, options)
    samples: list[Sample] = []
    problems: list[str] = []
    groups = _Groups()
    image_group: dict[str, str] = {}
    for line, row in rows:
        report.files_read += 1
        try:
            sample = reader.sample(line, row)
        except DataError as err:
            problems.append(str(err))
            continue
        if sample is None:
            continue
        image = sample.key.split("#", 1)[0]
        groups.union(image_group.setdefault(image, sample.group), sample.group)
        samples.append(sample)
    if problems:
        more = len(problems) - MAX_REPORTED_LINES
        tail = [f"{manifest}: ... and {more} more bad line(s)"] if more > 0 else []
        raise DataError("\n".join(problems[:MAX_REPORTED_LINES] + tail))
    return [dataclasses.replace(s, group=groups.find(s.group)) for s in samples]


@dataclass(frozen=True)
class ManifestOptions:
    """How rows are read: ``skip_bad`` counts bad rows instead of stopping, ``group_column``
    names the group column (default ``group``), ``default_region`` is the region of a file
    without a region column, ``skip_unknown_regions`` counts rows of regions the registry lacks."""

    skip_bad: bool = False
    group_column: str | None = None
    default_region: str | None = None
    skip_unknown_regions: bool = False


class _RowReader:
    """Turns rows into samples; remembers rows seen, to report duplicates by line."""

    def __init__(self, manifest, columns, registry, selected, report, options: ManifestOptions):
        self.manifest, self.columns, self.registry, self.report = (
            manifest,
            columns,
            registry,
            report,
        )
        self.names = {r.name: r for r in selected}
        self.skip_bad, self.skip_unknown = options.skip_bad, options.skip_unknown_regions
        self.group_col = options.group_column or ("group" if "group" in columns else None)
        self.default_region = options.default_region
        self.base_real = os.path.realpath(manifest.parent)
        self.seen: dict[str, int] = {}
        self.info_columns = [c for c in columns if c and c not in SAMPLE_COLUMNS]

    def reject(self, message: str, reason: str, where: str) -> None:
        self.report.reject(message, reason, where, self.skip_bad)

    def sample(self, line: int, row: dict[str, str]) -> Sample | None:
        """The row as a Sample; None when it is skipped (and counted). DataError when bad."""
        where = f"{self.manifest} line {line}"
        spec = self._region(row, where)
        if spec is None:
            return None
        raw = (row.get("label") or "").strip()
        label = spec.class_index(raw)
        if label is None:
            self.reject(
                f"{where}: label: {raw!r} is not a class of region {spec.name!r} "
                f"{spec.classes_hint()}",
                f"{spec.name}: label outside classes",
                f"{where}: {raw!r}",
            )
            return None
        path = self._path(row, where)
        if path is None:
            return None
        try:
            bbox = _parse_bbox(row, where) if "x1" in self.columns else None
        except DataError as err:
            self.reject(str(err), "invalid bbox", where)
            return None
        mirror = _parse_bool(row["mirror"] or "", where) if "mirror" in self.columns else False
        image = _image_name(path, self.base_real)
        key = f"{image}#{spec.name}" + (f"#{','.join(map(str, bbox))}" if bbox else "")
        if key in self.seen:
            self.reject(
                f"{where}: the same image, region and box as line {self.seen[key]} (paths are "
                "compared after resolving ./, absolute paths, links and Unicode forms)",
                "duplicate row",
                where,
            )
            return None
        self.seen[key] = line
        self.report.count_raw(spec.name, raw)
        group = (row.get(self.group_col) or "").strip() if self.group_col else ""
        info = tuple((c, v) for c in self.info_columns if (v := (row.get(c) or "").strip()))
        return Sample.single(
            key, str(path), (spec.name, label, raw), group or image, bbox, mirror, info
        )

    def _region(self, row: dict[str, str], where: str) -> RegionSpec | None:
        if "region" not in self.columns:
            return self.names.get(self.default_region or "")
        region = (row.get("region") or "").strip()
        if self.default_region and region != self.default_region:
            return None
        spec = self.names.get(region)
        if spec is None and region not in self.registry:
            self.report.reject(
                f"{where}: region: {region!r} is no known region "
                f"(known: {', '.join(self.registry.names())})",
                "unknown region",
                f"{where}: {region!r}",
                self.skip_bad or self.skip_unknown,
            )
        return spec

    def _path(self, row: dict[str, str], where: str) -> Path | None:
        from skincls.core.textio import find_file

        rel = (row.get("path") or "").strip()
        if not rel:
            self.reject(f"{where}: path: empty", "empty path", where)
            return None
        written = Path(rel) if os.path.isabs(rel) else self.manifest.parent / rel
        path = find_file(written)
        if path is None:
            self.reject(f"{where}: image not found: {written}", "missing image", str(written))
        return path
