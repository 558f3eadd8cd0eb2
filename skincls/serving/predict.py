"""``skincls predict``: per-region class probabilities from a run directory or an ONNX file.

Preprocessing is read from the run (or from the ONNX metadata, so the file alone is enough).
An AI Hub label JSON as input crops its box from the photo it names and predicts the regions
that claim its face part. Unreadable inputs are reported and skipped, never fatal to the batch.
"""

from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skincls.core.errors import SkinclsError
from skincls.data.samples import IMAGE_SUFFIXES


class _Backend(ABC):
    regions: list[dict[str, Any]]
    """Per region: name, classes, ordinal, decision, rule, eval_ops, sources."""
    image_size: int
    mean: list[float]
    std: list[float]

    @abstractmethod
    def run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per region, the served class probabilities and the decided class of a preprocessed
        NCHW float32 batch."""


class OnnxBackend(_Backend):
    """An exported file: its ``_probs`` and ``_decision`` outputs as baked at export, or, when
    predict asks for another ``rule``/``target_prior``, the decision made again from the raw
    ``_logits`` with the metadata's prior correction (as the run directory would)."""

    def __init__(self, path: Path, rule: str | None = None, target_prior: Sequence[str] = ()):
        import onnxruntime as ort

        from skincls.serving.onnx_meta import onnx_metadata

        meta = onnx_metadata(path)
        self.regions = meta["regions"]
        self.image_size, self.mean, self.std = meta["image_size"], meta["mean"], meta["std"]
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.redecide: dict[str, Any] = {}
        self.reprior: dict[str, Any] = {}
        if rule is not None or target_prior:
            self.redecide, self.reprior = _onnx_rules(
                self.regions, rule or "selected", target_prior, path
            )

    def run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        import torch

        from skincls.model.heads import decide, reweight

        values = self.session.run(None, {"image": batch})
        named = dict(zip(self.outputs, values, strict=False))
        probs, decided = {}, {}
        for r in self.regions:
            n = r["name"]
            probs[n] = named[f"{n}_probs"]
            if n in self.redecide:  # served again for another rule or target prior
                served = reweight(torch.from_numpy(probs[n]), self.reprior[n])
                probs[n] = served.numpy()
                decided[n] = decide(served, r["decision"], self.redecide[n]).numpy()
            else:  # files before _decision: _grade (ordinal heads) or the argmax
                decided[n] = named.get(f"{n}_decision", named.get(f"{n}_grade", probs[n].argmax(1)))
        return probs, decided


