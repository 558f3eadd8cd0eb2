"""AI Hub Korean facial skin data set (71645): index of the JSON label tree and its samples.

Label files live under ``.../02.라벨링데이터/TL|VL/<device>/<id>/<id>_<dev>_<angle>_<part>.json``
and images under ``01.원천데이터/TS|VS``; images are matched by ``info.filename`` within the same
top-level split (Training / Validation). Parsed records are cached per file (mtime and size) so a
second index of 100,000 files only stats them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skincls.data.regions import RegionRegistry, RegionSpec
from skincls.data.samples import IMAGE_SUFFIXES, LoadReport, Sample

INDEX_VERSION = 2
FACEPARTS = {
    0: "full face",
    1: "forehead",
    2: "glabella",
    3: "left eye",
    4: "right eye",
    5: "left cheek",
    6: "right cheek",
    7: "lips",
    8: "chin",
}


@dataclass(frozen=True)
class Record:
    """What skincls needs from one label JSON; ``error`` is set instead when it cannot be read."""

    json_path: str
    filename: str | None = None
    subject: str | None = None
    facepart: int | None = None
    bbox: list[Any] | None = None
    annotations: dict[str, Any] | None = None
    info: dict[str, str] | None = None
    error: str | None = None


def looks_like_aihub(root: Path) -> bool:
    if not root.is_dir():
        return False
    if root.name in ("Training", "Validation"):
        return True
    for child in root.iterdir():
        if child.is_dir() and (child.name in ("Training", "Validation") or "라벨링" in child.name):
            return True
    return False


def parse_label(path: str) -> Record:
    """One label JSON as a Record; ``error`` says what is wrong with it (never raises)."""
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8-sig"))
    except json.JSONDecodeError as err:
        return Record(
            path, error=f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        )
    except (OSError, UnicodeDecodeError) as err:
        return Record(path, error=f"cannot read: {err}")
    if not isinstance(doc, dict):
        return Record(path, error="expected a JSON object at the top level")
    info, images, ann = doc.get("info"), doc.get("images"), doc.get("annotations")
    for key, value in (("info", info), ("images", images)):
        if not isinstance(value, dict):
            return Record(path, error=f"missing or invalid {key!r} object")
    assert isinstance(info, dict) and isinstance(images, dict)
    if ann is not None and not isinstance(ann, dict):
        return Record(path, error="'annotations' must be an object")
    filename, facepart = info.get("filename"), images.get("facepart")
    if not isinstance(filename, str) or not filename:
        return Record(path, error="info.filename: missing or not a string")
    if not isinstance(facepart, int) or isinstance(facepart, bool) or facepart not in FACEPARTS:
        return Record(path, error=f"images.facepart: expected an integer 0..8, got {facepart!r}")
    subject = info.get("id")
    return Record(
        json_path=path,
        filename=filename,
        subject=str(subject) if subject is not None else filename.split("_")[0],
        facepart=facepart,
        bbox=images.get("bbox"),
        annotations=ann or {},
        info=photo_info(info, images, filename),
    )


DEVICES = {0: "DSLR", 1: "pad", 2: "phone"}
"""``images.device`` codes (the file name's 01/02/03)."""
INFO_FIELDS = ("gender", "age", "skin_type", "sensitive")


def photo_info(info: dict[str, Any], images: dict[str, Any], filename: str) -> dict[str, str]:
    """What a label file says about the photo and its subject, as text: ``device`` (DSLR, pad,
    phone), ``angle`` as the file name writes it (F, Ft, Fb, L15, L30, R15, R30; pad and phone:
    F, L, R), and ``info``'s gender, age, skin type and sensitivity; a field the file lacks is
    left out."""
    out = {k: str(info[k]) for k in INFO_FIELDS if info.get(k) not in (None, "")}
    device = images.get("device")
    if device in DEVICES and not isinstance(device, bool):
        out["device"] = DEVICES[device]
    parts = os.path.splitext(filename)[0].split("_")
    if len(parts) >= 3 and parts[2]:
        out["angle"] = parts[2]
    return out


def _parse_many(paths: list[str]) -> list[Record]:
    return [parse_label(p) for p in paths]


def _cache_dir() -> Path:
    base = os.environ.get("SKINCLS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "skincls"
    )
    return Path(base)


def _walk(root: Path) -> tuple[list[tuple[str, int, int]], dict[str, str], list[str]]:
    """All JSON files with (mtime_ns, size), images keyed by ``split/basename``, and the folders
    skipped because they were reached a second time (a symlink loop or a linked copy).

    Hidden entries (``.*``, including macOS ``._*`` resource forks) are ignored.
    """
    jsons: list[tuple[str, int, int]] = []
    images: dict[str, str] = {}
    revisited: list[str] = []
    image_suffixes = tuple(IMAGE_SUFFIXES) + tuple(s.upper() for s in IMAGE_SUFFIXES)
    st = os.stat(root)
    visited = {(st.st_dev, st.st_ino)}
    stack = [(str(root), "")]
    while stack:
        d, split = stack.pop()
        with os.scandir(d) as it:
            for entry in it:
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=True):
                    info = entry.stat(follow_symlinks=True)
                    if (info.st_dev, info.st_ino) in visited:
                        revisited.append(entry.path)
                        continue
                    visited.add((info.st_dev, info.st_ino))
                    top = name if d == str(root) and name in ("Training", "Validation") else split
                    stack.append((entry.path, top))
                elif name.endswith(".json"):
                    info = entry.stat()
                    jsons.append((entry.path, info.st_mtime_ns, info.st_size))
                elif name.endswith(image_suffixes):
                    images.setdefault(f"{split}/{name}", entry.path)
                    images.setdefault(f"*/{name}", entry.path)
    jsons.sort()
    return jsons, images, sorted(revisited)


