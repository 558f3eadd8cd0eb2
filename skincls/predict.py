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

from skincls.data.samples import IMAGE_SUFFIXES
from skincls.errors import SkinclsError


class _Backend(ABC):
    regions: list[dict[str, Any]]
    image_size: int
    mean: list[float]
    std: list[float]

    @abstractmethod
    def run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per region, the class probabilities and the decided class (the head's rule:
        argmax, or the median for an ordinal head) of a preprocessed NCHW float32 batch."""


class OnnxBackend(_Backend):
    def __init__(self, path: Path):
        import onnxruntime as ort

        from skincls.export import onnx_metadata

        meta = onnx_metadata(path)
        self.regions = meta["regions"]
        self.image_size, self.mean, self.std = meta["image_size"], meta["mean"], meta["std"]
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        values = self.session.run(None, {"image": batch})
        named = dict(zip(self.outputs, values, strict=False))
        probs = {r["name"]: named[f"{r['name']}_probs"] for r in self.regions}
        decided = {n: named.get(f"{n}_grade", p.argmax(1)) for n, p in probs.items()}
        return probs, decided


class TorchBackend(_Backend):
    def __init__(self, run_dir: Path, checkpoint: str = "best"):
        from skincls.evaluate import load_run_model

        self.model, _, _, specs, meta = load_run_model(run_dir, checkpoint)
        self.regions = [
            {
                "name": s.name,
                "classes": s.classes,
                "ordinal": s.ordinal,
                "decision": self.model.decisions[s.name],
                "sources": [src.model_dump(exclude_none=True) for src in s.sources],
            }
            for s in specs
        ]
        self.image_size, self.mean, self.std = meta["image_size"], meta["mean"], meta["std"]

    def run(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        import torch

        with torch.inference_mode():
            probs, decided = self.model.predict(self.model(torch.from_numpy(batch)))
        names = self.model.region_names
        return (
            {n: p.numpy() for n, p in zip(names, probs, strict=True)},
            {n: d.numpy() for n, d in zip(names, decided, strict=True)},
        )


def open_model(model: str | Path, checkpoint: str = "best") -> _Backend:
    model = Path(model)
    if model.is_file() and model.suffix == ".onnx":
        return OnnxBackend(model)
    if model.is_dir():
        return TorchBackend(model, checkpoint)
    raise SkinclsError(f"{model}: expected a run directory or an .onnx file")


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
) -> dict[str, Any]:
    """Predictions per input; ``errors`` lists inputs that could not be read, with the reason."""
    from skincls.augment import build_transform
    from skincls.data.images import read_image

    backend = open_model(model, checkpoint)
    names = [r["name"] for r in backend.regions]
    for r in regions:
        if r not in names:
            raise SkinclsError(f"--region {r}: not a region of the model ({', '.join(names)})")
    chosen = set(regions or names)
    classes = {r["name"]: r["classes"] for r in backend.regions}
    rules = {r["name"]: r.get("decision", "argmax") for r in backend.regions}
    transform = build_transform([], backend.image_size, backend.mean, backend.std)
    files = _expand(inputs)
    if not files:
        raise SkinclsError("no input images given")
    items: list[tuple[str, np.ndarray, list[str]]] = []
    errors: list[dict[str, str]] = []
    for f in files:
        try:
            if f.suffix == ".json":
                image, bbox, wanted = _aihub_crop(f, backend.regions)
                by_mirror: dict[bool, list[str]] = {}
                for name, mirror in wanted:
                    if name in chosen:
                        by_mirror.setdefault(mirror, []).append(name)
                for mirror, rs in by_mirror.items():
                    arr = read_image(str(image), bbox, mirror)
                    items.append((str(f), transform(image=arr)["image"].transpose(2, 0, 1), rs))
            else:
                arr = read_image(str(f))
                items.append(
                    (
                        str(f),
                        transform(image=arr)["image"].transpose(2, 0, 1),
                        sorted(chosen, key=names.index),
                    )
                )
        except ValueError as err:  # ImageReadError included: the message is the reason
            errors.append({"path": str(f), "error": str(err)})
    results: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        probs, decided = backend.run(np.stack([c[1] for c in chunk]).astype(np.float32))
        for j, (path, _, rs) in enumerate(chunk):
            entry: dict[str, Any] = {"path": path, "regions": {}}
            for name in rs:
                p, k = probs[name][j], int(decided[name][j])
                entry["regions"][name] = {
                    "class": classes[name][k],
                    "index": k,
                    "decision": rules.get(name, "argmax"),
                    "probs": {c: float(v) for c, v in zip(classes[name], p, strict=False)},
                }
            results.append(entry)
    return {"model": str(model), "predictions": results, "errors": errors}


def write_csv(result: dict[str, Any], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "region", "class", "probability"])
        for p in result["predictions"]:
            for name, r in p["regions"].items():
                w.writerow([p["path"], name, r["class"], f"{r['probs'][r['class']]:.6f}"])
