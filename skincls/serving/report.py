"""``skincls report``: one self-contained HTML page about a run, for people.

The data (class distribution per region and split part, the imbalance corrections, images that
were skipped), training (loss, learning rate and every validation metric per epoch, the selected
epoch marked), per region (confusion matrices, per-class precision/recall/F1 with support, the
ordinal figures for ordinal regions, the worst mistakes as thumbnails, Grad-CAM with
``explain``), and the config, versions and commands to reproduce it. Plots are matplotlib PNGs
and thumbnails JPEGs, inlined as data URIs, so the file opens anywhere without a network.
"""

from __future__ import annotations

import base64
import csv
import platform
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skincls.core.errors import SkinclsError
from skincls.core.metrics import chance_levels
from skincls.core.names import ALL_METRICS, NIA_COLUMNS
from skincls.core.plots import class_key
from skincls.run import artifacts as A
from skincls.serving.report_plots import (
    confusion_plot,
    distribution_plot,
    jpeg,
    per_class_plot,
    png,
    training_plot,
)

MISTAKES = 12
GRADCAMS = 4


@dataclass(frozen=True)
class Sections:
    """Optional parts of a report: Grad-CAM overlays of the worst mistakes (``explain``) and a
    section of figures by subgroup for each field in ``by``."""

    explain: bool = False
    by: Sequence[str] = ()


def build_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    data: str | Path | None = None,
    split: str = "auto",
    checkpoint: str = "best",
    overwrite: bool = False,
    sections: Sections = Sections(),
) -> dict[str, Any]:
    """Write the report of ``run_dir`` (default ``RUN/report.html``, which is replaced: it is the
    run's own file) scored on ``split`` of ``data`` (default: the run's test split, else its
    validation split), with the optional ``sections``. Returns the path, its size and the
    seconds it took."""
    from skincls.core.outputs import check_new_file
    from skincls.run.rundir import RunDir

    t0 = time.perf_counter()
    run = RunDir.open(run_dir, lock=False)
    if output is None:
        target = run.path / A.REPORT
    else:
        target = check_new_file(output, "--output", overwrite)
        if target.suffix.lower() not in (".html", ".htm"):
            raise SkinclsError(f"--output {target}: expected a file name ending in .html")
    scored = _score(run.path, data, split, checkpoint)
    context = {
        "run": str(run.path),
        "status": run.status().dump(),
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "scored": {k: scored[k] for k in ("split", "data", "epoch", "checkpoint", "n")},
        "data_section": _data_section(run, scored["config"], scored["specs"]),
        "training": _training_section(run.history(), scored["config"].select, run.status().dump()),
        "regions": [_region_section(scored, spec, sections.explain) for spec in scored["specs"]],
        "nia": _nia_rows(scored),
        "subgroups": _subgroup_sections(scored, sections.by),
        "mean": scored["metrics"]["mean"],
        "ci": scored["metrics"].get("intervals") or {},
        "config_yaml": (run.path / A.CONFIG).read_text(encoding="utf-8"),
        "val_metrics": [k for k in ALL_METRICS if any(f"val_{k}" in h for h in run.history())],
        "versions": _versions(),
        "commands": _commands(run.path),
    }
    html = _render(context)
    from skincls.core.fileio import atomic_write_text

    atomic_write_text(target, html)
    return {
        "path": str(target),
        "size_bytes": target.stat().st_size,
        "seconds": time.perf_counter() - t0,
        "split": scored["split"],
    }


