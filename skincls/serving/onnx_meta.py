"""The metadata an exported ONNX file carries: written by ``skincls export``
(:func:`metadata_props`, :func:`save_with_metadata`), read and checked by ``skincls predict``
(:func:`onnx_metadata`). JSON only, never code; everything an app needs besides the graph."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError
from skincls.core.fileio import remove_quietly, write_error

METADATA_KEY = "skincls"


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The skincls metadata of an exported model (JSON, never code), checked against the graph:
    required keys and types, one ``<region>_probs`` output per region whose width is the number
    of classes, and an input whose size is ``image_size``. Any mismatch is one clear error."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise SkinclsError(f"{path}: not a readable ONNX file: {err}") from None
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise SkinclsError(f"{path}: no skincls metadata; was it exported by skincls export?")
    try:
        meta = json.loads(props[METADATA_KEY])
    except ValueError as err:
        raise SkinclsError(f"{path}: metadata '{METADATA_KEY}' is not valid JSON: {err}") from None
    _check_metadata(meta, model.graph, str(path))
    return meta


def _dims(value_info) -> list[int | None]:
    return [
        d.dim_value if d.HasField("dim_value") else None
        for d in value_info.type.tensor_type.shape.dim
    ]


def _check_metadata(meta: Any, graph, origin: str) -> None:
    def fail(msg: str) -> None:
        raise SkinclsError(f"{origin}: metadata does not match the model: {msg}")

    if not isinstance(meta, dict):
        fail("expected a JSON object")
    for key, kind in (("regions", list), ("image_size", int), ("mean", list), ("std", list)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            fail(f"{key}: expected {kind.__name__}, got {meta.get(key)!r}")
    if len(meta["mean"]) != 3 or len(meta["std"]) != 3:
        fail(f"mean/std: expected three numbers each, got {meta['mean']} / {meta['std']}")
    outputs = {o.name: _dims(o) for o in graph.output}
    for r in meta["regions"]:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            fail(f"regions: expected objects with a name, got {r!r}")
        classes = r.get("classes")
        if not isinstance(classes, list) or len(classes) < 2:
            fail(f"regions.{r['name']}.classes: expected a list of 2+ labels, got {classes!r}")
        name = f"{r['name']}_probs"
        if name not in outputs:
            fail(f"no output {name!r} for region {r['name']!r} (outputs: {sorted(outputs)})")
        width = outputs[name][-1] if outputs[name] else None
        if width is not None and width != len(classes):
            fail(f"region {r['name']!r} lists {len(classes)} classes but {name} has width {width}")
    inputs = [i for i in graph.input if i.name == "image"]
    if not inputs:
        fail(f"no input named 'image' (inputs: {[i.name for i in graph.input]})")
    dims = _dims(inputs[0])
    if len(dims) != 4 or dims[2:] != [meta["image_size"]] * 2:
        fail(f"image_size {meta['image_size']} but the input 'image' has shape {dims}")


def check_reproducible(specs) -> None:
    """Refuse a region whose evaluation preprocessing an app cannot reproduce from the
    metadata: an ``augment.eval`` op that is random."""
    from skincls.data.augment import random_part

    for s in specs:
        for i, op in enumerate(s.augment.eval):
            why = random_part(op)
            if why:
                raise SkinclsError(
                    f"region {s.name}: augment.eval[{i}] {op.op}: {why}; an app cannot "
                    "reproduce a random evaluation step from the ONNX metadata. Make it "
                    "deterministic (p: 1.0 and fixed values) or remove it, then train again "
                    "or export the other regions with --region"
                )


def metadata_props(
    run_dir: Path, checkpoint: str, quantize: str, meta, specs, model=None
) -> list[tuple[str, str]]:
    """The ``metadata_props`` of an exported model: one JSON entry (``skincls``, what predict
    reads) and flat keys for tools that show metadata. Written once, attached to every file."""
    from skincls.core.version import __version__

    kinds = getattr(model, "kinds", {})
    decisions = getattr(model, "decisions", {})
    calibration = meta.calibration or {}
    serving = meta.serving
    shifts = getattr(model, "log_shifts", {})
    moved = getattr(model, "prior_shifts", {})
    size = int(meta.image_size)
    document = {
        "skincls_version": __version__,
        "backbone": meta.backbone,
        "source_run": str(run_dir.resolve()),
        "checkpoint": checkpoint,
        "epoch": meta.epoch,
        "image_size": size,
        "mean": meta.mean,
        "std": meta.std,
        "resize": "per region (regions[].resize): squash = resize the whole crop to "
        "image_size x image_size; pad = longer side to image_size, centred, padded with the "
        "mean colour; crop = shorter side to image_size, then the centre square. Shrinking "
        "averages pixel areas (OpenCV INTER_AREA), enlarging is bilinear",
        "input": "image: float32 NCHW, RGB, normalised with mean/std",
        "quantize": quantize,
        "regions": [
            {
                "name": s.name,
                "classes": s.classes,
                "ordinal": s.ordinal,
                "head": kinds.get(s.name, "softmax"),
                "decision": decisions.get(s.name, "argmax"),
                "temperature": getattr(model, "temperatures", {}).get(s.name, 1.0),
                "bias": calibration.get(s.name, {}).get("bias"),
                "rule": serving.get(s.name, "uncalibrated"),
                "decision_log_shift": (
                    shifts[s.name].tolist() if shifts.get(s.name) is not None else None
                ),
                "prior_log_shift": (
                    moved[s.name].tolist() if moved.get(s.name) is not None else None
                ),
                "prior": calibration.get(s.name, {}).get("prior"),
                "tau": calibration.get(s.name, {}).get("tau"),
                "eval_ops": [op.model_dump() for op in s.augment.eval],
                "resize": meta.resize.get(s.name, "crop"),
                "sources": [src.model_dump(exclude_none=True) for src in s.sources],
            }
            for s in specs
        ],
        "outputs": "<region>_logits (raw); <region>_probs: calibrated class probabilities, "
        "computed from logits/T + bias (softmax; sigmoid heads: per-class sigmoids normalised "
        "to sum 1; CORN: from its K-1 conditional outputs), then, when exported for a target "
        "prior, times exp(prior_log_shift) = target / training prior, renormalised (Bayes' "
        "rule); <region>_decision "
        "(int64): the decided class, argmax (or, for decision 'median', the median) of _probs "
        "times exp(decision_log_shift), renormalised",
    }
    return [
        (METADATA_KEY, json.dumps(document, ensure_ascii=False)),
        ("regions", ",".join(s.name for s in specs)),
        ("image_size", str(size)),
        ("mean", json.dumps(meta.mean)),
        ("std", json.dumps(meta.std)),
        ("backbone", meta.backbone),
        ("skincls_version", __version__),
        ("source_run", str(run_dir.resolve())),
        *((f"classes.{s.name}", json.dumps(s.classes, ensure_ascii=False)) for s in specs),
    ]


def with_ensemble(props: list[tuple[str, str]], note: dict[str, Any]) -> list[tuple[str, str]]:
    """``props`` with the ensemble's description in the JSON entry (its ``ensemble`` key, whose
    ``outputs`` replace the single model's) and as a flat ``ensemble_folds`` key."""
    out = []
    for key, value in props:
        if key == METADATA_KEY:
            document = json.loads(value)
            document["ensemble"] = note
            document["outputs"] = note["outputs"]
            value = json.dumps(document, ensure_ascii=False)
        out.append((key, value))
    return [*out, ("ensemble_folds", str(note["folds"]))]


def save_with_metadata(proto, path: Path, props: list[tuple[str, str]]) -> None:
    """Attach ``props`` (replacing any), check the model fully, and write one file atomically."""
    import onnx

    from skincls.core.version import __version__

    del proto.metadata_props[:]
    for key, value in props:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "skincls"
    proto.producer_version = __version__
    onnx.checker.check_model(proto, full_check=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.onnx")
    try:
        onnx.save(proto, str(tmp), save_as_external_data=False)
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        remove_quietly(tmp)