def _onnx_rules(
    regions, rule: str, target_prior: Sequence[str], path: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per region, the decision shift for ``rule`` from the metadata's prior and tau, and the
    shift that moves the file's ``_probs`` to ``target_prior`` (undoing a prior baked in at
    export): the serving logic of a run directory,
    :func:`skincls.model.calibration.apply_serving`."""
    from types import SimpleNamespace

    import torch

    from skincls.model.calibration import apply_serving, parse_target_prior

    if any("head" not in r for r in regions):
        raise SkinclsError(f"{path}: exported before decision rules; export it again")
    target = parse_target_prior(target_prior, {r["name"]: r["classes"] for r in regions})
    calibration = {r["name"]: r for r in regions if r.get("prior") is not None}
    names = [r["name"] for r in regions]
    heads = SimpleNamespace(
        region_names=names,
        decisions={r["name"]: r.get("decision", "argmax") for r in regions},
        temperatures={},
        biases={},
        log_shifts={},
        prior_shifts={},
    )
    said = apply_serving(heads, calibration, rule, target)
    moves: dict[str, Any] = {}
    for r in regions:
        r["rule"] = said[r["name"]]
        new, baked = heads.prior_shifts.get(r["name"]), r.get("prior_log_shift")
        if baked is not None:
            undo = -torch.tensor(baked, dtype=torch.float32)
            new = undo if new is None else new + undo
        moves[r["name"]] = new
    return dict(heads.log_shifts), moves


class TorchBackend(_Backend):
    def __init__(
        self,
        run_dir: Path,
        checkpoint: str = "best",
        rule: str | None = None,
        target_prior: Sequence[str] = (),
    ):
        from skincls.run.load import load_run

        loaded = load_run(run_dir, checkpoint, rule or "selected", target_prior)
        self.model, specs, meta = loaded.model, loaded.specs, loaded.meta
        self.regions = [
            {
                "name": s.name,
                "classes": s.classes,
                "ordinal": s.ordinal,
                "decision": self.model.decisions[s.name],
                "rule": meta.serving[s.name],
                "eval_ops": [op.model_dump() for op in s.augment.eval],
                "resize": meta.resize[s.name],
                "sources": [src.model_dump(exclude_none=True) for src in s.sources],
            }
            for s in specs
        ]
        self.image_size, self.mean, self.std = meta.image_size, meta.mean, meta.std

    def run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        import torch

        with torch.inference_mode():
            probs, decided = self.model.predict(self.model(torch.from_numpy(batch)))
        names = self.model.region_names
        return (
            {n: p.numpy() for n, p in zip(names, probs, strict=True)},
            {n: d.numpy() for n, d in zip(names, decided, strict=True)},
        )


def open_model(
    model: str | Path,
    checkpoint: str = "best",
    rule: str | None = None,
    target_prior: Sequence[str] = (),
) -> _Backend:
    model = Path(model)
    if model.is_file() and model.suffix == ".onnx":
        return OnnxBackend(model, rule, target_prior)
    if model.is_dir():
        return TorchBackend(model, checkpoint, rule, target_prior)
    raise SkinclsError(f"{model}: expected a run directory or an .onnx file")


def eval_transforms(backend: _Backend) -> dict[str, Any]:
    """Per region, the evaluation preprocessing ``evaluate`` applies: the region's
    ``augment.eval`` ops with its resize policy, and the normalisation (regions with the same
    ops and policy share one transform)."""
    import json

    from pydantic import TypeAdapter

    from skincls.data.augment import AugmentOp, build_transform

    ops_of = TypeAdapter(list[AugmentOp])
    built: dict[str, Any] = {}
    out = {}
    for r in backend.regions:
        resize = r.get("resize", "crop")  # files before resize policies: crop
        key = json.dumps([r.get("eval_ops", []), resize], sort_keys=True)
        if key not in built:
            ops = ops_of.validate_python(r.get("eval_ops", []))
            built[key] = build_transform(ops, backend.image_size, backend.mean, backend.std, resize)
        out[r["name"]] = built[key]
    return out


def _inputs(files: list[Path], names: list[str]) -> list[tuple[Path, str | None, Any]]:
    """Per input: the file, the region it is a crop of (None: unknown, every head applies)
    and its box. A CSV file is a list of inputs: a ``path`` column (relative to the CSV),
    optionally ``region`` (one of the model's) and the box ``x1,y1,x2,y2``."""
    out: list[tuple[Path, str | None, Any]] = []
    for f in files:
        if f.suffix.lower() != ".csv":
            out.append((f, None, None))
            continue
        out.extend(_csv_inputs(f, names))
    return out


def _csv_inputs(path: Path, names: list[str]) -> list[tuple[Path, str | None, Any]]:
    import csv
    import io

    from skincls.core.textio import read_text

    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    if "path" not in columns:
        raise SkinclsError(f"{path}: no 'path' column (found {columns or 'no header'})")
    boxed = all(c in columns for c in ("x1", "y1", "x2", "y2"))
    out: list[tuple[Path, str | None, Any]] = []
    for row in reader:
        region = (row.get("region") or "").strip() or None
        if region is not None and region not in names:
            raise SkinclsError(
                f"{path} line {reader.line_num}: region {region!r} is not a region of the "
                f"model ({', '.join(names)})"
            )
        box = None
        if boxed and all((row.get(c) or "").strip() for c in ("x1", "y1", "x2", "y2")):
            try:
                box = tuple(round(float(row[c])) for c in ("x1", "y1", "x2", "y2"))
            except ValueError:
                raise SkinclsError(
                    f"{path} line {reader.line_num}: x1,y1,x2,y2 must be numbers"
                ) from None
        out.append((path.parent / row["path"].strip(), region, box))
    return out


def _expand(inputs: Sequence[str | Path]) -> list[Path]:
    """The files named, and the images and label JSONs inside folders named (hidden files and
    folders, such as macOS ``._*`` resource forks, left out)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and (f.suffix.lower() in IMAGE_SUFFIXES or f.suffix == ".json")
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            )
        else:
            out.append(p)
    return out


def _label_dir_to_image_dir(part: str) -> str:
    """AI Hub folder names: 02.라벨링데이터 -> 01.원천데이터, TL* -> TS*, VL* -> VS*."""
    part = part.replace("02.라벨링데이터", "01.원천데이터")
    for label, source in (("TL", "TS"), ("VL", "VS")):
        if part.startswith(label):
            part = source + part[len(label) :]
    return part


def _aihub_crop(json_path: Path, regions: list[dict[str, Any]]):
    """(image path, bbox, [(region name, mirror)]) for an AI Hub label file.

    The file is read by the same parser as training (:func:`skincls.data.aihub.parse_label`);
    every problem is a ``ValueError`` whose message is the reason shown to the user.
    """
    from skincls.data.aihub import parse_label, valid_bbox

    rec = parse_label(str(json_path))
    if rec.error is not None:
        raise ValueError(rec.error)
    assert rec.annotations is not None and rec.filename is not None
    keys = set(rec.annotations)
    wanted = []
    for r in regions:
        for src in r.get("sources", []):
            if src.get("facepart") in (None, rec.facepart) and (not keys or src["key"] in keys):
                wanted.append((r["name"], bool(src.get("mirror"))))
                break
    if not wanted:
        raise ValueError(f"face part {rec.facepart} is claimed by no region of the model")
    if rec.bbox is None:
        raise ValueError("images.bbox is null")
    bbox = valid_bbox(rec.bbox)
    if bbox is None:
        raise ValueError(
            f"images.bbox: expected [x1, y1, x2, y2] with x1 < x2, y1 < y2, got {rec.bbox!r}"
        )
    mapped = [_label_dir_to_image_dir(p) for p in json_path.parts[:-1]]
    candidates = [Path(*mapped) / rec.filename, json_path.parent / rec.filename]
    image = next((c for c in candidates if c.is_file()), None)
    if image is None:
        raise ValueError(
            f"image {rec.filename!r} (info.filename) not found (looked in {candidates[0].parent})"
        )
    return image, bbox, wanted


def predict(
    model: str | Path,
    inputs: Sequence[str | Path],
    regions: Sequence[str] = (),
    batch_size: int = 16,
    checkpoint: str = "best",
    rule: str | None = None,
    target_prior: Sequence[str] = (),
) -> dict[str, Any]:
    """Predictions per input; ``errors`` lists inputs that could not be read, with the reason.

    Each region's input goes through the preprocessing ``evaluate`` uses for it (its
    ``augment.eval`` ops, resize, normalise), so a run directory, its ONNX export and
    ``evaluate`` give the same classes and probabilities. ``rule``/``target_prior``: the
    decision rule (default: the run's selected rule, or the one baked into the ONNX file)."""
    from skincls.data.images import read_image

    backend = open_model(model, checkpoint, rule, target_prior)
    names = [r["name"] for r in backend.regions]
    for r in regions:
        if r not in names:
            raise SkinclsError(f"--region {r}: not a region of the model ({', '.join(names)})")
    chosen = set(regions or names)
    classes = {r["name"]: r["classes"] for r in backend.regions}
    rules = {r["name"]: r.get("decision", "argmax") for r in backend.regions}
    serving = {r["name"]: r.get("rule", "uncalibrated") for r in backend.regions}
    transforms = eval_transforms(backend)
    files = _expand(inputs)
    if not files:
        raise SkinclsError("no input images given")
    items: list[tuple[str, np.ndarray, list[str], int]] = []
    errors: list[dict[str, str]] = []
    every = sorted(chosen, key=names.index)
    known: dict[int, bool] = {}  # per input: whether its region was known (else every head)
    for number, (f, row_region, bbox) in enumerate(_inputs(files, names)):
        try:
            if f.suffix == ".json":
                image, box, wanted = _aihub_crop(f, backend.regions)
                jobs = [(str(image), box, m, n) for n, m in wanted if n in chosen]
            elif row_region is not None:
                jobs = [(str(f), bbox, False, row_region)] if row_region in chosen else []
            else:
                jobs = [(str(f), bbox, False, n) for n in every]
            known[number] = f.suffix == ".json" or row_region is not None
            for label, array, rs in _preprocess(str(f), jobs, transforms, read_image):
                items.append((label, array, rs, number))
        except ValueError as err:  # ImageReadError included: the message is the reason
            errors.append({"path": str(f), "error": str(err)})
    results: dict[int, dict[str, Any]] = {}  # one entry per input, its regions in model order
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        probs, decided = backend.run(np.stack([c[1] for c in chunk]).astype(np.float32))
        for j, (path, _, rs, number) in enumerate(chunk):
            entry = results.setdefault(
                number, {"path": path, "region_known": known[number], "regions": {}}
            )
            for name in rs:
                p, k = probs[name][j], int(decided[name][j])
                entry["regions"][name] = {
                    "class": classes[name][k],
                    "index": k,
                    "decision": rules.get(name, "argmax"),
                    "rule": serving[name],
                    "probs": {c: float(v) for c, v in zip(classes[name], p, strict=False)},
                }
    for entry in results.values():
        entry["regions"] = {n: entry["regions"][n] for n in names if n in entry["regions"]}
    return {"model": str(model), "predictions": list(results.values()), "errors": errors}


def _preprocess(label: str, jobs: list, transforms: dict[str, Any], read_image) -> list:
    """One ``(label, CHW array, regions)`` item per distinct (mirror, transform) among ``jobs``
    of ``(image, bbox, mirror, region)``: regions that share both share one input. The image is
    decoded once per mirror."""
    groups: dict[tuple[bool, int], list[str]] = {}
    for _, _, mirror, name in jobs:
        groups.setdefault((mirror, id(transforms[name])), []).append(name)
    items, decoded = [], {}
    for (mirror, _), names in groups.items():
        image, bbox = jobs[0][0], jobs[0][1]
        if mirror not in decoded:
            decoded[mirror] = read_image(image, bbox, mirror)
        transform = transforms[names[0]]
        transform.set_random_seed(0)
        items.append((label, transform(image=decoded[mirror])["image"].transpose(2, 0, 1), names))
    return items


def write_csv(result: dict[str, Any], path: Path) -> None:
    """One row per input and region (all or nothing: a failed write leaves no partial file)."""
    from skincls.core.fileio import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "region", "class", "probability"])
            for p in result["predictions"]:
                for name, r in p["regions"].items():
                    w.writerow([p["path"], name, r["class"], f"{r['probs'][r['class']]:.6f}"])

    atomic_write(path, write)