def _score(run_dir: Path, data, split: str, checkpoint: str) -> dict[str, Any]:
    """The checkpoint's predictions (with confidences) and metrics on the chosen samples."""
    from skincls.core.runtime import resolve_device
    from skincls.model.inference import metrics_of, predict_loader
    from skincls.run.load import load_run
    from skincls.serving.evaluate import eval_loader

    model, config, registry, specs, meta = load_run(run_dir, checkpoint)
    data_path = Path(data) if data is not None else Path(config.data)
    chosen, samples = _pick_split(run_dir, config, registry, data_path, split)
    device = resolve_device("auto")
    model.to(device)
    loader, transforms = eval_loader(specs, meta, samples, config.batch_size, 0, device)
    from skincls.model.calibration import calibration_report
    from skincls.model.inference import head_logits

    p = predict_loader(model, loader, device, keep_logits=True)
    metrics = metrics_of(p, specs, [s.group for s in samples])
    calibration = calibration_report(model, p)
    logits = head_logits(p, model.region_names)
    return {
        "model": model,
        "config": config,
        "specs": specs,
        "meta": meta,
        "samples": samples,
        "pred": p,
        "metrics": metrics,
        "calibration": calibration,
        "logits": logits,
        "split": chosen,
        "data": str(data_path),
        "epoch": meta.epoch,
        "checkpoint": checkpoint,
        "n": int(p["ok"].sum()),
        "transforms": transforms,
    }


def _subgroup_sections(scored: dict[str, Any], by: Sequence[str]) -> list[dict[str, Any]]:
    """Per field: the chart and the rows of ``evaluate --by`` (balanced accuracy, macro F1 and
    accuracy with intervals) and the largest gap."""
    if not by:
        return []
    from skincls.core.bootstrap import Bootstrap
    from skincls.serving.report_plots import subgroup_plot
    from skincls.serving.subgroups import GAP_METRIC, SubgroupOptions, by_field, check_fields

    check_fields(scored["samples"], by, scored["data"])
    metrics, options = scored["metrics"], SubgroupOptions(list(by))
    out = []
    for field in by:
        entry = by_field(
            scored["pred"], scored["specs"], scored["samples"], field, metrics, options, Bootstrap()
        )
        entry["chart"] = subgroup_plot(entry, metrics["mean"].get(GAP_METRIC), GAP_METRIC)
        out.append(entry)
    return out


def _pick_split(run_dir, config, registry, data_path, split):
    """``split`` and its samples; ``auto`` is the test split, else validation, else all.
    Undecodable rows are counted, not fatal: a report shows what it can."""
    from skincls.serving.evaluate import Selection, select_samples

    args = (run_dir, config, registry, data_path)
    if split != "auto":
        return select_samples(*args, Selection(split, skip_bad=True))
    first: SkinclsError | None = None
    for part in ("test", "val", "all"):
        try:
            return select_samples(*args, Selection(part, skip_bad=True))
        except SkinclsError as err:
            first = first or err
    raise first or SkinclsError(f"{data_path}: no samples to score")


# ---- sections ----------------------------------------------------------------------------------


def _data_section(run, config, specs) -> dict[str, Any]:
    """Class counts per region and split part (from ``split.csv``), corrections, skipped images."""
    from skincls.core.names import PRIOR_LOSSES, REWEIGHTING_LOSSES
    from skincls.model.losses import loss_of

    counts: dict[str, dict[str, list[int]]] = {
        s.name: {part: [0] * s.num_classes for part in ("train", "val", "test")} for s in specs
    }
    by_name = {s.name: s for s in specs}
    with open(run.path / A.SPLIT, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):  # labels are raw: the region's label_map applies
            spec, region = by_name.get(row["region"]), counts.get(row["region"])
            label = spec.class_index(row["label"]) if spec else None
            if region is not None and label is not None and row["part"] in region:
                region[row["part"]][label] += 1
    corrections = []
    for s in specs:
        loss = loss_of(s, config.loss)
        sampler = s.sampler or config.sampler
        double = sampler != "none" and loss in REWEIGHTING_LOSSES + PRIOR_LOSSES
        corrections.append({"region": s.name, "loss": loss, "sampler": sampler, "double": double})
    bad = list(run.bad_images().items())
    return {
        "plots": {s.name: distribution_plot(s, counts[s.name]) for s in specs},
        "class_keys": {s.name: key for s in specs if (key := class_key(list(s.classes)))},
        "counts": counts,
        "corrections": corrections,
        "region_balance": config.region_balance,
        "bad": bad[:50],
        "bad_total": len(bad),
    }


