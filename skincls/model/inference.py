"""Running a model over a loader: predictions and metrics, shared by training (validation and
test), ``evaluate``, ``sweep`` and ``demo``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from skincls.core import distributed as D
from skincls.core.bootstrap import Bootstrap, intervals
from skincls.core.metrics import evaluate_predictions
from skincls.core.runtime import autocast


def collate_to(batch, device: torch.device, channels_last: bool = False):
    """A ``SampleDataset`` batch on ``device``: images, labels (one column per head, -1 where
    absent), decode flags (the sample indices stay on the CPU)."""
    images, labels, ok, index = batch
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True), ok.to(device, non_blocking=True), index


def one_cv2_thread() -> None:
    """OpenCV (under albumentations) on one thread: each loader process is one core's worth of
    work, and OpenCV's own thread pool in every worker would oversubscribe the cores. Called in
    the parent before the workers fork (OpenCV's pool must not be reconfigured inside a forked
    child: it can hang on locks held by the parent's pool threads)."""
    import cv2

    cv2.setNumThreads(1)


def make_loader(
    dataset,
    sampler,
    batch_size: int,
    workers: int,
    device,
    drop_last: bool = False,
    persistent: bool = False,
):
    """A DataLoader over ``(index, seed)`` items; ``drop_last`` avoids a final batch of one,
    which batch normalisation cannot train on. ``persistent`` keeps the worker processes from
    one epoch to the next (training), instead of starting them again each epoch."""
    from torch.utils.data import DataLoader

    if workers > 0:
        one_cv2_thread()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )


def predict_loader(
    model,
    loader,
    device,
    dtype=None,
    channels_last=False,
    keep_logits: bool = False,
    keep_probs: bool = False,
) -> dict[str, np.ndarray]:
    """One row per (sample, head it has a label for): the head's index (``region``), the label,
    the head's decided class (``model.predict``: its rule on its probabilities) and that class's
    served probability (``conf``), the decode flag and the sample's index. A sample with two
    labels gives two rows. ``keep_logits`` adds ``logits``: each row's raw head outputs (an
    object array: heads differ in width); ``keep_probs`` adds ``probs``: each row's served
    probabilities (calibrated, prior-corrected), likewise."""
    model.eval()
    out: dict[str, list] = {k: [] for k in ("region", "label", "pred", "conf", "ok", "index")}
    raw: list[np.ndarray] = []
    served: list[np.ndarray] = []
    with torch.inference_mode():
        for batch in loader:
            _, labels, ok, index = batch
            images = collate_to(batch, device, channels_last)[0]
            with autocast(device, dtype):
                logits = model(images)
            probs, decided = model.predict(logits)
            pred = torch.stack(decided, 1)
            conf = torch.stack(
                [p.gather(1, d[:, None])[:, 0] for p, d in zip(probs, decided, strict=True)], 1
            )
            pred, conf = pred.cpu(), conf.cpu()
            rows, heads = (labels >= 0).nonzero(as_tuple=True)
            out["region"].append(heads)
            out["label"].append(labels[rows, heads])
            out["pred"].append(pred[rows, heads])
            out["conf"].append(conf[rows, heads])
            out["ok"].append(ok[rows])
            out["index"].append(index[rows])
            if keep_logits:
                cpu = [lg.float().cpu().numpy() for lg in logits]
                raw.extend(cpu[h][r] for r, h in zip(rows.tolist(), heads.tolist(), strict=True))
            if keep_probs:
                cpu = [p.float().cpu().numpy() for p in probs]
                served.extend(cpu[h][r] for r, h in zip(rows.tolist(), heads.tolist(), strict=True))
    result = {k: torch.cat(v).numpy() for k, v in out.items() if v}
    for name, kept, wanted in (("logits", raw, keep_logits), ("probs", served, keep_probs)):
        if wanted and result:
            result[name] = np.empty(len(kept), dtype=object)
            result[name][:] = kept
    return result


def collect_logits(
    model, loader, device, dtype=None, channels_last=False, dctx=None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per head, the raw logits and labels of the decodable samples labelled for it
    (:func:`head_logits` of :func:`predict_loader`); under torch.distributed, every rank's."""
    p = predict_loader(model, loader, device, dtype, channels_last, keep_logits=True)
    if dctx is not None:
        p = D.gather_predictions(p, dctx)
    return head_logits(p, model.region_names) if p else {}


def head_logits(
    p: dict[str, np.ndarray], region_names: list[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per head with decodable labelled rows in ``predict_loader(keep_logits=True)``'s output,
    its raw logits (float32) and labels."""
    keep = p["ok"].astype(bool)
    out = {}
    for i, name in enumerate(region_names):
        rows = np.flatnonzero(keep & (p["region"] == i))
        if len(rows):
            logits = torch.from_numpy(np.stack(list(p["logits"][rows])))
            out[name] = (logits, torch.from_numpy(p["label"][rows]))
    return out


def score(
    model, loader, regions: list[Any], device, dtype=None, channels_last=False, dctx=None
) -> dict[str, Any]:
    """Metrics over every sample of ``loader``; under torch.distributed the predictions of all
    ranks are gathered first, so the figures are those of the whole split on every rank.
    ``bad_indices`` lists the samples that did not decode (left out of the figures)."""
    return metrics_of(gathered(model, loader, device, dtype, channels_last, dctx), regions)


def gathered(model, loader, device, dtype=None, channels_last=False, dctx=None) -> dict:
    """:func:`predict_loader` over every rank's share (all rows on every rank)."""
    p = predict_loader(model, loader, device, dtype, channels_last)
    return D.gather_predictions(p, dctx) if dctx is not None else p


def metrics_of(
    p: dict[str, np.ndarray],
    regions: list[Any],
    groups: Sequence[str] | None = None,
    bootstrap: Bootstrap | None = None,
) -> dict[str, Any]:
    """Metrics of ``predict_loader``'s output over the decoded samples; ``bad_indices`` lists
    the samples that did not decode (each once). With ``groups`` (the group of each sample, by
    its index), ``intervals``: every figure's group-bootstrap interval
    (:func:`skincls.core.bootstrap.intervals`, ``bootstrap`` or its defaults)."""
    if not p:
        return {"regions": {}, "mean": {}, "bad_indices": []}
    keep = p["ok"].astype(bool)
    rows = (p["region"][keep], p["label"][keep], p["pred"][keep])
    result = evaluate_predictions(
        [r.name for r in regions],
        {r.name: r.classes for r in regions},
        *rows,
        {r.name: bool(getattr(r, "ordinal", False)) for r in regions},
    )
    if groups is not None:
        heads = [(r.name, len(r.classes), bool(getattr(r, "ordinal", False))) for r in regions]
        row_groups = [groups[i] for i in p["index"][keep].tolist()]
        result["intervals"] = intervals(*rows, row_groups, heads, bootstrap or Bootstrap())
    result["bad_indices"] = sorted(set(p["index"][~keep].tolist()))
    return result
