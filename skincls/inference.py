"""Running a model over a loader: predictions and metrics, shared by training (validation and
test), ``evaluate``, ``sweep`` and ``demo``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from skincls import distributed as D
from skincls.engine.runtime import autocast
from skincls.metrics import evaluate_predictions


def collate_to(batch, device: torch.device, channels_last: bool = False):
    """A ``SampleDataset`` batch on ``device``: images, region indices, labels, decode flags
    (the sample indices stay on the CPU)."""
    images, regions, labels, ok, index = batch
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, regions.to(device), labels.to(device), ok.to(device), index


def make_loader(dataset, sampler, batch_size: int, workers: int, device, drop_last: bool = False):
    """A DataLoader over ``(index, seed)`` items; ``drop_last`` avoids a final batch of one,
    which batch normalisation cannot train on."""
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=False,
    )


def predict_loader(model, loader, device, dtype=None, channels_last=False) -> dict[str, np.ndarray]:
    """Per sample: its region index, label, the argmax of its own region's head and that
    class's softmax probability (``conf``), decode flag and index."""
    model.eval()
    out: dict[str, list] = {
        "region": [],
        "label": [],
        "pred": [],
        "conf": [],
        "ok": [],
        "index": [],
    }
    with torch.inference_mode():
        for batch in loader:
            images, regions, labels, ok, index = collate_to(batch, device, channels_last)
            with autocast(device, dtype):
                logits = model(images)
            preds = torch.zeros_like(labels)
            conf = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
            for i, lg in enumerate(logits):
                mask = regions == i
                if mask.any():
                    p, k = torch.softmax(lg[mask].float(), 1).max(1)
                    preds[mask], conf[mask] = k, p
            out["region"].append(regions.cpu())
            out["label"].append(labels.cpu())
            out["pred"].append(preds.cpu())
            out["conf"].append(conf.cpu())
            out["ok"].append(ok.cpu())
            out["index"].append(index)
    return {k: torch.cat(v).numpy() for k, v in out.items() if v}


def score(
    model, loader, regions: list[Any], device, dtype=None, channels_last=False, dctx=None
) -> dict[str, Any]:
    """Metrics over every sample of ``loader``; under torch.distributed the predictions of all
    ranks are gathered first, so the figures are those of the whole split on every rank.
    ``bad_indices`` lists the samples that did not decode (left out of the figures)."""
    p = predict_loader(model, loader, device, dtype, channels_last)
    if dctx is not None:
        p = D.gather_predictions(p, dctx)
    if not p:
        return {"regions": {}, "mean": {}, "bad_indices": []}
    return metrics_of(p, regions)


def metrics_of(p: dict[str, np.ndarray], regions: list[Any]) -> dict[str, Any]:
    """Metrics of ``predict_loader``'s output over the decoded samples; ``bad_indices`` lists
    the samples that did not decode."""
    keep = p["ok"].astype(bool)
    result = evaluate_predictions(
        [r.name for r in regions],
        {r.name: r.classes for r in regions},
        p["region"][keep],
        p["label"][keep],
        p["pred"][keep],
    )
    result["bad_indices"] = p["index"][~keep].tolist()
    return result