def _training_section(history: list[dict[str, Any]], select: str, status: dict) -> dict[str, Any]:
    if not history:
        return {"plot": None, "served_epoch": None, "best_epoch": None, "rows": []}
    served = status.get("served_epoch", status.get("best_epoch"))
    return {
        "plot": training_plot(history, select, served),
        "served_epoch": served,
        "best_epoch": status.get("best_epoch"),
        "select": select,
        "validated": any(h.get("select") is not None for h in history),
        "rows": history,
    }


def _region_section(scored: dict[str, Any], spec, explain: bool) -> dict[str, Any]:
    m = scored["metrics"]["regions"][spec.name]
    section: dict[str, Any] = {
        "name": spec.name,
        "title": spec.title or spec.name,
        "ordinal": spec.ordinal,
        "classes": spec.classes,
        "metrics": m,
        "ci": (scored["metrics"].get("intervals") or {}).get("regions", {}).get(spec.name, {}),
        "per_class": m["per_class"],
        "class_key": class_key(list(spec.classes)),
    }
    if m["n"] == 0:
        section.update(confusion=None, bars=None, mistakes=[], grade_errors=[], served=None)
        return section
    support = [m["per_class"][c]["support"] for c in spec.classes]
    section["chance"] = chance_levels(support, spec.ordinal)
    section["confusion"] = confusion_plot(spec, np.asarray(m["confusion_matrix"]))
    section["bars"] = per_class_plot(spec, m["per_class"])
    section["served"] = _served_decision(scored, spec)
    wrong = _mistakes(scored, spec)
    section["mistakes"] = _thumbnails(scored, spec, wrong["confident"], explain)
    section["grade_errors"] = (
        _thumbnails(scored, spec, wrong["largest"], False) if spec.ordinal else []
    )
    section["grade_errors_shown_above"] = bool(spec.ordinal and wrong["largest_all_above"])
    return section


def _served_decision(scored: dict[str, Any], spec) -> dict[str, Any]:
    """How the head's served decision is made and how it fares here: its calibration (T,
    bias, ECE on validation when fitted and on this split, before and after, with the
    reliability diagram), its rule (tau, for which metric) and the share of this split's
    decisions that are not the most probable class."""
    import torch

    from skincls.model.calibration import reliability_figure

    model, meta = scored["model"], scored["meta"]
    fitted = (meta.calibration or {}).get(spec.name) or {}
    here = scored["calibration"].get(spec.name)
    logits, _ = scored["logits"][spec.name]
    with torch.inference_mode():
        probs, decided = model.serve(spec.name, logits)
    differs = float((probs.argmax(1) != decided).float().mean())
    return {
        "rule": meta.serving.get(spec.name, "uncalibrated"),
        "decision": model.decisions[spec.name],
        "temperature": model.temperatures[spec.name],
        "bias": fitted.get("bias"),
        "tau": fitted.get("tau"),
        "select": fitted.get("select"),
        "val": fitted.get("val"),
        "here": here,
        "reliability": png(reliability_figure(spec.name, here)) if here else None,
        "differs": differs,
    }


def _nia_rows(scored: dict[str, Any]) -> list[dict[str, Any]]:
    """The ordinal regions in the data owners' layout (:data:`NIA_COLUMNS`) with their average, as ``evaluate`` prints it; [] without ordinal regions."""
    items = {
        s.name: scored["metrics"]["regions"][s.name]
        for s in scored["specs"]
        if s.ordinal and scored["metrics"]["regions"][s.name]["n"] > 0
    }
    if not items:
        return []
    ci = scored["metrics"].get("intervals") or {}
    rows = [
        {
            "item": n,
            "n": m["n"],
            "ci": ci.get("regions", {}).get(n, {}),
            **{k: m[k] for k in NIA_COLUMNS},
        }
        for n, m in items.items()
    ]
    mean = {k: sum(m[k] for m in items.values()) / len(items) for k in NIA_COLUMNS}
    return [*rows, {"item": "average", "n": "", "ci": ci.get("ordinal_mean", {}), **mean}]


