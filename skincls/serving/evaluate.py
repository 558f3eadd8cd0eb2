"""``skincls evaluate``: score a run's checkpoint on data, with the run's regions and preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skincls.core.bootstrap import Bootstrap
from skincls.core.errors import SkinclsError
from skincls.run.artifacts import SPLIT, CheckpointMeta
from skincls.serving.subgroups import SubgroupOptions


@dataclass(frozen=True)
class Selection:
    """Which samples of the data are scored: ``split`` (``auto``: the run's test split on the
    data it was trained on, all samples of other data), the regions (default: all of the run's),
    and how the data is read (``source``, ``group_column``; ``skip_bad`` counts undecodable rows
    instead of stopping). Rows of regions the run lacks are ignored."""

    split: str = "auto"
    regions: Sequence[str] = ()
    source: str = "auto"
    group_column: str | None = None
    skip_bad: bool = False


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`evaluate` scores: which samples, which checkpoint and decision (``rule``,
    ``target_prior``), on what hardware, and an optional folder for a reliability diagram PNG per
    head (existing ones are replaced only with ``overwrite``)."""

    selection: Selection = Selection()
    checkpoint: str = "best"
    rule: str = "selected"
    target_prior: Sequence[str] = ()
    batch_size: int | None = None
    workers: int = 0
    device: str = "auto"
    reliability: str | Path | None = None
    overwrite: bool = False
    bootstrap: Bootstrap = Bootstrap()
    subgroups: SubgroupOptions = SubgroupOptions()

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise SkinclsError(f"--batch-size: expected 1 or more, got {self.batch_size}")
        if self.workers < 0:
            raise SkinclsError(f"--workers: expected 0 or more, got {self.workers}")


def evaluate(
    run_dir: str | Path, data: str | Path | None = None, options: EvalOptions | None = None
) -> dict[str, Any]:
    """Metrics of the run's checkpoint on ``data`` (default: the run's own data), with each
    head's calibration figures before and after its temperature, and the group-bootstrap
    interval of every figure (``options.bootstrap``; groups are the split's: subjects, lesions)."""
    from skincls.core.runtime import amp_dtype, resolve_device
    from skincls.data.images import why_unreadable
    from skincls.model.calibration import calibration_report, reliability_png
    from skincls.model.inference import metrics_of, predict_loader
    from skincls.run.load import load_run

    o = options or EvalOptions()
    run_dir, regions, reliability = Path(run_dir), o.selection.regions, o.reliability
    model, config, registry, specs, meta = load_run(run_dir, o.checkpoint, o.rule, o.target_prior)
    if reliability is not None:
        from skincls.core.outputs import check_dir, check_targets

        folder = check_dir(reliability, "--reliability")
        names = regions or model.region_names
        check_targets(
            [folder / f"{n}_reliability.png" for n in names], "--reliability", o.overwrite
        )
    data = Path(data) if data is not None else Path(config.data)
    split, samples = select_samples(run_dir, config, registry, data, o.selection)
    if o.subgroups.fields:
        from skincls.serving.subgroups import check_fields

        check_fields(samples, o.subgroups.fields, str(data))
    dev = resolve_device(o.device)
    model.to(dev)
    batch = o.batch_size or config.batch_size
    loader, _ = eval_loader(specs, meta, samples, batch, o.workers, dev)
    p = predict_loader(model, loader, dev, amp_dtype(config.amp, dev), keep_logits=True)
    rows, scored = _scored_rows(p, specs, regions)
    result = metrics_of(rows, scored, [s.group for s in samples], o.bootstrap)
    result.pop("bad_indices")
    bad = sorted(set(p["index"][~p["ok"].astype(bool)].tolist()))
    wanted = set(result["regions"])
    if o.subgroups.fields:
        from skincls.serving.subgroups import by_field

        result["subgroups"] = {
            f: by_field(rows, scored, samples, f, result, o.subgroups, o.bootstrap)
            for f in o.subgroups.fields
        }
    calibration = {k: v for k, v in calibration_report(model, p).items() if k in wanted}
    if reliability is not None:
        Path(reliability).mkdir(parents=True, exist_ok=True)
        written = []
        for name, figures in calibration.items():
            written.append(Path(reliability) / f"{name}_reliability.png")
            reliability_png(name, figures, written[-1])
        result["reliability"] = str(reliability)
        result["reliability_files"] = [str(p) for p in written]
    result["calibration"] = calibration
    result["serving"] = {k: v for k, v in meta.serving.items() if k in wanted}
    result.update(
        {
            "split": split,
            "checkpoint": o.checkpoint,
            "epoch": meta.epoch,
            "data": str(data),
            "undecodable_images": [samples[i].path for i in bad],
            "undecodable_reasons": {samples[i].path: why_unreadable(samples[i]) for i in bad},
        }
    )
    return result


def _scored_rows(p: dict[str, Any], specs, regions: Sequence[str]) -> tuple[dict, list]:
    """The prediction rows of the ``regions`` asked for (all when none), their region indices
    renumbered over those regions, and their specs: the mean is over them only."""
    import numpy as np

    heads = [i for i, s in enumerate(specs) if not regions or s.name in regions]
    rows = {k: v[np.isin(p["region"], heads)] for k, v in p.items()}
    rows["region"] = np.searchsorted(heads, rows["region"])
    return rows, [specs[i] for i in heads]


def eval_loader(specs, meta: CheckpointMeta, samples, batch_size: int, workers: int, device):
    """A loader over ``samples`` with the run's eval preprocessing (each region's resize policy
    from ``meta.resize``, set by :func:`skincls.run.load.load_run`), and those transforms. Heads stay in
    the run's order; samples carry indices into it."""
    from skincls.data.dataset import SampleDataset, build_transforms
    from skincls.data.sampler import EvalSampler
    from skincls.model.inference import make_loader

    size = meta.image_size
    policies = meta.resize
    transforms = {
        s.name: build_transforms(
            [s], "eval", size, meta.mean, meta.std, policies.get(s.name, "crop")
        )[s.name]
        for s in specs
    }
    ds = SampleDataset(samples, [s.name for s in specs], transforms, size)
    return make_loader(ds, EvalSampler(len(ds)), batch_size, workers, device), transforms


def select_samples(
    run_dir: Path, config: Any, registry: Any, data: Path, selection: Selection
) -> tuple[str, list[Any]]:
    """The split actually used and its samples of the wanted regions of the run (its
    ``registry``) in ``data``, as ``selection`` says."""
    from skincls.data.sources import ReadOptions, load_data
    from skincls.data.split import load_split, partition

    split, regions, source = selection.split, selection.regions, selection.source
    same_data = data.resolve() == Path(config.data).resolve()
    if split == "auto":
        split = "test" if same_data else "all"
    if split not in ("all", "train", "val", "test"):
        raise SkinclsError(f"--split: expected all, train, val or test, got {split!r}")
    if split != "all" and not same_data:
        raise SkinclsError(
            f"--split {split}: the run's split applies only to the data it was trained on "
            f"({config.data}); use --split all for other data"
        )
    names = registry.names()
    wanted = list(regions) or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise SkinclsError(
            f"--region {unknown[0]}: not a region of this run (its regions: {', '.join(names)})"
        )
    read = ReadOptions(
        source if source != "auto" or not same_data else config.source,
        selection.group_column if selection.group_column or not same_data else config.group_column,
        selection.skip_bad,
        skip_unknown_regions=True,
    )
    dataset = load_data(data, registry, wanted, read)
    samples = dataset.samples
    if split != "all":
        samples = partition(samples, load_split(run_dir / SPLIT, samples))[split]
    if not samples:
        raise SkinclsError(f"{data}: no samples in split {split!r}")
    return split, samples
