"""Data sources (image folder, CSV manifest, AI Hub tree) behind one ``load_data`` function."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skincls.core.errors import DataError, SkinclsError
from skincls.core.names import SOURCES, SourceName
from skincls.data.aihub import load_aihub, looks_like_aihub
from skincls.data.manifest import ManifestOptions, load_csv, read_manifest
from skincls.data.regions import RegionRegistry, RegionSpec
from skincls.data.samples import IMAGE_SUFFIXES, Dataset, LoadReport, Sample, merge_labels


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
            visible = sorted(
                f for f in class_dir.iterdir() if f.is_file() and not f.name.startswith(".")
            )
            files = [f for f in visible if f.suffix.lower() in IMAGE_SUFFIXES]
            for f in visible:
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    report.skip("not an image file name (extension)", str(f))
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
                    Sample.single(rel, str(f), (spec.name, label, class_dir.name), group=rel)
                )
    return samples


@dataclass(frozen=True)
class ReadOptions:
    """How :func:`load_data` reads a source: its kind (``auto`` detects it), the CSV column
    that groups samples (subject, lesion), whether unreadable labels and boxes are counted and
    skipped instead of being an error, the processes reading AI Hub label files, and whether
    rows of regions the registry does not know are skipped (a run's own regions: evaluate,
    export) instead of being an error."""

    source: SourceName = "auto"
    group_column: str | None = None
    skip_bad: bool = False
    workers: int | None = None
    skip_unknown_regions: bool = False


def load_data(
    data: str | Path,
    registry: RegionRegistry,
    regions: Sequence[str] = (),
    read: ReadOptions | None = None,
) -> Dataset:
    """Read ``data`` into samples of the selected regions (default: every region with data).

    For a CSV without a ``region`` column, exactly one ``--region`` says which region the rows
    belong to. A named region that ends up with no sample is an error.
    """
    read = read or ReadOptions()
    root = Path(data)
    kind = detect_source(root) if read.source == "auto" else read.source
    if not root.exists():
        raise SkinclsError(f"{root}: no such file or directory")
    if read.group_column and kind != "csv":
        raise SkinclsError(f"--group-column applies to CSV manifests only; {root} is {kind} data")
    if kind not in READERS:
        raise SkinclsError(f"--source: expected {', '.join(SOURCES)}, got {read.source!r}")
    explicit = list(dict.fromkeys(regions))
    selected = registry.select(explicit) if explicit else [r.spec for r in registry.items()]
    report = LoadReport()
    samples = READERS[kind](root, registry, selected, explicit, report, read)
    present = {lab.region for s in samples for lab in s.labels}
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
    image_of = _csv_image if kind == "csv" else (lambda s: s.path)
    samples = merge_labels(samples, chosen, image_of)
    return Dataset(root=root, source=kind, regions=chosen, samples=samples, report=report)


def _read_csv(root, registry, selected, explicit, report, read: ReadOptions) -> list[Sample]:
    manifest = _manifest_path(root)
    parsed = read_manifest(manifest)
    default_region = None
    if explicit and "region" not in parsed[0]:
        if len(explicit) != 1:
            raise SkinclsError(
                f"{manifest}: no 'region' column, so exactly one --region is needed "
                f"(got {len(explicit)})"
            )
        default_region = explicit[0]
    options = ManifestOptions(
        read.skip_bad, read.group_column, default_region, read.skip_unknown_regions
    )
    return load_csv(manifest, registry, selected, report, options, parsed)


def _read_aihub(root, registry, selected, explicit, report, read: ReadOptions) -> list[Sample]:
    if not root.is_dir():
        raise SkinclsError(f"{root}: --source aihub expects a directory")
    return load_aihub(root, registry, selected, report, read.skip_bad, read.workers)


def _read_folder(root, registry, selected, explicit, report, read: ReadOptions) -> list[Sample]:
    if not root.is_dir():
        raise SkinclsError(f"{root}: --source folder expects a directory")
    return load_folder(root, registry, selected, report, read.skip_bad)


READERS = {"csv": _read_csv, "aihub": _read_aihub, "folder": _read_folder}
"""The reader of each source (:data:`skincls.core.names.SOURCES`, ``auto`` aside)."""
assert set(READERS) == set(SOURCES) - {"auto"}, "every source has a reader"


def _csv_image(sample: Sample) -> str:
    """A manifest sample's spelling-independent image name (the start of its key)."""
    return sample.key.split("#", 1)[0]