def _mistakes(scored: dict[str, Any], spec) -> dict[str, list[int]]:
    """Positions (in the scored samples) of the most confident wrong predictions and, for
    ordinal regions, of the largest grade errors."""
    p = scored["pred"]
    region = [s.name for s in scored["specs"]].index(spec.name)
    idx = np.flatnonzero((p["region"] == region) & p["ok"].astype(bool) & (p["pred"] != p["label"]))
    confident = idx[np.argsort(-p["conf"][idx], kind="stable")][:MISTAKES]
    error = np.abs(p["pred"][idx].astype(int) - p["label"][idx].astype(int))
    largest = idx[np.lexsort((-p["conf"][idx], -error))][:MISTAKES]
    shown = set(confident.tolist())
    return {
        "confident": confident.tolist(),
        "largest": [i for i in largest.tolist() if i not in shown],  # each mistake shown once
        "largest_all_above": bool(len(largest)) and set(largest.tolist()) <= shown,
    }


def _thumbnails(scored, spec, positions: list[int], explain: bool) -> list[dict[str, Any]]:
    from PIL import Image

    from skincls.data.images import ImageReadError, read_image

    p = scored["pred"]
    out = []
    for n, pos in enumerate(positions):
        sample = scored["samples"][int(p["index"][pos])]
        try:
            rgb = read_image(sample.path, sample.bbox, sample.mirror)
        except ImageReadError:
            continue
        item = {
            "path": sample.path,
            "true": spec.classes[int(p["label"][pos])],
            "pred": spec.classes[int(p["pred"][pos])],
            "conf": float(p["conf"][pos]),
            "image": jpeg(Image.fromarray(rgb)),
            "cam": None,
        }
        if explain and n < GRADCAMS:
            from skincls.serving.explain import cam_overlay

            transform = scored["transforms"][spec.name]
            resize = scored["meta"].resize[spec.name]
            overlay, _, _ = cam_overlay(scored["model"], rgb, spec.name, transform, resize=resize)
            item["cam"] = jpeg(Image.fromarray(overlay))
        out.append(item)
    return out


def _versions() -> dict[str, str]:
    import timm
    import torch

    from skincls.core.version import __version__

    return {
        "skincls": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _commands(run: Path) -> dict[str, str]:
    q = shlex.quote(str(run))
    return {
        "reproduce": f"skincls train --config {shlex.quote(str(run / 'config.yaml'))} -o NEW_RUN",
        "evaluate": f"skincls evaluate {q}",
        "export": f"skincls export {q}",
        "report": f"skincls report {q} --explain",
    }


def _interval_text(bounds: list[float] | None, percent: bool = False) -> str:
    """``[low, high]`` as "low–high" (percent points with ``percent``); "" when missing."""
    if not bounds or any(v is None or v != v for v in bounds):
        return ""
    lo, hi = (100 * v for v in bounds) if percent else bounds
    return f"{lo:.1f}–{hi:.1f}" if percent else f"{lo:.3f}–{hi:.3f}"


def _render(context: dict[str, Any], template: str = "report.html.j2") -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * float(v):.1f}"
    env.filters["f3"] = lambda v: "" if v is None else f"{float(v):.3f}"
    env.filters["ci"] = _interval_text
    env.filters["g4"] = lambda v: f"{v:.4g}" if isinstance(v, float) else v
    return env.get_template(template).render(**context)


def build_study_report(result: dict[str, Any], output: Path) -> str:
    """``OUTPUT/report.html`` of a sweep: the trials (headed by the metric), the history and
    importance plots, and a link to the best trial's own report (built here)."""
    from skincls.core.fileio import atomic_write_text

    best = result.get("best")
    best_report = None
    if best and best.get("run_dir"):
        built = build_report(best["run_dir"])
        best_report = _relative(Path(built["path"]), Path(output))
    plots = []
    for path in result.get("plots", []):
        data = base64.b64encode(Path(path).read_bytes()).decode()
        plots.append("data:image/png;base64," + data)
    names = sorted({k for t in result["trials"] for k in t["params"]})
    html = _render(
        {
            "result": result,
            "names": names,
            "plots": plots,
            "best_report": best_report,
            "generated": time.strftime("%Y-%m-%d %H:%M"),
        },
        "study.html.j2",
    )
    target = Path(output) / "report.html"
    atomic_write_text(target, html)
    return str(target)


def _relative(path: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
