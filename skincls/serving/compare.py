"""``skincls compare RUN_A RUN_B [DATA]``: is run B really better than run A?

Both runs score the same samples (run A's test split of its data by default); each figure's
difference B - A gets an interval from a *paired* group bootstrap (each resample draws the same
subjects for both runs, so what the two share cancels) and a two-sided bootstrap p-value. The
verdict is read on the mean over regions of the selection figure of run A (``ba_f1`` unless it
was trained with another ``--select``): better or worse when the interval excludes 0, else not
distinguishable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skincls.core.bootstrap import Bootstrap, mean_draws, percentile_bounds, resampled_figures
from skincls.core.errors import SkinclsError
from skincls.core.names import LOWER_IS_BETTER
from skincls.serving.evaluate import Selection


@dataclass(frozen=True)
class CompareOptions:
    """Which samples (run A's split by default), which checkpoint of each run, the bootstrap,
    and the hardware."""

    selection: Selection = Selection()
    checkpoint: str = "best"
    bootstrap: Bootstrap = Bootstrap()
    batch_size: int | None = None
    workers: int = 0
    device: str = "auto"


def check_comparable(specs_a, specs_b, run_a: Path, run_b: Path) -> None:
    """One clear error naming the first difference in regions, classes or grading."""
    names_a, names_b = [s.name for s in specs_a], [s.name for s in specs_b]
    if sorted(names_a) != sorted(names_b):
        only_a = sorted(set(names_a) - set(names_b))
        only_b = sorted(set(names_b) - set(names_a))
        raise SkinclsError(
            f"{run_a} and {run_b} have different regions: only in A: {only_a or 'none'}; "
            f"only in B: {only_b or 'none'}"
        )
    by_name = {s.name: s for s in specs_b}
    for a in specs_a:
        b = by_name[a.name]
        if list(a.classes) != list(b.classes):
            raise SkinclsError(
                f"region {a.name}: classes differ: {run_a} has {list(a.classes)}, "
                f"{run_b} has {list(b.classes)}"
            )
        if bool(a.ordinal) != bool(b.ordinal):
            raise SkinclsError(f"region {a.name}: ordinal in one run and not in the other")


def compare(
    run_a: str | Path,
    run_b: str | Path,
    data: str | Path | None = None,
    options: CompareOptions | None = None,
) -> dict[str, Any]:
    """Per region and figure: A, B, B - A with its paired interval and p-value; the same for
    the mean over regions; the verdict; and how many scored samples run B trained or
    validated on and run A did not (when the runs' splits of DATA differ)."""
    from skincls.core.metrics import evaluate_predictions
    from skincls.run.load import load_run
    from skincls.serving.evaluate import select_samples

    o = options or CompareOptions()
    if o.bootstrap.resamples < 1:
        raise SkinclsError("--bootstrap: compare needs 1 or more resamples")
    run_a, run_b = Path(run_a), Path(run_b)
    a = load_run(run_a, o.checkpoint)
    b = load_run(run_b, o.checkpoint)
    check_comparable(a.specs, b.specs, run_a, run_b)
    data = Path(data) if data is not None else Path(a.config.data)
    split, samples = select_samples(run_a, a.config, a.registry, data, o.selection)
    seen_a = _seen_by(run_a, a.config, data, samples)
    wanted = [s.name for s in a.specs if not o.selection.regions or s.name in o.selection.regions]
    rows_a = _rows(a, samples, wanted, o)
    rows_b = _rows(b, samples, wanted, o)
    keep = rows_a["ok"] & rows_b["ok"]
    region, labels = rows_a["region"][keep], rows_a["label"][keep]
    pred_a, pred_b = rows_a["pred"][keep], rows_b["pred"][keep]
    specs = [next(s for s in a.specs if s.name == n) for n in wanted]
    heads = [(s.name, len(s.classes), bool(s.ordinal)) for s in specs]
    classes = {s.name: s.classes for s in specs}
    ordinal = {s.name: bool(s.ordinal) for s in specs}
    point_a = evaluate_predictions(wanted, classes, region, labels, pred_a, ordinal)
    point_b = evaluate_predictions(wanted, classes, region, labels, pred_b, ordinal)
    groups = [samples[i].group for i in rows_a["index"][keep].tolist()]
    draws_a, n_groups = resampled_figures(region, labels, pred_a, groups, heads, o.bootstrap)
    draws_b, _ = resampled_figures(region, labels, pred_b, groups, heads, o.bootstrap)
    level = o.bootstrap.level
    result: dict[str, Any] = {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "data": str(data),
        "split": split,
        "checkpoint": o.checkpoint,
        "n": int(keep.sum()),
        "groups": n_groups,
        "regions": {
            n: _differences(
                point_a["regions"][n], point_b["regions"][n], draws_a[n], draws_b[n], level
            )
            for n in wanted
        },
        "mean": _differences(
            point_a["mean"], point_b["mean"], mean_draws(draws_a), mean_draws(draws_b), level
        ),
        "bootstrap": o.bootstrap.describe(),
        "b_trained_on": len(_seen_by(run_b, b.config, data, samples) - seen_a),
    }
    result["select"] = a.config.select
    result["verdict"] = verdict(result["mean"].get(a.config.select), a.config.select)
    return result


def _rows(run, samples, wanted: list[str], o: CompareOptions) -> dict[str, np.ndarray]:
    """One run's prediction rows of the ``wanted`` regions, in ``wanted``'s region order."""
    from skincls.core.runtime import amp_dtype, resolve_device
    from skincls.model.inference import predict_loader
    from skincls.serving.evaluate import eval_loader

    dev = resolve_device(o.device)
    run.model.to(dev)
    batch = o.batch_size or run.config.batch_size
    loader, _ = eval_loader(run.specs, run.meta, samples, batch, o.workers, dev)
    p = predict_loader(run.model, loader, dev, amp_dtype(run.config.amp, dev))
    names = [s.name for s in run.specs]
    order = np.array([wanted.index(n) if n in wanted else -1 for n in names])
    rows = {k: v[order[p["region"]] >= 0] for k, v in p.items()}
    rows["region"] = order[rows["region"]]
    # the same samples give the same rows in the same order in both runs, sorted to be sure
    sort = np.lexsort((rows["region"], rows["index"]))
    rows = {k: v[sort] for k, v in rows.items()}
    rows["ok"] = rows["ok"].astype(bool)
    return rows


def _differences(point_a, point_b, draws_a, draws_b, level: float) -> dict[str, Any]:
    out = {}
    for m, va in draws_a.items():
        if m not in draws_b or m not in point_a:
            continue
        diff = draws_b[m] - va
        finite = diff[~np.isnan(diff)]
        below = (np.sum(finite <= 0) + 1) / (finite.size + 1)
        above = (np.sum(finite >= 0) + 1) / (finite.size + 1)
        out[m] = {
            "a": point_a[m],
            "b": point_b[m],
            "difference": point_b[m] - point_a[m],
            "interval": percentile_bounds(diff, level),
            "p": float(min(1.0, 2 * min(below, above))),
        }
    return out


def verdict(entry: dict[str, Any] | None, metric: str) -> str:
    """ "better", "worse" or "not distinguishable": B against A on ``metric``."""
    if not entry:
        return "not distinguishable"
    lo, hi = entry["interval"]
    sign = -1 if metric in LOWER_IS_BETTER else 1
    if lo > 0 or hi < 0:
        return "better" if sign * entry["difference"] > 0 else "worse"
    return "not distinguishable"


def _seen_by(run: Path, config, data: Path, samples) -> set[str]:
    """Keys of the scored samples that ``run`` trained or validated on (none on other data)."""
    from skincls.data.split import load_split, partition
    from skincls.run.artifacts import SPLIT

    if data.resolve() != Path(config.data).resolve() or not (run / SPLIT).is_file():
        return set()
    try:
        parts = partition(samples, load_split(run / SPLIT, samples))
    except SkinclsError:
        return set()
    return {s.key for s in parts["train"] + parts["val"]}
