"""``skincls cv DATA --folds K``: grouped, stratified k-fold cross-validation.

The folds come from the same group-aware, multi-head stratified assignment as the train/val/test
split (:func:`skincls.data.split.fold_samples`): no subject in two folds, every sample in exactly
one held-out fold. Fold ``i`` is one ordinary run directory (``OUT/fold-i``) whose test part is
fold ``i`` and whose validation part (calibration, decision rule, selection) is a group-aware
share of the other folds (``--val-fraction`` of them); everything else is ``skincls train``.
Folds that finished are kept, a fold that was interrupted is resumed, so an interrupted cv
continues where it stopped. At the end every fold's served model predicts its held-out fold:
``OUT/oof.csv`` has one row per label (sample key, group, region, label, fold, decided class,
served probabilities), and ``OUT/cv.json`` the pooled out-of-fold figures with group-bootstrap
intervals beside the mean and sd over folds.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skincls.core.errors import SkinclsError
from skincls.run.artifacts import CV_PLAN as PLAN
from skincls.run.artifacts import CV_RESULT as RESULT
from skincls.run.artifacts import OOF, fold_dir

PLAN_KEYS = ("folds", "data", "seed", "regions")
"""What a cv directory was started with; resuming with other values is refused."""


def fold_splits(samples, folds: int, seed: int, val_fraction: float) -> list[dict[str, str]]:
    """Per fold, each sample key's part: ``test`` (the held-out fold), else ``val`` (a
    group-aware ``val_fraction`` of the other folds) or ``train``."""
    from skincls.data.split import fold_samples, split_samples

    assignment = fold_samples(samples, folds, seed)
    out = []
    for i in range(folds):
        rest = [s for s in samples if assignment[s.key] != i]
        fr = (1.0 - val_fraction, val_fraction, 0.0)
        parts = (
            split_samples(rest, fr, seed) if val_fraction > 0 else {s.key: "train" for s in rest}
        )
        parts.update({s.key: "test" for s in samples if assignment[s.key] == i})
        out.append(parts)
    return out


def run_cv(
    values: dict[str, Any],
    folds: int,
    output: str | Path,
    overwrite: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Train (or resume) every fold with the train options ``values``, then write and return
    the out-of-fold figures. ``overwrite`` starts a cv directory afresh; without it, one
    started with other folds, data, seed or regions is refused."""
    from skincls.core.config import build_config
    from skincls.data.regions import discover_regions
    from skincls.data.sources import ReadOptions, load_data
    from skincls.run.rundir import resume_config
    from skincls.training.train import train

    out = Path(output)
    base = build_config({**values, "output": str(fold_dir(out, 0))})
    registry = discover_regions(base.regions_dir)
    read = ReadOptions(base.source, base.group_column, base.skip_bad)
    dataset = load_data(base.data, registry, base.region, read)
    plan = {
        "folds": folds,
        "data": str(Path(base.data).resolve()),
        "seed": base.seed,
        "regions": [r.name for r in dataset.regions],
    }
    _check_plan(out, plan, overwrite)
    splits = fold_splits(dataset.samples, folds, base.seed, base.val_fraction)
    for i, split in enumerate(splits):
        target = fold_dir(out, i)
        state = _fold_state(target)
        if state == "finished":
            progress(f"fold {i + 1}/{folds}: finished earlier, kept ({target})")
            continue
        if state == "started":
            progress(f"fold {i + 1}/{folds}: resuming {target}")
            train(resume_config(target, {}))
        else:
            progress(f"fold {i + 1}/{folds}: training {target}")
            train(build_config({**values, "output": str(target), "overwrite": True}), split=split)
    return _score_folds(out, folds)