def _split_of(root: Path, path: str) -> str:
    rel = os.path.relpath(path, root)
    first = rel.split(os.sep, 1)[0]
    return first if first in ("Training", "Validation") else ""


def index_records(
    root: Path, workers: int | None = None, use_cache: bool = True
) -> tuple[list[Record], dict[str, str], list[str]]:
    """Parse every label JSON under ``root`` (cached by mtime and size), plus the image lookup
    and the folders reached twice (see :func:`_walk`)."""
    root = root.resolve()
    jsons, images, revisited = _walk(root)
    cache_file = (
        _cache_dir() / f"aihub-index-{hashlib.sha1(str(root).encode()).hexdigest()[:16]}.json"
    )
    cached: dict[str, list[Any]] = {}
    if use_cache and cache_file.exists():
        try:
            doc = json.loads(cache_file.read_text(encoding="utf-8"))
            if doc.get("version") == INDEX_VERSION and doc.get("root") == str(root):
                cached = doc["entries"]
        except (OSError, ValueError, KeyError):
            cached = {}
    records: dict[str, Record] = {}
    todo: list[str] = []
    for path, mtime, size in jsons:
        hit = cached.get(path)
        if hit and hit[0] == mtime and hit[1] == size:
            records[path] = Record(**hit[2])
        else:
            todo.append(path)
    if todo:
        n_workers = workers or min(os.cpu_count() or 1, 8)
        if n_workers > 1 and len(todo) > 2000:
            from rich.progress import Progress

            from skincls.core.console import make_console

            chunk = max(256, len(todo) // (n_workers * 8))
            chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
            err = make_console(stderr=True)
            with (
                Progress(console=err, transient=True, disable=not err.is_terminal) as bar,
                ProcessPoolExecutor(n_workers) as pool,
            ):
                task = bar.add_task(f"reading {len(todo)} label files", total=len(todo))
                for part in pool.map(_parse_many, chunks):
                    for rec in part:
                        records[rec.json_path] = rec
                    bar.advance(task, len(part))
        else:
            for rec in _parse_many(todo):
                records[rec.json_path] = rec
    if use_cache and (todo or len(cached) != len(jsons)):
        entries = {p: [m, s, records[p].__dict__] for p, m, s in jsons if records[p].error is None}
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(
                json.dumps({"version": INDEX_VERSION, "root": str(root), "entries": entries}),
                encoding="utf-8",
            )
            os.replace(tmp, cache_file)
        except OSError:
            pass  # the cache is an optimisation; an unwritable cache dir is not an error
    return [records[p] for p, _, _ in jsons], images, revisited


def valid_bbox(bbox: Any) -> tuple[int, int, int, int] | None:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in bbox)
    except (TypeError, ValueError, OverflowError):
        return None
    x1, y1 = max(x1, 0), max(y1, 0)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _sample_of(rec, rel, key, value, spec, mirror, report, skip_bad):
    """The sample one annotation gives one region, or None when it is skipped (and counted)."""
    if value is None:
        report.skip(f"{spec.name}: null grade", f"{rel}: {key}")
        return None
    raw = str(value)
    report.count_raw(spec.name, raw)
    label = spec.class_index(raw)
    if label is None:
        report.reject(
            f"{rec.json_path}: annotations.{key}: grade {value!r} is not a class of "
            f"region {spec.name!r} {spec.classes_hint()}",
            f"{spec.name}: grade outside classes",
            f"{rel}: {key}={value!r}",
            skip_bad,
        )
        return None
    if rec.bbox is None:
        report.skip(f"{spec.name}: null bbox", rel)
        return None
    bbox = valid_bbox(rec.bbox)
    if bbox is None:
        report.skip(f"{spec.name}: invalid bbox", f"{rel}: {rec.bbox!r}")
        return None
    info = tuple(sorted((rec.info or {}).items()))
    return Sample.single(
        f"{rel}#{key}#{spec.name}",
        "",
        (spec.name, label, raw),
        str(rec.subject),
        bbox,
        mirror,
        info,
    )