def _check_plan(out: Path, plan: dict[str, Any], overwrite: bool) -> None:
    from skincls.core.fileio import atomic_write_json

    path = out / PLAN
    if path.is_file() and not overwrite:
        saved = json.loads(path.read_text(encoding="utf-8"))
        for k in PLAN_KEYS:
            if saved.get(k) != plan[k]:
                raise SkinclsError(
                    f"{out}: a cv started with {k} = {saved.get(k)!r}, now {plan[k]!r}; use "
                    "another --output, or --overwrite to start again"
                )
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise SkinclsError(f"{out}: exists and is not a cv directory; pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        import shutil

        for old in out.glob("fold-*"):
            shutil.rmtree(old)
    atomic_write_json(path, plan)


def _fold_state(target: Path) -> str:
    """``new`` (nothing there), ``finished`` (evaluated on its held-out fold) or ``started``."""
    from skincls.run.artifacts import EVALUATION

    if not target.exists():
        return "new"
    return "finished" if (target / EVALUATION).is_file() else "started"


def _score_folds(out: Path, folds: int) -> dict[str, Any]:
    """Every fold's served model on its held-out fold: ``oof.csv``, then pooled figures with
    intervals and the mean and sd over folds (``cv.json``)."""
    import numpy as np

    from skincls.core.fileio import atomic_write_json
    from skincls.core.runtime import resolve_device
    from skincls.model.inference import metrics_of, predict_loader
    from skincls.run.load import load_run
    from skincls.serving.evaluate import Selection, eval_loader, select_samples

    pooled: dict[str, list] = {}
    per_fold: list[dict[str, Any]] = []
    keys: list[str] = []
    device = resolve_device("auto")
    for i in range(folds):
        model, config, registry, specs, meta = load_run(fold_dir(out, i))
        _, held = select_samples(
            fold_dir(out, i), config, registry, Path(config.data), Selection("test")
        )
        loader, _ = eval_loader(specs, meta, held, config.batch_size, 0, device)
        p = predict_loader(model.to(device), loader, device, keep_probs=True)
        p["fold"] = np.full(len(p["index"]), i)
        keys += [held[j].key for j in p["index"].tolist()]
        groups_of = [held[j].group for j in p["index"].tolist()]
        p["group"] = np.array(groups_of, dtype=object)
        p["index"] = np.arange(len(keys) - len(groups_of), len(keys))
        figures = metrics_of(p, specs)
        per_fold.append({"fold": i, "mean": figures["mean"], "regions": figures["regions"]})
        for k, v in p.items():
            pooled.setdefault(k, []).append(v)
    rows = {k: np.concatenate(v) for k, v in pooled.items()}
    _write_oof(out / OOF, rows, keys, specs)
    result = metrics_of(rows, specs, list(rows["group"]))
    result.pop("bad_indices", None)
    result.update(
        {
            "folds": folds,
            "per_fold": per_fold,
            "over_folds": _mean_sd(per_fold),
            "oof": str(out / OOF),
            "runs": [str(fold_dir(out, i)) for i in range(folds)],
        }
    )
    atomic_write_json(out / RESULT, result)
    return result


def _write_oof(path: Path, rows: dict, keys: list[str], specs) -> None:
    from skincls.core.fileio import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["key", "group", "region", "label", "fold", "pred", "ok", "probs"])
            for j in range(len(rows["region"])):
                spec = specs[int(rows["region"][j])]
                probs = " ".join(f"{v:.6f}" for v in rows["probs"][j])
                w.writerow(
                    [
                        keys[int(rows["index"][j])],
                        rows["group"][j],
                        spec.name,
                        spec.classes[int(rows["label"][j])],
                        int(rows["fold"][j]),
                        spec.classes[int(rows["pred"][j])],
                        int(bool(rows["ok"][j])),
                        probs,
                    ]
                )

    atomic_write(path, write)


def _mean_sd(per_fold: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each mean figure's mean and sample sd over the folds."""
    out = {}
    for k in per_fold[0]["mean"]:
        values = [f["mean"][k] for f in per_fold if f["mean"].get(k) == f["mean"].get(k)]
        if values:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            out[k] = [statistics.mean(values), sd]
    return out