def load_aihub(
    root: Path,
    registry: RegionRegistry,
    selected: list[RegionSpec],
    report: LoadReport,
    skip_bad: bool = False,
    workers: int | None = None,
) -> list[Sample]:
    """Samples of the selected regions from an AI Hub tree; skips are counted in ``report``."""
    records, images, revisited = index_records(root, workers=workers)
    for folder in revisited:
        report.skip("folder reached twice (symlink loop or linked copy)", folder)
    report.files_read += len(records)
    first_of: dict[tuple[str, str], str] = {}
    claims: dict[tuple[int | None, str], list[tuple[RegionSpec, bool]]] = {}
    for loaded in registry.items():
        for src in loaded.spec.sources:
            claims.setdefault((src.facepart, src.key), []).append((loaded.spec, src.mirror))
    selected_names = {r.name for r in selected}
    samples: list[Sample] = []
    for rec in records:
        rel = os.path.relpath(rec.json_path, root)
        if rec.error is not None:
            report.reject(
                f"{rec.json_path}: {rec.error}",
                "unreadable label file",
                f"{rel}: {rec.error}",
                skip_bad,
            )
            continue
        assert rec.annotations is not None and rec.filename is not None
        top = rel.split(os.sep, 1)[0]
        name = (top if top in ("Training", "Validation") else "", os.path.basename(rel))
        if name in first_of:
            report.reject(
                f"{rec.json_path}: the label file {name[1]} is also at {first_of[name]}; is a "
                "folder copied twice? Remove the copy (or pass --skip-bad to keep the first)",
                "label file present twice (copied folder)",
                rel,
                skip_bad,
            )
            continue
        first_of[name] = rec.json_path
        if rec.facepart == 0:
            for key in rec.annotations:
                report.skip(f"full-face record key {key!r} (no grade)", rel)
            if not rec.annotations:
                report.skip("full-face record (no grade)", rel)
            continue
        image: str | None = None
        for key, value in rec.annotations.items():
            claimants = claims.get((rec.facepart, key), []) + claims.get((None, key), [])
            if not claimants:
                report.skip(f"annotation key {key!r} claimed by no region", rel)
                continue
            for spec, mirror in claimants:
                if spec.name not in selected_names:
                    continue
                sample = _sample_of(rec, rel, key, value, spec, mirror, report, skip_bad)
                if sample is None:
                    continue
                if image is None:
                    split = _split_of(root, rec.json_path)
                    image = images.get(f"{split}/{rec.filename}") or images.get(f"*/{rec.filename}")
                if image is None:
                    msg = f"{rec.json_path}: image {rec.filename!r} (info.filename) not found under {root}"
                    report.reject(msg, "missing image", f"{rel}: {rec.filename}", skip_bad)
                    continue
                samples.append(dataclasses.replace(sample, path=image))
    return samples
